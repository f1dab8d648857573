"""The portal's usage page (issue 21): the billed metric per day (30 days) and per month (12 months), the
share of the plan limit, the period's forecast and, when the forecast passes the limit, an upgrade with its
proration preview.

Numbers come from the diagnostics service's usage door (``tierline.diagnostics_client``: the ClickHouse daily
rollup and the forecast the diagnosis uses); the limit is the plan's ``included_usage`` in the subscription
store; the upgrade preview is the one executor's ``change_plan(preview_only=True)``. Customer session auth as
the Health Meter; naming another customer is a 403. The arithmetic here is pure (unit-tested).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any, Literal, Protocol

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.tier1_selfheal.auth import (
    PAGE_HEADERS,
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from services.tier1_selfheal.ports import Diagnostics
from tierline.actions import Actions
from tierline.diagnostics_client import SourceUnavailable

log = structlog.get_logger(__name__)

Window = Literal["30d", "12m"]
WINDOWS: tuple[Window, ...] = ("30d", "12m")
#: The diagnostics usage door reads at most this many days back (covers the 12 calendar months shown).
MAX_DAYS = 366


class UsageSource(Protocol):
    async def usage(self, customer_id: str, days: int) -> dict[str, Any]:
        """The diagnostics usage door's answer: ``metrics`` (period figures, forecast), ``daily`` rows."""
        ...


# ------------------------------------------------------------------------------------------ pure arithmetic
@dataclass(frozen=True)
class Point:
    label: str  # YYYY-MM-DD (a day) or YYYY-MM (a month)
    units: float


@dataclass(frozen=True)
class LimitShare:
    used: float
    limit: float | None
    percent: float | None  # used / limit, in %, one decimal; None without a limit
    label: str  # "450K of 500K, 90%"


def compact(n: float) -> str:
    """450000 → 450K, 1250000 → 1.25M, 999 → 999 (the way a plan's limits are written)."""
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K")):
        if abs(n) >= size:
            text = f"{n / size:.2f}".rstrip("0").rstrip(".")
            return f"{text}{suffix}"
    return f"{n:.2f}".rstrip("0").rstrip(".") if n != int(n) else str(int(n))


def limit_share(used: float, limit: float | None) -> LimitShare:
    if limit is None or limit <= 0:
        return LimitShare(used, None, None, f"{compact(used)} used (no limit on your plan)")
    percent = round(used / limit * 100, 1)
    shown = f"{percent:.1f}".rstrip("0").rstrip(".")
    return LimitShare(used, limit, percent, f"{compact(used)} of {compact(limit)}, {shown}%")


def forecast_passes(forecast: float | None, limit: float | None) -> bool:
    return forecast is not None and limit is not None and limit > 0 and forecast > limit


def billed_metric(limits: Mapping[str, float], daily: Iterable[Mapping[str, Any]]) -> str | None:
    """The metric the plan bills (its first limited one), else the one with the most units."""
    if limits:
        return sorted(limits)[0]
    totals: dict[str, float] = {}
    for row in daily:
        totals[str(row["metric"])] = totals.get(str(row["metric"]), 0.0) + float(row["units"])
    return max(totals, key=lambda m: (totals[m], m)) if totals else None


def _per_day(daily: Iterable[Mapping[str, Any]], metric: str) -> dict[date, float]:
    out: dict[date, float] = {}
    for row in daily:
        if row["metric"] == metric:
            day = date.fromisoformat(str(row["day"]))
            out[day] = out.get(day, 0.0) + float(row["units"])
    return out


def daily_points(daily: Iterable[Mapping[str, Any]], metric: str, today: date, days: int = 30) -> list[Point]:
    """One point per UTC day, the ``days`` days ending today, oldest first, zero on days without usage."""
    per_day = _per_day(daily, metric)
    start = today - timedelta(days=days - 1)
    return [
        Point(d.isoformat(), per_day.get(d, 0.0)) for d in (start + timedelta(days=i) for i in range(days))
    ]


def month_starts(today: date, months: int = 12) -> list[date]:
    """The first day of this month and of the ``months - 1`` before it, oldest first."""
    out = []
    year, month = today.year, today.month
    for _ in range(months):
        out.append(date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def monthly_points(
    daily: Iterable[Mapping[str, Any]], metric: str, today: date, months: int = 12
) -> list[Point]:
    """One point per calendar month (UTC), this month and the 11 before, oldest first."""
    starts = month_starts(today, months)
    totals = {s: 0.0 for s in starts}
    for day, units in _per_day(daily, metric).items():
        key = date(day.year, day.month, 1)
        if key in totals and day <= today:
            totals[key] += units
    return [Point(s.strftime("%Y-%m"), totals[s]) for s in starts]


def window_days(window: Window, today: date) -> int:
    """How many days back the door must read for a window (``day > today - N``)."""
    if window == "30d":
        return 30
    return min(MAX_DAYS, (today - month_starts(today)[0]).days + 1)


def usage_csv(metric: str, window: Window, points: Sequence[Point]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["day" if window == "30d" else "month", "metric", "units"])
    for p in points:
        units = int(p.units) if p.units == int(p.units) else p.units
        writer.writerow([p.label, metric, units])
    return buf.getvalue()


def parse_window(raw: str | None) -> Window:
    value = raw or "30d"
    if value not in WINDOWS:
        raise PortalError(422, "invalid_window", "window must be 30d or 12m")
    return value  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ HTTP door
class PortalError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass
class UsageDeps:
    pool: asyncpg.Pool
    usage: UsageSource
    diagnostics: Diagnostics
    actions: Actions
    secret: CustomerKeys


def customer_of(request: Request, secret: CustomerKeys) -> str:
    """The signed-in customer; a request naming another customer (``?customer_id=``) is refused (403)."""
    claims: TokenClaims = verify_token(
        secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
    )
    claimed = request.query_params.get("customer_id")
    if claimed not in (None, "") and claimed != claims.subject:
        log.warning("tier1.portal.cross_customer_denied", subject=claims.subject)
        raise PortalError(403, "forbidden", "you can only see your own account")
    return claims.subject


def portal_guard(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except PortalError as exc:
            return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)
        except InvalidSession as exc:
            return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)

    return wrapper


def static_page(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return HTMLResponse(
            (resources.files("services.tier1_selfheal") / "static" / name).read_text(encoding="utf-8"),
            headers=PAGE_HEADERS,
        )

    return serve


async def plan_limits(pool: asyncpg.Pool, plan_id: str | None) -> dict[str, float]:
    if not plan_id:
        return {}
    raw = await pool.fetchval("SELECT included_usage FROM plans WHERE id=$1", plan_id)
    if isinstance(raw, str):
        import json

        raw = json.loads(raw)
    return {str(k): float(v) for k, v in (raw or {}).items()}


async def upgrade_for(pool: asyncpg.Pool, plan_id: str | None, metric: str, forecast: float) -> str | None:
    """The cheapest active plan whose limit holds the forecast (else the largest above the current one)."""
    rows = await pool.fetch(
        "SELECT id, price_usd, included_usage FROM plans WHERE active ORDER BY price_usd, id"
    )
    current = next((r for r in rows if r["id"] == plan_id), None)
    floor = float(current["price_usd"]) if current is not None else -1.0
    above = []
    for r in rows:
        limits = r["included_usage"]
        if isinstance(limits, str):
            import json

            limits = json.loads(limits)
        if float(r["price_usd"]) > floor:
            above.append((r["id"], float((limits or {}).get(metric, 0.0))))
    for plan, limit in above:
        if limit >= forecast:
            return str(plan)
    return str(above[-1][0]) if above else None


async def usage_view(deps: UsageDeps, customer_id: str, window: Window, now: datetime) -> dict[str, Any]:
    from services.tier1_selfheal.portal_plan import preview_change  # the plan page's preview

    today = now.astimezone(UTC).date()
    try:
        diagnosis = await deps.diagnostics.diagnose(customer_id)
        answer = await deps.usage.usage(customer_id, window_days(window, today))
    except LookupError as exc:
        raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
    except SourceUnavailable as exc:
        raise PortalError(503, "usage_unavailable", "your usage cannot be read right now; try again") from exc
    plan = diagnosis.evidence.get("plan") or {}
    plan_id = plan.get("id")
    limits = await plan_limits(deps.pool, plan_id)
    daily = list(answer.get("daily") or [])
    metric = billed_metric(limits, daily)
    figures = next((m for m in answer.get("metrics") or [] if m.get("metric") == metric), None) or {}
    points = (
        daily_points(daily, metric, today)
        if metric and window == "30d"
        else monthly_points(daily, metric, today)
        if metric
        else []
    )
    limit = limits.get(metric) if metric else None
    used = float(figures.get("period_units") or 0.0)
    forecast = float(figures["forecast"]) if "forecast" in figures else None
    share = limit_share(used, limit)
    view: dict[str, Any] = {
        "customer_id": customer_id,
        "metric": metric,
        "window": window,
        "points": [{"label": p.label, "units": p.units} for p in points],
        "total": sum(p.units for p in points),
        "period": {
            "start": answer.get("period_start"),
            "end": answer.get("period_end"),
            "used": used,
            "limit": limit,
            "percent": share.percent,
            "label": share.label,
            "forecast": round(forecast, 3) if forecast is not None else None,
            "forecast_label": compact(forecast) if forecast is not None else None,
            "forecast_over_limit": forecast_passes(forecast, limit),
        },
        "plan": {"id": plan_id, "name": plan.get("name"), "seats": plan.get("seats")},
        "upgrade": None,
    }
    if metric and forecast_passes(forecast, limit):
        target = await upgrade_for(deps.pool, plan_id, metric, forecast or 0.0)
        if target is not None:
            try:
                preview: dict[str, Any] | None = await preview_change(deps.actions, customer_id, target, None)
            except PortalError as exc:  # the usage is still shown; the plan page prices it again
                log.warning("tier1.portal.upgrade_preview_failed", error=exc.code)
                preview = None
            view["upgrade"] = {"plan": target, "preview": preview}
    return view


def usage_routes(get_deps: Callable[[], UsageDeps]) -> list[Route]:
    async def get_usage(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        window = parse_window(request.query_params.get("window"))
        view = await usage_view(deps, customer_id, window, datetime.now(UTC))
        log.info("tier1.portal.usage_read", window=window, metric=view["metric"])
        return JSONResponse(view)

    async def get_csv(request: Request) -> Response:
        deps = get_deps()
        customer_id = customer_of(request, deps.secret)
        window = parse_window(request.query_params.get("window"))
        view = await usage_view(deps, customer_id, window, datetime.now(UTC))
        points = [Point(p["label"], p["units"]) for p in view["points"]]
        return Response(
            usage_csv(view["metric"] or "", window, points),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="usage-{window}.csv"',
                "Cache-Control": "no-store",
            },
        )

    return [
        Route("/billing/usage", static_page("usage.html")),
        Route("/v1/portal/usage", portal_guard(get_usage), methods=["GET"]),
        Route("/v1/portal/usage.csv", portal_guard(get_csv), methods=["GET"]),
    ]
