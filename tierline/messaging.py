"""Kafka plumbing shared by every service: brokers, topics, publishing, dead letters, idempotent inboxes.

Delivery is at-least-once (Tansu does not support idempotent/transactional producers): offsets are
committed only after a handler returns; a handler error nacks (the message is redelivered); bad input
and messages that keep failing go to the dead-letter topic with the reason, never dropped. Outputs carry
ids derived from their cause, so a redelivered input republishes identical messages that downstream
inboxes skip.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from pydantic import ValidationError

from schemas import TOPICS, Envelope, derived_id
from schemas.messages import DeadLetterPayload, DeadLetterRecordedV1
from tierline.safetext import digest, safe_text
from tierline.settings import TOPIC_PARTITIONS

log = structlog.get_logger(__name__)

GiveUpHook = Callable[[dict[str, Any], BaseException], Awaitable[None]]


def consumer_group(service: str) -> str:
    return f"tierline.{service}"


def topic_names() -> list[str]:
    return sorted(TOPICS)


async def ensure_topics(
    bootstrap: str, partitions: int = TOPIC_PARTITIONS, topics: list[str] | None = None
) -> list[str]:
    """Create missing topics (idempotent). Returns the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (topics or topic_names()) if t not in existing]
        if wanted:
            await admin.create_topics([NewTopic(t, partitions, 1) for t in wanted])
        return wanted
    finally:
        await admin.close()


def encode(message: Envelope[Any]) -> bytes:
    return message.model_dump_json().encode()


def headers_for(message: Envelope[Any]) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "message-id": str(message.message_id),
        "message-type": message.type,
        "schema-version": str(message.schema_version),
        "contact-id": message.contact_id,
    }


async def publish(broker: KafkaBroker, message: Envelope[Any]) -> None:
    """Publish one envelope on its topic, keyed by customer id; returns once the broker acknowledged."""
    await broker.publish(
        encode(message),
        topic=message.TOPIC,
        key=message.key(),
        headers=headers_for(message),
        correlation_id=message.contact_id,
    )


#: Bounds of what a dead-letter record copies from the poison message (the record must always fit the
#: broker's request size, whatever was sent).
DEAD_LETTER_VALUE_MAX = 16 * 1024
DEAD_LETTER_HEADER_MAX = 1024
DEAD_LETTER_HEADERS_MAX = 32
DEAD_LETTER_KEY_MAX = 200


class ProgressTracker:
    """Which offset each partition's consumer is on, and since when: a consumer stuck on one offset
    (a handler that keeps failing, a dead-letter publish that cannot get through) shows in health."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._current: dict[tuple[str, int], tuple[int, float, str]] = {}

    def begin(self, topic: str, partition: int, offset: int) -> None:
        current = self._current.get((topic, partition))
        if current is None or current[0] != offset:
            self._current[(topic, partition)] = (offset, self.clock(), "")

    def note(self, topic: str, partition: int, detail: str) -> None:
        current = self._current.get((topic, partition))
        if current is not None:
            self._current[(topic, partition)] = (current[0], current[1], detail)

    def done(self, topic: str, partition: int) -> None:
        self._current.pop((topic, partition), None)

    def stalled(self, after_s: float) -> list[str]:
        """One line per partition whose consumer has been on the same offset for ``after_s`` or more."""
        now = self.clock()
        return [
            f"{topic}[{partition}] stuck at offset {offset} for {now - since:.0f} s"
            + (f": {detail}" if detail else "")
            for (topic, partition), (offset, since, detail) in sorted(self._current.items())
            if now - since >= after_s
        ]


def _records(raw: Any) -> list[Any]:
    """The Kafka records behind a consumed message: one, or a batch's tuple."""
    if raw is None:
        return []
    return [r for r in raw if r is not None] if isinstance(raw, tuple | list) else [raw]


class DeadLetterRouter:
    """Sends what a consumer cannot process to the dead-letter topic, once, with the error.

    A dead letter is terminal: nothing dead-letters a record of the dead-letter topic. The record carries
    a bounded copy of the value (so it always fits the broker's request size), and its message id is
    derived from the poison record, so a redelivery republishes an identical record that inboxes skip.
    A dead-letter publish that fails is retried with backoff for as long as it fails (the offset is not
    committed before the record is out: nothing is lost); the partition's stall shows in health.
    """

    def __init__(
        self,
        service: str,
        max_attempts: int = 3,
        backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.service = service
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.broker: KafkaBroker | None = None
        self.give_up_hooks: dict[str, GiveUpHook] = {}
        self.progress = ProgressTracker()
        self.recorded = 0
        self._attempts: dict[tuple[str, int, int], int] = {}

    def record_for(self, raw: Any, error: BaseException, attempts: int) -> DeadLetterRecordedV1:
        """The dead-letter record for one poison Kafka record (pure: bounded, NUL-free, derived id)."""
        value: bytes = (raw.value if raw is not None else b"") or b""
        key, _ = safe_text(raw.key if raw is not None else None, DEAD_LETTER_KEY_MAX)
        headers: dict[str, str] = {}
        for name, data in list((raw.headers if raw is not None else None) or [])[:DEAD_LETTER_HEADERS_MAX]:
            header, _ = safe_text(data, DEAD_LETTER_HEADER_MAX)
            headers[safe_text(name, 100)[0]] = header
        text, cut = safe_text(value, DEAD_LETTER_VALUE_MAX)
        payload = DeadLetterPayload(
            original_topic=raw.topic if raw is not None else "?",
            partition=raw.partition if raw is not None else None,
            offset=raw.offset if raw is not None else None,
            key=key or None,
            value=text,
            headers=headers,
            consumer=self.service,
            error_type=type(error).__name__,
            error=safe_text(_describe(error), 4000)[0],
            attempts=attempts,
            error_kind=error_kind(error),
            value_bytes=len(value),
            value_truncated=cut,
            value_sha256=digest(value),
        )
        ident = f"{payload.original_topic}:{payload.partition}:{payload.offset}"
        contact = headers.get("contact-id") or ident
        return DeadLetterRecordedV1.build(
            payload,
            contact_id=contact if 0 < len(contact) <= 200 else ident,
            customer_id=key or "unknown",
            message_id=derived_id("deadletter", ident, payload.value_sha256),
        )

    async def send(self, raw: Any, error: BaseException, attempts: int) -> DeadLetterRecordedV1:
        """Publish the dead-letter record; retried with backoff until the broker takes it."""
        assert self.broker is not None, "DeadLetterRouter.broker not set"
        msg = self.record_for(raw, error, attempts)
        p = msg.payload
        tries = 0
        while True:
            try:
                await publish(self.broker, msg)
                break
            except Exception as exc:  # noqa: BLE001 - retried; the partition does not move on meanwhile
                tries += 1
                delay = min(self.max_backoff_s, self.backoff_s * 2**tries)
                detail = f"dead-letter publish failing ({type(exc).__name__}: {str(exc)[:200]})"
                if raw is not None:
                    self.progress.note(raw.topic, raw.partition, detail)
                log.error(
                    "deadletter.publish_failed",
                    consumer=self.service,
                    topic=p.original_topic,
                    partition=p.partition,
                    offset=p.offset,
                    attempt=tries,
                    retry_in_s=delay,
                    error=f"{type(exc).__name__}: {str(exc)[:300]}",
                )
                await asyncio.sleep(delay)
        self.recorded += 1
        log.warning(
            "deadletter.recorded",
            consumer=self.service,
            topic=p.original_topic,
            partition=p.partition,
            offset=p.offset,
            error_kind=p.error_kind,
            error_type=p.error_type,
            value_bytes=p.value_bytes,
            error=p.error[:300],
        )
        return msg

    async def run_hook(self, raw: Any, error: BaseException) -> None:
        """After dead-lettering, let the consumer close the contact (e.g. escalate with reason error)."""
        hook = self.give_up_hooks.get(raw.topic)
        if hook is None:
            return
        try:
            body = json.loads(raw.value)
        except (ValueError, TypeError):
            return
        if isinstance(body, dict) and body.get("contact_id") and body.get("customer_id"):
            try:
                await hook(body, error)
            except Exception as exc:  # noqa: BLE001 - the dead letter is already recorded
                log.error("deadletter.hook_failed", consumer=self.service, error=_describe(exc)[:300])

    async def give_up(self, raw: Any, error: BaseException, attempts: int) -> None:
        if raw.topic == DeadLetterRecordedV1.TOPIC:
            # terminal: a dead letter that cannot be handled is logged, never dead-lettered again
            log.error(
                "deadletter.unprocessable",
                consumer=self.service,
                partition=raw.partition,
                offset=raw.offset,
                error=safe_text(_describe(error), 500)[0],
            )
            return
        await self.send(raw, error, attempts)
        await self.run_hook(raw, error)

    def middleware(self) -> type[BaseMiddleware]:
        router = self

        class DeadLetterMiddleware(BaseMiddleware):
            async def consume_scope(self, call_next: Any, msg: Any) -> Any:
                records = _records(msg.raw_message)
                for record in records:
                    router.progress.begin(record.topic, record.partition, record.offset)
                batch = isinstance(msg.raw_message, tuple | list)
                try:
                    result = await call_next(msg)
                except (ValidationError, UndecodableMessage, json.JSONDecodeError) as exc:
                    if batch:  # batch handlers set bad records aside themselves: this is the batch's fault
                        raise await router._retry_later(records, exc) from exc
                    await router.give_up(records[0], exc, attempts=1)
                    router._finish(records)
                    return None
                except Exception as exc:
                    if batch:
                        raise await router._retry_later(records, exc) from exc
                    raw = records[0]
                    ident = (raw.topic, raw.partition, raw.offset)
                    n = router._attempts.get(ident, 0) + 1
                    router._attempts[ident] = n
                    if n < router.max_attempts:
                        log.warning(
                            "consumer.retrying",
                            consumer=router.service,
                            topic=raw.topic,
                            offset=raw.offset,
                            attempt=n,
                            error=_describe(exc)[:300],
                        )
                        await asyncio.sleep(router.backoff_s * n)
                        raise
                    await router.give_up(raw, exc, attempts=n)
                    router._finish(records)
                    return None
                router._finish(records)
                return result

        return DeadLetterMiddleware

    def _finish(self, records: list[Any]) -> None:
        for record in records:
            self.progress.done(record.topic, record.partition)
            self._attempts.pop((record.topic, record.partition, record.offset), None)

    async def _retry_later(self, records: list[Any], exc: BaseException) -> BaseException:
        """A batch that failed as a whole (its store is down): redelivered after a growing backoff."""
        first = records[0] if records else None
        ident = (first.topic, first.partition, first.offset) if first is not None else ("?", -1, -1)
        n = self._attempts.get(ident, 0) + 1
        self._attempts[ident] = n
        delay = min(self.max_backoff_s, self.backoff_s * 2**n)
        if first is not None:
            self.progress.note(first.topic, first.partition, f"batch failing ({type(exc).__name__})")
        log.warning(
            "consumer.batch_retrying",
            consumer=self.service,
            topic=ident[0],
            offset=ident[2],
            attempt=n,
            retry_in_s=delay,
            error=_describe(exc)[:300],
        )
        await asyncio.sleep(delay)
        return exc


def error_kind(error: BaseException) -> str:
    """The closed kind of a dead letter's error (see ``DeadLetterKind``)."""
    if isinstance(error, UndecodableMessage | json.JSONDecodeError):
        return "not_json"
    if isinstance(error, ValidationError):
        # a handler's argument is validated as ("msg", field, ...); a model's own fields as (field, ...)
        errors = error.errors()
        if any(UNDECODABLE in e.get("loc", ()) or e.get("type") == "json_invalid" for e in errors):
            return "not_json"
        if any(e.get("loc", ())[-1:] == ("schema_version",) for e in errors):
            return "unknown_schema_version"
        return "invalid_message"
    if isinstance(error, ValueError) and "schema version" in str(error):
        return "unknown_schema_version"
    return "handler_error"


class UndecodableMessage(ValueError):
    """The bytes on the topic are not a JSON object."""


async def decode_json(msg: Any, original: Any = None) -> Any:
    """Decoder that turns bad bytes into a typed error inside the consume scope (→ dead letter)."""
    try:
        value = json.loads(msg.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return {UNDECODABLE: f"not JSON: {exc}"}
    if not isinstance(value, dict):
        return {UNDECODABLE: f"expected a JSON object, got {type(value).__name__}"}
    return value


#: Marker the decoder returns for bytes that are no JSON object: the model refuses it (→ dead letter).
UNDECODABLE = "__undecodable__"


def _describe(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        for e in error.errors():
            if UNDECODABLE in e.get("loc", ()):
                return f"undecodable message: {e.get('input')}"[:4000]
        return f"validation failed: {error}"[:4000]
    text = f"{type(error).__name__}: {error}"
    tb = "".join(traceback.format_exception(error)[-3:])
    return f"{text}\n{tb}"[:4000]


def make_broker(bootstrap: str, service: str, dead_letters: DeadLetterRouter | None = None) -> KafkaBroker:
    """A broker with tracing (context in headers) and dead-lettering on every subscriber."""
    from tierline.observability import tracer_provider

    middlewares: list[Any] = [KafkaTelemetryMiddleware(tracer_provider=tracer_provider())]
    if dead_letters is not None:
        middlewares.append(dead_letters.middleware())
    broker = KafkaBroker(
        bootstrap,
        client_id=f"tierline-{service}",
        middlewares=middlewares,
        decoder=decode_json,
        logger=None,
        enable_idempotence=False,
    )
    if dead_letters is not None:
        dead_letters.broker = broker
    return broker


#: Commit after processing; a handler error nacks (redelivery); start from the earliest offset.
ORDERED_DEFAULTS: dict[str, Any] = {
    "ack_policy": AckPolicy.NACK_ON_ERROR,
    "auto_offset_reset": "earliest",
    # A consumer holding several partitions: Tansu 0.6 holds such a fetch for about a quarter of the
    # wait even when data arrives, so keep the wait short (it costs idle polling: see below)
    "fetch_max_wait_ms": 50,
}

#: Wait of a consumer that holds a single partition (``max_workers`` = partitions). Tansu answers such a
#: fetch when data arrives if it is idle (3-8 ms with a 1,000 ms wait), under steady load after about a
#: quarter of the wait; every idle consumer polls once per wait, and the broker answers each poll. Measured
#: (idle: CPU of every process from /proc over 10 s; the rest: `python -m bench.bench_pipeline`, quick):
#: 50 ms → idle stack 1.1 cores, pass-through p50 66 ms at 100/s, pipeline 11.4 contacts/s;
#: 200 ms → idle stack 0.5 cores, pass-through p50 167 ms, pipeline 15.1/s;
#: 1,000 ms → idle stack 0.3 cores, pass-through p50 757 ms, pipeline 15.1/s.
#: Apache Kafka (deploy/: 12 partitions, so several a consumer) answers any fetch as data arrives.
SINGLE_PARTITION_FETCH_WAIT_MS = 200

#: ... and one consumer per partition inside the process (partitions are processed concurrently, each
#: partition — hence each customer — still strictly in order, offsets still committed after processing).
SUBSCRIBER_DEFAULTS: dict[str, Any] = {
    **ORDERED_DEFAULTS,
    "max_workers": TOPIC_PARTITIONS,
    "fetch_max_wait_ms": SINGLE_PARTITION_FETCH_WAIT_MS,
}


class Inbox:
    """Idempotent consumer: a message id is processed once per consumer."""

    def __init__(self, pool: asyncpg.Pool, consumer: str) -> None:
        self.pool = pool
        self.consumer = consumer

    async def seen(self, message_id: Any) -> bool:
        row = await self.pool.fetchval(
            "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2", self.consumer, message_id
        )
        return row is not None

    async def mark(self, message_id: Any, conn: asyncpg.Connection | None = None) -> bool:
        """Record the message as processed; False if it already was."""
        status = await (conn or self.pool).execute(
            "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.consumer,
            message_id,
        )
        return bool(status.endswith(" 1"))
