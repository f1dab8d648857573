"""HTTP door of the analyst tables (the analytics service serves it, so `tierline report` can ask it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.analytics.domain import verify_chain
from services.analytics.queries import build_report
from services.analytics.store import DEFAULT_DATABASE, AnalyticsStore


def default_period(start: str | None, end: str | None) -> tuple[date, date]:
    end_d = date.fromisoformat(end) if end else datetime.now(UTC).date()
    start_d = date.fromisoformat(start) if start else end_d - timedelta(days=29)
    if start_d > end_d:
        raise ValueError("start is after end")
    return start_d, end_d


def verify_report(store: AnalyticsStore) -> dict[str, Any]:
    store.ensure_schema()
    checked, broken = verify_chain(store.audit_chain())
    if broken is None:
        return {"ok": True, "checked": checked, "broken": None}
    return {
        "ok": False,
        "checked": checked,
        "broken": {
            "partition": broken.partition,
            "offset": broken.offset,
            "message_id": broken.message_id,
            "problem": broken.problem,
        },
    }


def analytics_routes(ch_client: Any, *, database: str = DEFAULT_DATABASE, lock: Any = None) -> list[Route]:
    store = AnalyticsStore(ch_client, database, lock)

    async def report(request: Request) -> Response:
        try:
            start, end = default_period(request.query_params.get("start"), request.query_params.get("end"))
        except ValueError as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)
        return JSONResponse(await store.run(build_report, store, start, end))

    async def verify(request: Request) -> Response:
        result = await store.run(verify_report, store)
        return JSONResponse(result, status_code=200 if result["ok"] else 409)

    return [Route("/v1/analytics/report", report), Route("/v1/analytics/audit/verify", verify)]
