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

from schemas import TOPICS, Envelope
from schemas.messages import DeadLetterPayload, DeadLetterRecordedV1
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


class DeadLetterRouter:
    """Sends what a consumer cannot process to the dead-letter topic, with the error."""

    def __init__(self, service: str, max_attempts: int = 3, backoff_s: float = 0.2) -> None:
        self.service = service
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.broker: KafkaBroker | None = None
        self.give_up_hooks: dict[str, GiveUpHook] = {}
        self._attempts: dict[tuple[str, int, int], int] = {}

    async def send(self, raw: Any, error: BaseException, attempts: int) -> None:
        assert self.broker is not None, "DeadLetterRouter.broker not set"
        value = raw.value if raw is not None else b""
        key = raw.key.decode(errors="replace") if raw is not None and raw.key else None
        headers = {k: v.decode(errors="replace") for k, v in (raw.headers or [])} if raw is not None else {}
        payload = DeadLetterPayload(
            original_topic=raw.topic if raw is not None else "?",
            partition=raw.partition if raw is not None else None,
            offset=raw.offset if raw is not None else None,
            key=key,
            value=(value or b"").decode("utf-8", errors="replace"),
            headers=headers,
            consumer=self.service,
            error_type=type(error).__name__,
            error=_describe(error),
            attempts=attempts,
        )
        ident = f"{payload.original_topic}:{payload.partition}:{payload.offset}"
        msg = DeadLetterRecordedV1.build(
            payload,
            contact_id=headers.get("contact-id") or ident,
            customer_id=key or "unknown",
            message_id=None,
        )
        await publish(self.broker, msg)
        log.warning(
            "deadletter.recorded",
            consumer=self.service,
            topic=payload.original_topic,
            offset=payload.offset,
            error_type=payload.error_type,
            error=payload.error[:300],
        )

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

    def middleware(self) -> type[BaseMiddleware]:
        router = self

        class DeadLetterMiddleware(BaseMiddleware):
            async def consume_scope(self, call_next: Any, msg: Any) -> Any:
                raw = msg.raw_message
                try:
                    return await call_next(msg)
                except (ValidationError, UndecodableMessage, json.JSONDecodeError) as exc:
                    await router.send(raw, exc, attempts=1)
                    await router.run_hook(raw, exc)
                    return None
                except Exception as exc:
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
                    router._attempts.pop(ident, None)
                    await router.send(raw, exc, attempts=n)
                    await router.run_hook(raw, exc)
                    return None

        return DeadLetterMiddleware


class UndecodableMessage(ValueError):
    """The bytes on the topic are not a JSON object."""


async def decode_json(msg: Any, original: Any = None) -> Any:
    """Decoder that turns bad bytes into a typed error inside the consume scope (→ dead letter)."""
    try:
        value = json.loads(msg.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"__undecodable__": f"not JSON: {exc}"}
    if not isinstance(value, dict):
        return {"__undecodable__": f"expected a JSON object, got {type(value).__name__}"}
    return value


def _describe(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        return f"validation failed: {error}"
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
