"""An idle batch consumer wakes its process at most once a second (idle stack ≤ 0.15 cores)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest
from faststream.kafka.subscriber.usecase import BatchSubscriber

from tierline.messaging import BATCH_SUBSCRIBER_DEFAULTS


class IdleConsumer:
    """aiokafka's getmany on an idle topic: waits ``timeout_ms`` (here: records it), returns nothing."""

    def __init__(self) -> None:
        self.waits_ms: list[int] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None = None) -> dict[Any, Any]:
        self.waits_ms.append(timeout_ms)
        return {}


def test_given_an_idle_topic_when_a_batch_subscriber_polls_then_one_poll_spans_at_least_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = IdleConsumer()
    subscriber = object.__new__(BatchSubscriber)  # only get_msg's own fields
    subscriber.batch_timeout_ms = BATCH_SUBSCRIBER_DEFAULTS["batch_timeout_ms"]
    subscriber.max_records = BATCH_SUBSCRIBER_DEFAULTS["max_records"]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    assert asyncio.run(subscriber.get_msg(consumer)) == ()  # type: ignore[arg-type]
    # one empty poll = FastStream's wait in getmany + its sleep after it: the loop's wake-up period
    period_s = consumer.waits_ms[0] / 1000 + sum(slept)
    assert period_s >= 1.0, f"an idle batch subscriber wakes {1 / period_s:.0f} times a second"
