"""Tier 0's forecast-over-limit nudge (issue 21): when a customer's usage forecast for the billing period
passes their plan's included usage (times a configured threshold), Tier 0 emails them once per period.

What triggers an evaluation: every ``usage.event.recorded.v1`` marks its customer as *watched* (cheap, in
memory, no I/O); a sweep that wakes at most once a minute reads each watched customer's forecast through the
diagnostics usage door (the ClickHouse rollup and the forecast the diagnosis and the usage page use). A
customer stays watched until a sweep has read them ``forecast_settle_s`` after their last event, so an event
the diagnostics service had not yet written to ClickHouse is still counted by a later sweep.

Once per period: the contact id is derived from the customer, the metric and the period start, so a
redelivered event or a re-evaluated forecast finds the contact's outcome (skipped before any effect), the
executor's ledger key (replayed, never re-sent) and the notifier's dedupe key (one email). The nudge goes
through the one executor (``send_nudge``, actor ``system``, policy-checked like Tier 0's other nudges).

The decisions at the top are pure (unit-tested); ``ForecastNudger`` does the I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import Action, Intent, RootCause, Tier, derived_id
from schemas.messages import (
    OutcomeRecordedPayload,
    StripeEventReceivedPayload,
    StripeEventReceivedV1,
)
from services.tier0_prevent.domain import Email
from services.tier0_prevent.handlers import utc_now
from services.tier0_prevent.ports import Tier0Actions
from tierline.actions import ActionContext
from tierline.pipeline import record_outcome, start_contact

log = structlog.get_logger(__name__)

ACTOR = "tier0_prevent"
#: the event type of a forecast nudge's cause (Tier 0's scans build one, as the expiry scan does)
SCAN_EVENT = "tierline.usage_forecast_scan"


class UsageForecasts(Protocol):
    """The diagnostics usage door (``tierline.diagnostics_client.HttpDiagnostics.usage``)."""

    async def usage(self, customer_id: str, days: int) -> dict[str, Any]: ...


# ------------------------------------------------------------------------------------------ pure decisions
@dataclass(frozen=True)
class ForecastOverLimit:
    customer_id: str
    metric: str
    used: float
    limit: float
    forecast: float
    period: str  # the period's first day (YYYY-MM-DD), or the month (YYYY-MM) when no period is known
    period_end: str | None

    @property
    def contact_id(self) -> str:
        """One contact per customer, metric and period: what makes the nudge once per period."""
        return f"forecast:{self.customer_id}:{self.metric}:{self.period}"

    @property
    def percent(self) -> int:
        return round(self.forecast / self.limit * 100)


def period_of(answer: Mapping[str, Any], now: datetime) -> str:
    start = answer.get("period_start")
    return str(start)[:10] if start else now.strftime("%Y-%m")


def forecast_over_limit(
    customer_id: str,
    answer: Mapping[str, Any],
    limits: Mapping[str, float],
    *,
    threshold: float,
    now: datetime,
) -> ForecastOverLimit | None:
    """The plan-limited metric whose period forecast passes ``limit * threshold`` by the most (else None).

    A metric the plan does not limit never nudges; neither does a plan without limits."""
    best: ForecastOverLimit | None = None
    for figures in answer.get("metrics") or []:
        metric = str(figures.get("metric") or "")
        limit = limits.get(metric)
        if not metric or limit is None or limit <= 0 or figures.get("forecast") is None:
            continue
        forecast = float(figures["forecast"])
        if forecast <= limit * threshold:
            continue
        found = ForecastOverLimit(
            customer_id=customer_id,
            metric=metric,
            used=float(figures.get("period_units") or 0.0),
            limit=float(limit),
            forecast=forecast,
            period=period_of(answer, now),
            period_end=str(answer["period_end"])[:10] if answer.get("period_end") else None,
        )
        if best is None or found.forecast / found.limit > best.forecast / best.limit:
            best = found
    return best


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _usd(cents: Any) -> str:
    return f"${int(cents) / 100:,.2f}"


def upgrade_words(upgrade: str | None, preview: Mapping[str, Any] | None) -> str:
    """The way out: the plan that fits, with its proration preview when one could be priced."""
    if not upgrade:
        return " You can see your usage and your plan options on your billing page."
    words = f" The {upgrade} plan includes enough for this pace"
    if preview and preview.get("new_amount_cents") is not None:
        words += (
            f": {_usd(preview['new_amount_cents'])} a month instead of {_usd(preview['old_amount_cents'])}"
        )
        net = int(preview.get("net_cents") or 0)
        if net > 0:
            words += f", and moving now adds {_usd(net)} (prorated) to your next invoice"
    return words + ". You see the exact price before you confirm a change."


def forecast_email(
    reading: ForecastOverLimit,
    *,
    upgrade: str | None,
    link: str | None,
    preview: Mapping[str, Any] | None = None,
) -> Email:
    """Plain words: what was used, where the period is heading, what the plan includes, what to do."""
    metric = reading.metric.replace("_", " ")
    by = f" by {reading.period_end}" if reading.period_end else " by the end of this billing period"
    move = upgrade_words(upgrade, preview)
    return Email(
        "usage_forecast_over_limit",
        f"Your {metric} are on track to pass your plan's limit",
        f"You have used {_count(reading.used)} {metric} so far this billing period. At this pace you will "
        f"reach about {_count(reading.forecast)}{by}, {reading.percent}% of the {_count(reading.limit)} "
        f"included in your plan; usage above the limit is billed as overage.{move}"
        + (f"\n\nSee your usage: {link}" if link else ""),
        link,
    )


class UsageWatch:
    """Customers with recent usage events, and when their last one was seen (monotonic seconds)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.last_seen: dict[str, float] = {}

    def mark(self, customer_ids: Iterable[str]) -> None:
        now = self.clock()
        for customer_id in customer_ids:
            self.last_seen[customer_id] = now

    def due(self) -> list[str]:
        return sorted(self.last_seen)

    def evaluated(self, customer_id: str, started: float, settle_s: float) -> None:
        """Forget a customer read ``settle_s`` after their last event (a later event marks them again)."""
        seen = self.last_seen.get(customer_id)
        if seen is not None and started - seen >= settle_s:
            del self.last_seen[customer_id]


def customers_of(bodies: Iterable[bytes]) -> set[str]:
    """The customers a batch of raw ``usage.event.recorded.v1`` values is about (unreadable ones skipped:
    the diagnostics service, which stores usage, dead-letters them)."""
    out: set[str] = set()
    for body in bodies:
        try:
            value = json.loads(body)
        except ValueError:
            continue
        customer = value.get("customer_id") if isinstance(value, dict) else None
        if isinstance(customer, str) and customer:
            out.add(customer)
    return out


# ------------------------------------------------------------------------------------------ the I/O
@dataclass
class ForecastNudger:
    pool: asyncpg.Pool
    broker: KafkaBroker
    actions: Tier0Actions
    usage: UsageForecasts
    usage_url: str
    threshold: float = 1.0
    settle_s: float = 120.0
    clock: Callable[[], datetime] = utc_now
    watch: UsageWatch = field(default_factory=UsageWatch)

    def on_usage_events(self, bodies: list[bytes]) -> None:
        self.watch.mark(customers_of(bodies))

    async def sweep(self) -> int:
        """Read each watched customer's forecast; nudge those past the limit. Returns how many were nudged."""
        started = self.watch.clock()
        nudged = 0
        for customer_id in self.watch.due():
            try:
                nudged += int(await self.evaluate(customer_id))
            except Exception as exc:  # noqa: BLE001 - the customer stays watched: the next sweep tries again
                log.warning(
                    "tier0.forecast.evaluation_failed",
                    customer_id=customer_id,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                continue
            self.watch.evaluated(customer_id, started, self.settle_s)
        log.info("tier0.forecast.sweep_done", nudged=nudged)
        return nudged

    async def limits(self, customer_id: str) -> tuple[str | None, dict[str, float]]:
        row = await self.pool.fetchrow(
            """SELECT p.id, p.included_usage FROM subscriptions s JOIN plans p ON p.id = s.plan_id
               WHERE s.customer_id = $1 AND s.status IN ('active', 'trialing', 'past_due')
               ORDER BY s.updated_at DESC LIMIT 1""",
            customer_id,
        )
        if row is None:
            return None, {}
        raw = row["included_usage"]
        raw = json.loads(raw) if isinstance(raw, str) else raw
        return str(row["id"]), {str(k): float(v) for k, v in (raw or {}).items()}

    async def upgrade_for(self, plan_id: str, metric: str, forecast: float) -> str | None:
        """The cheapest active plan above the current one whose limit holds the forecast."""
        rows = await self.pool.fetch(
            """SELECT p.id, p.included_usage FROM plans p, plans c
               WHERE c.id = $1 AND p.active AND p.price_usd > c.price_usd ORDER BY p.price_usd, p.id""",
            plan_id,
        )
        for r in rows:
            raw = r["included_usage"]
            raw = json.loads(raw) if isinstance(raw, str) else raw
            if float((raw or {}).get(metric, 0.0)) >= forecast:
                return str(r["id"])
        return None

    async def preview(self, ctx: ActionContext, plan: str) -> dict[str, Any] | None:
        """The proration preview of moving to ``plan`` (the executor's read-only ``change_plan``), or None
        when it cannot be priced now: the nudge goes out without the figures."""
        try:
            outcome = await self.actions.change_plan(ctx, plan, None, preview_only=True)
        except Exception as exc:  # noqa: BLE001 - the heads-up does not wait for a price
            log.warning("tier0.forecast.preview_unavailable", plan=plan, error=type(exc).__name__)
            return None
        found = outcome.data.get("preview") if outcome.ok else None
        return dict(found) if isinstance(found, dict) else None

    async def evaluate(self, customer_id: str) -> bool:
        """One customer: True when a nudge went out now (False: under the limit, or already nudged)."""
        plan_id, limits = await self.limits(customer_id)
        if not limits:
            return False
        now = self.clock()
        answer = await self.usage.usage(customer_id, 1)
        reading = forecast_over_limit(customer_id, answer, limits, threshold=self.threshold, now=now)
        if reading is None:
            return False
        contact = reading.contact_id
        if await self.pool.fetchval("SELECT 1 FROM outcomes WHERE contact_id=$1", contact):
            log.info("tier0.forecast.already_nudged", customer_id=customer_id, period=reading.period)
            return False
        cause = StripeEventReceivedV1.build(
            StripeEventReceivedPayload(
                event_id=f"forecast:{customer_id}:{reading.metric}:{reading.period}",
                event_type=SCAN_EVENT,
                created=int(now.timestamp()),
                object={
                    "object": "usage_forecast",
                    "customer": customer_id,
                    "metric": reading.metric,
                    "period_units": reading.used,
                    "forecast": reading.forecast,
                    "limit": reading.limit,
                    "period_start": reading.period,
                },
            ),
            contact_id=contact,
            customer_id=customer_id,
            message_id=derived_id("forecast-scan", contact),
        )
        await start_contact(
            self.pool, contact_id=contact, customer_id=customer_id, trigger="stripe_event", channel=None
        )
        upgrade = await self.upgrade_for(plan_id, reading.metric, reading.forecast) if plan_id else None
        ctx = ActionContext(
            contact_id=contact,
            customer_id=customer_id,
            tier=Tier.TIER0,
            actor="system",
            actor_id=ACTOR,
            cause=cause,
        )
        preview = await self.preview(ctx, upgrade) if upgrade else None
        email = forecast_email(reading, upgrade=upgrade, link=self.usage_url, preview=preview)
        sent = await self.actions.send_nudge(
            ctx,
            template=email.template,
            subject=email.subject,
            body=email.body,
            target=f"{reading.metric}:{reading.period}",
            link=email.link,
            dedupe_key=f"usage_forecast:{customer_id}:{reading.metric}:{reading.period}",
        )
        log.info(
            "tier0.forecast.nudge",
            customer_id=customer_id,
            metric=reading.metric,
            period=reading.period,
            forecast=round(reading.forecast, 3),
            limit=reading.limit,
            status=sent.status,
            replayed=sent.replayed,
        )
        if not (sent.ok and sent.data.get("sent_to")):
            # refused by the policy (e.g. the daily nudge limit) or no address: nobody was told. No outcome:
            # a later sweep (another usage event) tries again within the period; a person is not needed for
            # a heads-up, so nothing is escalated.
            return False
        await record_outcome(
            self.pool,
            self.broker,
            cause=cause,
            payload=OutcomeRecordedPayload(
                resolved_by=Tier.TIER0,
                tier_path=[Tier.TIER0],
                intent=Intent.PLAN_CHANGE,
                root_cause=RootCause.USAGE_OVERAGE,
                actions=[Action.SEND_NUDGE],
                trigger="stripe_event",
                summary=(
                    f"{reading.metric} forecast {reading.forecast:,.0f} passes the plan limit "
                    f"{reading.limit:,.0f} for the period from {reading.period}: nudge sent"
                    + (f" (suggested {upgrade})" if upgrade else "")
                )[:1000],
            ),
        )
        return not sent.replayed
