"""The portal's usage, plan and "my requests" doors (issue 21) on the real broker, Postgres, chDB and the
Stripe emulator: usage equals the ClickHouse totals, a plan change with its preview changes Stripe once,
cancelling is at period end with the retention offer, every route refuses another customer; and the
deflection query."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from schemas.vocab import Channel
from services.analytics.deflection import deflection_report
from services.analytics.store import AnalyticsStore
from services.diagnostics.adapters.clickhouse import UsageEvent, UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician, http_handlers
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tierline import conversations
from tierline.billing.mirror import MirrorStore
from tierline.clickhouse import client_lock, get_client
from tierline.diagnostics_client import HttpDiagnostics, InProcessDiagnostics
from tierline.stripe_adapter import StripeActions, ref_id
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

SETTLED = {"resolved", "handed_to_tier2", "escalated"}


@pytest.fixture(scope="module")
async def stripe_actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


def usage_door(diagnostician: Diagnostician, usage: UsageStore) -> HttpDiagnostics:
    """The diagnostics service's own usage door (its handler, the real mirror and chDB), over ASGI."""
    handler = http_handlers(diagnostician, usage)["usage"]
    app = Starlette(routes=[Route("/v1/customers/{customer_id}/usage", handler, methods=["GET"])])
    return HttpDiagnostics("http://diagnostics", transport=httpx.ASGITransport(app=app))


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostician = Diagnostician(
        MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
    )
    settings = infra.model_copy(update={"http_port": free_port()})
    svc = create_service(
        settings, diagnostics=InProcessDiagnostics(diagnostician), usage=usage_door(diagnostician, usage)
    )
    await svc.start()
    svc.state["base_url"] = f"http://127.0.0.1:{settings.http_port}"
    svc.state["keys"] = settings.customer_token_keyset()
    svc.state["usage_store"] = usage
    await asyncio.sleep(4)  # let the consumer group settle before the first request
    yield svc
    await svc.stop()


@pytest.fixture
async def http(tier1: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tier1.state["base_url"], timeout=60) as client:
        yield client


def bearer(tier1: Any, customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(tier1.state['keys'], customer_id, 600)}"}


async def wait_status(http: httpx.AsyncClient, headers: dict[str, str], url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await http.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in SETTLED:
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"{url} still {body.get('status')}: {body}")


def plan_of(sub: dict[str, Any]) -> str:
    item = ((sub.get("items") or {}).get("data") or [{}])[0]
    plan = ref_id(item.get("plan") or sub.get("plan") or {})
    assert plan, sub
    return plan


async def write_usage(store: UsageStore, customer_id: str, now: datetime) -> None:
    """A year of api_calls: every day of the last 60 (heavier lately), and a day in older months."""
    events = []
    for i in range(60):
        ts = now - timedelta(days=i, minutes=1)
        units = 25_000 if i < 30 else 4_000 + i
        events.append(UsageEvent(customer_id, "api_calls", ts, float(units), 0.0002, f"{customer_id}-d{i}"))
    for i in (75, 130, 200, 290, 340, 380):  # 380 days back: outside the 12 months
        ts = now - timedelta(days=i)
        events.append(UsageEvent(customer_id, "api_calls", ts, 1_000.0 + i, 0.0002, f"{customer_id}-o{i}"))
    events.append(
        UsageEvent(customer_id, "storage_gb", now - timedelta(minutes=2), 7.0, 0.1, f"{customer_id}-s")
    )
    assert await store.write(events) == len(events)


def clickhouse_sum(dsn: str, customer_id: str, since: date, until: date) -> float:
    """Straight from the raw events: the units of api_calls on UTC days since..until (inclusive)."""
    with client_lock(dsn):
        result = get_client(dsn).query(
            "SELECT sum(units) FROM usage_events FINAL WHERE customer_id = {c:String} "
            "AND metric = 'api_calls' AND toDate(ts) >= {s:Date} AND toDate(ts) <= {u:Date}",
            parameters={"c": customer_id, "s": since, "u": until},
        )
    return float(result.result_rows[0][0] or 0)


# ------------------------------------------------------------------------------------------------ usage


async def test_given_usage_events_when_the_usage_page_reads_them_then_numbers_equal_clickhouse_totals(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, infra: Any, unique: str
) -> None:
    # Given a Pro customer (500K api_calls included) with a year of usage, 750K in the last 30 days
    world = await build_world({"customer": {"plan": "pro"}}, stripe_actions, label=f"pu-usage-{unique}")
    now = datetime.now(UTC)
    await write_usage(tier1.state["usage_store"], world.customer_id, now)
    headers = bearer(tier1, world.customer_id)
    dsn = infra.resolved_clickhouse_dsn()

    # When the customer reads the last 30 days
    resp = await http.get("/v1/portal/usage?window=30d", headers=headers)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    today = datetime.now(UTC).date()
    # Then each day and the total equal ClickHouse for the same window
    assert view["metric"] == "api_calls"
    assert len(view["points"]) == 30
    assert view["total"] == clickhouse_sum(dsn, world.customer_id, today - timedelta(days=29), today)
    for point in view["points"][::7]:
        day = date.fromisoformat(point["label"])
        assert point["units"] == clickhouse_sum(dsn, world.customer_id, day, day)
    # and the share of the limit and the forecast are shown, past the limit, with an upgrade preview
    period = view["period"]
    assert period["limit"] == 500_000
    assert period["label"].endswith(f"of 500K, {period['percent']:g}%")
    assert period["forecast_over_limit"] is True
    assert view["upgrade"]["plan"] == "business"
    preview = view["upgrade"]["preview"]
    assert preview["new_amount_cents"] > preview["old_amount_cents"]

    # When the customer reads 12 months
    resp = await http.get("/v1/portal/usage?window=12m", headers=headers)
    months = resp.json()
    # Then each calendar month equals ClickHouse for that month
    assert len(months["points"]) == 12
    for point in months["points"]:
        first = date.fromisoformat(point["label"] + "-01")
        last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
        assert point["units"] == clickhouse_sum(dsn, world.customer_id, first, min(last, today)), point
    first_month = date.fromisoformat(months["points"][0]["label"] + "-01")
    assert months["total"] == clickhouse_sum(dsn, world.customer_id, first_month, today)

    # And the CSV export carries the same numbers
    resp = await http.get("/v1/portal/usage.csv?window=12m", headers=headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["month"], float(r["units"])) for r in rows] == [
        (p["label"], p["units"]) for p in months["points"]
    ]


# ------------------------------------------------------------------------------------------------ plan


async def test_given_a_plan_preview_when_confirmed_twice_then_stripe_changes_once(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given a Pro customer who previews Business
    world = await build_world({"customer": {"plan": "pro"}}, stripe_actions, label=f"pu-plan-{unique}")
    headers = bearer(tier1, world.customer_id)
    plan = (await http.get("/v1/portal/plan", headers=headers)).json()
    assert plan["plan"]["id"] == "pro"
    assert plan["price_usd"] == 49.0
    assert {p["id"] for p in plan["plans"]} >= {"starter", "pro", "business"}
    before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    resp = await http.post("/v1/portal/plan/preview", headers=headers, json={"plan": "business"})
    assert resp.status_code == 200, resp.text
    preview = resp.json()["preview"]
    assert preview["new_amount_cents"] > preview["old_amount_cents"]
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before

    # When a stale price is sent, nothing happens; then the seen price is confirmed twice (same request id)
    stale = await http.post(
        "/v1/portal/plan",
        headers=headers,
        json={"plan": "business", "seen_new_amount_cents": 1, "request_id": f"stale-{unique}"},
    )
    assert stale.status_code == 409
    assert stale.json()["error"] == "price_changed"
    body = {
        "plan": "business",
        "seen_new_amount_cents": preview["new_amount_cents"],
        "request_id": f"plan-{unique}",
    }
    first = await http.post("/v1/portal/plan", headers=headers, json=body)
    second = await http.post("/v1/portal/plan", headers=headers, json=body)
    assert first.status_code == second.status_code == 202, first.text
    assert first.json()["contact_id"] == second.json()["contact_id"]
    status = await wait_status(http, headers, first.json()["status_url"])

    # Then the plan changed once in Stripe, the price increase confirmed by the click
    assert status["status"] == "resolved", status
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert plan_of(sub) == await stripe_actions.ensure_plan("business", 299)
    rows = await pg_pool.fetch(
        "SELECT status FROM action_ledger WHERE customer_id=$1 AND action='change_plan'", world.customer_id
    )
    assert [r["status"] for r in rows] == ["succeeded"]


async def test_given_cancel_clicked_when_done_then_at_period_end_with_the_retention_offer(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"pu-cancel-{unique}")
    headers = bearer(tier1, world.customer_id)
    offer = (await http.get("/v1/portal/plan", headers=headers)).json()["retention_offer"]
    assert "20%" in offer
    resp = await http.post("/v1/portal/plan/cancel", headers=headers, json={"request_id": f"cancel-{unique}"})
    assert resp.status_code == 202, resp.text
    status = await wait_status(http, headers, resp.json()["status_url"])
    assert status["status"] == "resolved", status
    assert "20%" in status["summary"]
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert sub["cancel_at_period_end"] is True
    assert sub["status"] == "active"


# ------------------------------------------------------------------------------------------------ requests


async def test_given_an_open_case_when_my_requests_read_then_listed_honestly_and_only_own(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given a customer who asked for a person (a case a person has not answered yet) and another customer
    world = await build_world({}, stripe_actions, label=f"pu-req-{unique}")
    other = f"cus_other_{unique}"
    await conversations.open_conversation(
        pg_pool, conversation_id=f"conv_other_{unique}", customer_id=other, channel=Channel.CHAT
    )
    headers = bearer(tier1, world.customer_id)
    asked = await http.post("/v1/health-meter/human", headers=headers, json={"text": "Why two charges?"})
    contact_id = asked.json()["contact_id"]
    await open_case(pg_pool, contact_id, world.customer_id)
    # When the customer reads "my requests"
    resp = await http.get("/v1/portal/requests", headers=headers)
    assert resp.status_code == 200, resp.text
    found = resp.json()
    # Then the case says a person is on it (never resolved), and the conversation holds their words
    [case] = [c for c in found["cases"] if c["contact_id"] == contact_id]
    assert case["state"] == "with_human"
    assert "expect an answer by" in case["detail"]
    [conv] = [c for c in found["conversations"] if c["conversation_id"] == contact_id]
    assert conv["last_message"] == "Why two charges?"
    assert conv["status"] == "with_human"  # its case is open: a person has it, whatever the last turn said
    assert all(c["conversation_id"] != f"conv_other_{unique}" for c in found["conversations"])


async def open_case(pg_pool: Any, contact_id: str, customer_id: str) -> None:
    """The case tier 3 opens for an escalation (tier3_handoff is not running here)."""
    await pg_pool.execute(
        """INSERT INTO cases (case_id, contact_id, customer_id, reason, priority, sla_due_at, queue, packet)
           VALUES ($1,$2,$3,'customer_asked',2,$4,'billing','{}'::jsonb) ON CONFLICT DO NOTHING""",
        f"case_{uuid.uuid4().hex[:12]}",
        contact_id,
        customer_id,
        datetime.now(UTC) + timedelta(hours=4),
    )


# ------------------------------------------------------------------------------------------------ tenants

CROSS_TENANT = [
    ("GET", "/v1/portal/usage?window=30d&customer_id={other}", None),
    ("GET", "/v1/portal/usage.csv?window=30d&customer_id={other}", None),
    ("GET", "/v1/portal/plan?customer_id={other}", None),
    ("GET", "/v1/portal/requests?customer_id={other}", None),
    ("POST", "/v1/portal/plan/preview", {"plan": "business", "customer_id": "{other}"}),
    (
        "POST",
        "/v1/portal/plan",
        {
            "plan": "business",
            "seen_new_amount_cents": 1,
            "customer_id": "{other}",
            "request_id": "x-12345678",
        },
    ),
    ("POST", "/v1/portal/plan/cancel", {"customer_id": "{other}", "request_id": "x-12345678"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CROSS_TENANT)
async def test_given_another_customers_id_when_any_portal_route_called_then_403_and_no_token_401(
    tier1: Any,
    http: httpx.AsyncClient,
    stripe_actions: StripeActions,
    pg_pool: Any,
    unique: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    mine = f"cus_mine_{unique}"
    other = f"cus_victim_{unique}"
    payload = {k: (v.format(other=other) if isinstance(v, str) else v) for k, v in (body or {}).items()}
    url = path.format(other=other)
    resp = await http.request(method, url, headers=bearer(tier1, mine), json=payload if body else None)
    assert resp.status_code == 403, resp.text
    assert (await http.request(method, url, json=payload if body else None)).status_code == 401
    # nothing was recorded for either customer
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM tier1_requests WHERE customer_id = ANY($1::text[])", [mine, other]
        )
        == 0
    )


# ------------------------------------------------------------------------------------------------ analytics


def outcome(contact: str, when: datetime, intent: str, resolved_by: str, trigger: str) -> dict[str, Any]:
    return {
        "contact_id": contact,
        "message_id": str(uuid.uuid4()),
        "customer_id": "cus_defl",
        "occurred_at": when.isoformat(),
        "payload": {"resolved_by": resolved_by, "intent": intent, "trigger": trigger, "actions": []},
    }


async def test_given_outcomes_over_two_months_when_deflection_read_then_per_workflow_month_over_month(
    infra: Any,
) -> None:
    dsn = infra.resolved_clickhouse_dsn()
    store = AnalyticsStore(get_client(dsn), f"defl_{uuid.uuid4().hex[:10]}", lock=client_lock(dsn))
    await store.run(store.ensure_schema)
    oct_, nov = datetime(2026, 10, 10, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)
    rows = [
        # October invoices: 1 in the portal, 1 by the agent, 2 reached a person
        outcome("c1", oct_, "invoice_request", "tier1", "selfheal"),
        outcome("c2", oct_, "invoice_request", "tier2", "contact"),
        outcome("c3", oct_, "invoice_request", "tier3", "contact"),
        outcome("c4", oct_, "invoice_request", "tier3", "selfheal"),
        # November invoices: 3 in the portal, 1 reached a person
        outcome("c5", nov, "invoice_request", "tier1", "selfheal"),
        outcome("c6", nov, "invoice_request", "tier1", "selfheal"),
        outcome("c7", nov, "invoice_request", "tier1", "selfheal"),
        outcome("c8", nov, "invoice_request", "tier3", "contact"),
        # a payment failure fixed by tier 0, outside the period
        outcome("c9", nov, "payment_failed", "tier0", "contact"),
        outcome("c10", datetime(2026, 12, 2, tzinfo=UTC), "payment_failed", "tier3", "contact"),
    ]
    await store.run(store.insert_outcomes, rows)
    report = await store.run(deflection_report, store, date(2026, 10, 1), date(2026, 11, 30))
    assert report == [
        {
            "month": "2026-10",
            "workflow": "invoice_request",
            "contacts": 4,
            "portal": 1,
            "fixed": 1,
            "person": 2,
            "deflection_rate": 0.5,
            "change": None,
        },
        {
            "month": "2026-11",
            "workflow": "invoice_request",
            "contacts": 4,
            "portal": 3,
            "fixed": 0,
            "person": 1,
            "deflection_rate": 0.75,
            "change": 0.25,
        },
        {
            "month": "2026-11",
            "workflow": "payment_failed",
            "contacts": 1,
            "portal": 0,
            "fixed": 1,
            "person": 0,
            "deflection_rate": 1.0,
            "change": None,
        },
    ]
