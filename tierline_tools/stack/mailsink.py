"""A real local SMTP server (aiosmtpd) that stores each delivered message as a file (the dev inbox)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", errors="replace"),
            "received_at": time.time(),
        }
        path = self.directory / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(record))
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tierline-mailsink")
    parser.add_argument("--port", type=int, default=18025)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    controller = Controller(MaildirHandler(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
