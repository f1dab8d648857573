"""Kafka plumbing shared by every service: brokers, topics, publishing, dead letters, idempotent inboxes.

Delivery is at-least-once (Tansu does not support idempotent/transactional producers): offsets are
committed only after a handler returns; a handler error nacks (the message is redelivered); bad input
and messages that keep failing go to the dead-letter topic with the reason, never dropped. Outputs carry
ids derived from their cause, so a redelivered input republishes identical messages that downstream
inboxes skip.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import traceback
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextvars import ContextVar, Token
from typing import Any, TypeVar

import asyncpg
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from schemas import TOPICS, Envelope, derived_id
from schemas.messages import DeadLetterPayload, DeadLetterRecordedV1
from tierline import metrics
from tierline.observability import trace_headers, tracing_enabled, tracing_middleware
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
    """The record's headers; with tracing on, also the contact's trace context (a producer span)."""
    return {
        "content-type": "application/json",
        "message-id": str(message.message_id),
        "message-type": message.type,
        "schema-version": str(message.schema_version),
        "contact-id": message.contact_id,
        **trace_headers(message.TOPIC, message.contact_id),
    }


#: The batch being handled (see :class:`PendingPublishes`); ``None``: none is open.
_PENDING: ContextVar[PendingPublishes | None] = ContextVar("tierline_pending_publishes", default=None)


async def publish(broker: KafkaBroker, message: Envelope[Any], *, wait: bool = False) -> None:
    """Publish one envelope on its topic, keyed by customer id; returns once the broker acknowledged.

    Inside :class:`PendingPublishes` (a batch handler) it returns once the record is queued in the
    producer (per-partition order is the call order) and the batch awaits every acknowledgement at once,
    before its offsets are committed; ``wait``: acknowledged before returning all the same."""
    pending = None if wait else _PENDING.get()
    result = await broker.publish(
        encode(message),
        topic=message.TOPIC,
        key=message.key(),
        headers=headers_for(message),
        correlation_id=message.contact_id,
        no_confirm=pending is not None,
    )
    metrics.MESSAGES_PRODUCED.labels(message.TOPIC).inc()
    if pending is not None and inspect.isawaitable(result):
        pending.futures.append(result)


class PendingPublishes:
    """A batch's publishes and inbox marks, done together: ``async with PendingPublishes() as pending:
    ...; await pending.confirm()`` before the offsets are committed.

    Every :func:`publish` inside the block (and in the tasks it starts) only queues its record, and every
    :meth:`Inbox.mark` outside a transaction is held back; ``confirm`` awaits all the acknowledgements
    (raising the first failure: the batch is redelivered, its outputs carry derived ids, so downstream
    inboxes skip what got through) and only then marks the messages, one statement per inbox. A message
    is never marked before what it published is on the broker.
    """

    def __init__(self) -> None:
        self.futures: list[Awaitable[Any]] = []
        self.marks: list[tuple[Inbox, Any]] = []
        self._token: Token[PendingPublishes | None] | None = None

    async def __aenter__(self) -> PendingPublishes:
        self._token = _PENDING.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._token is not None:
            _PENDING.reset(self._token)
            self._token = None
        if exc[0] is not None:  # the batch failed: retrieve the acknowledgements, mark nothing
            await asyncio.gather(*self.futures, return_exceptions=True)
            self.futures.clear()
            self.marks.clear()

    async def confirm(self) -> int:
        """Await every queued publish, then write the held-back inbox marks; the publishes confirmed."""
        futures = list(self.futures)
        self.futures.clear()
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        by_inbox: dict[tuple[int, str], tuple[Inbox, list[Any]]] = {}
        for inbox, message_id in self.marks:
            by_inbox.setdefault((id(inbox.pool), inbox.consumer), (inbox, []))[1].append(message_id)
        self.marks.clear()
        for inbox, ids in by_inbox.values():
            await inbox.mark_many(ids)
        return len(futures)


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
        #: Where attempts are counted across restarts (``attach``); None: in memory only.
        self.pool: asyncpg.Pool | None = None
        self._tracked: set[tuple[str, int, int]] = set()  # records with a row in consumer_attempts
        self._started: set[tuple[str, int]] = set()  # partitions this process has begun to read

    #: Rows of ``consumer_attempts`` older than this are dropped at start (messages long since moved on).
    ATTEMPTS_KEPT_DAYS = 7

    async def attach(self, pool: asyncpg.Pool) -> None:
        """Count attempts in Postgres (``consumer_attempts``), so a message that crashes its process is
        counted across restarts and dead-lettered after ``max_attempts`` instead of retried forever."""
        await pool.execute(
            """DELETE FROM consumer_attempts
               WHERE consumer=$1 AND updated_at < now() - make_interval(days => $2)""",
            self.service,
            self.ATTEMPTS_KEPT_DAYS,
        )
        rows = await pool.fetch(
            'SELECT topic, partition, "offset" FROM consumer_attempts WHERE consumer=$1', self.service
        )
        self._tracked = {(r["topic"], r["partition"], r["offset"]) for r in rows}
        self._started = set()  # a new start: the first record of each partition may be a crash's
        self.pool = pool

    async def _count(self, ident: tuple[str, int, int]) -> int:
        """One more attempt at this record; the attempts so far (in Postgres when attached)."""
        n = self._attempts.get(ident, 0) + 1
        if self.pool is not None:
            try:
                n = int(
                    await self.pool.fetchval(
                        """INSERT INTO consumer_attempts (consumer, topic, partition, "offset", attempts)
                           VALUES ($1, $2, $3, $4, 1)
                           ON CONFLICT (consumer, topic, partition, "offset")
                           DO UPDATE SET attempts = consumer_attempts.attempts + 1, updated_at = now()
                           RETURNING attempts""",
                        self.service,
                        *ident,
                    )
                )
                self._tracked.add(ident)
            except Exception as exc:  # noqa: BLE001 - Postgres down: counted in memory meanwhile
                log.warning("consumer.attempts_unavailable", consumer=self.service, error=type(exc).__name__)
        self._attempts[ident] = n
        return n

    async def _before(self, raw: Any) -> int:
        """Before a handler runs: a record that may have crashed a process (the first this process reads
        on its partition, or one counted before) has this attempt counted now, in Postgres; the attempts
        so far are returned (0: not counted before the handler, the usual case: no write per message)."""
        if self.pool is None or raw is None:
            return 0
        ident = (raw.topic, raw.partition, raw.offset)
        first = (raw.topic, raw.partition) not in self._started
        self._started.add((raw.topic, raw.partition))
        if not first and ident not in self._tracked:
            return 0
        return await self._count(ident)

    async def _crashed_too_often(self, raw: Any, started: int) -> bool:
        """``max_attempts`` began on this record and none finished (each took its process down): it is
        dead-lettered without running the handler again."""
        if started <= self.max_attempts:
            return False
        error = ConsumerCrashed(
            f"{self.service} stopped {started - 1} times while handling this message (offset {raw.offset})"
        )
        await self.give_up(raw, error, attempts=started - 1)
        return True

    async def _forget(self, records: list[Any]) -> None:
        """The records are committed or dead-lettered: their attempt rows go (the table stays small)."""
        done = [
            (r.topic, r.partition, r.offset)
            for r in records
            if (r.topic, r.partition, r.offset) in self._tracked
        ]
        if not done or self.pool is None:
            return
        try:
            await self.pool.executemany(
                """DELETE FROM consumer_attempts
                   WHERE consumer=$1 AND topic=$2 AND partition=$3 AND "offset"=$4""",
                [(self.service, *ident) for ident in done],
            )
            self._tracked.difference_update(done)
        except Exception as exc:  # noqa: BLE001 - pruned at the next start (ATTEMPTS_KEPT_DAYS) at worst
            log.warning("consumer.attempts_not_pruned", consumer=self.service, error=type(exc).__name__)

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
                await publish(self.broker, msg, wait=True)
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
        metrics.DEAD_LETTERED.labels(self.service, p.original_topic, p.error_kind).inc()
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
                started = 0 if batch or not records else await router._before(records[0])
                if started and await router._crashed_too_often(records[0], started):
                    router._finish(records)
                    await router._forget(records)
                    return None
                try:
                    result = await call_next(msg)
                except (ValidationError, UndecodableMessage, json.JSONDecodeError) as exc:
                    if batch:  # batch handlers set bad records aside themselves: this is the batch's fault
                        raise await router._retry_later(records, exc) from exc
                    await router.give_up(records[0], exc, attempts=1)
                    router._finish(records)
                    await router._forget(records)
                    return None
                except Exception as exc:
                    if batch:
                        raise await router._retry_later(records, exc) from exc
                    raw = records[0]
                    ident = (raw.topic, raw.partition, raw.offset)
                    # counted before the handler ran (a record that may crash its process), or now
                    n = started or await router._count(ident)
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
                    await router._forget(records)
                    return None
                router._finish(records)
                await router._forget(records)
                return result

        return DeadLetterMiddleware

    async def handle_one(self, raw: Any, handle: Callable[[], Awaitable[None]]) -> bool:
        """One record of a batch, handled as a single message would be: a bad message is dead-lettered at
        once, an error is retried in place (``max_attempts``, growing backoff) and then dead-lettered alone
        (with the topic's give-up hook); the rest of the batch goes on. True if it was handled."""
        started = await self._before(raw)
        if started and await self._crashed_too_often(raw, started):
            await self._forget([raw])
            return False
        attempt = 0
        while True:
            attempt += 1
            try:
                await handle()
                await self._forget([raw] if raw is not None else [])
                return True
            except (ValidationError, UndecodableMessage, json.JSONDecodeError) as exc:
                if raw is None:
                    raise
                await self.give_up(raw, exc, attempts=1)
                await self._forget([raw])
                return False
            except Exception as exc:
                if attempt < self.max_attempts:
                    log.warning(
                        "consumer.retrying",
                        consumer=self.service,
                        topic=getattr(raw, "topic", "?"),
                        offset=getattr(raw, "offset", None),
                        attempt=attempt,
                        error=_describe(exc)[:300],
                    )
                    await asyncio.sleep(self.backoff_s * attempt)
                    continue
                if raw is None:
                    raise
                await self.give_up(raw, exc, attempts=attempt)
                await self._forget([raw])
                return False

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


class ConsumerCrashed(RuntimeError):
    """A message whose handling took its process down ``max_attempts`` times (counted in Postgres)."""


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
    # spans only when tracing is configured (tierline.observability.configure_tracing): never built
    # and dropped. The tracing middleware is outermost, so dead-letter handling runs inside the span.
    middlewares: list[Any] = [tracing_middleware(service)] if tracing_enabled() else []
    if dead_letters is not None:
        middlewares.append(dead_letters.middleware())
    middlewares.append(metrics.metrics_middleware(service))  # innermost: the handler's own time
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


#: Batch consumption of a hot topic: at most this many records a batch, and a fetch waits at most this
#: long for more once one record is there, so a quiet stack answers in milliseconds and a busy one
#: amortises each statement, encoder pass and commit over the batch.
BATCH_MAX_RECORDS = 64
BATCH_LINGER_MS = 5


async def raw_batch(msg: Any, original: Any = None) -> list[bytes]:
    """Batch decoder: the raw values; the handler validates each one (a bad one is dead-lettered alone)."""
    body = msg.body
    return [bytes(b) for b in body] if isinstance(body, list | tuple) else [bytes(body)]


#: How long a batch subscriber's ``getmany`` waits when nothing is buffered. aiokafka returns as soon as a
#: record is there (never waits to fill a batch), so this costs no latency; but FastStream sleeps as long
#: again after an empty poll, so a short wait spins an idle consumer: 5 ms woke every batch subscriber
#: 100 times a second (idle stack 0.61 cores, `python -m bench.bench_pipeline`, quick, 2026-12-03).
BATCH_IDLE_WAIT_MS = 500


#: A batch subscriber on a hot topic: one consumer for all the partitions (records of one partition stay
#: in log order within and across batches), offsets committed after the handler returns; a handler error
#: redelivers the whole batch after a backoff (``DeadLetterRouter``). Use with :func:`parse_batch`,
#: :meth:`DeadLetterRouter.handle_one` and :func:`run_in_key_order`.
BATCH_SUBSCRIBER_DEFAULTS: dict[str, Any] = {
    **ORDERED_DEFAULTS,
    "batch": True,
    "max_records": BATCH_MAX_RECORDS,
    "batch_timeout_ms": BATCH_IDLE_WAIT_MS,
    "decoder": raw_batch,
}

#: How long a hot-path batch subscriber's fetch waits for records when there are none (see ``long_poll``).
LONG_POLL_MS = 1000


def long_poll(subscriber: Any, wait_ms: int = LONG_POLL_MS) -> Any:
    """Make a batch subscriber long-poll: each ``getmany`` waits up to ``wait_ms`` for records and returns
    as soon as some are there (up to ``max_records``: whatever arrived together is one batch), with no
    sleep after an empty poll. FastStream's own loop sleeps ``batch_timeout_ms`` after an empty poll, so
    it either spins when idle (a short timeout) or is deaf for that long after each idle poll (a long one:
    a record arriving then waits up to ``batch_timeout_ms`` per hop). Long-polling wakes an idle
    subscriber once per ``wait_ms`` and hands a record on the moment it is fetched."""
    max_records = subscriber.max_records

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        messages = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        return tuple(record for records in messages.values() for record in records)

    subscriber.get_msg = get_msg
    return subscriber


ItemT = TypeVar("ItemT")


def batch_records(message: Any) -> tuple[Any, ...] | None:
    """The Kafka records behind a batch handler's ``KafkaMessage`` (``None`` on a test broker)."""
    raw = getattr(message, "raw_message", None)
    return raw if isinstance(raw, tuple) else None


def parse_batch(
    model: Any, bodies: Sequence[bytes], records: Sequence[Any] | None
) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Exception]]]:
    """Each value validated as ``model``: (message, record) pairs in log order, and (record, error) for
    the values that are no such message (dead-letter them alone)."""
    good: list[tuple[Any, Any]] = []
    bad: list[tuple[Any, Exception]] = []
    for i, body in enumerate(bodies):
        raw = records[i] if records is not None and i < len(records) else None
        try:
            value = json.loads(body)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: the dead letter says not_json
            bad.append((raw, UndecodableMessage(f"not JSON: {exc}")))
            continue
        if not isinstance(value, dict):
            bad.append((raw, UndecodableMessage(f"expected a JSON object, got {type(value).__name__}")))
            continue
        try:
            good.append((model.model_validate(value), raw))
        except ValueError as exc:  # ValidationError, an unknown schema version
            bad.append((raw, exc))
    return good, bad


async def run_in_key_order(
    items: Sequence[ItemT], key: Callable[[ItemT], Hashable], handle: Callable[[ItemT], Awaitable[object]]
) -> None:
    """Handle ``items`` with one task per key: a key's items one after the other in their order, different
    keys at the same time (a batch's customers concurrently, each customer's records in log order)."""
    groups: dict[Hashable, list[ItemT]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)

    async def chain(group: list[ItemT]) -> None:
        for item in group:
            await handle(item)

    if len(groups) == 1:
        await chain(next(iter(groups.values())))
        return
    async with asyncio.TaskGroup() as tasks:
        for group in groups.values():
            tasks.create_task(chain(group))


async def consume_batch(
    dead_letters: DeadLetterRouter,
    model: Any,
    bodies: Sequence[bytes],
    records: Sequence[Any] | None,
    handle: Callable[[Any], Awaitable[None]],
) -> int:
    """A hot topic's batch through a one-message handler: the bad records dead-lettered alone, a message
    repeated inside the batch handled once, each customer's messages in log order and customers at the
    same time, a message that keeps failing dead-lettered alone (the rest go on), the publishes awaited
    together and then the inbox marks written (:class:`PendingPublishes`). The number handled."""
    good, bad = parse_batch(model, bodies, records)
    for raw, exc in bad:
        await dead_letters.give_up(raw, exc, attempts=1)
    first: dict[Any, tuple[Any, Any]] = {}
    for msg, raw in good:
        first.setdefault(msg.message_id, (msg, raw))
    handled: list[Any] = []

    async def one(item: tuple[Any, Any]) -> None:
        msg, raw = item
        if await dead_letters.handle_one(raw, lambda: handle(msg)):
            handled.append(msg.message_id)

    async with PendingPublishes() as pending:
        await run_in_key_order(list(first.values()), lambda item: item[0].customer_id, one)
        await pending.confirm()
    return len(handled)


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
        """Record the message as processed; False if it already was. Inside a batch
        (:class:`PendingPublishes`) and outside a transaction, the mark waits until the batch's publishes
        are acknowledged (then True)."""
        pending = _PENDING.get() if conn is None else None
        if pending is not None:
            pending.marks.append((self, message_id))
            return True
        status = await (conn or self.pool).execute(
            "INSERT INTO inbox (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            self.consumer,
            message_id,
        )
        return bool(status.endswith(" 1"))

    async def seen_many(self, message_ids: Sequence[Any]) -> set[Any]:
        """The ids of ``message_ids`` processed already (one statement for a batch)."""
        if not message_ids:
            return set()
        rows = await self.pool.fetch(
            "SELECT message_id FROM inbox WHERE consumer = $1 AND message_id = ANY($2::uuid[])",
            self.consumer,
            list(message_ids),
        )
        return {r["message_id"] for r in rows}

    async def mark_many(self, message_ids: Sequence[Any], conn: asyncpg.Connection | None = None) -> set[Any]:
        """Record a batch's messages as processed in one statement; the ids that were not marked yet."""
        if not message_ids:
            return set()
        rows = await (conn or self.pool).fetch(
            """INSERT INTO inbox (consumer, message_id) SELECT $1, m FROM unnest($2::uuid[]) AS m
               ON CONFLICT DO NOTHING RETURNING message_id""",
            self.consumer,
            list(message_ids),
        )
        return {r["message_id"] for r in rows}
