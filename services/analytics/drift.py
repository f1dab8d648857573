"""Daily drift check: each intent's and root cause's share of a day against the trailing 28 days.

The comparison is pure (analytics.domain.detect_drift); this runner reads ClickHouse and raises one
`ops.alert.raised.v1` (kind drift) per moved key and day (ids derived from day+key: re-runs don't repeat).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import structlog
from faststream.kafka import KafkaBroker

from schemas import derived_id
from schemas.messages import AlertPayload, AlertRaisedV1
from services.analytics.domain import DriftFinding, DriftThresholds, detect_drift
from services.analytics.store import AnalyticsStore
from tierline.messaging import publish

log = structlog.get_logger(__name__)

TRAILING_DAYS = 28
DIMENSIONS = {"intent": "v_intent_by_day", "root_cause": "v_root_cause_by_day"}


def compute_drift(
    store: AnalyticsStore, day: date, thresholds: DriftThresholds | None = None
) -> list[DriftFinding]:
    store.ensure_schema()
    findings: list[DriftFinding] = []
    for dimension, view in DIMENSIONS.items():
        today = store.shares(view, day, day)
        trailing = store.shares(view, day - timedelta(days=TRAILING_DAYS), day - timedelta(days=1))
        findings += detect_drift(dimension, today, trailing, thresholds)
    return findings


async def run_drift_check(
    store: AnalyticsStore,
    broker: KafkaBroker,
    day: date,
    thresholds: DriftThresholds | None = None,
    *,
    scope: str = "",
) -> list[AlertRaisedV1]:
    findings = await store.run(compute_drift, store, day, thresholds)
    th = thresholds or DriftThresholds()
    alerts = []
    for f in findings:
        alert = AlertRaisedV1.build(
            AlertPayload(
                kind="drift",
                subject=f"{f.dimension}:{f.key}",
                observed=f.observed_share,
                expected=f.expected_share,
                threshold=th.min_share_delta,
                details={
                    "day": day.isoformat(),
                    "delta": f.delta,
                    "day_count": f.day_count,
                    "day_total": f.day_total,
                    "trailing_days": TRAILING_DAYS,
                    "database": store.db,
                },
            ),
            contact_id=f"drift:{day.isoformat()}",
            customer_id="ops",
            message_id=derived_id("drift", store.db, scope, day.isoformat(), f.dimension, f.key),
        )
        await publish(broker, alert)
        log.warning(
            "analytics.drift.detected",
            dimension=f.dimension,
            key=f.key,
            observed=f.observed_share,
            expected=f.expected_share,
            day=day.isoformat(),
        )
        alerts.append(alert)
    return alerts


async def drift_job(store: AnalyticsStore, broker: KafkaBroker, interval_s: float = 86_400) -> None:
    """Check yesterday (a complete day) at start and then daily."""
    while True:
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        try:
            await run_drift_check(store, broker, yesterday)
        except Exception as exc:  # noqa: BLE001 - a failed check is logged and retried next round
            log.warning("analytics.drift.check_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)
