"""Dead letters: bounded and NUL-free whatever was sent, derived ids, terminal on their own topic, a
failing dead-letter publish retried while the stalled partition shows in health."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.messages import ContactReceivedV1, DeadLetterRecordedV1
from tierline.messaging import (
    DEAD_LETTER_VALUE_MAX,
    DeadLetterRouter,
    ProgressTracker,
    UndecodableMessage,
    error_kind,
)
from tierline.runtime import Service
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit


@dataclass
class Record:
    topic: str = "contact.received.v1"
    partition: int = 2
    offset: int = 17
    key: bytes | None = b"cus_1"
    value: bytes = b"{}"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FlakyBroker:
    """Fails the first ``failures`` publishes, then records what it is given."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[dict[str, Any]] = []

    async def publish(self, body: bytes, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        self.published.append({"body": json.loads(body), **kwargs})


def validation_error(body: dict[str, Any]) -> ValidationError:
    try:
        ContactReceivedV1.model_validate(body)
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def test_given_a_huge_value_with_nul_and_bad_utf8_when_recorded_then_bounded_and_storable() -> None:
    router = DeadLetterRouter("router")
    raw = Record(
        value=b"\x00\xff" + b"x" * (2 * 1024 * 1024),
        key=b"k" * 5000,
        headers=[("contact-id", b"\x00" * 500), *[(f"h{i}", b"v" * 5000) for i in range(100)]],
    )
    msg = router.record_for(raw, UndecodableMessage("not JSON"), attempts=1)
    p = msg.payload
    assert len(p.value) == DEAD_LETTER_VALUE_MAX
    assert p.value_truncated
    assert p.value_bytes == len(raw.value)
    assert "\x00" not in p.value
    assert "\x00" not in msg.model_dump_json()
    assert len(p.key or "") <= 200
    assert len(p.headers) <= 32
    assert all(len(v) <= 1024 for v in p.headers.values())
    assert len(msg.model_dump_json()) < 100_000  # always fits the broker's request size
    assert msg.contact_id == "contact.received.v1:2:17"  # the oversized contact id header is not used


def test_given_the_same_poison_record_twice_when_recorded_then_the_same_message_id() -> None:
    router = DeadLetterRouter("router")
    first = router.record_for(Record(value=b"bad"), ValueError("x"), attempts=1)
    again = router.record_for(Record(value=b"bad"), ValueError("x"), attempts=3)
    other = router.record_for(Record(value=b"bad", offset=18), ValueError("x"), attempts=1)
    assert first.message_id == again.message_id != other.message_id


def test_given_errors_when_classified_then_closed_kinds() -> None:
    assert error_kind(UndecodableMessage("x")) == "not_json"
    assert error_kind(validation_error({"__undecodable__": "not JSON"})) == "not_json"
    assert error_kind(validation_error({"schema_version": 99})) == "unknown_schema_version"
    assert error_kind(validation_error({"payload": 1})) == "invalid_message"
    assert error_kind(RuntimeError("boom")) == "handler_error"


async def test_given_failing_dead_letter_publishes_when_sent_then_retried_until_out_and_stall_named() -> None:
    router = DeadLetterRouter("router", backoff_s=0.001, max_backoff_s=0.002)
    router.broker = FlakyBroker(failures=3)  # type: ignore[assignment]
    raw = Record(value=b"nope")
    router.progress.begin(raw.topic, raw.partition, raw.offset)
    await router.send(raw, UndecodableMessage("not JSON"), attempts=1)
    published = router.broker.published  # type: ignore[attr-defined]
    assert len(published) == 1
    assert published[0]["topic"] == DeadLetterRecordedV1.TOPIC
    assert router.recorded == 1
    stalled = router.progress.stalled(after_s=0)
    assert stalled
    assert "dead-letter publish failing" in stalled[0]


async def test_given_a_record_of_the_dead_letter_topic_when_given_up_then_nothing_is_published() -> None:
    router = DeadLetterRouter("tier3_handoff")
    router.broker = FlakyBroker()  # type: ignore[assignment]
    await router.give_up(Record(topic=DeadLetterRecordedV1.TOPIC), RuntimeError("boom"), attempts=3)
    assert router.broker.published == []  # type: ignore[attr-defined]


def test_given_a_consumer_on_one_offset_when_time_passes_then_stalled_names_it_until_it_moves() -> None:
    now = [100.0]
    tracker = ProgressTracker(clock=lambda: now[0])
    tracker.begin("usage.event.recorded.v1", 1, 5)
    now[0] += 30
    tracker.begin("usage.event.recorded.v1", 1, 5)  # redelivered: still the same offset, same start
    assert tracker.stalled(after_s=60) == []
    now[0] += 31
    assert tracker.stalled(after_s=60) == ["usage.event.recorded.v1[1] stuck at offset 5 for 61 s"]
    tracker.done("usage.event.recorded.v1", 1)
    assert tracker.stalled(after_s=60) == []


async def test_given_a_stalled_consumer_when_health_checked_then_degraded_naming_it() -> None:
    settings = InfraSettings(
        kafka_bootstrap="127.0.0.1:1", stripe_api_base="http://127.0.0.1:1", consumer_stall_after_s=5
    )
    service = Service.create("router", settings, needs_postgres=False)
    now = [0.0]
    service.dead_letters.progress = ProgressTracker(clock=lambda: now[0])
    service.dead_letters.progress.begin("contact.received.v1", 3, 42)
    now[0] = 10.0
    results = await asyncio.wait_for(service.check_health(), 10)
    assert results["consumers"]["ok"] is False
    assert "contact.received.v1[3] stuck at offset 42" in results["consumers"]["detail"]
