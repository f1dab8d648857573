"""A bare FastStream pass-through with the pipeline's number of hops (the ceiling): run as a process."""

from __future__ import annotations

import asyncio
import signal
import sys

from faststream.kafka import KafkaBroker

from tierline.messaging import SUBSCRIBER_DEFAULTS

HOPS = ("bench.passthrough.hop1.v1", "bench.passthrough.hop2.v1", "bench.passthrough.hop3.v1")
DONE = "bench.passthrough.done.v1"


async def main(bootstrap: str) -> None:
    broker = KafkaBroker(bootstrap, logger=None)
    targets = [*HOPS[1:], DONE]
    for source, target in zip(HOPS, targets, strict=True):

        def make(dst: str):  # type: ignore[no-untyped-def]
            async def forward(body: dict) -> None:  # type: ignore[type-arg]
                await broker.publish(body, topic=dst)

            return forward

        broker.subscriber(
            source,
            group_id=f"bench.passthrough.{source}",
            **SUBSCRIBER_DEFAULTS,  # the pipeline's consumer settings
        )(make(target))
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
