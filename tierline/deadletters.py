"""Dead letters an operator can act on: ``tierline deadletter list|show|replay`` (issue 24).

The dead-letter topic is the record: every consumer publishes what it cannot process there, with the
reason, the original key, headers and (a bounded copy of) the value. ``list`` counts them per original
topic and error, ``show`` prints one, ``replay`` publishes the original message again, after a fix, to its
original topic with its original key and headers, ONCE: the replay is recorded in Postgres
(``deadletter_replays``) before it is published, and a second replay of the same dead letter is refused.
A dead letter whose copy is not the original bytes (cut at 16 KiB, or not UTF-8) is refused too.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from schemas import derived_id
from schemas.messages import AuditEventPayload, AuditEventRecordedV1, DeadLetterRecordedV1
from tierline.messaging import publish
from tierline.safetext import digest

log = structlog.get_logger(__name__)

TOPIC = DeadLetterRecordedV1.TOPIC


class DeadLetterNotFound(LookupError):
    """No dead letter has that id (or the prefix names none, or several)."""


class ReplayRefused(RuntimeError):
    """The dead letter cannot be replayed: already replayed, or its copy is not the original message."""


@dataclass(frozen=True)
class GroupCount:
    original_topic: str
    error: str
    count: int
    replayed: int


async def read_all(
    bootstrap: str, *, topic: str = TOPIC, timeout_s: float = 30.0
) -> list[DeadLetterRecordedV1]:
    """Every dead letter on the topic, oldest first per partition (read to the end offsets, no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=int(timeout_s * 1000)
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.force_metadata_update()  # type: ignore[no-untyped-call]
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[DeadLetterRecordedV1] = []
        waiting = {tp for tp in tps if ends[tp] > 0}
        while waiting:
            batch = await consumer.getmany(*waiting, timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"reading {topic}: no records within {timeout_s:.0f} s")
            for tp, records in batch.items():
                for record in records:
                    parsed = _parse(record.value)
                    if parsed is not None:
                        out.append(parsed)
                    if record.offset + 1 >= ends[tp]:
                        waiting.discard(tp)
        return out
    finally:
        await consumer.stop()


def _parse(value: bytes | None) -> DeadLetterRecordedV1 | None:
    try:
        return DeadLetterRecordedV1.model_validate(json.loads(value or b""))
    except (ValueError, ValidationError):
        log.warning("deadletter.unreadable_record")
        return None


def error_label(record: DeadLetterRecordedV1) -> str:
    p = record.payload
    return f"{p.error_kind or 'handler_error'}:{p.error_type}"


def count_by_topic_and_error(records: list[DeadLetterRecordedV1], replayed: set[str]) -> list[GroupCount]:
    """Counts per (original topic, error kind and type), most first (pure)."""
    totals: Counter[tuple[str, str]] = Counter()
    done: Counter[tuple[str, str]] = Counter()
    for record in unique(records):
        group = (record.payload.original_topic, error_label(record))
        totals[group] += 1
        if str(record.message_id) in replayed:
            done[group] += 1
    return [
        GroupCount(topic, error, n, done[(topic, error)])
        for (topic, error), n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def unique(records: list[DeadLetterRecordedV1]) -> list[DeadLetterRecordedV1]:
    """One per dead-letter id (a redelivered poison message republishes an identical record)."""
    seen: dict[str, DeadLetterRecordedV1] = {}
    for record in records:
        seen.setdefault(str(record.message_id), record)
    return list(seen.values())


def find(records: list[DeadLetterRecordedV1], ident: str) -> DeadLetterRecordedV1:
    """The dead letter with this id, or the one id starting with it (at least 8 characters)."""
    matches = {str(r.message_id): r for r in records if str(r.message_id) == ident}
    if not matches and len(ident) >= 8:
        matches = {str(r.message_id): r for r in records if str(r.message_id).startswith(ident)}
    if len(matches) != 1:
        what = "no dead letter" if not matches else f"{len(matches)} dead letters"
        raise DeadLetterNotFound(f"{what} with id {ident!r}")
    return next(iter(matches.values()))


def describe(record: DeadLetterRecordedV1, replay: dict[str, Any] | None) -> dict[str, Any]:
    """What ``show`` prints: the reason, the original key and headers, where it was, the value."""
    p = record.payload
    return {
        "id": str(record.message_id),
        "recorded_at": record.occurred_at.isoformat(),
        "original_topic": p.original_topic,
        "partition": p.partition,
        "offset": p.offset,
        "key": p.key,
        "headers": p.headers,
        "consumer": p.consumer,
        "error_kind": p.error_kind,
        "error_type": p.error_type,
        "error": p.error,
        "attempts": p.attempts,
        "value_bytes": p.value_bytes,
        "value_truncated": p.value_truncated,
        "value": p.value,
        "replayable": replayable(record) is None,
        "replayed": replay,
    }


def replayable(record: DeadLetterRecordedV1) -> str | None:
    """Why this dead letter cannot be replayed as the original message, or None (pure)."""
    p = record.payload
    if p.value_truncated:
        return f"the dead letter holds only the first part of the original ({p.value_bytes} bytes)"
    if p.value_sha256 is not None and digest(p.value.encode()) != p.value_sha256:
        return "the dead letter's copy is not the original bytes (not UTF-8, or NUL replaced)"
    if p.original_topic == TOPIC:
        return "a dead letter is never replayed onto the dead-letter topic"
    return None


async def replays(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT dead_letter_id, actor, replayed_at FROM deadletter_replays")
    return {r["dead_letter_id"]: {"by": r["actor"], "at": r["replayed_at"].isoformat()} for r in rows}


async def replay(
    pool: asyncpg.Pool, broker: KafkaBroker, record: DeadLetterRecordedV1, *, actor: str
) -> dict[str, Any]:
    """Publish the original message again, once (recorded first; a failed publish takes the record back)."""
    why = replayable(record)
    if why is not None:
        raise ReplayRefused(why)
    p = record.payload
    ident = str(record.message_id)
    inserted = await pool.fetchval(
        """INSERT INTO deadletter_replays (dead_letter_id, original_topic, partition, "offset", actor)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dead_letter_id) DO NOTHING RETURNING 1""",
        ident,
        p.original_topic,
        p.partition,
        p.offset,
        actor,
    )
    if inserted is None:
        done = (await replays(pool)).get(ident, {})
        raise ReplayRefused(
            f"dead letter {ident} was already replayed (by {done.get('by')} at {done.get('at')})"
        )
    try:
        await broker.publish(
            p.value.encode(),
            topic=p.original_topic,
            key=p.key.encode() if p.key is not None else None,
            headers=dict(p.headers),
        )
    except BaseException:
        await pool.execute("DELETE FROM deadletter_replays WHERE dead_letter_id=$1", ident)
        raise
    await publish(
        broker,
        AuditEventRecordedV1.build(
            AuditEventPayload(
                actor=actor,
                action="ops.deadletter.replayed",
                target=ident,
                decision="replayed",
                details={"topic": p.original_topic, "partition": p.partition, "offset": p.offset},
            ),
            contact_id=record.contact_id,
            customer_id=record.customer_id,
            message_id=derived_id("ops.deadletter.replayed", ident),
        ),
    )
    log.warning(
        "deadletter.replayed", dead_letter_id=ident, topic=p.original_topic, offset=p.offset, actor=actor
    )
    return {"id": ident, "topic": p.original_topic, "key": p.key, "replayed_by": actor}
