"""Sign-in that fits a product, notifications on account changes, and the account history, on the real
stack: tier 1 takes the product's JWTs (a loopback JWKS endpoint), the console takes an identity
provider's; a billing email change made in the portal reaches the customer by email, the support team in
Slack (a loopback webhook receiver) and the topic, once each, and shows in both histories."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from schemas.messages import BillingChangeRecordedV1
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.notifier.app import create_service as create_notifier
from services.notifier.settings import NotifierSettings
from services.tier1_selfheal.app import create_service as create_tier1
from services.tier1_selfheal.auth import issue_session_token
from services.tier1_selfheal.settings import Tier1Settings
from services.tier3_handoff.app import create_service as create_tier3
from services.tier3_handoff.auth import issue_agent_token
from services.tier3_handoff.settings import Tier3Settings
from tests.helpers import read_topic
from tests.integration.test_tier3_handoff import escalation
from tests.unit.test_jwks import AUDIENCE, ISSUER, REFUSED, IdentityProvider, serving
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import publish
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

CONSOLE_AUDIENCE = "tierline-console-oidc"


class SlackReceiver:
    """A loopback stand-in for a Slack incoming webhook: records each POSTed JSON body."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, customer_id: str) -> list[str]:
        return [m["text"] for m in self.messages if f"`{customer_id}`" in m["text"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add("rsa-1")
    provider.add("ec-1", "ES256")
    with serving(provider) as served:
        yield served


@pytest.fixture(scope="module")
def slack() -> Iterator[SlackReceiver]:
    receiver = SlackReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
async def services(
    infra: Any, pg_pool: Any, idp: IdentityProvider, slack: SlackReceiver
) -> AsyncIterator[dict[str, Any]]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    tier1_port, tier3_port = free_port(), free_port()
    tier1 = create_tier1(
        Tier1Settings(
            **{**infra.model_dump(), "http_port": tier1_port},
            tier1_jwks_url=idp.url,
            tier1_jwks_issuer=ISSUER,
            tier1_jwks_audience=AUDIENCE,
        ),
        diagnostics=diagnostics,
    )
    tier3 = create_tier3(
        infra.model_copy(update={"http_port": tier3_port}),
        Tier3Settings(
            sla_check_interval_s=0.5,
            oidc_jwks_url=idp.url,
            oidc_issuer=ISSUER,
            oidc_audience=CONSOLE_AUDIENCE,
        ),
        diagnostics=diagnostics,
    )
    notifier = create_notifier(
        infra.model_copy(update={"http_port": free_port(), "smtp_inbound_port": None}),
        notifier=NotifierSettings(
            slack_webhook_url=SecretStr(slack.url),
            notify_max_per_customer=20,
            inbound_enabled=False,
            change_channels={"cancellation": ["slack"]},  # per kind of change: this one to the team only
        ),
    )
    for svc in (tier1, tier3, notifier):
        await svc.start()
    try:
        yield {
            "tier1": f"http://127.0.0.1:{tier1_port}",
            "tier3": f"http://127.0.0.1:{tier3_port}",
            "broker": tier1.broker,
        }
    finally:
        for svc in (notifier, tier3, tier1):
            await svc.stop()


def product_token(idp: IdentityProvider, customer_id: str, kid: str = "rsa-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {idp.token(kid, stripe_customer_id=customer_id)}"}


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.3)


def mails(stack: Any, address: str, needle: str) -> list[dict[str, Any]]:
    box = Path(stack.smtp().maildir)
    found = []
    for f in sorted(box.glob("*.json")) if box.exists() else []:
        rec = json.loads(f.read_text())
        if address in rec["rcpt_tos"] and needle in rec["data"]:
            found.append(rec)
    return found


async def fix(
    http: httpx.AsyncClient, headers: dict[str, str], params: dict[str, Any], request_id: str
) -> dict[str, Any]:
    resp = await http.post(
        "/v1/health-meter/fixes",
        headers=headers,
        json={"action": "update_billing_details", "params": params, "request_id": request_id},
    )
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


async def resolved(http: httpx.AsyncClient, headers: dict[str, str], contact_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await http.get(f"/v1/health-meter/contacts/{contact_id}", headers=headers)).json()
        return body if body.get("status") in ("resolved", "handed_to_tier2", "escalated") else None

    body: dict[str, Any] = await eventually(done)
    assert body["status"] == "resolved", body
    return body


# --------------------------------------------------------------------------------------------- sign-in
async def test_given_product_and_idp_tokens_when_they_sign_in_then_valid_ones_in_and_forged_ones_401(
    services: dict[str, Any], idp: IdentityProvider, infra: Any
) -> None:
    async with httpx.AsyncClient(base_url=services["tier1"], timeout=30) as http:
        # Given the product's sign-in token for customer A: the portal opens A's history (and the meter)
        ok = await http.get("/v1/portal/history", headers=product_token(idp, "cus_SigninA"))
        assert ok.status_code == 200, ok.text
        assert ok.json()["customer_id"] == "cus_SigninA"
        es = await http.get("/v1/portal/history", headers=product_token(idp, "cus_SigninA", kid="ec-1"))
        assert es.status_code == 200, es.text
        # tierline's own session tokens keep working beside them
        own = issue_session_token(infra.customer_token_keyset(), "cus_SigninA", 600)
        assert (
            await http.get("/v1/portal/history", headers={"Authorization": f"Bearer {own}"})
        ).status_code == 200
        # When A's token names customer B, Then 403: a token for A never opens B's data
        other = await http.get(
            "/v1/portal/history?customer_id=cus_SigninB", headers=product_token(idp, "cus_SigninA")
        )
        assert other.status_code == 403
        # When a token is forged, foreign, expired or names an unknown key, Then 401
        for case, make in sorted(REFUSED.items()):
            token = make(idp)
            resp = await http.get("/v1/portal/history", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 401, (case, resp.text)
    async with httpx.AsyncClient(base_url=services["tier3"], timeout=30) as console:
        # Given the identity provider's token for a lead, the console knows her name, queues and role
        lead = idp.token(
            "ec-1",
            aud=CONSOLE_AUDIENCE,
            preferred_username="lena@acme.test",
            tierline_queues=["billing", "risk"],
            groups=["billing-approvers"],
        )
        me = await console.get("/v1/console/me", headers={"Authorization": f"Bearer {lead}"})
        assert me.status_code == 200, me.text
        assert me.json() == {
            "agent_id": "lena@acme.test",
            "queues": ["billing", "risk"],
            "roles": ["approver"],
        }
        # a portal token (another audience) and a forged one are refused; tierline's agent tokens still work
        for bad in (
            idp.token("rsa-1", tierline_queues=["billing"]),
            REFUSED["HS256 keyed with the public key"](idp),
        ):
            assert (
                await console.get("/v1/console/me", headers={"Authorization": f"Bearer {bad}"})
            ).status_code == 401
        own_agent = issue_agent_token(infra.agent_token_keyset(), "ana", ["billing"])
        mine = await console.get("/v1/console/me", headers={"Authorization": f"Bearer {own_agent}"})
        assert mine.json()["agent_id"] == "ana"


# ------------------------------------------------------------------------------- a change, told once
async def test_given_billing_email_changed_in_portal_when_done_then_email_slack_topic_once_and_history(
    services: dict[str, Any],
    idp: IdentityProvider,
    slack: SlackReceiver,
    infra: Any,
    stack: Any,
    pg_pool: Any,
    unique: str,
) -> None:
    # Given a customer whose billing email is old@, signed in with the product's own token
    old, new = f"old-{unique}@acme.test", f"new-{unique}@acme.test"
    world = await build_world({"customer": {"email": old}}, StripeActions(infra), label=f"notify-{unique}")
    customer = world.customer_id
    headers = product_token(idp, customer)
    async with httpx.AsyncClient(base_url=services["tier1"], timeout=30) as http:
        # When a teammate changes the billing email in the portal
        first = await fix(http, headers, {"billing_email": new}, f"email-{unique}")
        await resolved(http, headers, first["contact_id"])
        # Then both addresses hear of it, the support team gets a Slack message, the topic an event
        await eventually(lambda: _now(mails(stack, old, "Your billing email was changed")))
        await eventually(lambda: _now(mails(stack, new, "Your billing email was changed")))
        await eventually(lambda: _now(slack.about(customer)))
        events = await read_topic(
            infra.kafka_bootstrap, BillingChangeRecordedV1.TOPIC, lambda m: m.get("customer_id") == customer
        )
        assert events[0]["payload"]["change"] == "billing_email"
        assert (events[0]["payload"]["before"], events[0]["payload"]["after"]) == (
            {"email": old},
            {"email": new},
        )
        # When the same request comes again and the event is delivered a second time
        again = await fix(http, headers, {"billing_email": new}, f"email-{unique}")
        assert again["duplicate"] is True
        await publish(services["broker"], BillingChangeRecordedV1.model_validate(events[0]))
        # ... and then another change (same customer, same partitions: handled after the duplicates)
        second = await fix(http, headers, {"company_name": f"Acme {unique} GmbH"}, f"name-{unique}")
        await resolved(http, headers, second["contact_id"])
        await eventually(lambda: _now(len(slack.about(customer)) >= 2))
        await eventually(lambda: _now(mails(stack, new, "company details on your invoices changed")))
        # Then the email change was told once on every channel
        assert len(mails(stack, old, "Your billing email was changed")) == 1
        assert len(mails(stack, new, "Your billing email was changed")) == 1
        texts = slack.about(customer)
        assert len(texts) == 2, texts
        assert sum("Billing email changed" in t for t in texts) == 1, texts
        assert f"{old} → {new}" in next(t for t in texts if "Billing email" in t)
        events = await read_topic(
            infra.kafka_bootstrap,
            BillingChangeRecordedV1.TOPIC,
            lambda m: m.get("customer_id") == customer,
            min_count=3,
        )
        by_kind = {
            e["payload"]["change"]: {
                x["message_id"] for x in events if x["payload"]["change"] == e["payload"]["change"]
            }
            for e in events
        }
        assert {k: len(v) for k, v in by_kind.items()} == {"billing_email": 1, "company_details": 1}
        # And the customer's history shows both, newest first, with who and before → after
        history = (await http.get("/v1/portal/history", headers=headers)).json()["events"]
        assert [e["change"] for e in history] == ["company_details", "billing_email"]
        assert (history[1]["before"], history[1]["after"]) == ({"email": old}, {"email": new})
        assert history[1]["who_kind"] == "selfheal"
        # another customer's history holds none of it
        stranger = (
            await http.get("/v1/portal/history", headers=product_token(idp, f"cus_X{unique[:12]}"))
        ).json()
        assert stranger["events"] == []
    # And an agent signed in through the identity provider sees it on the customer's case
    msg = escalation(unique, suffix="-hist", customer_id=customer)
    await publish(services["broker"], msg)
    case = await eventually(
        lambda: pg_pool.fetchrow("SELECT * FROM cases WHERE contact_id=$1", msg.contact_id)
    )
    agent = idp.token(
        "rsa-1", aud=CONSOLE_AUDIENCE, preferred_username="ana", tierline_queues=[case["queue"]]
    )
    async with httpx.AsyncClient(base_url=services["tier3"], timeout=30) as console:
        view = await console.get(f"/v1/cases/{case['case_id']}", headers={"Authorization": f"Bearer {agent}"})
        assert view.status_code == 200, view.text
        assert [h["change"] for h in view.json()["account_history"]] == ["company_details", "billing_email"]
        outsider = idp.token(
            "rsa-1", aud=CONSOLE_AUDIENCE, preferred_username="bo", tierline_queues=["nobody"]
        )
        denied = await console.get(
            f"/v1/cases/{case['case_id']}", headers={"Authorization": f"Bearer {outsider}"}
        )
        assert denied.status_code == 403


async def test_given_cancellation_configured_slack_only_when_cancelled_then_slack_and_history_but_no_email(
    services: dict[str, Any], idp: IdentityProvider, slack: SlackReceiver, infra: Any, stack: Any, unique: str
) -> None:
    # Given a subscribed customer, and cancellations configured to reach the team's Slack only
    email = f"cancel-{unique}@acme.test"
    world = await build_world({"customer": {"email": email}}, StripeActions(infra), label=f"cancel-{unique}")
    customer = world.customer_id
    headers = product_token(idp, customer)
    async with httpx.AsyncClient(base_url=services["tier1"], timeout=30) as http:
        # When the customer cancels at period end in the portal, and later changes the billing email
        resp = await http.post(
            "/v1/health-meter/fixes", headers=headers, json={"action": "cancel_subscription"}
        )
        assert resp.status_code == 202, resp.text
        await resolved(http, headers, resp.json()["contact_id"])
        later = await fix(http, headers, {"billing_email": f"new-{email}"}, f"after-cancel-{unique}")
        await resolved(http, headers, later["contact_id"])
        await eventually(lambda: _now(mails(stack, email, "Your billing email was changed")))
        await eventually(lambda: _now(len(slack.about(customer)) >= 2))
        # Then the team heard of the cancellation in Slack, the customer got no email about it
        assert sum("Subscription changed" in t for t in slack.about(customer)) == 1
        assert mails(stack, email, "Your subscription is set to end") == []
        # And the history shows it: cancels at period end, no → yes
        history = (await http.get("/v1/portal/history", headers=headers)).json()["events"]
        assert [e["change"] for e in history] == ["billing_email", "cancellation"]
        assert history[1]["before"]["cancel_at_period_end"] is False
        assert history[1]["after"]["cancel_at_period_end"] is True


async def _now(value: Any) -> Any:
    return value
