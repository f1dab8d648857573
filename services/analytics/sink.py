"""The analytics sink: outcomes, audit events and case resolutions into ClickHouse.

Runs in the analytics service, which owns its ClickHouse store. Its own consumer groups; outcomes and audit
records are consumed in batches (one insert each) and offsets are committed only after the insert.
Outcomes are exactly-once per contact (explicit check before insert, and ReplacingMergeTree on
contact_id read with FINAL). Audit records are chained per partition in log order: each stored record
carries the previous one's hash.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import structlog
from faststream import Context
from faststream.kafka.message import KafkaMessage
from pydantic import BaseModel, ValidationError

from schemas.messages import (
    AuditEventRecordedV1,
    CaseResolvedV1,
    ContactReceivedV1,
    ConversationMessageSentV1,
    ConversationRatedV1,
    OutcomeRecordedV1,
)
from services.analytics.domain import GENESIS, NO_KEYS, ChainKeys, audit_record, canonical_json, chain_hash
from services.analytics.routes import verify_report
from services.analytics.store import DEFAULT_DATABASE, AnalyticsStore
from tierline.guardrails import redact
from tierline.messaging import ORDERED_DEFAULTS, SUBSCRIBER_DEFAULTS, consumer_group
from tierline.runtime import Service

log = structlog.get_logger(__name__)

T = TypeVar("T", bound=BaseModel)


class AnalyticsSink:
    def __init__(self, store: AnalyticsStore, chain_keys: ChainKeys = NO_KEYS) -> None:
        self.store = store
        self.chain_keys = chain_keys
        self._links: dict[int, tuple[int, str]] = {}

    async def on_outcome_recorded(self, msg: OutcomeRecordedV1) -> bool:
        return await self.on_outcomes_recorded([msg]) == 1

    async def on_outcomes_recorded(self, messages: list[OutcomeRecordedV1]) -> int:
        """Store each contact's outcome once: skip contacts already stored or repeated in the batch."""
        store = self.store
        await store.run(store.ensure_schema)
        first: dict[str, OutcomeRecordedV1] = {}
        for msg in messages:
            first.setdefault(msg.contact_id, msg)
        stored = await store.run(store.existing_outcomes, list(first))
        new = [m for c, m in first.items() if c not in stored]
        for msg in messages:
            if msg.contact_id in stored or first[msg.contact_id] is not msg:
                log.info(
                    "analytics.outcome.duplicate", contact_id=msg.contact_id, message_id=str(msg.message_id)
                )
        if new:
            await store.run(store.insert_outcomes, [m.model_dump(mode="json") for m in new])
            log.info("analytics.outcomes.stored", count=len(new))
        return len(new)

    async def on_contacts_received(self, messages: list[ContactReceivedV1]) -> int:
        """The customers' messages (text redacted, bounded) for first-response times and knowledge gaps.
        A redelivery writes the same row again; reads use FINAL (one row per contact)."""
        rows = [
            [
                m.contact_id,
                m.message_id,
                m.customer_id,
                m.payload.conversation_id or m.contact_id,  # no conversation named: the contact starts one
                m.payload.channel.value,
                m.occurred_at,
                redact(m.payload.text)[:500],
                m.payload.choice or "",
            ]
            for m in messages
        ]
        await self.store.run(self.store.ensure_schema)
        await self.store.run(self.store.insert_contacts_received, rows)
        return len(rows)

    async def on_messages_sent(self, messages: list[ConversationMessageSentV1]) -> int:
        rows = [
            [
                m.message_id,
                m.contact_id,
                m.customer_id,
                m.payload.conversation_id,
                m.occurred_at,
                m.payload.kind,
                m.payload.author,
                m.payload.variant or "",
            ]
            for m in messages
        ]
        await self.store.run(self.store.ensure_schema)
        await self.store.run(self.store.insert_conversation_messages, rows)
        return len(rows)

    async def on_conversations_rated(self, messages: list[ConversationRatedV1]) -> int:
        rows = [
            [
                m.message_id,
                m.contact_id,
                m.customer_id,
                m.payload.conversation_id,
                m.occurred_at,
                m.payload.csat or 0,
                -1 if m.payload.solved is None else int(m.payload.solved),
            ]
            for m in messages
        ]
        await self.store.run(self.store.ensure_schema)
        await self.store.run(self.store.insert_ratings, rows)
        return len(rows)

    async def on_case_resolved(self, msg: CaseResolvedV1) -> None:
        await self.store.run(self.store.ensure_schema)
        await self.store.run(self.store.insert_case_resolutions, [msg.model_dump(mode="json")])

    async def on_audit_recorded(self, msg: AuditEventRecordedV1, partition: int, offset: int) -> bool:
        """Chain and store one audit record; False for a redelivery or a duplicate message id."""
        return await self.on_audit_batch([(msg, partition, offset)]) == 1

    async def on_audit_batch(self, items: list[tuple[AuditEventRecordedV1, int, int]]) -> int:
        """Chain and store audit records, per partition in offset order, in one insert.

        A record at or below a partition's last stored offset is a redelivery; a message id stored
        already (or earlier in the batch) is a duplicate publish. Neither is chained again.
        """
        store = self.store
        await store.run(store.ensure_schema)
        by_partition: dict[int, list[tuple[int, AuditEventRecordedV1]]] = {}
        for msg, partition, offset in items:
            by_partition.setdefault(partition, []).append((offset, msg))
        links: dict[int, tuple[int, str] | None] = {}
        for partition in by_partition:
            links[partition] = self._links.get(partition) or await store.run(store.last_audit_link, partition)
        fresh = [
            (partition, offset, msg)
            for partition, entries in by_partition.items()
            for offset, msg in sorted(entries, key=lambda e: e[0])
            if (link := links[partition]) is None or offset > link[0]
        ]
        seen = await store.run(store.audit_messages_seen, sorted({str(m.message_id) for _, _, m in fresh}))
        rows: list[list[Any]] = []
        new_links: dict[int, tuple[int, str]] = {}
        for partition, offset, msg in fresh:
            message_id = str(msg.message_id)
            if message_id in seen:
                log.info(
                    "analytics.audit.duplicate", message_id=message_id, partition=partition, offset=offset
                )
                continue
            seen.add(message_id)
            link = new_links.get(partition) or links[partition]
            prev = link[1] if link else GENESIS
            record = canonical_json(audit_record(msg.model_dump(mode="json")))
            digest = chain_hash(prev, record, self.chain_keys)
            p = msg.payload
            rows.append(
                [
                    partition,
                    offset,
                    message_id,
                    msg.contact_id,
                    msg.customer_id,
                    msg.occurred_at,
                    p.actor,
                    p.action,
                    p.target or "",
                    p.decision or "",
                    record,
                    prev,
                    digest,
                ]
            )
            new_links[partition] = (offset, digest)
        if rows:
            await store.run(store.insert_audit, rows)
        self._links.update(new_links)
        return len(rows)


async def _raw_batch(msg: Any, original: Any = None) -> list[bytes]:
    """Batch decoder: the raw values; the handler validates each one (a bad one is dead-lettered)."""
    body = msg.body
    return [bytes(b) for b in body] if isinstance(body, list | tuple) else [bytes(body)]


def _parse(
    model: type[T], bodies: list[bytes], records: tuple[Any, ...] | None
) -> tuple[list[tuple[T, Any]], list[tuple[Any, Exception]]]:
    good: list[tuple[T, Any]] = []
    bad: list[tuple[Any, Exception]] = []
    for i, body in enumerate(bodies):
        raw = records[i] if records and i < len(records) else None
        try:
            good.append((model.model_validate_json(body), raw))
        except (ValidationError, ValueError) as exc:
            bad.append((raw, exc))
    return good, bad


#: The sink's fetch wait: one poll a second per idle consumer (Tansu answers a poll as data arrives
#: when idle; under load the sink batches and lingers ``linger_s`` anyway).
IDLE_FETCH_WAIT_MS = 1000


def register_analytics_sink(
    service: Service,
    ch_client: Any,
    *,
    database: str = DEFAULT_DATABASE,
    drift: bool = True,
    lock: Any = None,
    batch_size: int = 500,
    batch_timeout_ms: int = 200,
    linger_s: float = 1.0,
    audit_check_s: float | None = 300.0,
    chain_keys: ChainKeys = NO_KEYS,
) -> AnalyticsSink:
    """Subscribe the sink (groups `<service group>.analytics.<topic>`) and, by default, the drift job.

    ``linger_s``: after a batch smaller than ``batch_size``, the topic's consumer waits out the rest of
    this interval before fetching again, so records gather into fewer, larger inserts (every chDB insert
    writes a part: its cost is mostly per insert, not per row). Analysts see records up to that much later.
    """
    store = AnalyticsStore(ch_client, database, lock)
    sink = AnalyticsSink(store, chain_keys)
    group = f"{consumer_group(service.name)}.analytics"
    sub = service.broker.subscriber

    # Outcomes and audit records arrive in bursts (several audit records per contact): consume them in
    # batches, one ClickHouse insert per batch; offsets are committed after the insert.
    batched = {
        "batch": True,
        "max_records": batch_size,
        "batch_timeout_ms": batch_timeout_ms,
        "decoder": _raw_batch,
        **ORDERED_DEFAULTS,
        # analysts read a second late anyway (``linger_s``): a long poll, so the idle sink costs the broker
        # one fetch a second per topic instead of twenty (idle stack figures: `make bench`)
        "fetch_max_wait_ms": IDLE_FETCH_WAIT_MS,
    }

    async def linger(started: float, count: int) -> None:
        if count < batch_size:
            remaining = linger_s - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)

    async def dead_letter(bad: list[tuple[Any, Exception]]) -> None:
        for raw, exc in bad:
            log.warning("analytics.bad_message", error=str(exc)[:200])
            if raw is not None:
                await service.dead_letters.send(raw, exc, attempts=1)

    async def on_outcomes_recorded(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        started = time.monotonic()
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        good, bad = _parse(OutcomeRecordedV1, bodies, records)
        await sink.on_outcomes_recorded([m for m, _ in good])
        await dead_letter(bad)
        await linger(started, len(bodies))

    async def on_case_resolved(msg: CaseResolvedV1) -> None:
        await sink.on_case_resolved(msg)

    async def on_audit_events_recorded(
        bodies: list[bytes], message: KafkaMessage = Context("message")
    ) -> None:
        started = time.monotonic()
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        good, bad = _parse(AuditEventRecordedV1, bodies, records)
        await sink.on_audit_batch([(m, raw.partition, raw.offset) for m, raw in good if raw is not None])
        await dead_letter(bad)
        await linger(started, len(bodies))

    async def on_contacts_received(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        started = time.monotonic()
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        good, bad = _parse(ContactReceivedV1, bodies, records)
        await sink.on_contacts_received([m for m, _ in good])
        await dead_letter(bad)
        await linger(started, len(bodies))

    async def on_messages_sent(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        started = time.monotonic()
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        good, bad = _parse(ConversationMessageSentV1, bodies, records)
        await sink.on_messages_sent([m for m, _ in good])
        await dead_letter(bad)
        await linger(started, len(bodies))

    async def on_conversations_rated(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        started = time.monotonic()
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        good, bad = _parse(ConversationRatedV1, bodies, records)
        await sink.on_conversations_rated([m for m, _ in good])
        await dead_letter(bad)
        await linger(started, len(bodies))

    # One consumer group per topic: members of one group with different subscriptions joining together
    # left Tansu's group stuck at an old generation (a new member's SyncGroup never answered).
    sub(OutcomeRecordedV1.TOPIC, group_id=f"{group}.outcomes", **batched)(on_outcomes_recorded)
    sub(CaseResolvedV1.TOPIC, group_id=f"{group}.cases", **SUBSCRIBER_DEFAULTS)(on_case_resolved)
    sub(AuditEventRecordedV1.TOPIC, group_id=f"{group}.audit", **batched)(on_audit_events_recorded)
    # the support stream (issue 19): first responses, ratings, knowledge gaps, experiments
    sub(ContactReceivedV1.TOPIC, group_id=f"{group}.contacts", **batched)(on_contacts_received)
    sub(ConversationMessageSentV1.TOPIC, group_id=f"{group}.messages", **batched)(on_messages_sent)
    sub(ConversationRatedV1.TOPIC, group_id=f"{group}.ratings", **batched)(on_conversations_rated)

    async def ensure(svc: Service) -> None:
        await store.run(store.ensure_schema)

    async def analytics_health() -> tuple[bool, str]:
        await store.run(store._rows, "SELECT 1 AS ok")
        return True, f"clickhouse database {database}"

    service.on_start.append(ensure)
    service.health_checks["analytics"] = analytics_health
    if audit_check_s:  # the audit chain verified every so often: tierline_audit_chain_broken (alert rule)

        async def check_audit_chain(svc: Service) -> None:
            while True:
                await asyncio.sleep(audit_check_s)
                try:
                    result = await store.run(verify_report, store, chain_keys)
                    if not result["ok"]:
                        log.error("analytics.audit.chain_broken", broken=result["broken"])
                except Exception as exc:  # noqa: BLE001 - checked again next round
                    log.warning("analytics.audit.check_failed", error=f"{type(exc).__name__}: {exc}"[:300])

        service.background.append(check_audit_chain)
    service.state["analytics_store"] = store
    if drift:
        from services.analytics.drift import drift_job

        async def run_drift(svc: Service) -> None:
            await drift_job(store, svc.broker)

        service.background.append(run_drift)
    return sink
