"""Tier 1 on the real broker, Postgres and Stripe emulator: the Health Meter API, the consumer, the executor.

One service per module (consumer-group joins are slow); every test builds its own customer world.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Action, Tier
from schemas.messages import (
    AgentRequestedV1,
    EscalationOpenedV1,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Sender,
)
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tests.cards import attach_default_card, confirm_like_the_browser
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import publish
from tierline.stripe_adapter import StripeActions, ref_id
from tierline.tokens import KeySet
from tierline_tools.stack.procs import free_port
from tierline_tools.world import VISA, build_world

pytestmark = pytest.mark.integration

WATCHED = (AgentRequestedV1.TOPIC, EscalationOpenedV1.TOPIC, SelfhealRequestedV1.TOPIC)


class Collector:
    """Reads the output topics from their current end (no consumer group: no join delay)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        parts = [
            TopicPartition(t, p) for t in WATCHED for p in (self.consumer.partitions_for_topic(t) or range(4))
        ]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            self.messages.append((record.topic, json.loads(record.value)))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()

    def of(self, topic: str, customer_id: str) -> list[dict[str, Any]]:
        return [m for t, m in self.messages if t == topic and m.get("customer_id") == customer_id]

    async def wait_for(self, topic: str, customer_id: str, within_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            found = self.of(topic, customer_id)
            if found:
                return found[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"nothing on {topic} for {customer_id} within {within_s}s")


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
    collector = Collector(infra.kafka_bootstrap)
    await collector.start()
    await svc.start()
    svc.state["collector"] = collector
    svc.state["base_url"] = f"http://127.0.0.1:{settings.http_port}"
    svc.state["keys"] = settings.customer_token_keyset()
    await asyncio.sleep(4)  # let the consumer group settle before the first request
    yield svc
    await svc.stop()
    await collector.stop()


@pytest.fixture
async def http(tier1: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tier1.state["base_url"], timeout=30) as client:
        yield client


def bearer(tier1: Any, customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(tier1.state['keys'], customer_id, 600)}"}


async def declined_world(
    stripe_actions: StripeActions,
    unique: str,
    code: str = "insufficient_funds",
    card: str = "declined_insufficient_funds",
) -> Any:
    return await build_world(
        {"card": card, "failed_invoice": {"amount_usd": 49, "decline_code": code}},
        stripe_actions,
        label=f"t1-{unique}",
    )


async def wait_status(
    http: httpx.AsyncClient, headers: dict[str, str], contact_id: str, want: set[str], within_s: float = 45.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = await http.get(f"/v1/health-meter/contacts/{contact_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in want:
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"contact {contact_id} still {body.get('status')} after {within_s}s: {body}")


async def ledger_rows(pg_pool: Any, customer_id: str, action: str) -> list[Any]:
    return list(
        await pg_pool.fetch(
            "SELECT * FROM action_ledger WHERE customer_id=$1 AND action=$2", customer_id, action
        )
    )


# ---------------------------------------------------------------------------------------------- auth


async def test_given_no_or_forged_token_when_calling_the_meter_then_401(http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/health-meter")).status_code == 401
    forged = issue_session_token(
        KeySet.single("customer", "c1", "not-the-product-key-not-the-product-key"), "cus_x"
    )
    resp = await http.get("/v1/health-meter", headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401
    assert (await http.post("/v1/health-meter/fixes", json={"action": "retry_payment"})).status_code == 401


# ---------------------------------------------------------------------------------------------- retry


async def test_given_soft_decline_when_retry_clicked_twice_then_paid_once_and_resolved_by_tier1(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str, infra: Any
) -> None:
    # Given a customer whose $49 invoice was declined for insufficient funds, who has since fixed the funding
    world = await declined_world(stripe_actions, unique)
    await attach_default_card(stripe_actions, world.customer_id)
    headers = bearer(tier1, world.customer_id)
    meter = (await http.get("/v1/health-meter", headers=headers)).json()
    assert meter["status"] == "red"
    assert meter["root_cause"] == "card_declined_insufficient_funds"
    assert [f["action"] for f in meter["fixes"]][:1] == ["retry_payment"]
    # When the retry button is clicked twice (the same request)
    body = {"action": "retry_payment", "params": meter["fixes"][0]["params"], "request_id": f"rq-{unique}"}
    first = await http.post("/v1/health-meter/fixes", json=body, headers=headers)
    second = await http.post("/v1/health-meter/fixes", json=body, headers=headers)
    # Then both are accepted as one contact, which Tier 1 resolves with the money recovered
    assert first.status_code == second.status_code == 202
    contact_id = first.json()["contact_id"]
    assert second.json()["contact_id"] == contact_id
    assert second.json()["duplicate"] is True
    status = await wait_status(http, headers, contact_id, {"resolved", "handed_to_tier2", "escalated"})
    assert status["status"] == "resolved", status
    assert (status["resolved_by"], status["actions"], status["recovered_usd"]) == (
        "tier1",
        ["retry_payment"],
        49.0,
    )
    invoice = await stripe_actions.get_invoice(world.failed_invoice_id or "")
    assert invoice["status"] == "paid"
    # And the effect happened once: one ledger entry, one outcome, with trigger selfheal
    await asyncio.sleep(1.0)
    rows = await ledger_rows(pg_pool, world.customer_id, "retry_payment")
    assert len(rows) == 1
    assert rows[0]["status"] == "succeeded"
    assert rows[0]["contact_id"] == contact_id
    outcome = await pg_pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", contact_id)
    assert outcome["payload"]["trigger"] == "selfheal"
    assert outcome["payload"]["tier_path"] == ["tier1"]
    # And the meter is no longer red
    after = (await http.get("/v1/health-meter", headers=headers)).json()
    assert after["status"] != "red"


async def test_given_card_still_declining_when_retry_clicked_then_handed_to_tier2_with_what_was_tried(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await declined_world(stripe_actions, unique)
    headers = bearer(tier1, world.customer_id)
    resp = await http.post(
        "/v1/health-meter/fixes",
        headers=headers,
        json={"action": "retry_payment", "params": {"invoice_id": world.failed_invoice_id}},
    )
    assert resp.status_code == 202
    contact_id = resp.json()["contact_id"]
    status = await wait_status(http, headers, contact_id, {"handed_to_tier2", "resolved", "escalated"})
    assert status["status"] == "handed_to_tier2", status
    handoff = await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)
    p = handoff["payload"]
    assert handoff["contact_id"] == contact_id
    assert p["tier_path"] == ["tier1"]
    assert [(t["action"], t["status"], t["tier"]) for t in p["tried"]] == [
        ("retry_payment", "failed", "tier1")
    ]
    assert "declined" in p["handoff_reason"]
    assert await pg_pool.fetchval("SELECT 1 FROM outcomes WHERE contact_id=$1", contact_id) is None
    assert (await stripe_actions.get_invoice(world.failed_invoice_id or ""))["status"] == "open"


async def test_given_hard_decline_when_retry_requested_on_the_topic_then_policy_denies_and_tier2_gets_it(
    tier1: Any, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given an invoice declined as expired_card (a hard decline: never retried)
    world = await declined_world(stripe_actions, unique, code="expired_card", card="declined_generic")
    # When a dashboard publishes a retry request directly on the topic
    msg = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.RETRY_PAYMENT,
            source="dashboard",
            sender=Sender(kind="customer_session", subject=world.customer_id),
        ),
        contact_id=f"t1-deny-{unique}",
        customer_id=world.customer_id,
    )
    await publish(tier1.broker, msg)
    # Then nothing is charged, the denial is ledgered, and Tier 2 gets the contact with the denial
    handoff = await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)
    tried = handoff["payload"]["tried"]
    assert [(t["action"], t["status"]) for t in tried] == [("retry_payment", "denied")]
    assert "policy denied" in handoff["payload"]["handoff_reason"]
    rows = await ledger_rows(pg_pool, world.customer_id, "retry_payment")
    assert [r["status"] for r in rows] == ["denied"]
    assert (await stripe_actions.get_invoice(world.failed_invoice_id or ""))["status"] == "open"


# ---------------------------------------------------------------------------------------------- tenants


async def test_given_other_customers_ids_when_requesting_then_403_and_nothing_published(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    victim = await declined_world(stripe_actions, f"v-{unique}")
    attacker = f"cus_attacker_{unique}"
    headers = bearer(tier1, attacker)
    # a fix for someone else's account
    resp = await http.post(
        "/v1/health-meter/fixes",
        headers=headers,
        json={"action": "retry_payment", "customer_id": victim.customer_id},
    )
    assert resp.status_code == 403
    assert (
        await http.get(f"/v1/health-meter?customer_id={victim.customer_id}", headers=headers)
    ).status_code == 403
    assert (
        await http.post("/v1/health-meter/human", headers=headers, json={"customer_id": victim.customer_id})
    ).status_code == 403
    # someone else's contact
    own = await http.post(
        "/v1/health-meter/fixes",
        headers=bearer(tier1, victim.customer_id),
        json={"action": "send_update_card_link"},
    )
    peek = await http.get(f"/v1/health-meter/contacts/{own.json()['contact_id']}", headers=headers)
    assert peek.status_code == 403
    # someone else's invoice through the pay page
    pay = await http.post(f"/v1/pay/{victim.failed_invoice_id}", headers=headers)
    assert pay.status_code == 403
    await asyncio.sleep(2)
    collector = tier1.state["collector"]
    assert collector.of(SelfhealRequestedV1.TOPIC, attacker) == []
    published_for_victim = collector.of(SelfhealRequestedV1.TOPIC, victim.customer_id)
    assert [m["payload"]["action"] for m in published_for_victim] == ["send_update_card_link"]
    assert await ledger_rows(pg_pool, victim.customer_id, "retry_payment") == []


async def test_given_session_for_another_customer_on_the_topic_when_consumed_then_escalated_and_no_action(
    tier1: Any, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    victim = await declined_world(stripe_actions, unique)
    msg = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.RETRY_PAYMENT,
            source="dashboard",
            sender=Sender(kind="customer_session", subject=f"cus_other_{unique}"),
        ),
        contact_id=f"t1-tenant-{unique}",
        customer_id=victim.customer_id,
    )
    await publish(tier1.broker, msg)
    esc = await tier1.state["collector"].wait_for(EscalationOpenedV1.TOPIC, victim.customer_id)
    assert esc["payload"]["reason"] == "policy_denied"
    assert esc["payload"]["opened_by"] == "tier1"
    assert esc["payload"]["actions_tried"] == []
    assert await pg_pool.fetch("SELECT 1 FROM action_ledger WHERE customer_id=$1", victim.customer_id) == []


async def test_given_same_message_twice_on_the_topic_when_consumed_then_one_effect(
    tier1: Any, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-dup-{unique}")
    msg = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.SEND_UPDATE_CARD_LINK,
            source="dashboard",
            sender=Sender(kind="customer_session", subject=world.customer_id),
        ),
        contact_id=f"t1-dup-{unique}",
        customer_id=world.customer_id,
    )
    await publish(tier1.broker, msg)
    await publish(tier1.broker, msg)
    deadline = time.monotonic() + 30
    while (  # noqa: ASYNC110 - polling Postgres: there is no event to wait on
        time.monotonic() < deadline
        and await pg_pool.fetchval("SELECT 1 FROM outcomes WHERE contact_id=$1", msg.contact_id) is None
    ):
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.5)
    rows = await ledger_rows(pg_pool, world.customer_id, "send_update_card_link")
    assert len(rows) == 1
    assert rows[0]["status"] == "succeeded"
    assert rows[0]["result"]["url"].startswith(tier1.settings.public_base_url + "/update-card?token=")
    outcome = await pg_pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", msg.contact_id)
    assert outcome["payload"]["resolved_by"] == Tier.TIER1.value
    assert await pg_pool.fetchval("SELECT count(*) FROM inbox WHERE message_id=$1", msg.message_id) == 1


# ---------------------------------------------------------------------------------------------- other fixes


async def test_given_valid_and_invalid_vat_when_updating_billing_details_then_one_applied_one_refused(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, unique: str
) -> None:
    world = await build_world({"customer": {"country": "DE"}}, stripe_actions, label=f"t1-vat-{unique}")
    headers = bearer(tier1, world.customer_id)
    bad = await http.post(
        "/v1/health-meter/fixes",
        headers=headers,
        json={
            "action": "update_billing_details",
            "params": {"tax_id": "DE12345", "company_name": "Acme GmbH"},
        },
    )
    assert bad.status_code == 422
    assert "DE136695976" in bad.json()["detail"]
    assert (await stripe_actions.get_customer(world.customer_id)).get("name") != "Acme GmbH"
    good = await http.post(
        "/v1/health-meter/fixes",
        headers=headers,
        json={
            "action": "update_billing_details",
            "params": {
                "tax_id": "DE136695976",
                "company_name": f"Acme {unique} GmbH",
                "billing_email": f"ap-{unique}@acme.io",
            },
        },
    )
    assert good.status_code == 202
    status = await wait_status(
        http, headers, good.json()["contact_id"], {"resolved", "handed_to_tier2", "escalated"}
    )
    assert status["status"] == "resolved", status
    assert status["actions"] == ["update_billing_details"], status
    customer = await stripe_actions.get_customer(world.customer_id)
    assert (customer["name"], customer["email"]) == (f"Acme {unique} GmbH", f"ap-{unique}@acme.io")
    tax = await stripe_actions.raw_get(f"/v1/customers/{world.customer_id}/tax_ids")
    assert [(t["type"], t["value"]) for t in tax["data"]] == [("eu_vat", "DE136695976")]


async def test_given_cancel_clicked_when_done_then_at_period_end_with_retention_offer(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-cancel-{unique}")
    headers = bearer(tier1, world.customer_id)
    resp = await http.post("/v1/health-meter/fixes", headers=headers, json={"action": "cancel_subscription"})
    status = await wait_status(
        http, headers, resp.json()["contact_id"], {"resolved", "handed_to_tier2", "escalated"}
    )
    assert status["status"] == "resolved", status
    assert "keep full access" in status["summary"]
    assert "20%" in status["summary"]
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert sub["cancel_at_period_end"] is True
    assert sub["status"] == "active"


async def test_given_talk_to_a_human_when_clicked_then_tier3_escalation_customer_asked(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, unique: str
) -> None:
    world = await declined_world(stripe_actions, unique)
    headers = bearer(tier1, world.customer_id)
    resp = await http.post("/v1/health-meter/human", headers=headers, json={"text": "I want a person"})
    assert resp.status_code == 202
    esc = await tier1.state["collector"].wait_for(EscalationOpenedV1.TOPIC, world.customer_id, within_s=10)
    p = esc["payload"]
    assert (p["reason"], p["opened_by"], esc["contact_id"]) == (
        "customer_asked",
        "tier1",
        resp.json()["contact_id"],
    )
    assert p["diagnosis"]["root_cause"] == "card_declined_insufficient_funds"
    status = (await http.get(f"/v1/health-meter/contacts/{esc['contact_id']}", headers=headers)).json()
    assert status["status"] == "escalated"


async def test_given_update_card_link_when_new_card_saved_then_open_invoice_retried(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, unique: str
) -> None:
    world = await declined_world(stripe_actions, unique)
    link = await stripe_actions.update_card_link(world.customer_id, tier1.settings.public_base_url)
    token = link.url.split("token=", 1)[1]
    page = await http.get(f"/update-card?token={token}")
    assert page.status_code == 200
    assert "Update your card" in page.text
    # the raw-card door is gone: a card number sent to tierline is refused and goes nowhere
    gone = await http.post(
        f"/v1/update-card?token={token}",
        json={"card": {"number": VISA, "exp_month": 12, "exp_year": 2031, "cvc": "123"}},
    )
    assert gone.status_code == 410
    # a declined card is refused by the emulator when the browser confirms; tierline never sees it
    setup = (await http.post(f"/v1/portal/card/setup?token={token}", json={})).json()
    assert (await confirm_like_the_browser(setup, "4000000000000002")).status_code == 402
    setup = (await http.post(f"/v1/portal/card/setup?token={token}", json={})).json()
    assert (await confirm_like_the_browser(setup)).status_code == 200
    saved = await http.post(f"/v1/portal/card?token={token}", json={"setup_intent": setup["setup_intent"]})
    assert saved.status_code == 202, saved.text
    body = saved.json()
    assert body["card"]["last4"] == "4242"
    assert [r["invoice_id"] for r in body["retries"]] == [world.failed_invoice_id]
    customer = await stripe_actions.get_customer(world.customer_id)
    pm = await stripe_actions.get_payment_method(customer["invoice_settings"]["default_payment_method"])
    assert pm["card"]["last4"] == "4242"
    contact_id = body["retries"][0]["contact_id"]
    deadline = time.monotonic() + 45
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (await http.get(f"/v1/links/contacts/{contact_id}?token={token}")).json()
        if status["status"] != "pending":
            break
        await asyncio.sleep(0.3)
    assert status["status"] == "resolved", status
    assert (await stripe_actions.get_invoice(world.failed_invoice_id or ""))["status"] == "paid"


async def test_given_contact_id_unknown_when_polled_then_404(tier1: Any, http: httpx.AsyncClient) -> None:
    resp = await http.get(
        f"/v1/health-meter/contacts/sh_{uuid.uuid4().hex}", headers=bearer(tier1, "cus_nobody")
    )
    assert resp.status_code == 404


# -------------------------------------------------------------------- every fixer: success, failure, denial
#
# Each fix the meter offers runs once through the real consumer, the shared policy-checked executor and the
# Stripe emulator: it succeeds (the effect is visible in Stripe and ledgered once), fails (handed to Tier 2
# with what was tried, nothing changed), or is refused by policy (handed on or escalated, nothing changed).

SETTLED = {"resolved", "handed_to_tier2", "escalated"}
# an unpaid invoice whose payment link expired
EXPIRED_LINK_WORLD: dict[str, Any] = {
    "subscription": {"status": "past_due"},
    "expired_invoice_link": True,
    "failed_invoice": {"amount_usd": 49, "days_ago": 9, "decline_code": "insufficient_funds"},
}


async def ledger_earlier_runs(
    pg_pool: Any, customer_id: str, action: str, n: int, *, label: str, yesterday: bool = False
) -> None:
    """Record that `action` already succeeded n times for the customer: now, or a minute before
    today began (UTC)."""
    for i in range(n):
        await pg_pool.execute(
            """INSERT INTO action_ledger (idempotency_key, contact_id, customer_id, action, target,
                   tier, actor, status, created_at)
               VALUES ($1, $2, $3, $4, $5, 'tier1', 'selfheal', 'succeeded',
                       CASE WHEN $6 THEN date_trunc('day', now(), 'UTC') - interval '1 minute'
                            ELSE now() END)""",
            f"seed:{label}:{action}:{i}",
            f"seed-{label}-{i}",
            customer_id,
            action,
            f"earlier-{i}",
            yesterday,
        )


async def click(
    http: httpx.AsyncClient, headers: dict[str, str], action: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    resp = await http.post(
        "/v1/health-meter/fixes", headers=headers, json={"action": action, "params": params or {}}
    )
    assert resp.status_code == 202, resp.text
    return await wait_status(http, headers, resp.json()["contact_id"], SETTLED)


def plan_of(sub: dict[str, Any]) -> str:
    """The Stripe plan id a subscription is on (expanded or not, on the item or the subscription)."""
    item = ((sub.get("items") or {}).get("data") or [{}])[0]
    plan = ref_id(item.get("plan") or sub.get("plan") or {})
    assert plan, sub
    return plan


async def test_given_expired_invoice_link_when_regenerate_clicked_then_fresh_link_sent_and_resolved(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given an unpaid invoice whose payment link expired yesterday
    world = await build_world(EXPIRED_LINK_WORLD, stripe_actions, label=f"t1-link-{unique}")
    headers = bearer(tier1, world.customer_id)
    meter = (await http.get("/v1/health-meter", headers=headers)).json()
    assert "regenerate_invoice_link" in [f["action"] for f in meter["fixes"]], meter
    # When
    status = await click(http, headers, "regenerate_invoice_link")
    # Then one fresh link, valid for about 30 days, was made and sent
    assert status["status"] == "resolved", status
    assert status["actions"] == ["regenerate_invoice_link"]
    assert world.failed_invoice_id in status["summary"]
    assert [link["action"] for link in status["links"]] == ["regenerate_invoice_link"]
    invoice = await stripe_actions.get_invoice(world.failed_invoice_id or "")
    expires = int(invoice["metadata"]["tl_link_expires_at"])
    assert 29 * 86400 < expires - time.time() <= 30 * 86400
    rows = await ledger_rows(pg_pool, world.customer_id, "regenerate_invoice_link")
    assert [(r["status"], r["target"]) for r in rows] == [("succeeded", world.failed_invoice_id)]
    assert rows[0]["result"]["url"] == status["links"][0]["url"]


async def test_given_no_open_invoice_when_regenerate_requested_then_failed_and_handed_to_tier2(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-nolink-{unique}")
    headers = bearer(tier1, world.customer_id)
    status = await click(http, headers, "regenerate_invoice_link")
    assert status["status"] == "handed_to_tier2", status
    handoff = await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)
    assert [(t["action"], t["status"]) for t in handoff["payload"]["tried"]] == [
        ("regenerate_invoice_link", "failed")
    ]
    rows = await ledger_rows(pg_pool, world.customer_id, "regenerate_invoice_link")
    assert [r["status"] for r in rows if r["status"] == "succeeded"] == []


async def test_given_paid_invoice_when_send_invoice_clicked_then_document_sent_and_resolved(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-inv-{unique}")
    headers = bearer(tier1, world.customer_id)
    status = await click(http, headers, "send_invoice")
    assert status["status"] == "resolved", status
    assert status["actions"] == ["send_invoice"]
    assert status["links"]
    assert status["links"][0]["url"]
    rows = await ledger_rows(pg_pool, world.customer_id, "send_invoice")
    assert len(rows) == 1
    assert rows[0]["status"] == "succeeded"
    assert rows[0]["target"] in world.invoice_ids + world.charge_ids
    # and it went to the customer's billing email
    assert rows[0]["result"]["sent_to"] == world.email
    assert rows[0]["result"]["url"] == status["links"][0]["url"]


async def test_given_another_customers_invoice_id_when_send_invoice_then_only_own_document_is_sent(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    victim = await build_world({}, stripe_actions, label=f"t1-inv-v-{unique}")
    asker = await build_world({}, stripe_actions, label=f"t1-inv-a-{unique}")
    victim_invoice = victim.invoice_ids[0]
    status = await click(
        http, bearer(tier1, asker.customer_id), "send_invoice", {"invoice_id": victim_invoice}
    )
    assert status["status"] == "resolved", status
    rows = await ledger_rows(pg_pool, asker.customer_id, "send_invoice")
    assert [r["status"] for r in rows] == ["succeeded"]
    assert rows[0]["target"] != victim_invoice
    assert rows[0]["target"] in asker.invoice_ids + asker.charge_ids
    assert victim_invoice not in json.dumps(status)


async def test_given_plan_preview_when_clicked_then_proration_shown_and_nothing_changed(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-prev-{unique}")
    before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    status = await click(
        http, bearer(tier1, world.customer_id), "change_plan", {"plan": "business", "preview_only": True}
    )
    assert status["status"] == "resolved", status
    assert status["summary"].startswith("Preview of moving to business"), status
    assert "Proration: credit $" in status["summary"]
    assert "nothing has changed" in status["summary"]
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before
    assert await ledger_rows(pg_pool, world.customer_id, "change_plan") == []


async def test_given_plan_change_when_clicked_then_subscription_moves_once_with_proration(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({"customer": {"plan": "pro"}}, stripe_actions, label=f"t1-plan-{unique}")
    status = await click(http, bearer(tier1, world.customer_id), "change_plan", {"plan": "business"})
    assert status["status"] == "resolved", status
    assert status["summary"].startswith("Your plan is now business"), status
    assert "net $" in status["summary"]
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert plan_of(sub) == await stripe_actions.ensure_plan("business", 299)
    rows = await ledger_rows(pg_pool, world.customer_id, "change_plan")
    assert [(r["status"], r["target"]) for r in rows] == [("succeeded", world.subscription_id)]
    assert await pg_pool.fetchval("SELECT plan_id FROM subscriptions WHERE id=$1", world.subscription_id) in (
        "business",
        None,
    )


async def test_given_unknown_plan_when_change_requested_then_failed_handed_to_tier2_and_unchanged(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({}, stripe_actions, label=f"t1-noplan-{unique}")
    before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    status = await click(http, bearer(tier1, world.customer_id), "change_plan", {"plan": "platinum"})
    assert status["status"] == "handed_to_tier2", status
    handoff = await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)
    assert "unknown plan 'platinum'" in handoff["payload"]["handoff_reason"]
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before
    assert await ledger_rows(pg_pool, world.customer_id, "change_plan") == []


async def test_given_card_declined_as_stolen_when_plan_change_requested_then_fraud_escalation_no_change(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await declined_world(stripe_actions, unique, code="stolen_card", card="declined_generic")
    before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    status = await click(http, bearer(tier1, world.customer_id), "change_plan", {"plan": "business"})
    assert status["status"] == "escalated", status
    assert status["escalation_reason"] == "fraud"
    esc = await tier1.state["collector"].wait_for(EscalationOpenedV1.TOPIC, world.customer_id)
    assert [d["verdict"] for d in esc["payload"]["policy_decisions"]] == ["needs_human"]
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before
    rows = await ledger_rows(pg_pool, world.customer_id, "change_plan")
    assert [r["status"] for r in rows if r["status"] == "succeeded"] == []


async def test_given_open_dispute_when_cancel_clicked_then_escalated_for_dispute_and_not_cancelled(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given an open dispute, known to billing the way Tier 0's mirror learns it (charge.dispute.created)
    world = await build_world({"dispute_open": True}, stripe_actions, label=f"t1-disp-{unique}")
    [event] = [e for e in world.pending_events if e["type"] == "charge.dispute.created"]
    await MirrorStore(pg_pool).apply_stripe_event(event["type"], event["data"]["object"], event["created"])
    status = await click(http, bearer(tier1, world.customer_id), "cancel_subscription")
    assert status["status"] == "escalated", status
    assert status["escalation_reason"] == "dispute"
    sub = await stripe_actions.get_subscription(world.subscription_id or "")
    assert sub["cancel_at_period_end"] is False


async def test_given_cancelled_subscription_when_cancel_clicked_then_failed_and_handed_to_tier2(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world(
        {"subscription": {"status": "canceled"}}, stripe_actions, label=f"t1-gone-{unique}"
    )
    status = await click(http, bearer(tier1, world.customer_id), "cancel_subscription")
    assert status["status"] in ("handed_to_tier2", "escalated"), status
    rows = await ledger_rows(pg_pool, world.customer_id, "cancel_subscription")
    assert [r["status"] for r in rows if r["status"] == "succeeded"] == []


async def test_given_three_card_links_today_when_a_fourth_is_clicked_then_rate_limited_and_handed_on(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given the daily limit for automatic update-card links (3 in the shipped policy)
    world = await build_world({}, stripe_actions, label=f"t1-rate-{unique}")
    headers = bearer(tier1, world.customer_id)
    for _ in range(3):
        assert (await click(http, headers, "send_update_card_link"))["status"] == "resolved"
    # When a fourth is clicked the same day
    fourth = await click(http, headers, "send_update_card_link")
    # Then policy refuses it, Tier 2 gets the contact with the denial, and no fourth link exists
    assert fourth["status"] == "handed_to_tier2", fourth
    assert "links" not in fourth
    rows = await ledger_rows(pg_pool, world.customer_id, "send_update_card_link")
    assert sorted(r["status"] for r in rows) == ["denied", "succeeded", "succeeded", "succeeded"]
    handoff = await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)
    assert handoff["contact_id"] == fourth["contact_id"]
    assert [(t["action"], t["status"]) for t in handoff["payload"]["tried"]] == [
        ("send_update_card_link", "denied")
    ]


DAILY_LIMITED = [
    # action, params, the shipped policy's daily limit for automatic actors, the world it needs
    ("regenerate_invoice_link", {}, 5, EXPIRED_LINK_WORLD),
    ("send_invoice", {}, 10, {}),
    ("update_billing_details", {"company_name": "Limit Test Ltd"}, 5, {}),
    ("cancel_subscription", {}, 1, {}),
    ("change_plan", {"plan": "business"}, 2, {}),
]


@pytest.mark.parametrize(
    ("action", "params", "limit", "world_spec"), DAILY_LIMITED, ids=[a[0] for a in DAILY_LIMITED]
)
async def test_given_daily_limit_reached_when_fix_clicked_then_policy_denies_and_nothing_changes(
    tier1: Any,
    http: httpx.AsyncClient,
    stripe_actions: StripeActions,
    pg_pool: Any,
    unique: str,
    action: str,
    params: dict[str, Any],
    limit: int,
    world_spec: dict[str, Any],
) -> None:
    # Given a customer for whom this fix already ran `limit` times today (ledgered earlier)
    world = await build_world(world_spec, stripe_actions, label=f"t1-lim-{action}-{unique}")
    await ledger_earlier_runs(pg_pool, world.customer_id, action, limit, label=unique)
    sub_before = await stripe_actions.get_subscription(world.subscription_id or "")
    customer_before = await stripe_actions.get_customer(world.customer_id)
    invoice_before = (
        await stripe_actions.get_invoice(world.failed_invoice_id) if world.failed_invoice_id else None
    )
    # When the customer clicks it once more
    status = await click(http, bearer(tier1, world.customer_id), action, params)
    # Then the policy refuses it and Tier 2 gets the contact with the denial; Stripe is unchanged
    assert status["status"] == "handed_to_tier2", status
    assert "links" not in status
    rows = [
        r
        for r in await ledger_rows(pg_pool, world.customer_id, action)
        if r["contact_id"] == status["contact_id"]
    ]
    assert [r["status"] for r in rows] == ["denied"]
    assert "rate_limited" in (rows[0]["error"] or ""), rows[0]
    sub_after = await stripe_actions.get_subscription(world.subscription_id or "")
    assert sub_after["cancel_at_period_end"] == sub_before["cancel_at_period_end"]
    assert plan_of(sub_after) == plan_of(sub_before)
    assert (await stripe_actions.get_customer(world.customer_id)).get("name") == customer_before.get("name")
    if invoice_before is not None:
        after = await stripe_actions.get_invoice(world.failed_invoice_id or "")
        assert after["metadata"].get("tl_link_expires_at") == invoice_before["metadata"].get(
            "tl_link_expires_at"
        )


async def test_given_yesterdays_links_when_a_link_is_clicked_today_then_the_daily_limit_starts_afresh(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    # Given three update-card links sent a minute before midnight UTC (yesterday's limit used up)
    world = await build_world({}, stripe_actions, label=f"t1-day-{unique}")
    await ledger_earlier_runs(
        pg_pool, world.customer_id, "send_update_card_link", 3, label=f"day-{unique}", yesterday=True
    )
    # When one is clicked today, Then it is sent: the policy's day is the calendar day in UTC
    status = await click(http, bearer(tier1, world.customer_id), "send_update_card_link")
    assert status["status"] == "resolved", status
    assert [link["action"] for link in status["links"]] == ["send_update_card_link"]


# --------------------------------------------------------------------------- a higher price needs confirming
def text_plan_change(world: Any, unique: str, plan: str, suffix: str) -> SelfhealRequestedV1:
    """A plan change read from the customer's chat text (the router's request), not a Health Meter click."""
    return SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=Action.CHANGE_PLAN,
            params={"plan": plan},
            source="router",
            text=f"Please move us to the {plan} plan",
            sender=Sender(kind="customer_session", subject=world.customer_id),
        ),
        contact_id=f"t1-price-{suffix}-{unique}",
        customer_id=world.customer_id,
    )


async def test_given_an_upgrade_asked_in_text_when_handled_then_it_runs_once_the_customer_confirms_the_price(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, infra: Any, unique: str
) -> None:
    from tierline.actions import PRICE_CONFIRMATION_PURPOSE
    from tierline.stripe_adapter import sign_link_token

    world = await build_world({"customer": {"plan": "pro"}}, stripe_actions, label=f"t1-price-{unique}")
    before = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    msg = text_plan_change(world, unique, "business", "up")
    await publish(tier1.broker, msg)
    await tier1.state["collector"].wait_for(AgentRequestedV1.TOPIC, world.customer_id)

    # text alone changed nothing: a pending confirmation of the new price instead
    row = await pg_pool.fetchrow("SELECT * FROM price_confirmations WHERE contact_id=$1", msg.contact_id)
    assert row is not None
    assert row["status"] == "pending"
    assert (row["plan"], row["old_amount_cents"] < row["new_amount_cents"]) == ("business", True)
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before
    assert [
        r for r in await ledger_rows(pg_pool, world.customer_id, "change_plan") if r["status"] == "succeeded"
    ] == []

    secret = infra.session_secret.get_secret_value()
    cid = row["confirmation_id"]

    def link(subject: str, purpose: str = PRICE_CONFIRMATION_PURPOSE) -> dict[str, str]:
        token = sign_link_token(secret, purpose=purpose, subject=subject, expires_at=int(time.time()) + 600)
        return {"Authorization": f"Bearer {token}"}

    assert (await http.get(f"/v1/price-confirmations/{cid}")).status_code == 401
    assert (
        await http.post(f"/v1/price-confirmations/{cid}", headers=link(cid, "pay_invoice"))
    ).status_code == 401
    other = "pc_" + "0" * 24
    assert (await http.post(f"/v1/price-confirmations/{cid}", headers=link(other))).status_code == 403
    shown = await http.get(f"/v1/price-confirmations/{cid}", headers=link(cid))
    assert shown.status_code == 200
    assert shown.json()["old_price_usd"] < shown.json()["new_price_usd"]
    page = await http.get(f"/confirm-price/{cid}")
    assert "Confirm the new price" in page.text
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == before

    confirmed = await http.post(f"/v1/price-confirmations/{cid}", headers=link(cid))
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["result"]["status"] == "succeeded"
    again = await http.post(f"/v1/price-confirmations/{cid}", headers=link(cid))  # a second click
    assert again.status_code == 200
    assert again.json()["result"]["replayed"] is True

    after = plan_of(await stripe_actions.get_subscription(world.subscription_id or ""))
    assert after == await stripe_actions.ensure_plan("business", 299)
    rows = await ledger_rows(pg_pool, world.customer_id, "change_plan")
    assert [(r["status"], r["target"]) for r in rows if r["status"] == "succeeded"] == [
        ("succeeded", world.subscription_id)
    ]


async def test_given_a_downgrade_asked_in_text_when_handled_then_it_runs_without_a_confirmation(
    tier1: Any, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    world = await build_world({"customer": {"plan": "business"}}, stripe_actions, label=f"t1-down-{unique}")
    msg = text_plan_change(world, unique, "pro", "down")
    await publish(tier1.broker, msg)

    async def changed() -> list[Any]:
        rows = await ledger_rows(pg_pool, world.customer_id, "change_plan")
        return [r for r in rows if r["status"] == "succeeded"]

    for _ in range(120):  # the request is consumed asynchronously; 30 s at most
        if await changed():
            break
        await asyncio.sleep(0.25)
    assert len(await changed()) == 1
    assert plan_of(await stripe_actions.get_subscription(world.subscription_id or "")) == (
        await stripe_actions.ensure_plan("pro", 49)
    )
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM price_confirmations WHERE contact_id=$1", msg.contact_id)
        == 0
    )


async def test_given_a_chat_conversation_when_a_fix_is_clicked_in_it_then_the_click_joins_the_thread(
    tier1: Any, http: httpx.AsyncClient, stripe_actions: StripeActions, pg_pool: Any, unique: str
) -> None:
    from schemas.vocab import Channel
    from services.tier1_selfheal.api import contact_id_for
    from tierline.conversations import open_conversation, turns

    # Given a declined customer chatting in their own conversation, and another customer's conversation
    world = await declined_world(stripe_actions, unique)
    headers = bearer(tier1, world.customer_id)
    mine, theirs = f"chat_fix_{unique}", f"chat_other_{unique}"
    await open_conversation(
        pg_pool, conversation_id=mine, customer_id=world.customer_id, channel=Channel.CHAT
    )
    await open_conversation(
        pg_pool, conversation_id=theirs, customer_id="cus_someone_else", channel=Channel.CHAT
    )
    fix = (await http.get("/v1/health-meter", headers=headers)).json()["fixes"][0]
    click = {"action": fix["action"], "params": fix["params"], "label": fix["label"]}
    # When the fix is clicked naming the other customer's conversation
    refused = await http.post(
        "/v1/health-meter/fixes",
        json={**click, "request_id": f"rq-other-{unique}", "conversation_id": theirs},
        headers=headers,
    )
    # Then it is a 404 and nothing was started or written into that thread
    assert refused.status_code == 404
    assert refused.json()["error"] == "conversation_not_found"
    refused_contact = contact_id_for(world.customer_id, f"rq-other-{unique}")
    assert await pg_pool.fetchval("SELECT 1 FROM contacts WHERE contact_id=$1", refused_contact) is None
    assert await turns(pg_pool, theirs) == []
    # When it is clicked in their own conversation
    accepted = await http.post(
        "/v1/health-meter/fixes",
        json={**click, "request_id": f"rq-mine-{unique}", "conversation_id": mine},
        headers=headers,
    )
    # Then the contact belongs to the conversation and the click is the customer's turn in it
    assert accepted.status_code == 202
    contact_id = accepted.json()["contact_id"]
    joined = await pg_pool.fetchval("SELECT conversation_id FROM contacts WHERE contact_id=$1", contact_id)
    assert joined == mine
    thread = await turns(pg_pool, mine)
    assert [(t.role, t.text, t.contact_id) for t in thread][:1] == [("customer", fix["label"], contact_id)]
