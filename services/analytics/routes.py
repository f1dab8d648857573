"""HTTP door of the analyst tables (the analytics service serves it, so `tierline report` can ask it)."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.analytics.domain import NO_KEYS, ChainKeys, verify_chain
from services.analytics.queries import build_report
from services.analytics.store import DEFAULT_DATABASE, AnalyticsStore
from tierline import metrics


def default_period(start: str | None, end: str | None) -> tuple[date, date]:
    end_d = date.fromisoformat(end) if end else datetime.now(UTC).date()
    start_d = date.fromisoformat(start) if start else end_d - timedelta(days=29)
    if start_d > end_d:
        raise ValueError("start is after end")
    return start_d, end_d


def verify_report(store: AnalyticsStore, chain_keys: ChainKeys = NO_KEYS) -> dict[str, Any]:
    store.ensure_schema()
    checked, broken = verify_chain(store.audit_chain(), chain_keys)
    metrics.AUDIT_CHAIN_BROKEN.set(0 if broken is None else 1)
    metrics.AUDIT_CHAIN_CHECKED.set(time.time())
    keyed = chain_keys.signer is not None
    if broken is None:
        return {"ok": True, "checked": checked, "keyed": keyed, "broken": None}
    return {
        "ok": False,
        "checked": checked,
        "keyed": keyed,
        "broken": {
            "partition": broken.partition,
            "offset": broken.offset,
            "message_id": broken.message_id,
            "problem": broken.problem,
        },
    }


def analytics_routes(
    ch_client: Any, *, database: str = DEFAULT_DATABASE, lock: Any = None, chain_keys: ChainKeys = NO_KEYS
) -> list[Route]:
    store = AnalyticsStore(ch_client, database, lock)

    async def report(request: Request) -> Response:
        try:
            start, end = default_period(request.query_params.get("start"), request.query_params.get("end"))
        except ValueError as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)
        return JSONResponse(await store.run(build_report, store, start, end))

    async def verify(request: Request) -> Response:
        result = await store.run(verify_report, store, chain_keys)
        return JSONResponse(result, status_code=200 if result["ok"] else 409)

    return [Route("/v1/analytics/report", report), Route("/v1/analytics/audit/verify", verify)]
