"""The usage store in ClickHouse (chDB embedded or a server over HTTP, same client).

``usage_events`` holds billable usage (MergeTree ordered by customer and time); a materialized view
keeps ``usage_daily`` (SummingMergeTree by customer, metric, day). Reads use the daily rollup.
Writes are de-duplicated by ``event_id`` before insert (one writer owns the store), and the raw table
is a ReplacingMergeTree keyed on the event id as a second line of defence.

chDB allows one data path per process: the process-wide client per DSN comes from
:mod:`tierline.clickhouse` (shared plumbing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from clickhouse_connect.driver.client import Client

from services.diagnostics.domain import USAGE_LOOKBACK_DAYS, UsageDay, usage_figures
from tierline.billing.records import UsageFigures
from tierline.clickhouse import client_lock, get_client
from tierline.diagnostics_client import SourceUnavailable

log = structlog.get_logger(__name__)


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

_RECENT_SQL = """
SELECT customer_id, metric, day, units, cost_usd
FROM usage_daily
WHERE customer_id IN {ids:Array(String)} AND day > {since:Date}
"""

#: Most customers one coalesced usage read asks for.
MAX_BATCH = 256


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
        return [
            self.customer_id,
            self.metric,
            ts,
            float(self.units),
            float(self.unit_price_usd),
            self.event_id,
        ]


class UsageStore:
    """Usage reads and batched writes on the process-wide ClickHouse client."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._ready = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[str, date, asyncio.Future[list[UsageDay]]]] = []
        self._draining = False

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
            "SELECT event_id FROM usage_events "
            "WHERE customer_id IN {c:Array(String)} AND event_id IN {e:Array(String)}",
            parameters={"c": customers, "e": list(unique)},
        ).result_rows
        for (event_id,) in existing:
            unique.pop(event_id, None)
        if unique:
            self._call(
                self.client.insert, "usage_events", [e.row() for e in unique.values()], column_names=COLUMNS
            )
        return len(unique)

    async def write(self, events: Sequence[UsageEvent]) -> int:
        """Insert a batch (events already stored are skipped). Returns how many were new."""
        try:
            return await asyncio.to_thread(self._write_sync, events)
        except Exception as exc:
            raise SourceUnavailable("clickhouse", f"{type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ reads
    def _recent_sync(self, customer_ids: Sequence[str], since: date) -> dict[str, list[UsageDay]]:
        self.ensure_schema_sync()
        rows = self._call(
            self.client.query, _RECENT_SQL, parameters={"ids": list(customer_ids), "since": since}
        ).result_rows
        out: dict[str, list[UsageDay]] = {c: [] for c in customer_ids}
        for customer_id, metric, day, units, cost in rows:
            out.setdefault(customer_id, []).append(UsageDay(metric, day, float(units), float(cost)))
        return out

    async def recent(self, customer_id: str, now: datetime) -> tuple[UsageDay, ...]:
        """The customer's daily usage over the last :data:`USAGE_LOOKBACK_DAYS` days.

        Concurrent reads are coalesced: while one query runs, the customers asked for meanwhile are read
        together by the next one (one chDB query for many diagnoses under load, one for one when idle).
        """
        since = now.astimezone(UTC).date() - timedelta(days=USAGE_LOOKBACK_DAYS)
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): start a fresh queue
            self._loop, self._queue, self._draining = loop, [], False
        future: asyncio.Future[list[UsageDay]] = loop.create_future()
        self._queue.append((customer_id, since, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        try:
            return tuple(await future)
        except Exception as exc:
            raise SourceUnavailable("clickhouse", f"{type(exc).__name__}: {exc}") from exc

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                ids = sorted({c for c, _, _ in batch})
                since = min(s for _, s, _ in batch)
                try:
                    found = await asyncio.to_thread(self._recent_sync, ids, since)
                except Exception as exc:  # noqa: BLE001 - handed to every waiter
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for customer_id, day_since, future in batch:
                    if not future.done():
                        future.set_result([d for d in found.get(customer_id, ()) if d.day > day_since])
        finally:
            self._draining = False

    async def figures(
        self, customer_id: str, period_start: datetime | None, period_end: datetime | None, now: datetime
    ) -> tuple[UsageFigures, ...]:
        """Usage this period, last 30 days vs the 30 before, forecast (see :func:`usage_figures`)."""
        return usage_figures(await self.recent(customer_id, now), period_start, period_end, now)

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
            return [
                {
                    "metric": m,
                    "day": d.isoformat(),
                    "units": float(u),
                    "cost_usd": round(float(c), 4),
                    "events": int(n),
                }
                for m, d, u, c, n in rows
            ]

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
