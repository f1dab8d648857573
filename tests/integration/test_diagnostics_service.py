"""Diagnostics on the real Postgres, chDB, Tansu and localstripe: worlds built through the Stripe API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe

from schemas.messages import UsageEventPayload, UsageEventRecordedV1
from schemas.vocab import HealthStatus, RootCause
from services.diagnostics.adapters.clickhouse import UsageEvent, UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.app import create_service
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import (
    CustomerNotFound,
    DiagnosticsUnavailable,
    HttpDiagnostics,
    SourceUnavailable,
)
from tierline.messaging import encode, headers_for
from tierline_tools.stack.procs import free_port

pytestmark = pytest.mark.integration

OK_CARD, DECLINING_CARD, THREE_DS_CARD = "4242424242424242", "4000000000000341", "4000002760003184"


@pytest.fixture(scope="module")
async def service(infra: Any) -> AsyncIterator[Any]:
    settings = infra.model_copy(update={"http_port": free_port()})
    svc = create_service(settings, DiagnosticsSettings(usage_batch_size=50, usage_batch_timeout_ms=200))
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture(scope="module")
def sc(infra: Any) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": infra.stripe_api_base})


class World:
    """Builds one customer's billing world through the Stripe API."""

    def __init__(self, sc: stripe.StripeClient, unique: str) -> None:
        self.sc = sc
        self.unique = unique
        self.customer = sc.v1.customers.create(
            params={"email": f"{unique}@acme.io", "name": f"Acme {unique}"}
        )
        self.id = self.customer.id

    def card(
        self, number: str = OK_CARD, exp_month: int = 12, exp_year: int = 2030, default: bool = True
    ) -> str:
        pm = self.sc.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": number, "exp_month": exp_month, "exp_year": exp_year, "cvc": "123"},
            }
        )
        self.sc.v1.payment_methods.attach(pm.id, params={"customer": self.id})
        if default:
            self.sc.v1.customers.update(
                self.id, params={"invoice_settings": {"default_payment_method": pm.id}}
            )
        return pm.id

    def subscribe(self, plan: str = "pro", seats: int = 1, amount: int = 4900) -> str:
        plan_id = f"{plan}-{self.unique}-{uuid.uuid4().hex[:4]}"
        self.sc.v1.plans.create(
            params={
                "id": plan_id,
                "amount": amount,
                "currency": "usd",
                "interval": "month",
                "product": {"name": plan.title()},
                "metadata": {"tl_plan": plan},
            }
        )
        sub = self.sc.v1.subscriptions.create(
            params={"customer": self.id, "items": [{"plan": plan_id}], "metadata": {"tl_seats": str(seats)}}
        )
        return sub.id

    def charge(self, amount: int, ago: timedelta = timedelta(0)) -> str:
        created = int(time.time() - ago.total_seconds())
        return self.sc.v1.charges.create(
            params={
                "amount": amount,
                "currency": "usd",
                "customer": self.id,
                "metadata": {"tl_created": str(created)},
            }
        ).id

    def failed_invoice(self, amount: int, decline_code: str) -> str:
        self.sc.v1.invoice_items.create(params={"customer": self.id, "amount": amount, "currency": "usd"})
        inv = self.sc.v1.invoices.create(params={"customer": self.id})
        try:
            self.sc.v1.invoices.pay(inv.id)
        except stripe.CardError:
            pass  # the declining card fails the attempt
        failed = self.sc.v1.invoices.retrieve(inv.id)
        assert failed.status == "open"
        # the world builder's convention (tierline_tools/world.py): the emulator reports this issuer
        # decline on the charge and the payment intent as Stripe does (outcome.reason, decline_code)
        self.sc.v1.invoices.update(inv.id, params={"metadata": {"tl_decline_code": decline_code}})
        charge = failed.charge if isinstance(failed.charge, str) else failed.charge.id
        self.sc.v1.charges.update(charge, params={"metadata": {"tl_decline_code": decline_code}})
        return inv.id


async def diagnose(service: Any, customer_id: str) -> Any:
    return await service.state["client"].diagnose(customer_id, contact_id=f"test-{customer_id}")


async def test_healthy_customer_read_live_then_from_mirror(service: Any, sc: Any, unique: str) -> None:
    # Given a customer with a working card and an active Pro subscription, unknown to the mirror
    w = World(sc, unique)
    w.card()
    w.subscribe("pro", seats=3)
    # When diagnosed twice
    first = await diagnose(service, w.id)
    second = await diagnose(service, w.id)
    # Then the first read Stripe live and stored it; the second came from the mirror
    assert first.status is HealthStatus.GREEN
    assert first.root_cause is RootCause.HEALTHY
    assert first.evidence["sources"]["stripe"] == "live"
    assert second.evidence["sources"]["stripe"] == "mirror"
    assert first.evidence["plan"]["id"] == "pro"
    assert first.evidence["payment_method"]["last4"] == "4242"
    assert "Visa ending in 4242" in first.explanation
    assert second.evidence["charges"][0]["amount_usd"] == 49.0


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("insufficient_funds", RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS),
        ("try_again_later", RootCause.CARD_DECLINED_SOFT),
        ("incorrect_number", RootCause.CARD_DECLINED_HARD),
        ("stolen_card", RootCause.CARD_DECLINED_FRAUD),
    ],
)
async def test_declined_invoice(service: Any, sc: Any, unique: str, code: str, cause: RootCause) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    w.card(DECLINING_CARD)
    inv = w.failed_invoice(4900, code)
    d = await diagnose(service, w.id)
    assert d.root_cause is cause
    assert d.status is HealthStatus.RED
    assert d.evidence["invoice"]["id"] == inv
    assert d.evidence["invoice"]["decline_code"] == code
    due = sc.v1.invoices.retrieve(inv).amount_due / 100
    assert d.evidence["invoice"]["amount_due_usd"] == due
    assert f"${due:,.2f}" in d.explanation
    assert "0341" in d.explanation


async def test_card_expired_and_expiring(service: Any, sc: Any, unique: str) -> None:
    now = datetime.now(UTC)
    w = World(sc, unique + "e")
    w.card(exp_month=1, exp_year=now.year - 1)
    w.subscribe("pro")
    assert (await diagnose(service, w.id)).root_cause is RootCause.CARD_EXPIRED
    soon = now + timedelta(days=5)
    w2 = World(sc, unique + "s")
    w2.card(exp_month=soon.month, exp_year=soon.year)
    w2.subscribe("pro")
    d = await diagnose(service, w2.id)
    assert d.root_cause is RootCause.CARD_EXPIRING
    assert d.status is HealthStatus.AMBER


async def test_invoice_link_expired(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    w.sc.v1.invoice_items.create(params={"customer": w.id, "amount": 2500, "currency": "usd"})
    inv = w.sc.v1.invoices.create(params={"customer": w.id})
    w.sc.v1.invoices.update(
        inv.id, params={"metadata": {"tl_link_expires_at": str(int(time.time()) - 86400)}}
    )
    # localstripe finalises on pay only; mirror the finalised-but-unpaid state Stripe would send
    obj = {**w.sc.v1.invoices.retrieve(inv.id).to_dict(), "status": "open", "attempt_count": 0}
    await service.state["mirror"].apply_stripe_event("invoice.finalized", obj, int(time.time()) + 5)
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.INVOICE_LINK_EXPIRED
    assert d.evidence["invoice"]["link_expired"] is True


async def test_payment_pending(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    pm = w.card(THREE_DS_CARD, default=False)
    sc.v1.payment_intents.create(
        params={"amount": 2500, "currency": "usd", "customer": w.id, "payment_method": pm, "confirm": True}
    )
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.PAYMENT_PENDING
    assert "$25.00" in d.explanation


async def test_usage_overage_through_the_metering_topic(service: Any, sc: Any, unique: str) -> None:
    # Given a Pro customer (500,000 api_calls included) whose metering events arrive on the topic
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    now = datetime.now(UTC)
    events = [(f"{unique}-{i}", now - timedelta(days=1 + i % 25), 26000.0) for i in range(25)]
    events += [(f"{unique}-p{i}", now - timedelta(days=35 + i), 20000.0) for i in range(10)]
    for event_id, ts, units in events + events[:3]:  # three redelivered duplicates
        msg = UsageEventRecordedV1.build(
            UsageEventPayload(
                event_id=event_id, metric="api_calls", units=units, unit_price_usd=0.0002, ts=ts
            ),
            contact_id=f"metering-{unique}",
            customer_id=w.id,
        )
        # tierline.messaging.publish passes content_type, which faststream 0.7.8 rejects (reported)
        await service.broker.publish(encode(msg), topic=msg.TOPIC, key=msg.key(), headers=headers_for(msg))
    store: UsageStore = service.state["usage_store"]
    for _ in range(100):
        figs = await store.figures(w.id, None, None, now)
        if figs and figs[0].last_30d + figs[0].prev_30d >= 850000:
            break
        await asyncio.sleep(0.2)
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.USAGE_OVERAGE
    assert d.evidence["usage"]["last_30d"] == 650000
    assert d.evidence["usage"]["prev_30d"] == 200000
    assert d.evidence["usage"]["overage_units"] == 150000
    assert d.evidence["usage"]["overage_usd"] == 30.0


async def test_seats_over_plan(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("starter", seats=7, amount=1900)
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.SEATS_OVER_PLAN
    assert d.evidence["plan"]["seat_limit"] == 3


async def test_duplicate_charge_and_refunds(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique + "d")
    w.card()
    w.subscribe("pro")
    older = w.charge(2900, timedelta(hours=20))
    newer = w.charge(2900, timedelta(hours=1))
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.DUPLICATE_CHARGE
    assert d.evidence["duplicate"] == {"charge_id": newer, "twin_charge_id": older, "amount_usd": 29.0}
    # refund pending, then succeeded (separate customers)
    w2 = World(sc, unique + "r")
    w2.card()
    w2.subscribe("pro")
    ch = w2.charge(1500, timedelta(days=2))
    sc.v1.refunds.create(params={"charge": ch, "amount": 1500, "metadata": {"tl_refund_status": "pending"}})
    assert (await diagnose(service, w2.id)).root_cause is RootCause.REFUND_PENDING
    w3 = World(sc, unique + "q")
    w3.card()
    w3.subscribe("pro")
    ch = w3.charge(1500, timedelta(days=2))
    sc.v1.refunds.create(params={"charge": ch, "amount": 1500})
    d = await diagnose(service, w3.id)
    assert d.root_cause is RootCause.REFUND_SUCCEEDED
    assert next(c for c in d.evidence["charges"] if c["id"] == ch)["refunded_usd"] == 15.0


async def test_open_dispute_from_a_stripe_event(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    ch = w.charge(4900, timedelta(days=3))
    await diagnose(service, w.id)  # mirror filled
    await service.state["mirror"].apply_stripe_event(
        "charge.dispute.created",
        {
            "id": f"dp_{unique}",
            "object": "dispute",
            "charge": ch,
            "amount": 4900,
            "status": "needs_response",
            "reason": "fraudulent",
            "created": int(time.time()),
        },
        int(time.time()),
    )
    d = await diagnose(service, w.id)
    assert d.root_cause is RootCause.DISPUTE_OPEN
    assert d.evidence["disputes"][0]["open"] is True


async def test_subscription_missing_canceled_and_no_payment_method(
    service: Any, sc: Any, unique: str
) -> None:
    w = World(sc, unique + "m")
    w.card()
    assert (await diagnose(service, w.id)).root_cause is RootCause.SUBSCRIPTION_MISSING
    w2 = World(sc, unique + "c")
    w2.card()
    sub = w2.subscribe("pro")
    sc.v1.subscriptions.cancel(sub)
    assert (await diagnose(service, w2.id)).root_cause is RootCause.SUBSCRIPTION_CANCELED
    w3 = World(sc, unique + "n")
    pm = w3.card()
    w3.subscribe("pro")
    sc.v1.payment_methods.detach(pm)
    d = await diagnose(service, w3.id)
    assert d.root_cause is RootCause.NO_PAYMENT_METHOD


async def test_mirror_replays_converge_in_any_order(pg_pool: Any, unique: str) -> None:
    mirror = MirrorStore(pg_pool)
    cus = {"id": f"cus_{unique}", "object": "customer", "email": "x@y.z", "created": 1700000000}
    charge = {
        "id": f"ch_{unique}",
        "object": "charge",
        "customer": cus["id"],
        "amount": 4900,
        "status": "pending",
        "created": 1700000000,
    }
    await mirror.apply_stripe_event("customer.created", cus, 1700000000)
    await mirror.apply_stripe_event("charge.succeeded", {**charge, "status": "succeeded"}, 1700000100)
    await mirror.apply_stripe_event("charge.pending", charge, 1700000050)  # late, older
    status = await pg_pool.fetchval("SELECT status FROM stripe_charges WHERE id=$1", charge["id"])
    assert status == "succeeded"
    await mirror.apply_stripe_event("customer.deleted", cus, 1700000200)
    assert await pg_pool.fetchval("SELECT deleted FROM stripe_customers WHERE id=$1", cus["id"]) is True


async def test_http_doors_404_and_openapi(service: Any, sc: Any, unique: str) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    base = f"http://127.0.0.1:{service.http_port}"
    token = service.settings.service_token.get_secret_value()
    client = HttpDiagnostics(base, token=token)
    try:
        d = await client.diagnose(w.id)
        assert d.root_cause is RootCause.HEALTHY
        with pytest.raises(CustomerNotFound):
            await client.diagnose(f"cus_missing{unique}")
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.get(f"/v1/customers/cus_missing{unique}/diagnosis")
        assert r.status_code == 404
        assert r.json()["error"] == "customer_not_found"
        doc = (await http.get("/openapi.json")).json()
        assert "/v1/customers/{customer_id}/diagnosis" in doc["paths"]
        usage = await http.get(f"/v1/customers/{w.id}/usage")
        assert usage.status_code == 200
        assert usage.json()["customer_id"] == w.id
        health = (await http.get("/healthz")).json()
        assert health["checks"]["clickhouse"]["ok"] is True


async def test_given_no_service_token_when_asking_for_a_diagnosis_then_401_and_with_it_200(
    service: Any, sc: Any, unique: str
) -> None:
    """Given the diagnostics API, When called without / with a wrong / with the service token,
    Then customer data needs the token (401 JSON otherwise) and health and OpenAPI stay open."""
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    base = f"http://127.0.0.1:{service.http_port}"
    token = service.settings.service_token.get_secret_value()
    paths = [f"/v1/customers/{w.id}/diagnosis", f"/v1/customers/{w.id}/usage"]
    async with httpx.AsyncClient(base_url=base) as http:
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {token}"}):
                refused = await http.get(path, headers=headers)
                assert refused.status_code == 401, (path, headers)
                assert refused.json()["error"] == "unauthorized"
                assert w.id not in refused.text
            allowed = await http.get(path, headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200, path
            assert allowed.json()["customer_id"] == w.id
        for open_path in ("/livez", "/healthz", "/readyz", "/openapi.json"):
            assert (await http.get(open_path)).status_code == 200, open_path
    anonymous = HttpDiagnostics(base)
    try:
        with pytest.raises(DiagnosticsUnavailable, match="HTTP 401"):
            await anonymous.diagnose(w.id)
    finally:
        await anonymous.aclose()


class FailingUsage:
    async def recent(self, *args: Any) -> Any:
        raise SourceUnavailable("clickhouse", "injected failure")


async def test_sources_down_are_listed_and_never_green(
    pg_pool: Any, infra: Any, sc: Any, unique: str
) -> None:
    w = World(sc, unique)
    w.card()
    w.subscribe("pro")
    mirror = MirrorStore(pg_pool)
    good_stripe = StripeLiveReader("sk_test_x", infra.stripe_api_base, emulated=True)
    # Given ClickHouse failing
    d = await Diagnostician(mirror, good_stripe, FailingUsage(), None).diagnose(w.id)
    assert d.status is not HealthStatus.GREEN
    assert d.missing_sources == ["usage"]
    # Given Stripe unreachable and a stale mirror
    dead = StripeLiveReader("sk_test_x", f"http://127.0.0.1:{free_port()}", timeout_s=1, emulated=True)
    stale = Diagnostician(
        mirror, dead, UsageStore(infra.clickhouse_dsn), None, DiagnosticsSettings(mirror_max_age_s=0)
    )
    d = await stale.diagnose(w.id)
    assert d.status is not HealthStatus.GREEN
    assert "stripe" in d.missing_sources
    assert d.evidence["sources"]["stripe"] == "mirror_stale"
    assert d.evidence["plan"]["id"] == "pro"
    # Given Stripe unreachable and a customer nobody knows: not claimed missing, not green
    d = await stale.diagnose(f"cus_nobody{unique}")
    assert d.root_cause is RootCause.UNKNOWN
    assert d.missing_sources == ["stripe"]


async def test_concurrent_usage_reads_are_coalesced_and_each_gets_its_own_rows(
    infra: Any, unique: str
) -> None:
    store = UsageStore(infra.clickhouse_dsn)
    now = datetime.now(UTC)
    ids = [f"cus_co{unique}_{i}" for i in range(12)]
    events = [
        UsageEvent(c, "api_calls", now - timedelta(days=d), 100.0 * (i + 1), 0.001, f"{c}-{d}")
        for i, c in enumerate(ids)
        for d in range(3)
    ]
    assert await store.write(events) == len(events)
    calls: list[int] = []
    real = store._recent_sync

    def counting(customer_ids: Any, since: Any) -> Any:
        calls.append(len(customer_ids))
        return real(customer_ids, since)

    store._recent_sync = counting  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(store.recent(c, now) for c in ids), store.recent(f"cus_none{unique}", now)
    )
    for i, days in enumerate(results[:-1]):
        assert sum(d.units for d in days) == 300.0 * (i + 1)
    assert results[-1] == ()
    assert sum(calls) == len(ids) + 1
    assert len(calls) < len(ids)


async def test_usage_store_dedupes_and_forecasts(infra: Any, unique: str) -> None:
    store = UsageStore(infra.clickhouse_dsn)
    now = datetime.now(UTC)
    cid = f"cus_u{unique}"
    events = [
        UsageEvent(cid, "api_calls", now - timedelta(days=d), 1000.0, 0.001, f"{unique}-{d}")
        for d in range(10)
    ]
    assert await store.write(events) == 10
    assert await store.write(events[:5]) == 0
    figs = await store.figures(cid, now - timedelta(days=10), now + timedelta(days=20), now)
    assert figs[0].last_30d == 10000
    assert figs[0].period_units == 10000
    assert 29000 < figs[0].forecast < 31000


async def test_given_more_intents_than_a_page_on_the_emulator_when_read_live_then_the_newest_are_found(
    sc: Any, infra: Any, unique: str
) -> None:
    """The emulator lists payment intents oldest first and cannot filter them by customer: a reader that
    looked at the first page only missed every recent intent once the emulator held more than a page."""
    others = [World(sc, f"{unique}o{i}") for i in range(3)]
    for other in others:
        other.card()
        sc.v1.payment_intents.create(params={"amount": 1000, "currency": "usd", "customer": other.id})
    w = World(sc, unique)
    w.card()
    mine = sc.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "customer": w.id})
    reader = StripeLiveReader("sk_test_x", infra.stripe_api_base, emulated=True, list_limit=2)

    objects = await reader.read_customer(w.id)

    assert mine.id in {o.get("id") for o in objects}
