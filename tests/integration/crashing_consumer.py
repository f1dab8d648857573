"""A consumer whose handler takes its process down (``os._exit``): run as a subprocess by
``test_dead_letter_ops.py`` to show that a message that crashes its process is counted across restarts.

Usage: python -m tests.integration.crashing_consumer BOOTSTRAP DSN TOPIC SERVICE MARKER_FILE
Exit codes: 3 = the handler crashed the process; 0 = the message was dead-lettered without running the
handler; 2 = nothing happened in time.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from tierline.db import create_pool
from tierline.messaging import ORDERED_DEFAULTS, DeadLetterRouter, make_broker


async def main(bootstrap: str, dsn: str, topic: str, service: str, marker: Path) -> int:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    router = DeadLetterRouter(service, backoff_s=0.05)
    await router.attach(pool)
    broker = make_broker(bootstrap, service, router)

    @broker.subscriber(topic, group_id=f"tierline.{service}", **ORDERED_DEFAULTS)
    async def handle(body: dict[str, Any]) -> None:
        with marker.open("a") as out:
            out.write(f"{body.get('n')}\n")
        os._exit(3)  # the process dies mid-message: no commit, no exception handler

    await broker.start()
    try:
        for _ in range(600):
            if router.recorded:
                return 0
            await asyncio.sleep(0.1)
        return 2
    finally:
        await broker.stop()
        await pool.close()


if __name__ == "__main__":
    bootstrap, dsn, topic, service, marker = sys.argv[1:6]
    sys.exit(asyncio.run(main(bootstrap, dsn, topic, service, Path(marker))))
