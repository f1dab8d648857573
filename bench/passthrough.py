"""A bare FastStream pass-through with the pipeline's number of hops (the ceiling): run as a process.

Fair by construction: the brokers come from ``tierline.messaging.make_broker`` and the subscribers use
the hot path's settings (``BATCH_SUBSCRIBER_DEFAULTS``: batch size, linger, fetch wait, offsets
committed after the batch), so the ceiling follows every change to the pipeline's consumption. Each hop
forwards a batch as the pipeline's handlers publish theirs: every record queued with its key, the
acknowledgements awaited together before the batch's offsets are committed.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from typing import Any

from faststream import Context
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage

from tierline.messaging import BATCH_SUBSCRIBER_DEFAULTS, batch_records, make_broker

HOPS = ("bench.passthrough.hop1.v1", "bench.passthrough.hop2.v1", "bench.passthrough.hop3.v1")
DONE = "bench.passthrough.done.v1"


def forwarder(broker: KafkaBroker, dst: str) -> Any:
    async def forward(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        records = batch_records(message) or ()
        keys = [r.key for r in records] if len(records) == len(bodies) else [None] * len(bodies)
        pending = []
        for body, key in zip(bodies, keys, strict=True):
            result = await broker.publish(body, topic=dst, key=key, no_confirm=True)
            if inspect.isawaitable(result):
                pending.append(result)
        await asyncio.gather(*pending)  # acknowledged before the batch's offsets are committed

    return forward


def build(bootstrap: str) -> KafkaBroker:
    broker = make_broker(bootstrap, "bench-passthrough")
    targets = [*HOPS[1:], DONE]
    for source, target in zip(HOPS, targets, strict=True):
        broker.subscriber(
            source,
            group_id=f"bench.passthrough.{source}",
            **BATCH_SUBSCRIBER_DEFAULTS,  # the pipeline's hot-path consumer settings
        )(forwarder(broker, target))
    return broker


async def main(bootstrap: str) -> None:
    broker = build(bootstrap)
    await broker.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await broker.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
