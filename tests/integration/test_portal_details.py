"""The billing details form and the card page's API on the real stack (Postgres, the Stripe emulator, the
broker): a change reaches Stripe and the mirror once through the executor; an invalid VAT id changes
nothing; Stripe unreachable is a clear 503 with nothing changed; another customer's ids are refused; a card
reaches tierline only as a confirmed SetupIntent id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.adapters.stripe_cards import StripeCardVault
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import CustomerKeys, issue_session_token
from services.tier1_selfheal.portal_details import STRIPE_DOWN, PortalDeps, portal_details_routes
from tests.cards import confirm_like_the_browser
from tierline.actions import ActionExecutor
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import VISA, build_world


@pytest.fixture(scope="module")
async def stripe_actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


@pytest.fixture(scope="module")
async def diagnostics(infra: Any, pg_pool: Any) -> Any:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    return InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )


@pytest.fixture(scope="module")
async def tier1(infra: Any, diagnostics: Any) -> AsyncIterator[Any]:
    settings = infra.model_copy(update={"http_port": free_port()})
    svc = create_service(settings, diagnostics=diagnostics)
    await svc.start()
    svc.state["base_url"] = f"http://127.0.0.1:{settings.http_port}"
    await asyncio.sleep(4)  # consumer group join (the card page's retries go through the topic)
    yield svc
    await svc.stop()


@pytest.fixture
async def http(tier1: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tier1.state["base_url"], timeout=60) as client:
        yield client


def bearer(infra: Any, customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(infra.customer_token_keyset(), customer_id, 600)}"}


async def ledger_rows(pg_pool: Any, customer_id: str) -> list[Any]:
    return list(
        await pg_pool.fetch(
            "SELECT status, contact_id, target FROM action_ledger "
            "WHERE customer_id=$1 AND action='update_billing_details'",
            customer_id,
        )
    )


async def tax_ids(stripe_actions: StripeActions, customer_id: str) -> list[tuple[str, str]]:
    found = await stripe_actions.raw_get(f"/v1/customers/{customer_id}/tax_ids")
    return [(t["type"], t["value"]) for t in found["data"]]


FORM: dict[str, Any] = {
    "company_name": "Acme GmbH",
    "address": {"line1": "Hauptstr. 5", "postal_code": "10115", "city": "Berlin", "country": "de"},
    "tax_id": "DE 136 695 976",
}


async def test_given_valid_details_when_saved_then_stripe_and_mirror_hold_them_once(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    # Given a German customer with no tax id
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"pd-ok-{unique}")
    headers = bearer(infra, world.customer_id)
    body = {**FORM, "billing_email": f"ap-{unique}@acme.io", "request_id": f"pd-{unique}"}
    # When the form is saved, and the same save arrives again (a double click)
    first = await http.put("/v1/portal/billing-details", json=body, headers=headers)
    second = await http.put("/v1/portal/billing-details", json=body, headers=headers)
    # Then Stripe holds the new details and exactly one tax id
    assert first.status_code == 200, first.text
    assert second.status_code == 200
    assert second.json()["replayed"] is True
    customer = await stripe_actions.get_customer(world.customer_id)
    assert (customer["name"], customer["email"]) == ("Acme GmbH", f"ap-{unique}@acme.io")
    assert customer["address"]["line1"] == "Hauptstr. 5"
    assert customer["address"]["country"] == "DE"
    assert await tax_ids(stripe_actions, world.customer_id) == [("eu_vat", "DE136695976")]
    # And the mirror, which the page reads back, holds the same
    row = await pg_pool.fetchrow(
        "SELECT email, name, address, tax_ids FROM stripe_customers WHERE id=$1", world.customer_id
    )
    assert (row["email"], row["name"], row["address"]["city"]) == (
        f"ap-{unique}@acme.io",
        "Acme GmbH",
        "Berlin",
    )
    assert row["tax_ids"] == [{"type": "eu_vat", "value": "DE136695976"}]
    shown = (await http.get("/v1/portal/billing-details", headers=headers)).json()
    assert shown["source"] == "mirror"
    assert shown["tax_ids"] == [{"type": "eu_vat", "value": "DE136695976"}]
    assert first.json()["company_name"] == "Acme GmbH"
    # And the executor ran the change once
    assert [r["status"] for r in await ledger_rows(pg_pool, world.customer_id)] == ["succeeded"]


async def test_given_invalid_vat_and_email_when_saved_then_422_per_field_and_nothing_changed(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"pd-bad-{unique}")
    headers = bearer(infra, world.customer_id)
    # When the form carries a VAT id with a wrong check digit and an email without a domain
    resp = await http.put(
        "/v1/portal/billing-details",
        json={**FORM, "tax_id": "DE123456789", "billing_email": "ap@acme"},
        headers=headers,
    )
    # Then each field says what is wrong, and nothing reached Stripe or the executor
    assert resp.status_code == 422
    fields = resp.json()["fields"]
    assert "check-digit" in fields["tax_id"]
    assert "email" in fields["billing_email"]
    assert set(fields) == {"tax_id", "billing_email"}
    assert (await stripe_actions.get_customer(world.customer_id)).get("name") != "Acme GmbH"
    assert await tax_ids(stripe_actions, world.customer_id) == []
    assert await ledger_rows(pg_pool, world.customer_id) == []
    # And a Swiss UID that does not add up is refused too, with a valid example to follow
    swiss = await http.put(
        "/v1/portal/billing-details", json={"tax_id": "CHE-123.456.789 MWST"}, headers=headers
    )
    assert swiss.status_code == 422
    assert "CHE-107.787.577" in swiss.json()["fields"]["tax_id"]


async def test_given_stripe_unreachable_when_saved_then_503_and_nothing_changed(
    tier1: Any, stripe_actions: StripeActions, pg_pool: Any, infra: Any, diagnostics: Any, unique: str
) -> None:
    # Given the details form wired to a Stripe that does not answer (nothing listens on its port)
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"pd-down-{unique}")
    down = infra.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{free_port()}"})
    executor = ActionExecutor(pool=pg_pool, broker=tier1.broker, settings=down, diagnostics=diagnostics)
    deps = PortalDeps(pg_pool, executor, StripeCardVault(down), CustomerKeys.from_settings(infra))
    app = Starlette(routes=portal_details_routes(lambda: deps))
    await diagnostics.diagnose(world.customer_id)  # the mirror row as the diagnosis leaves it
    before = await pg_pool.fetchrow(
        "SELECT name, tax_ids FROM stripe_customers WHERE id=$1", world.customer_id
    )
    # When the customer saves valid details
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.put(
            "/v1/portal/billing-details", json=FORM, headers=bearer(infra, world.customer_id)
        )
    # Then they are told plainly that nothing changed, and nothing did: Stripe, mirror, ledger
    assert resp.status_code == 503
    assert resp.json() == {"error": "stripe_unavailable", "detail": STRIPE_DOWN}
    assert (await stripe_actions.get_customer(world.customer_id)).get("name") != "Acme GmbH"
    assert await tax_ids(stripe_actions, world.customer_id) == []
    after = await pg_pool.fetchrow(
        "SELECT name, tax_ids FROM stripe_customers WHERE id=$1", world.customer_id
    )
    assert after == before
    assert [r["status"] for r in await ledger_rows(pg_pool, world.customer_id)] == []


async def test_given_another_customers_ids_when_used_on_each_route_then_refused(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, infra: Any, unique: str
) -> None:
    mine = await build_world({}, stripe_actions, label=f"pd-me-{unique}")
    theirs = await build_world({}, stripe_actions, label=f"pd-them-{unique}")
    headers = bearer(infra, mine.customer_id)
    other = theirs.customer_id
    # details: reading or writing another customer's account
    got = await http.get(f"/v1/portal/billing-details?customer_id={other}", headers=headers)
    assert got.status_code == 403
    put = await http.put(
        "/v1/portal/billing-details", json={"customer_id": other, "company_name": "Evil"}, headers=headers
    )
    assert put.status_code == 403
    assert (await stripe_actions.get_customer(other)).get("name") != "Evil"
    # card setup for another customer
    setup = await http.post("/v1/portal/card/setup", json={"customer_id": other}, headers=headers)
    assert setup.status_code == 403
    # another customer's confirmed SetupIntent cannot become my card (nor theirs be touched)
    their_setup = (await http.post("/v1/portal/card/setup", json={}, headers=bearer(infra, other))).json()
    assert (await confirm_like_the_browser(their_setup)).status_code == 200
    stolen = await http.post(
        "/v1/portal/card", json={"setup_intent": their_setup["setup_intent"]}, headers=headers
    )
    assert stolen.status_code == 404
    card = await http.post(
        "/v1/portal/card",
        json={"setup_intent": their_setup["setup_intent"], "customer_id": other},
        headers=headers,
    )
    assert card.status_code == 403
    # and without a session, nothing at all
    assert (await http.get("/v1/portal/billing-details")).status_code == 401
    assert (await http.post("/v1/portal/card/setup", json={})).status_code == 401


async def test_given_card_page_flow_when_card_confirmed_at_stripe_then_default_set_and_no_card_data_sent(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"pd-card-{unique}")
    headers = bearer(infra, world.customer_id)
    # The raw-card endpoint is gone, and the new one refuses anything that looks like card data
    card = {"number": VISA, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    assert (await http.post("/v1/update-card", json={"card": card}, headers=headers)).status_code == 410
    setup_resp = await http.post("/v1/portal/card/setup", json={}, headers=headers)
    assert setup_resp.status_code == 201
    setup = setup_resp.json()
    assert setup["mode"] == "emulator"
    assert setup["publishable_key"].startswith("pk_")
    assert setup["api_base"] == infra.stripe_api_base.rstrip("/")
    refused = await http.post(
        "/v1/portal/card", json={"setup_intent": setup["setup_intent"], "card": card}, headers=headers
    )
    assert refused.status_code == 422
    # An unconfirmed SetupIntent collected no card yet
    unconfirmed = await http.post(
        "/v1/portal/card", json={"setup_intent": setup["setup_intent"]}, headers=headers
    )
    assert unconfirmed.status_code == 422
    # When the browser confirms the SetupIntent at the emulator, and the page sends only its id
    assert (await confirm_like_the_browser(setup)).status_code == 200
    saved = await http.post("/v1/portal/card", json={"setup_intent": setup["setup_intent"]}, headers=headers)
    again = await http.post("/v1/portal/card", json={"setup_intent": setup["setup_intent"]}, headers=headers)
    # Then the card is the customer's default in Stripe and in the mirror, set once through the executor
    assert saved.status_code == again.status_code == 202, saved.text
    assert saved.json()["card"]["last4"] == "4242"
    customer = await stripe_actions.get_customer(world.customer_id)
    pm_id = customer["invoice_settings"]["default_payment_method"]
    assert (await stripe_actions.get_payment_method(pm_id))["customer"] == world.customer_id
    mirrored = await pg_pool.fetchrow(
        "SELECT c.default_payment_method, p.last4, p.customer_id FROM stripe_customers c "
        "JOIN stripe_payment_methods p ON p.id = c.default_payment_method WHERE c.id=$1",
        world.customer_id,
    )
    assert tuple(mirrored) == (pm_id, "4242", world.customer_id)
    assert [r["status"] for r in await ledger_rows(pg_pool, world.customer_id)] == ["succeeded"]


async def test_given_a_session_for_an_unknown_customer_when_details_used_then_404_not_5xx(
    tier1: Any, http: httpx.AsyncClient, infra: Any, unique: str
) -> None:
    headers = bearer(infra, f"cus_nobody{unique}")
    assert (await http.get("/v1/portal/billing-details", headers=headers)).status_code == 404
    put = await http.put("/v1/portal/billing-details", json={"company_name": "Acme"}, headers=headers)
    assert put.status_code == 404
    assert (await http.post("/v1/portal/card/setup", json={}, headers=headers)).status_code == 404
