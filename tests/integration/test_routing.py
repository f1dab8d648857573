"""Routing of every intent on the real broker, Postgres, chDB and the Stripe emulator.

One router (the real service, the trained intent model, an in-process diagnostics over the real mirror,
live Stripe reads and chDB usage) per module. Every case gets its own customer built in the emulator,
every contact is published on ``contact.received.v1`` at once, and what the router forwarded is read
back from the tier topics: which topic, and the intent / action / reason it recorded there.

The expected tiers follow spec/intents.md and the routing table in services/router/domain.py
(first match wins). The texts are written for this test: they are not in the training data.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Channel, Intent
from schemas.messages import (
    AgentRequestedV1,
    ContactReceivedPayload,
    ContactReceivedV1,
    ConversationMessageSentV1,
    EscalationOpenedV1,
    SelfhealRequestedV1,
    Sender,
)
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.router.app import create_service
from services.router.intent.model import default_model_path
from services.tier0_prevent.adapters.postgres import Tier0Store
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import publish
from tierline.pipeline import start_contact
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import BuiltWorld, build_world

pytestmark = pytest.mark.integration

SELFHEAL, AGENT, ESCALATION = SelfhealRequestedV1.TOPIC, AgentRequestedV1.TOPIC, EscalationOpenedV1.TOPIC
QUESTION = ConversationMessageSentV1.TOPIC  # the router asks one clarifying question itself
TIER_TOPICS = (SELFHEAL, AGENT, ESCALATION)
assert TIER_TOPICS == (
    "tier1.selfheal.requested.v1",
    "tier2.agent.requested.v1",
    "tier3.escalation.opened.v1",
)

HEALTHY: dict[str, Any] = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 6}]}
SOFT_DECLINE: dict[str, Any] = {
    "card": "declined_insufficient_funds",
    "failed_invoice": {"amount_usd": 49, "decline_code": "insufficient_funds"},
}
UNKNOWN = None  # a customer id no store and no Stripe account knows


@dataclass(frozen=True)
class Case:
    """One contact: who sends what for which customer, and where the routing table must send it.

    ``detail`` is what the router records next to the intent: the Tier 1 action (selfheal topic), the
    handoff reason (agent topic) or the escalation reason (escalation topic).
    """

    id: str
    text: str
    topic: str
    intent: Intent
    detail: str
    world: dict[str, Any] | None = field(default_factory=lambda: HEALTHY)
    sender: str = "own_session"  # own_session | other_session | own_email | other_email
    prep: str | None = None  # dispute | tier0_fraud_flag | repeat_contacts
    low_confidence: bool = False


# -------------------------------------------------------------------------- one contact per intent
INTENT_CASES: tuple[Case, ...] = (
    Case(
        "payment_failed",
        "Our card was declined when the subscription renewed, please retry the payment.",
        SELFHEAL,
        Intent.PAYMENT_FAILED,
        "retry_payment",
        world=SOFT_DECLINE,
    ),
    Case(
        "card_expiring",
        "Our corporate card expires in two weeks and the bank already mailed the new one. "
        "Where do I enter the new card details?",
        SELFHEAL,
        Intent.CARD_EXPIRING,
        "send_update_card_link",
    ),
    Case(
        "payment_pending",
        "The payment I made for our subscription two days ago is still showing as pending in the "
        "billing page, is that normal?",
        SELFHEAL,
        Intent.PAYMENT_PENDING,
        "explain_charge",
    ),
    Case(
        "unrecognized_charge",
        "There is a $49 line on our card statement from tierline that nobody on my team recognises. "
        "What is it for?",
        AGENT,
        Intent.UNRECOGNIZED_CHARGE,
        "agent",
    ),
    Case(
        "unexpected_charge",
        "Our bill this month is almost double what it normally is, why did the total jump so much?",
        AGENT,
        Intent.UNEXPECTED_CHARGE,
        "agent",
    ),
    Case(
        "duplicate_charge",
        "You took the subscription fee twice from our card on the same day, I can see two identical "
        "payments.",
        AGENT,
        Intent.DUPLICATE_CHARGE,
        "agent",
    ),
    Case(
        "refund_request",
        "Please refund the annual plan payment we made last week, it was bought by mistake.",
        AGENT,
        Intent.REFUND_REQUEST,
        "agent",
    ),
    Case(
        "refund_status",
        "Your support team promised me a refund ten days ago and the money still hasn't come back to my "
        "account.",
        SELFHEAL,
        Intent.REFUND_STATUS,
        "explain_charge",
    ),
    Case(
        "invoice_request",
        "Our accountant needs the invoice PDF for last quarter's payments, can you send it over?",
        SELFHEAL,
        Intent.INVOICE_REQUEST,
        "send_invoice",
    ),
    Case(
        "update_billing_details",
        "We moved offices, please change the billing address on our invoices to the new street and add our "
        "VAT number.",
        SELFHEAL,
        Intent.UPDATE_BILLING_DETAILS,
        "update_billing_details",
    ),
    Case(
        "cancel_subscription",
        "Please close our account and stop billing us from next month.",
        SELFHEAL,
        Intent.CANCEL_SUBSCRIPTION,
        "cancel_subscription",
    ),
    Case(
        "plan_change",
        "We want to move from the Pro tier to Business and switch to yearly billing.",
        SELFHEAL,
        Intent.PLAN_CHANGE,
        "change_plan",
    ),
    Case(
        "payment_methods_question",
        "Can we pay you by ACH bank transfer instead of a credit card?",
        AGENT,
        Intent.PAYMENT_METHODS_QUESTION,
        "agent",
    ),
    Case(
        "fraud_compromised",
        "Someone stole my company card and used it on your site, I never authorised these payments.",
        ESCALATION,
        Intent.FRAUD_COMPROMISED,
        "fraud",
    ),
    Case(
        "human_agent",
        "I'm done with the bot, put me through to a real person on your billing team right now.",
        ESCALATION,
        Intent.HUMAN_AGENT,
        "customer_asked",
    ),
    Case(
        "out_of_scope",
        "Can you tell me what the weather will be like in Lisbon this weekend?",
        ESCALATION,
        Intent.OUT_OF_SCOPE,
        "out_of_scope",
    ),
    # the SaaS product's own asks (issue 23): tier 2's product tool, or a person for sign-in
    Case(
        "team_member",
        "Please add maria@acme.io to our workspace as an admin.",
        AGENT,
        Intent.TEAM_MEMBER,
        "agent",
    ),
    Case(
        "api_key",
        "Our API key sk_live_abcd leaked in a public repo, please rotate it.",
        AGENT,
        Intent.API_KEY,
        "agent",
    ),
    Case(
        "account_access",
        "I can't log in, the password reset email never arrives.",
        ESCALATION,
        Intent.ACCOUNT_ACCESS,
        "account_access",
    ),
)

# -------------------------------------------------------------------------- gates and table branches
GATE_CASES: tuple[Case, ...] = (
    # confidence below the model's threshold between billing asks: the router asks the customer one
    # question with the asks as choices, nothing is self-healed or handed on (the candidates of a vague
    # text depend on the trained weights: not asserted)
    Case(
        "low_confidence",
        "I have a question about the charge and my card",
        QUESTION,
        Intent.UNEXPECTED_CHARGE,
        "clarifying_question",
        low_confidence=True,
    ),
    # enterprise: money intents go to an agent even when Tier 1 could fix them (contrast: payment_failed)
    Case(
        "enterprise_payment_failed",
        "Our card was declined when the subscription renewed, please retry the payment.",
        AGENT,
        Intent.PAYMENT_FAILED,
        "enterprise_money",
        world={**SOFT_DECLINE, "customer": {"plan": "enterprise"}},
    ),
    # ... and a non-money intent of an enterprise customer still self-heals
    Case(
        "enterprise_invoice_request",
        "I'm the finance lead at this company, could you email me the receipt for the payment we made in "
        "May?",
        SELFHEAL,
        Intent.INVOICE_REQUEST,
        "send_invoice",
        world={**HEALTHY, "customer": {"plan": "enterprise"}},
    ),
    # an open dispute blocks money intents: straight to a human
    Case(
        "dispute_refund_request",
        "Please refund the annual plan payment we made last week, it was bought by mistake.",
        ESCALATION,
        Intent.REFUND_REQUEST,
        "dispute",
        world={**HEALTHY, "dispute_open": True},
        prep="dispute",
    ),
    # a fraud decline on the account (stolen card): fraud gate for any intent, even a Tier 1 one
    Case(
        "fraud_decline_payment_failed",
        "Our card was declined when the subscription renewed, please retry the payment.",
        ESCALATION,
        Intent.PAYMENT_FAILED,
        "fraud",
        world={
            "card": "declined_generic",
            "failed_invoice": {"amount_usd": 49, "decline_code": "stolen_card"},
        },
    ),
    # a contact for this account from another customer's session: never acted on
    Case(
        "other_customers_session",
        "Please refund the annual plan payment we made last week, it was bought by mistake.",
        ESCALATION,
        Intent.REFUND_REQUEST,
        "policy_denied",
        sender="other_session",
    ),
    # an email from an address not on file for the account
    Case(
        "unknown_email_sender",
        "Our accountant needs the invoice PDF for last quarter's payments, can you send it over?",
        ESCALATION,
        Intent.INVOICE_REQUEST,
        "policy_denied",
        sender="other_email",
    ),
    # the same email from the address on file is trusted
    Case(
        "known_email_sender",
        "Our accountant needs the invoice PDF for last quarter's payments, can you send it over?",
        SELFHEAL,
        Intent.INVOICE_REQUEST,
        "send_invoice",
        sender="own_email",
    ),
    # nobody knows the customer: denied, but asking for a person always reaches one
    Case(
        "unknown_customer",
        "Our accountant needs the invoice PDF for last quarter's payments, can you send it over?",
        ESCALATION,
        Intent.INVOICE_REQUEST,
        "policy_denied",
        world=UNKNOWN,
    ),
    Case(
        "unknown_customer_asks_for_a_person",
        "I'm done with the bot, put me through to a real person on your billing team right now.",
        ESCALATION,
        Intent.HUMAN_AGENT,
        "customer_asked",
        world=UNKNOWN,
    ),
    # three earlier contacts this week: self-heal has not worked, skip Tier 1
    Case(
        "repeat_contacts",
        "Our corporate card expires in two weeks and the bank already mailed the new one. "
        "Where do I enter the new card details?",
        AGENT,
        Intent.CARD_EXPIRING,
        "repeat_contacts",
        prep="repeat_contacts",
    ),
    # an expired pay-invoice link: Tier 1 sends a fresh one
    Case(
        "expired_invoice_link",
        "Our card was declined when the subscription renewed, please retry the payment.",
        SELFHEAL,
        Intent.PAYMENT_FAILED,
        "regenerate_invoice_link",
        world={**SOFT_DECLINE, "expired_invoice_link": True},
    ),
    # nothing to cancel: Tier 1 has no action, so Tier 2 (never a dead end)
    Case(
        "cancel_without_subscription",
        "Please close our account and stop billing us from next month.",
        AGENT,
        Intent.CANCEL_SUBSCRIPTION,
        "no_selfheal_action",
        world={"customer": {"plan": "pro"}, "subscription": {"status": "none"}},
    ),
)

# Tier 0 flags a card-fraud decline as risk_flags {"card_fraud": ...}; the router reads risk_flags["fraud"].
TIER0_FRAUD_FLAG = Case(
    "tier0_fraud_flag_invoice_request",
    "Our accountant needs the invoice PDF for last quarter's payments, can you send it over?",
    ESCALATION,
    Intent.INVOICE_REQUEST,
    "fraud",
    prep="tier0_fraud_flag",
)
ALL_CASES: tuple[Case, ...] = (*INTENT_CASES, *GATE_CASES, TIER0_FRAUD_FLAG)


def model_threshold() -> float:
    return float(json.loads((default_model_path() / "meta.json").read_text())["threshold"])


class Collector:
    """Reads the tier topics from their current end (no consumer group: no join delay)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        parts = [
            TopicPartition(t, p)
            for t in (*TIER_TOPICS, QUESTION)
            for p in (self.consumer.partitions_for_topic(t) or range(4))
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

    def for_contact(self, contact_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m.get("contact_id") == contact_id]


@dataclass
class Routed:
    contact: ContactReceivedV1
    forwarded: list[tuple[str, dict[str, Any]]]  # (topic, message) for every tier message of the contact


def sender_for(case: Case, customer_id: str, world: BuiltWorld | None, someone_else: BuiltWorld) -> Sender:
    if case.sender == "own_session":
        return Sender(kind="customer_session", subject=customer_id)
    if case.sender == "other_session":
        return Sender(kind="customer_session", subject=someone_else.customer_id)
    if case.sender == "own_email":
        assert world is not None
        return Sender(kind="email", email=world.email.upper())  # addresses compare case-insensitively
    return Sender(kind="email", email=f"billing@not-{uuid.uuid4().hex[:6]}.example")


async def prepare(case: Case, world: BuiltWorld | None, pg_pool: Any) -> None:
    if case.prep == "dispute":
        assert world is not None
        [event] = [e for e in world.pending_events if e["type"] == "charge.dispute.created"]
        await MirrorStore(pg_pool).apply_stripe_event(
            event["type"], event["data"]["object"], event["created"]
        )
    elif case.prep == "tier0_fraud_flag":
        assert world is not None
        await Tier0Store(pg_pool).flag_risk(world.customer_id, "card_fraud", {"decline_code": "stolen_card"})
    elif case.prep == "repeat_contacts":
        assert world is not None
        for n in range(3):
            await start_contact(
                pg_pool,
                contact_id=f"c-earlier-{n}-{uuid.uuid4().hex[:8]}",
                customer_id=world.customer_id,
                trigger="contact",
                channel="chat",
            )


@pytest.fixture(scope="module")
async def routed(infra: Any, pg_pool: Any) -> AsyncIterator[dict[str, Routed]]:
    """Every case routed once: the router started, all contacts published together, then collected."""
    run = uuid.uuid4().hex[:8]
    actions = StripeActions(infra)
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    router = create_service(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    collector = Collector(infra.kafka_bootstrap)

    async def world_for(case: Case) -> BuiltWorld | None:
        if case.world is None:
            return None
        return await build_world(case.world, actions, label=f"rt-{case.id.replace('_', '-')}-{run}")

    # the router loads its model and joins its group while the worlds are built
    started = asyncio.gather(router.start(), collector.start())
    try:
        built = await asyncio.gather(*map(world_for, ALL_CASES))
        worlds = dict(zip([c.id for c in ALL_CASES], built, strict=True))
        await asyncio.gather(*(prepare(c, worlds[c.id], pg_pool) for c in ALL_CASES))
        await started
        someone_else = worlds["invoice_request"]
        assert someone_else is not None
        contacts: dict[str, ContactReceivedV1] = {}
        for case in ALL_CASES:
            world = worlds[case.id]
            customer_id = world.customer_id if world else f"cus_unknown_{case.id}_{run}"
            contacts[case.id] = ContactReceivedV1.build(
                ContactReceivedPayload(
                    channel=Channel.CHAT,
                    text=case.text,
                    sender=sender_for(case, customer_id, world, someone_else),
                ),
                contact_id=f"c-rt-{case.id}-{run}",
                customer_id=customer_id,
            )
        await asyncio.gather(*(publish(router.broker, m) for m in contacts.values()))

        deadline = time.monotonic() + 120  # exits as soon as every contact is forwarded
        while time.monotonic() < deadline:
            if all(collector.for_contact(m.contact_id) for m in contacts.values()):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # anything forwarded twice would show up now
        yield {cid: Routed(m, collector.for_contact(m.contact_id)) for cid, m in contacts.items()}
    finally:
        await asyncio.gather(started, return_exceptions=True)
        await router.stop()
        await collector.stop()


def check(case: Case, got: Routed) -> None:
    assert got.forwarded, f"{case.id}: nothing forwarded to any tier topic"
    topics = [t for t, _ in got.forwarded]
    assert len(got.forwarded) == 1, f"{case.id}: forwarded {len(topics)} times: {topics}"
    topic, message = got.forwarded[0]
    payload = message["payload"]
    if topic == QUESTION:
        values = [c["value"] for c in payload["choices"]]
        assert (topic, payload["kind"]) == (case.topic, case.detail), f"{case.id}: {payload['kind']}"
        assert len(values) >= 3, f"{case.id}: choices {values}"
        assert values[-1] == "human", f"{case.id}: choices {values}"
        assert all(Intent(v) for v in values[:-1])  # each other choice is an intent the customer can pick
        return
    recorded = {
        SELFHEAL: lambda: payload["action"],
        AGENT: lambda: payload["handoff_reason"],
        ESCALATION: lambda: payload["reason"],
    }[topic]()
    expected_intent = payload["intent"] if case.low_confidence else case.intent.value
    assert (topic, payload["intent"], recorded) == (case.topic, expected_intent, case.detail), (
        f"{case.id}: routed to {topic} as {payload['intent']} ({recorded})"
    )
    assert message["customer_id"] == got.contact.customer_id
    assert message["contact_id"] == got.contact.contact_id
    if topic == SELFHEAL:
        assert payload["source"] == "router"
        assert payload["text"] == case.text
    elif topic == AGENT:
        assert payload["text"] == case.text
        assert (payload["confidence"] < model_threshold()) is case.low_confidence
        assert payload["candidates"][0]["intent"] == payload["intent"]
        assert len(payload["candidates"]) > 1 or not case.low_confidence
    else:
        assert payload["opened_by"] == "router"
        assert payload["transcript"] == [{"role": "customer", "text": case.text}]


def test_the_intent_cases_cover_the_whole_vocabulary() -> None:
    assert sorted(c.intent for c in INTENT_CASES) == sorted(Intent)
    assert len({c.id for c in ALL_CASES}) == len(ALL_CASES)


@pytest.mark.parametrize("case", INTENT_CASES, ids=lambda c: c.id)
async def test_given_a_contact_of_each_intent_when_routed_then_it_lands_on_its_tier_topic(
    routed: dict[str, Routed], case: Case
) -> None:
    check(case, routed[case.id])


@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: c.id)
async def test_given_a_gate_or_table_branch_when_routed_then_the_table_decides_the_tier(
    routed: dict[str, Routed], case: Case
) -> None:
    check(case, routed[case.id])


async def test_given_a_customer_tier0_flagged_for_card_fraud_when_any_contact_arrives_then_fraud_escalation(
    routed: dict[str, Routed],
) -> None:
    check(TIER0_FRAUD_FLAG, routed[TIER0_FRAUD_FLAG.id])


async def test_given_routed_contacts_then_postgres_holds_the_intent_the_router_forwarded(
    routed: dict[str, Routed], pg_pool: Any
) -> None:
    ids = [r.contact.contact_id for r in routed.values()]
    rows = await pg_pool.fetch(
        "SELECT contact_id, intent FROM contacts WHERE contact_id = ANY($1::text[])", ids
    )
    stored = {r["contact_id"]: r["intent"] for r in rows}
    forwarded = {
        r.contact.contact_id: r.forwarded[0][1]["payload"]["intent"]
        for r in routed.values()
        if r.forwarded and r.forwarded[0][0] != QUESTION  # a question carries no intent: it asks for one
    }
    asked = {r.contact.contact_id for r in routed.values() if r.forwarded and r.forwarded[0][0] == QUESTION}
    assert len(stored) == len(ALL_CASES)
    assert {c: i for c, i in stored.items() if c not in asked} == forwarded
    assert all(stored[c] for c in asked)  # the router's best reading is kept for the question's contact
