"""Tier 0 on the real stack: signed webhooks in over HTTP, worlds built in the Stripe emulator, the
mirror, dunning schedules, mail in the SMTP sink, outcomes / audit / escalations read back from the topics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.messages import (
    AuditEventRecordedV1,
    DeadLetterRecordedV1,
    EscalationOpenedV1,
    NotificationRequestedV1,
    OutcomeRecordedV1,
    StripeEventReceivedV1,
)
from services.notifier.app import create_service as create_notifier
from services.notifier.settings import NotifierSettings
from services.tier0_prevent.app import create_service, system_actions
from services.tier0_prevent.dunning import DunningWorker
from services.tier0_prevent.handlers import Tier0Deps
from services.tier0_prevent.settings import Tier0Settings
from tierline.billing.declines import classify_decline
from tierline.billing.policy import DEFAULT_POLICY_PATH, PolicyEngine
from tierline.db import create_pool
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_event, build_world, sign_payload, world_event

pytestmark = pytest.mark.integration

SECRET_OLD, SECRET_NEW = "whsec_tier0_old", "whsec_tier0_new"
WATCHED = [
    OutcomeRecordedV1.TOPIC,
    AuditEventRecordedV1.TOPIC,
    EscalationOpenedV1.TOPIC,
    NotificationRequestedV1.TOPIC,
    DeadLetterRecordedV1.TOPIC,
    StripeEventReceivedV1.TOPIC,
]


class Topics:
    """Everything published on the watched topics since the module started (no consumer group)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        parts = [TopicPartition(t, p) for t in WATCHED for p in (self.consumer.partitions_for_topic(t) or [])]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the positions now, before anything is published
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            with contextlib.suppress(ValueError, TypeError):
                self.seen.append((record.topic, json.loads(record.value)))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.consumer.stop()

    def on(self, topic: str, pred: Callable[[dict[str, Any]], bool] = lambda m: True) -> list[dict[str, Any]]:
        return [m for t, m in self.seen if t == topic and pred(m)]

    async def wait(
        self,
        topic: str,
        pred: Callable[[dict[str, Any]], bool],
        # ruff flags any async timeout parameter; it is enforced with asyncio.timeout below
        timeout: float = 30,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    found = self.on(topic, pred)
                    if found:
                        return found[0]
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"nothing on {topic} matched within {timeout}s") from None


async def eventually(
    check: Callable[[], Any],
    # ruff flags any async timeout parameter; it is enforced with asyncio.timeout below
    timeout: float = 30,  # noqa: ASYNC109
) -> Any:
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = await check()
                if value:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError("condition not met in time") from None


class Env:
    def __init__(self, infra: Any, stack: Any, topics: Topics, service: Any, actions: StripeActions) -> None:
        self.infra, self.stack, self.topics, self.service, self.actions = (
            infra,
            stack,
            topics,
            service,
            actions,
        )
        self.url = f"http://127.0.0.1:{service.http_port}/stripe/webhook"
        self.http = httpx.AsyncClient(timeout=30)

    async def post(
        self,
        event: dict[str, Any],
        *,
        secret: str = SECRET_NEW,
        ts: int | None = None,
        body: bytes | None = None,
        header: str | None = None,
    ) -> httpx.Response:
        raw = body if body is not None else json.dumps(event).encode()
        stamp = int(time.time()) if ts is None else ts
        sig = header if header is not None else sign_payload(raw, secret, stamp)
        return await self.http.post(
            self.url, content=raw, headers={"Stripe-Signature": sig, "Content-Type": "application/json"}
        )

    def mail_to(self, address: str) -> list[dict[str, Any]]:
        box = Path(self.stack.smtp().maildir)
        out = []
        for f in sorted(box.glob("*.json")) if box.exists() else []:
            rec = json.loads(f.read_text())
            if address in rec["rcpt_tos"]:
                out.append(rec)
        return out


@pytest.fixture(scope="module")
def publish_compat() -> Any:
    """TEMPORARY, reported to the lead: tierline.messaging.publish passes ``content_type=`` which
    faststream 0.7.8's KafkaBroker.publish rejects (TypeError). Until the core fix lands, drop it here."""
    import inspect

    from faststream.kafka import KafkaBroker

    original = KafkaBroker.publish
    if "content_type" in inspect.signature(original).parameters:
        yield
        return

    async def publish(self: Any, *args: Any, content_type: Any = None, **kwargs: Any) -> Any:
        return await original(self, *args, **kwargs)

    KafkaBroker.publish = publish  # type: ignore[method-assign]
    try:
        yield
    finally:
        KafkaBroker.publish = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
async def env(stack: Any, infra: Any, publish_compat: Any) -> AsyncIterator[Env]:
    settings = infra.model_copy(
        update={
            "stripe_webhook_secrets": f"{SECRET_OLD},{SECRET_NEW}",
            "http_port": stack.service_ports["tier0_prevent"],
        }
    )
    tier0 = Tier0Settings()
    topics = Topics(infra.kafka_bootstrap)
    await topics.start()
    service = create_service(settings, tier0=tier0, background=False)
    notifier = create_notifier(
        infra.model_copy(update={"http_port": stack.service_ports["notifier"]}),
        notifier=NotifierSettings(notify_max_per_customer=5),
    )
    await service.start()
    await notifier.start()
    e = Env(infra, stack, topics, service, StripeActions(infra))
    try:
        yield e
    finally:
        await e.http.aclose()
        await notifier.stop()
        await service.stop()
        await topics.stop()


async def _world(env: Env, unique: str, **spec: Any) -> Any:
    return await build_world(
        {"customer": {"email": f"t0-{unique}@example.test"}, **spec}, env.actions, label=f"t0-{unique}"
    )


def _for_contact(contact: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("contact_id") == contact


# ------------------------------------------------------------------------------------------ failed payments
async def test_given_soft_decline_when_payment_fails_then_dunning_is_scheduled_and_customer_nudged(
    env: Env, pg_pool: Any, unique: str
) -> None:
    # Given a customer whose renewal failed with insufficient funds (built in the emulator)
    built = await _world(
        env,
        unique,
        card="declined_insufficient_funds",
        failed_invoice={"amount_usd": 49, "decline_code": "insufficient_funds"},
    )
    event = await world_event({"type": "invoice.payment_failed"}, built)
    contact = f"stripe:{event['id']}"
    # When Stripe delivers the signed event
    resp = await env.post(event)
    # Then it is accepted, and Tier 0 resolves the contact with a nudge and a retry schedule
    assert resp.status_code == 200
    assert resp.json()["duplicate"] is False
    outcome = await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(contact))
    p = outcome["payload"]
    assert (p["resolved_by"], p["actions"], p["trigger"]) == ("tier0", ["send_nudge"], "stripe_event")
    assert p["root_cause"] == "card_declined_insufficient_funds"
    assert "3 retries scheduled" in p["summary"]  # the policy's automatic budget, not the configured 4
    schedule = await pg_pool.fetchrow(
        "SELECT * FROM dunning_schedules WHERE invoice_id=$1", built.failed_invoice_id
    )
    assert schedule["status"] == "active"
    assert schedule["customer_id"] == built.customer_id
    attempts = await pg_pool.fetch(
        "SELECT attempt_no, due_at FROM dunning_attempts WHERE invoice_id=$1 ORDER BY attempt_no",
        built.failed_invoice_id,
    )
    gaps = [round((a["due_at"] - schedule["created_at"]).total_seconds() / 86400) for a in attempts]
    assert gaps == [1, 3, 7]
    # the email reached the SMTP server, the mirror holds the invoice, the actions are audited
    mails = await eventually(lambda: _async(env.mail_to(built.email)))
    assert "We couldn't process your payment" in mails[0]["data"]
    mirrored = await eventually(
        lambda: pg_pool.fetchval("SELECT status FROM stripe_invoices WHERE id=$1", built.failed_invoice_id)
    )
    assert mirrored == "open"
    audited = {
        m["payload"]["action"] for m in env.topics.on(AuditEventRecordedV1.TOPIC, _for_contact(contact))
    }
    assert {"classify_decline", "schedule_retry", "policy.send_nudge", "send_nudge"} <= audited
    ledger = await pg_pool.fetch(
        "SELECT action, status, actor, tier FROM action_ledger WHERE contact_id=$1", contact
    )
    assert sorted((r["action"], r["status"], r["actor"], r["tier"]) for r in ledger) == [
        ("schedule_retry", "succeeded", "system", "tier0"),
        ("send_nudge", "succeeded", "system", "tier0"),
    ]

    # When Stripe replays the very same event
    published_before = len(env.topics.on(StripeEventReceivedV1.TOPIC, _for_contact(contact)))
    replay = await env.post(event)
    await asyncio.sleep(1.0)
    # Then it answers duplicate and nothing new is published or done
    assert replay.status_code == 200
    assert replay.json()["duplicate"] is True
    assert len(env.topics.on(StripeEventReceivedV1.TOPIC, _for_contact(contact))) == published_before == 1
    assert await pg_pool.fetchval("SELECT count(*) FROM action_ledger WHERE contact_id=$1", contact) == 2


async def _async(value: Any) -> Any:
    return value


async def test_given_hard_decline_when_payment_failed_then_no_retry_and_update_card_link_is_emailed(
    env: Env, pg_pool: Any, unique: str
) -> None:
    built = await _world(
        env, unique, card="expired", failed_invoice={"amount_usd": 49, "decline_code": "expired_card"}
    )
    event = await world_event({"type": "invoice.payment_failed"}, built)
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    outcome = await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(contact))
    assert outcome["payload"]["actions"] == ["send_update_card_link"]
    assert outcome["payload"]["root_cause"] == "card_expired"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM dunning_attempts WHERE invoice_id=$1", built.failed_invoice_id
        )
        == 0
    )
    note = await env.topics.wait(NotificationRequestedV1.TOPIC, _for_contact(contact))
    assert note["payload"]["template"] == "update_card"
    assert "update-card?token=" in note["payload"]["link"]
    mails = await eventually(lambda: _async(env.mail_to(built.email)))
    assert "update-card?token=" in mails[0]["data"]


async def test_given_stolen_card_when_payment_failed_then_risk_flagged_and_escalated_with_fraud_no_retry(
    env: Env, pg_pool: Any, unique: str
) -> None:
    built = await _world(
        env, unique, card="declined_generic", failed_invoice={"amount_usd": 49, "decline_code": "stolen_card"}
    )
    event = await world_event({"type": "invoice.payment_failed"}, built)
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    esc = await env.topics.wait(EscalationOpenedV1.TOPIC, _for_contact(contact))
    assert esc["payload"]["reason"] == "fraud"
    assert esc["payload"]["opened_by"] == "tier0"
    flags = await pg_pool.fetchval("SELECT risk_flags FROM customers WHERE id=$1", built.customer_id)
    assert flags["card_fraud"]["decline_code"] == "stolen_card"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM dunning_schedules WHERE invoice_id=$1", built.failed_invoice_id
        )
        == 0
    )
    assert not env.topics.on(NotificationRequestedV1.TOPIC, _for_contact(contact))


def _as_sent_today(obj: dict[str, Any]) -> dict[str, Any]:
    """An emulator object as a Stripe account of today sends it (API 2025-03-31 and later): an invoice
    names no charge, payment intent or subscription (``parent.subscription_details`` instead), charges and
    payment intents name no invoice, references are ids, and no ``tl_`` metadata (the world builder's)."""
    today = {k: v for k, v in obj.items() if k not in ("charge", "payment_intent", "subscription", "invoice")}
    today["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if not k.startswith("tl_")}
    if obj.get("object") == "invoice" and obj.get("subscription"):
        sub = obj["subscription"] if isinstance(obj["subscription"], str) else obj["subscription"]["id"]
        today["parent"] = {"type": "subscription_details", "subscription_details": {"subscription": sub}}
    return today


@pytest.mark.parametrize("order", ["invoice_only", "charge_and_intent_first"])
async def test_given_a_stolen_card_in_todays_shapes_when_events_arrive_in_any_order_then_fraud_never_retried(
    env: Env, pg_pool: Any, unique: str, order: str
) -> None:
    built = await _world(
        env, unique, card="declined_generic", failed_invoice={"amount_usd": 49, "decline_code": "stolen_card"}
    )
    invoice = await env.actions.get_invoice(built.failed_invoice_id)
    events = [build_event("invoice.payment_failed", _as_sent_today(invoice))]
    assert "charge" not in events[0]["data"]["object"]
    if order == "charge_and_intent_first":
        charge = await env.actions.get_charge(built.failed_charge_id)
        intent = await env.actions.raw_get(f"/v1/payment_intents/{invoice['payment_intent']}")
        # Stripe's own fields say why (the emulator reports the issuer's reason as Stripe does)
        assert (charge["failure_code"], charge["outcome"]["reason"]) == ("card_declined", "stolen_card")
        assert intent["last_payment_error"]["decline_code"] == "stolen_card"
        events = [
            build_event("charge.failed", _as_sent_today(charge)),
            build_event("payment_intent.payment_failed", _as_sent_today(intent)),
            *events,
        ]
    for event in events:
        assert (await env.post(event)).status_code == 200
    contact = f"stripe:{events[-1]['id']}"

    esc = await env.topics.wait(EscalationOpenedV1.TOPIC, _for_contact(contact))
    assert esc["payload"]["reason"] == "fraud"
    flags = await pg_pool.fetchval("SELECT risk_flags FROM customers WHERE id=$1", built.customer_id)
    assert flags["card_fraud"]["decline_code"] == "stolen_card"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM dunning_schedules WHERE invoice_id=$1", built.failed_invoice_id
        )
        == 0
    )


async def test_given_open_dispute_when_dispute_created_then_escalated_at_once_and_mirrored(
    env: Env, pg_pool: Any, unique: str
) -> None:
    built = await _world(env, unique, charges=[{"amount_usd": 49, "days_ago": 3}], dispute_open=True)
    event = built.pending_events[0]
    assert event["type"] == "charge.dispute.created"
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    esc = await env.topics.wait(EscalationOpenedV1.TOPIC, _for_contact(contact))
    assert esc["payload"]["reason"] == "dispute"
    assert esc["customer_id"] == built.customer_id
    status = await eventually(
        lambda: pg_pool.fetchval("SELECT status FROM stripe_disputes WHERE id=$1", built.dispute["id"])
    )
    assert status == "needs_response"


async def test_given_expired_invoice_link_when_invoice_event_shows_it_then_link_regenerated_and_resent(
    env: Env, pg_pool: Any, unique: str
) -> None:
    built = await _world(
        env,
        unique,
        card="declined_generic",
        expired_invoice_link=True,
        failed_invoice={"amount_usd": 49, "decline_code": "generic_decline"},
    )
    event = await world_event({"type": "invoice.finalized"}, built)
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    outcome = await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(contact))
    assert outcome["payload"]["actions"] == ["regenerate_invoice_link"]
    note = await env.topics.wait(NotificationRequestedV1.TOPIC, _for_contact(contact))
    assert note["payload"]["template"] == "invoice_link"
    assert f"/pay/{built.failed_invoice_id}" in note["payload"]["link"]
    fresh = await env.actions.invoice_link(built.failed_invoice_id)
    assert not fresh.expired


async def test_given_expiring_card_event_when_received_then_nudge_delivered_once(
    env: Env, unique: str
) -> None:
    built = await _world(env, unique)
    event = await world_event({"type": "customer.source.expiring"}, built)
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    outcome = await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(contact))
    assert outcome["payload"]["actions"] == ["send_nudge"]
    assert outcome["payload"]["root_cause"] == "card_expiring"
    mails = await eventually(lambda: _async(env.mail_to(built.email)))
    assert "expires" in mails[0]["data"]


# ------------------------------------------------------------------------------------------ the door
async def test_given_forged_stale_or_malformed_requests_when_posted_then_400_and_nothing_changes(
    env: Env, pg_pool: Any, unique: str
) -> None:
    event = build_event(
        "invoice.payment_failed",
        {"id": f"in_{unique}", "object": "invoice", "customer": f"cus_{unique}", "status": "open"},
    )
    raw = json.dumps(event).encode()
    now = int(time.time())
    cases = {
        "forged": await env.post(event, secret="whsec_attacker"),  # noqa: S106 - a deliberately wrong test secret
        "stale": await env.post(event, ts=now - 301),
        "future": await env.post(event, ts=now + 400),
        "missing": await env.http.post(env.url, content=raw),
        "tampered": await env.post(
            event, body=raw.replace(b"open", b"paid"), header=sign_payload(raw, SECRET_NEW, now)
        ),
        "garbage_header": await env.post(event, header="v1=abc"),
        "bad_json": await env.post({}, body=b"{not json"),
        "no_type": await env.post({"id": f"evt_{unique}x", "created": now, "data": {"object": {}}}),
    }
    for name, resp in cases.items():
        assert resp.status_code == 400, name
        assert resp.json()["error"], name
    assert cases["forged"].json()["error"] == "signature_mismatch"
    assert cases["stale"].json()["error"] == "timestamp_outside_tolerance"
    assert cases["bad_json"].json()["error"] == "malformed_event"
    await asyncio.sleep(1.0)
    assert await pg_pool.fetchval("SELECT count(*) FROM webhook_events WHERE event_id=$1", event["id"]) == 0
    assert not env.topics.on(StripeEventReceivedV1.TOPIC, lambda m: m["payload"]["event_id"] == event["id"])


async def test_given_rotation_when_either_secret_signs_then_both_are_accepted(env: Env, unique: str) -> None:
    for secret in (SECRET_OLD, SECRET_NEW):
        event = build_event(
            "customer.updated",
            {"id": f"cus_{unique}{secret[-3:]}", "object": "customer", "email": f"{unique}@example.test"},
        )
        resp = await env.post(event, secret=secret)
        assert resp.status_code == 200, secret
        msg = await env.topics.wait(
            StripeEventReceivedV1.TOPIC, lambda m, e=event: m["payload"]["event_id"] == e["id"]
        )
        assert msg["customer_id"] == event["data"]["object"]["id"]
        assert msg["contact_id"] == f"stripe:{event['id']}"
    # and a header carrying two v1 signatures (old + new) verifies too
    event = build_event("customer.updated", {"id": f"cus_{unique}both", "object": "customer"})
    raw = json.dumps(event).encode()
    ts = int(time.time())
    header = (
        f"{sign_payload(raw, 'whsec_retired', ts)},v1={sign_payload(raw, SECRET_OLD, ts).split('v1=')[1]}"
    )
    assert (await env.post(event, body=raw, header=header)).status_code == 200


async def test_given_poison_messages_when_consumed_then_they_land_on_the_dead_letter_topic(
    env: Env, unique: str
) -> None:
    # raw bytes that are not an envelope
    producer = AIOKafkaProducer(bootstrap_servers=env.infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            StripeEventReceivedV1.TOPIC, b"\xff not json " + unique.encode(), key=f"cus_{unique}".encode()
        )
    finally:
        await producer.stop()
    dead = await env.topics.wait(
        DeadLetterRecordedV1.TOPIC,
        lambda m: unique in m["payload"]["value"] and m["payload"]["consumer"] == "tier0_prevent",
    )
    assert dead["payload"]["original_topic"] == StripeEventReceivedV1.TOPIC
    # a verified event whose object Tier 0 cannot act on: retried, then dead-lettered, and a human gets it
    event = build_event(
        "invoice.payment_failed", {"id": "not-an-invoice", "object": "invoice", "customer": f"cus_{unique}p"}
    )
    assert (await env.post(event)).status_code == 200
    dead = await env.topics.wait(
        DeadLetterRecordedV1.TOPIC,
        lambda m: (
            event["id"] in m["payload"]["value"] and "InvalidStripeObject" in m["payload"]["error_type"]
        ),
    )
    esc = await env.topics.wait(EscalationOpenedV1.TOPIC, _for_contact(f"stripe:{event['id']}"))
    assert esc["payload"]["reason"] == "error"


# ------------------------------------------------------------------------------------------ dunning
async def test_given_two_dunning_replicas_when_retries_fall_due_then_each_invoice_retried_once_and_recovered(
    env: Env, infra: Any, pg_pool: Any, unique: str
) -> None:
    # Given three soft-declined invoices with schedules, whose customers have since fixed their cards
    invoices: list[tuple[Any, dict[str, Any]]] = []
    for i in range(3):
        built = await _world(
            env,
            f"{unique}{i}",
            card="declined_insufficient_funds",
            failed_invoice={"amount_usd": 49, "decline_code": "insufficient_funds"},
        )
        event = await world_event({"type": "invoice.payment_failed"}, built)
        assert (await env.post(event)).status_code == 200
        await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(f"stripe:{event['id']}"))
        pm = await env.actions.v1.payment_methods.create_async(
            {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"},
            }
        )
        await env.actions.v1.payment_methods.attach_async(pm.id, {"customer": built.customer_id})
        await env.actions.v1.customers.update_async(
            built.customer_id, {"invoice_settings": {"default_payment_method": pm.id}}
        )
        invoices.append((built, event))
    ids = [b.failed_invoice_id for b, _ in invoices]
    await pg_pool.execute(
        "UPDATE dunning_attempts SET due_at = now() - interval '1 second' "
        "WHERE invoice_id = ANY($1::text[]) AND attempt_no = 1",
        ids,
    )
    # When two replicas (two pools, two workers) poll at the same time, repeatedly
    pools = [await create_pool(infra.postgres_dsn) for _ in range(2)]
    try:
        diagnostics = env.service.state["deps"].diagnostics
        workers = [
            DunningWorker(
                Tier0Deps(
                    pool=p,
                    broker=env.service.broker,
                    settings=Tier0Settings(),
                    diagnostics=diagnostics,
                    classify=classify_decline,
                    billing=env.actions,
                    actions=system_actions(
                        p, env.service.broker, env.infra, billing=env.actions, diagnostics=diagnostics
                    ),
                    return_url="http://x",
                ),
                f"replica-{n}",
            )
            for n, p in enumerate(pools)
        ]
        results = []
        for _ in range(3):
            rounds = await asyncio.gather(*(w.run_once() for w in workers))
            results.extend(r for batch in rounds for r in batch if r.invoice_id in ids)
    finally:
        for p in pools:
            await p.close()
    # Then each invoice was retried exactly once, by one replica, and paid
    assert sorted(r.invoice_id for r in results) == sorted(ids)
    assert all(r.verdict.value == "recovered" and not r.replayed for r in results)
    rows = await pg_pool.fetch(
        "SELECT target, count(*) AS n, min(actor) AS actor FROM action_ledger WHERE action='retry_payment' "
        "AND target = ANY($1::text[]) GROUP BY target",
        ids,
    )
    assert sorted((r["target"], r["n"], r["actor"]) for r in rows) == sorted((i, 1, "system") for i in ids)
    for built, _ in invoices:
        inv = await env.actions.get_invoice(built.failed_invoice_id)
        assert inv["status"] == "paid"
        sched = await pg_pool.fetchrow(
            "SELECT status, recovered_cents FROM dunning_schedules WHERE invoice_id=$1",
            built.failed_invoice_id,
        )
        assert (sched["status"], sched["recovered_cents"]) == ("recovered", 4900)
        left = await pg_pool.fetchval(
            "SELECT count(*) FROM dunning_attempts WHERE invoice_id=$1 AND status='scheduled'",
            built.failed_invoice_id,
        )
        assert left == 0
        outcome = await env.topics.wait(
            OutcomeRecordedV1.TOPIC, _for_contact(f"dunning:{built.failed_invoice_id}")
        )
        assert outcome["payload"]["recovered_usd"] == 49.0
        assert outcome["payload"]["actions"] == ["retry_payment"]


def _policy_with_automatic_retries(tmp_path: Path, attempts: int) -> PolicyEngine:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["retry"]["max_attempts"]["automatic"] = attempts
    path = tmp_path / f"policy-{attempts}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return PolicyEngine.from_yaml(path)


async def test_given_two_automatic_retries_policy_when_dunning_runs_then_third_refused_and_card_link_sent(
    env: Env, pg_pool: Any, unique: str, tmp_path: Path
) -> None:
    # Given a soft-declined invoice scheduled under the shipped policy (3 automatic attempts), its card
    # still declining
    built = await _world(
        env,
        unique,
        card="declined_insufficient_funds",
        failed_invoice={"amount_usd": 49, "decline_code": "insufficient_funds"},
    )
    invoice = built.failed_invoice_id
    event = await world_event({"type": "invoice.payment_failed"}, built)
    contact = f"stripe:{event['id']}"
    assert (await env.post(event)).status_code == 200
    await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(contact))
    scheduled = await pg_pool.fetchval("SELECT count(*) FROM dunning_attempts WHERE invoice_id=$1", invoice)
    assert scheduled == 3

    # When the event is handled again (a redelivery after a crash, past the inbox)
    def rows(contact_id: str) -> Any:
        return pg_pool.fetch(
            "SELECT idempotency_key, action, target, status, actor, tier, updated_at FROM action_ledger "
            "WHERE contact_id=$1 ORDER BY created_at",
            contact_id,
        )

    before = await rows(contact)
    delivered = await env.topics.wait(StripeEventReceivedV1.TOPIC, _for_contact(contact))
    await env.service.state["handlers"].failed_payment(StripeEventReceivedV1.model_validate(delivered))
    # Then no effect ran again: the same ledger rows, untouched
    assert await rows(contact) == before
    assert [(r["action"], r["actor"]) for r in before] == [
        ("schedule_retry", "system"),
        ("send_nudge", "system"),
    ]

    # When the policy is changed to two automatic attempts and the three attempts fall due one by one
    deps = env.service.state["deps"]
    worker = DunningWorker(
        Tier0Deps(
            pool=pg_pool,
            broker=env.service.broker,
            settings=Tier0Settings(),
            diagnostics=deps.diagnostics,
            classify=classify_decline,
            billing=env.actions,
            actions=system_actions(
                pg_pool,
                env.service.broker,
                env.infra,
                billing=env.actions,
                diagnostics=deps.diagnostics,
                policy=_policy_with_automatic_retries(tmp_path, 2),
            ),
            return_url="http://x",
        ),
        f"policy-{unique}",
    )
    verdicts = []
    for n in (1, 2, 3):
        await pg_pool.execute(
            "UPDATE dunning_attempts SET due_at = now() - interval '1 second' "
            "WHERE invoice_id=$1 AND attempt_no=$2 AND status='scheduled'",
            invoice,
            n,
        )
        verdicts += [
            (r.attempt_no, r.verdict.value) for r in await worker.run_once() if r.invoice_id == invoice
        ]

    # Then two retries ran, the third was refused by the policy, and dunning ended with the update-card link
    assert verdicts == [(1, "try_later"), (2, "try_later"), (3, "exhausted")]
    dunning = f"dunning:{invoice}"
    ledger = await rows(dunning)
    assert [(r["action"], r["target"], r["status"], r["actor"], r["tier"]) for r in ledger] == [
        ("retry_payment", invoice, "failed", "system", "tier0"),
        ("retry_payment", invoice, "failed", "system", "tier0"),
        ("retry_payment", invoice, "denied", "system", "tier0"),
        ("send_update_card_link", built.customer_id, "succeeded", "system", "tier0"),
    ]
    schedule = await pg_pool.fetchval("SELECT status FROM dunning_schedules WHERE invoice_id=$1", invoice)
    assert schedule == "exhausted"
    outcome = await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(dunning))
    assert outcome["payload"]["actions"] == ["send_update_card_link"]
    note = await env.topics.wait(NotificationRequestedV1.TOPIC, _for_contact(dunning))
    assert note["payload"]["template"] == "update_card"
    # and the audit holds each policy decision, as for every other tier

    def policy_audits() -> list[dict[str, Any]]:
        return [
            m["payload"]
            for m in env.topics.on(AuditEventRecordedV1.TOPIC, _for_contact(dunning))
            if m["payload"]["action"] == "policy.retry_payment"
        ]

    await eventually(lambda: _async(len(policy_audits()) == 3))
    decisions = [(a["decision"], a["details"]["rule"], a["actor"]) for a in policy_audits()]
    actor = f"tier0:dunning:policy-{unique}"
    assert sorted(decisions) == [
        ("allow", "retry.soft_decline", actor),
        ("allow", "retry.soft_decline", actor),
        ("deny", "retry.max_attempts.automatic", actor),
    ]


async def test_given_active_schedule_when_invoice_paid_by_another_path_then_schedule_is_canceled(
    env: Env, pg_pool: Any, unique: str
) -> None:
    built = await _world(
        env,
        unique,
        card="declined_insufficient_funds",
        failed_invoice={"amount_usd": 49, "decline_code": "insufficient_funds"},
    )
    failed = await world_event({"type": "invoice.payment_failed"}, built)
    assert (await env.post(failed)).status_code == 200
    await env.topics.wait(OutcomeRecordedV1.TOPIC, _for_contact(f"stripe:{failed['id']}"))
    # the invoice is paid out of band (e.g. the customer paid on the hosted page)
    paid = await world_event({"type": "invoice.payment_succeeded"}, built)
    paid["data"]["object"]["status"] = "paid"
    assert (await env.post(paid)).status_code == 200
    status = await eventually(
        lambda: pg_pool.fetchval(
            "SELECT status FROM dunning_schedules WHERE invoice_id=$1 AND status <> 'active'",
            built.failed_invoice_id,
        )
    )
    assert status == "canceled"
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM dunning_attempts WHERE invoice_id=$1 AND status='scheduled'",
            built.failed_invoice_id,
        )
        == 0
    )


async def test_given_card_expiring_this_month_in_mirror_when_scanned_then_it_is_found(
    pg_pool, unique
) -> None:
    """The daily scan's query runs on the real Postgres with timezone-aware bounds."""
    from datetime import UTC, datetime, timedelta

    from services.tier0_prevent.adapters.postgres import Tier0Store

    now = datetime.now(UTC)
    await pg_pool.execute(
        """INSERT INTO stripe_payment_methods (id, customer_id, brand, last4, exp_month, exp_year, version)
           VALUES ($1, $2, 'visa', '4242', $3, $4, 1)""",
        f"pm_scan_{unique}",
        f"cus_scan_{unique}",
        now.month,
        now.year,
    )
    store = Tier0Store(pg_pool)
    found = await store.expiring_cards(now + timedelta(days=40), now)
    assert f"pm_scan_{unique}" in {c.payment_method_id for c in found}
