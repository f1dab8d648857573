"""Issue 21's portal leftovers on the real stack (Postgres, the Stripe emulator and its wrapper, the broker):
"Manage in Stripe" creates a Customer Portal session for the signed-in customer only, in the real API's shape,
whose page leads back to the billing home; a billing details or card save in the portal is a contact of its
own, resolved by self-service (Tier 1), once per save."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tests.cards import confirm_like_the_browser
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def stripe_actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


@pytest.fixture(scope="module")
async def tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
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


# ------------------------------------------------------------------------------------ Manage in Stripe
async def test_given_a_signed_in_customer_when_manage_in_stripe_then_a_portal_session_leads_back_to_billing(
    http: httpx.AsyncClient, stripe_actions: StripeActions, infra: Any, unique: str
) -> None:
    # Given a signed-in customer
    world = await build_world({}, stripe_actions, label=f"pm-ok-{unique}")
    # When they press "Manage in Stripe"
    resp = await http.post("/v1/portal/stripe-session", json={}, headers=bearer(infra, world.customer_id))
    # Then a Customer Portal session was created for them, returning to the billing home
    assert resp.status_code == 200, resp.text
    session = resp.json()
    assert session["id"].startswith("bps_")
    assert session["return_url"] == f"{infra.public_base_url.rstrip('/')}/billing"
    # and its page (what the browser opens) names the customer and links back
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(session["url"])
    assert page.status_code == 200
    assert world.customer_id in page.text
    assert f'href="{session["return_url"]}"' in page.text


async def test_given_the_adapter_when_a_pinned_configuration_is_asked_then_the_api_shape_carries_it(
    stripe_actions: StripeActions, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"pm-cfg-{unique}")

    session = await stripe_actions.customer_portal_session(
        world.customer_id, "https://billing.example.test/billing", configuration="bpc_pinned123"
    )

    assert (session.customer, session.configuration) == (world.customer_id, "bpc_pinned123")
    assert session.url.startswith("http")


async def test_given_another_customers_id_or_no_session_when_manage_in_stripe_then_refused(
    http: httpx.AsyncClient, stripe_actions: StripeActions, infra: Any, unique: str
) -> None:
    mine = await build_world({}, stripe_actions, label=f"pm-me-{unique}")
    theirs = await build_world({}, stripe_actions, label=f"pm-them-{unique}")
    headers = bearer(infra, mine.customer_id)

    in_body = await http.post(
        "/v1/portal/stripe-session", json={"customer_id": theirs.customer_id}, headers=headers
    )
    in_query = await http.post(
        f"/v1/portal/stripe-session?customer_id={theirs.customer_id}", json={}, headers=headers
    )
    anonymous = await http.post("/v1/portal/stripe-session", json={})

    assert (in_body.status_code, in_query.status_code, anonymous.status_code) == (403, 403, 401)
    assert "url" not in in_body.json()


async def test_given_a_session_for_an_unknown_customer_when_manage_in_stripe_then_404_not_5xx(
    http: httpx.AsyncClient, infra: Any, unique: str
) -> None:
    resp = await http.post("/v1/portal/stripe-session", json={}, headers=bearer(infra, f"cus_gone{unique}"))

    assert resp.status_code == 404
    assert resp.json()["error"] == "customer_not_found"


# ------------------------------------------------------------------------------------ saves as contacts
async def self_service_outcomes(pg_pool: Any, customer_id: str) -> list[dict[str, Any]]:
    rows = await pg_pool.fetch(
        """SELECT o.contact_id, o.resolved_by, o.message, c.trigger, c.channel, v.status, v.conversation_id,
                  (SELECT count(*) FROM conversation_turns t WHERE t.conversation_id = v.conversation_id
                     AND t.role = 'customer') AS turns
           FROM outcomes o JOIN contacts c ON c.contact_id = o.contact_id
           LEFT JOIN conversations v ON v.conversation_id = c.conversation_id
           WHERE o.customer_id = $1 ORDER BY o.contact_id""",
        customer_id,
    )
    return [dict(r) for r in rows]


async def test_given_a_billing_details_save_when_saved_twice_then_one_self_service_contact_resolved_by_tier1(
    http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    # Given a customer on the billing details form
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"pc-det-{unique}")
    body = {"company_name": "Zoë Łukasiewicz GmbH", "tax_id": "DE 136 695 976", "request_id": f"pc-{unique}"}
    headers = bearer(infra, world.customer_id)
    # When the change is saved, and the same save arrives again
    assert (await http.put("/v1/portal/billing-details", json=body, headers=headers)).status_code == 200
    assert (await http.put("/v1/portal/billing-details", json=body, headers=headers)).status_code == 200
    # Then it is one contact, started by self-service on the dashboard, resolved by Tier 1
    [found] = await self_service_outcomes(pg_pool, world.customer_id)
    assert (found["resolved_by"], found["trigger"], found["channel"]) == ("tier1", "selfheal", "dashboard")
    payload = found["message"]["payload"]
    assert payload["trigger"] == "selfheal"
    assert payload["intent"] == "update_billing_details"
    assert payload["actions"] == ["update_billing_details"]
    assert "company name and VAT / tax id" in payload["summary"]
    # with the customer's turn in a resolved conversation (their history lists it)
    assert (found["status"], found["turns"]) == ("resolved", 1)


async def test_given_a_card_saved_in_the_portal_when_saved_then_a_self_service_contact_counts_it(
    http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"pc-card-{unique}")
    headers = bearer(infra, world.customer_id)
    setup = (await http.post("/v1/portal/card/setup", json={}, headers=headers)).json()
    assert (await confirm_like_the_browser(setup)).status_code == 200

    saved = await http.post("/v1/portal/card", json={"setup_intent": setup["setup_intent"]}, headers=headers)

    assert saved.status_code == 202, saved.text
    [found] = await self_service_outcomes(pg_pool, world.customer_id)
    assert (found["resolved_by"], found["trigger"], found["status"]) == ("tier1", "selfheal", "resolved")
    assert "card" in found["message"]["payload"]["summary"]
