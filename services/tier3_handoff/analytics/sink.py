"""The analytics sink: outcomes, audit events and case resolutions into ClickHouse.

Runs inside the process that owns chDB (diagnostics). Its own consumer group; an offset is committed
only after the row is written. Outcomes are exactly-once per contact (explicit check before insert,
and ReplacingMergeTree on contact_id read with FINAL). Audit records are chained per partition in log
order: each stored record carries the previous one's hash.
"""

from __future__ import annotations

from typing import Any

import structlog
from faststream.kafka.annotations import KafkaMessage

from schemas.messages import AuditEventRecordedV1, CaseResolvedV1, OutcomeRecordedV1
from services.tier3_handoff.analytics.domain import GENESIS, audit_record, canonical_json, chain_hash
from services.tier3_handoff.analytics.store import DEFAULT_DATABASE, AnalyticsStore
from tierline.messaging import SUBSCRIBER_DEFAULTS, consumer_group
from tierline.runtime import Service

log = structlog.get_logger(__name__)


class AnalyticsSink:
    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self._links: dict[int, tuple[int, str]] = {}

    async def on_outcome_recorded(self, msg: OutcomeRecordedV1) -> bool:
        store = self.store
        await store.run(store.ensure_schema)
        if await store.run(store.outcome_exists, msg.contact_id):
            log.info("analytics.outcome.duplicate", contact_id=msg.contact_id, message_id=str(msg.message_id))
            return False
        await store.run(store.insert_outcomes, [msg.model_dump(mode="json")])
        log.info("analytics.outcome.stored", contact_id=msg.contact_id, resolved_by=msg.payload.resolved_by)
        return True

    async def on_case_resolved(self, msg: CaseResolvedV1) -> None:
        await self.store.run(self.store.ensure_schema)
        await self.store.run(self.store.insert_case_resolutions, [msg.model_dump(mode="json")])

    async def on_audit_recorded(self, msg: AuditEventRecordedV1, partition: int, offset: int) -> bool:
        """Chain and store one audit record; False for a redelivery or a duplicate message id."""
        store = self.store
        await store.run(store.ensure_schema)
        link = self._links.get(partition) or await store.run(store.last_audit_link, partition)
        if link is not None and offset <= link[0]:
            return False  # redelivered: already chained
        if await store.run(store.audit_message_seen, str(msg.message_id)):
            log.info(
                "analytics.audit.duplicate",
                message_id=str(msg.message_id),
                partition=partition,
                offset=offset,
            )
            return False
        prev = link[1] if link else GENESIS
        record = canonical_json(audit_record(msg.model_dump(mode="json")))
        digest = chain_hash(prev, record)
        p = msg.payload
        await store.run(
            store.insert_audit,
            [
                [
                    partition,
                    offset,
                    str(msg.message_id),
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
            ],
        )
        self._links[partition] = (offset, digest)
        return True


def register_analytics_sink(
    service: Service,
    ch_client: Any,
    *,
    database: str = DEFAULT_DATABASE,
    drift: bool = True,
    lock: Any = None,
) -> AnalyticsSink:
    """Subscribe the sink (group `<service group>.analytics`) and, by default, the daily drift job."""
    store = AnalyticsStore(ch_client, database, lock)
    sink = AnalyticsSink(store)
    group = f"{consumer_group(service.name)}.analytics"
    sub = service.broker.subscriber

    async def on_outcome_recorded(msg: OutcomeRecordedV1) -> None:
        await sink.on_outcome_recorded(msg)

    async def on_case_resolved(msg: CaseResolvedV1) -> None:
        await sink.on_case_resolved(msg)

    async def on_audit_recorded(msg: AuditEventRecordedV1, message: KafkaMessage) -> None:
        raw = message.raw_message
        await sink.on_audit_recorded(msg, raw.partition, raw.offset)  # type: ignore[union-attr]

    sub(OutcomeRecordedV1.TOPIC, group_id=group, **SUBSCRIBER_DEFAULTS)(on_outcome_recorded)
    sub(CaseResolvedV1.TOPIC, group_id=group, **SUBSCRIBER_DEFAULTS)(on_case_resolved)
    sub(AuditEventRecordedV1.TOPIC, group_id=group, **SUBSCRIBER_DEFAULTS)(on_audit_recorded)

    async def ensure(svc: Service) -> None:
        await store.run(store.ensure_schema)

    async def analytics_health() -> tuple[bool, str]:
        await store.run(store._rows, "SELECT 1 AS ok")
        return True, f"clickhouse database {database}"

    service.on_start.append(ensure)
    service.health_checks["analytics"] = analytics_health
    service.state["analytics_store"] = store
    if drift:
        from services.tier3_handoff.drift import drift_job

        async def run_drift(svc: Service) -> None:
            await drift_job(store, svc.broker)

        service.background.append(run_drift)
    return sink
