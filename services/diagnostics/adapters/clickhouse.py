"""The usage store in ClickHouse (chDB embedded or a server over HTTP, same client).

``usage_events`` holds billable usage (MergeTree ordered by customer and time); a materialized view
keeps ``usage_daily`` (SummingMergeTree by customer, metric, day). Reads use the daily rollup.
Writes are de-duplicated by ``event_id`` before insert (one writer owns the store), and the raw table
is a ReplacingMergeTree keyed on the event id as a second line of defence.

chDB allows one data path per process: :func:`get_client` returns the process-wide client per DSN,
so other modules in the diagnostics process (analytics) share the same connection.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import clickhouse_connect
import structlog
from clickhouse_connect.driver.client import Client

from services.diagnostics.domain import UsageFigures
from services.diagnostics.ports import SourceUnavailable

log = structlog.get_logger(__name__)

_CLIENTS: dict[str, Client] = {}
_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def get_client(dsn: str) -> Client:
    """The one ClickHouse client of this process for ``dsn`` (chDB: one data path per process)."""
    with _REGISTRY_LOCK:
        client = _CLIENTS.get(dsn)
        if client is None:
            client = clickhouse_connect.get_client(dsn=dsn)
            _CLIENTS[dsn] = client
            _LOCKS[dsn] = threading.Lock()
        return client


def client_lock(dsn: str) -> threading.Lock:
    """Serialises calls on the shared client (chDB sessions are not safe for concurrent use)."""
    get_client(dsn)
    return _LOCKS[dsn]


SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS usage_events (
        customer_id String,
        metric LowCardinality(String),
        ts DateTime64(3, 'UTC'),
        units Float64,
        unit_price_usd Float64,
        event_id String
    ) ENGINE = ReplacingMergeTree ORDER BY (customer_id, ts, event_id)""",
    """CREATE TABLE IF NOT EXISTS usage_daily (
        customer_id String,
        metric LowCardinality(String),
        day Date,
        units Float64,
        cost_usd Float64,
        events UInt64
    ) ENGINE = SummingMergeTree ORDER BY (customer_id, metric, day)""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
        SELECT e.customer_id AS customer_id, e.metric AS metric, toDate(e.ts) AS day, sum(e.units) AS units,
               sum(e.units * e.unit_price_usd) AS cost_usd, count() AS events
        FROM usage_events AS e GROUP BY customer_id, metric, day""",
)

COLUMNS = ["customer_id", "metric", "ts", "units", "unit_price_usd", "event_id"]

_FIGURES_SQL = """
SELECT metric,
       sumIf(units, day >= {period_start:Date} AND day <= {today:Date}) AS period_units,
       sumIf(cost_usd, day >= {period_start:Date} AND day <= {today:Date}) AS period_cost,
       sumIf(units, day > {d30:Date} AND day <= {today:Date}) AS last_30d,
       sumIf(units, day > {d60:Date} AND day <= {d30:Date}) AS prev_30d
FROM usage_daily
WHERE customer_id = {customer_id:String} AND day > {d60_min:Date}
GROUP BY metric
ORDER BY metric
"""


@dataclass(frozen=True, slots=True)
class UsageEvent:
    customer_id: str
    metric: str
    ts: datetime
    units: float
    unit_price_usd: float
    event_id: str

    def row(self) -> list[Any]:
        ts = self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)
        return [self.customer_id, self.metric, ts, float(self.units), float(self.unit_price_usd), self.event_id]


def forecast_units(period_units: float, period_start: datetime | None, period_end: datetime | None,
                   now: datetime, last_30d: float) -> float:
    """Run-rate forecast of the period's usage at its end (the trailing 30 days when no period is known)."""
    if period_start is None or period_end is None or period_end <= period_start:
        return last_30d
    elapsed = max((now - period_start).total_seconds(), 86400.0)
    total = (period_end - period_start).total_seconds()
    if elapsed >= total:
        return period_units
    return period_units / elapsed * total


class UsageStore:
    """Usage reads and batched writes on the process-wide ClickHouse client."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._ready = False

    @property
    def client(self) -> Client:
        return get_client(self.dsn)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with client_lock(self.dsn):
            return fn(*args, **kwargs)

    def ensure_schema_sync(self) -> None:
        if self._ready:
            return
        for ddl in SCHEMA:
            self._call(self.client.command, ddl)
        self._ready = True

    async def ensure_schema(self) -> None:
        await asyncio.to_thread(self.ensure_schema_sync)

    async def ping(self) -> tuple[bool, str]:
        try:
            value = await asyncio.to_thread(self._call, self.client.command, "SELECT 1")
        except Exception as exc:  # noqa: BLE001 - reported as a health result
            return False, f"{type(exc).__name__}: {exc}"
        return str(value) == "1", f"{'chDB' if self.dsn.startswith('chdb') else 'ClickHouse'} query ok"

    # ------------------------------------------------------------------ writes
    def _write_sync(self, events: Sequence[UsageEvent]) -> int:
        self.ensure_schema_sync()
        unique: dict[str, UsageEvent] = {}
        for e in events:
            unique.setdefault(e.event_id, e)
        if not unique:
            return 0
        customers = sorted({e.customer_id for e in unique.values()})
        existing = self._call(
            self.client.query,
            "SELECT event_id FROM usage_events WHERE customer_id IN {c:Array(String)} AND event_id IN {e:Array(String)}",
            parameters={"c": customers, "e": list(unique)},
        ).result_rows
        for (event_id,) in existing:
            unique.pop(event_id, None)
        if unique:
            self._call(self.client.insert, "usage_events", [e.row() for e in unique.values()], column_names=COLUMNS)
        return len(unique)

    async def write(self, events: Sequence[UsageEvent]) -> int:
        """Insert a batch (events already stored are skipped). Returns how many were new."""
        try:
            return await asyncio.to_thread(self._write_sync, events)
        except Exception as exc:
            raise SourceUnavailable("clickhouse", f"{type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ reads
    def _figures_sync(self, customer_id: str, period_start: datetime | None, period_end: datetime | None,
                      now: datetime) -> tuple[UsageFigures, ...]:
        self.ensure_schema_sync()
        today = now.astimezone(UTC).date()
        start = (period_start or (now - timedelta(days=30))).astimezone(UTC).date()
        d30, d60 = today - timedelta(days=30), today - timedelta(days=60)
        rows = self._call(
            self.client.query, _FIGURES_SQL,
            parameters={"customer_id": customer_id, "period_start": start, "today": today, "d30": d30,
                        "d60": d60, "d60_min": min(d60, start - timedelta(days=1))},
        ).result_rows
        out = []
        for metric, period_units, period_cost, last_30d, prev_30d in rows:
            out.append(UsageFigures(
                metric=metric, period_units=float(period_units), last_30d=float(last_30d), prev_30d=float(prev_30d),
                forecast=forecast_units(float(period_units), period_start, period_end, now, float(last_30d)),
                period_cost_usd=round(float(period_cost), 4),
            ))
        return tuple(out)

    async def figures(self, customer_id: str, period_start: datetime | None, period_end: datetime | None,
                      now: datetime) -> tuple[UsageFigures, ...]:
        try:
            return await asyncio.to_thread(self._figures_sync, customer_id, period_start, period_end, now)
        except Exception as exc:
            raise SourceUnavailable("clickhouse", f"{type(exc).__name__}: {exc}") from exc

    async def daily(self, customer_id: str, days: int, now: datetime) -> list[dict[str, Any]]:
        """Per-day usage for the last ``days`` days (for the usage door)."""
        since = (now - timedelta(days=days)).astimezone(UTC).date()

        def run() -> list[dict[str, Any]]:
            self.ensure_schema_sync()
            rows = self._call(
                self.client.query,
                "SELECT metric, day, sum(units), sum(cost_usd), sum(events) FROM usage_daily "
                "WHERE customer_id = {c:String} AND day > {s:Date} GROUP BY metric, day ORDER BY metric, day",
                parameters={"c": customer_id, "s": since},
            ).result_rows
            return [{"metric": m, "day": d.isoformat(), "units": float(u), "cost_usd": round(float(c), 4),
                     "events": int(n)} for m, d, u, c, n in rows]

        try:
            return await asyncio.to_thread(run)
        except Exception as exc:
            raise SourceUnavailable("clickhouse", f"{type(exc).__name__}: {exc}") from exc


def events_from_messages(messages: Iterable[dict[str, Any]]) -> list[UsageEvent]:
    """``usage.event.recorded.v1`` envelopes (already validated) → rows."""
    from schemas.messages import UsageEventRecordedV1

    out = []
    for body in messages:
        msg = UsageEventRecordedV1.model_validate(body)
        p = msg.payload
        out.append(UsageEvent(msg.customer_id, p.metric, p.ts, p.units, p.unit_price_usd, p.event_id))
    return out
