"""The router's handler, ``on_contact_received``, on FastStream's TestKafkaBroker: a contact is published
into an in-memory broker, the handler runs with fakes for its ports (the classifier, diagnostics and the
billing core's facts repository) and what it published is read back (topic, payload).

The conversation store, the contacts and the inbox stay on the real Postgres (the session stack's): they
are the handler's own records, and a redelivery must behave as it will in production.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas import Channel, HealthStatus, Intent, RootCause
from schemas.messages import (
    AgentRequestedV1,
    AuditEventRecordedV1,
    ContactReceivedPayload,
    ContactReceivedV1,
    DiagnosisView,
    EscalationOpenedV1,
    OutcomeRecordedV1,
    SelfhealRequestedV1,
    Sender,
)
from services.router.handlers import RouterDeps, on_contact_received
from tierline.billing.facts import CustomerFacts, DisputeFact, InMemoryFacts
from tierline.messaging import Inbox

pytestmark = pytest.mark.integration

TIER_TOPICS = (SelfhealRequestedV1.TOPIC, AgentRequestedV1.TOPIC, EscalationOpenedV1.TOPIC)
CAPTURED = (*TIER_TOPICS, AuditEventRecordedV1.TOPIC, OutcomeRecordedV1.TOPIC)


# ------------------------------------------------------------------------------------------ fakes
@dataclass(frozen=True)
class Reading:
    intent: Intent
    confidence: float
    candidates: list[tuple[Intent, float]]


class FixedClassifier:
    """Reads every text (and clause) as one intent."""

    threshold = 0.5

    def __init__(self, intent: Intent, confidence: float = 0.95) -> None:
        self.intent, self.confidence = intent, confidence

    def predict(self, texts: list[str]) -> list[Reading]:
        return [Reading(self.intent, self.confidence, [(self.intent, self.confidence)]) for _ in texts]


@dataclass
class FakeDiagnostics:
    known: dict[str, DiagnosisView] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def diagnose(self, customer_id: str, *, contact_id: str | None = None) -> DiagnosisView:
        self.calls.append(customer_id)
        if customer_id not in self.known:
            raise LookupError(customer_id)
        return self.known[customer_id]


class ForgetfulInbox(Inbox):
    """An inbox whose marks are lost (a crash after the handler published, before the offset commit)."""

    async def mark(self, message_id: Any, conn: Any = None) -> bool:
        return True

    async def mark_many(self, message_ids: Any, conn: Any = None) -> set[Any]:
        return set(message_ids)


def healthy(cid: str) -> DiagnosisView:
    return DiagnosisView(
        customer_id=cid,
        status=HealthStatus.GREEN,
        root_cause=RootCause.HEALTHY,
        explanation="All good.",
        evidence={"plan": {"tier": "pro"}},
    )


def contact(cid: str, contact_id: str, text: str, sender: Sender | None = None) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            text=text,
            channel=Channel.EMAIL if sender and sender.kind == "email" else Channel.CHAT,
            sender=sender or Sender(kind="customer_session", subject=cid),
        ),
        contact_id=contact_id,
        customer_id=cid,
    )


def without_time(message: dict[str, Any]) -> dict[str, Any]:
    """A message but for when it was published (ids and payload are what downstream inboxes compare)."""
    return {k: v for k, v in message.items() if k != "occurred_at"}


# ------------------------------------------------------------------------------------------ harness
@dataclass
class Router:
    broker: KafkaBroker
    deps: RouterDeps
    published: list[tuple[str, dict[str, Any]]]

    async def send(self, msg: ContactReceivedV1) -> None:
        await self.broker.publish(msg.model_dump_json().encode(), topic=msg.TOPIC, key=msg.key())

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [body for t, body in self.published if t == topic]

    def tier_messages(self) -> list[tuple[str, dict[str, Any]]]:
        return [(t, body) for t, body in self.published if t in TIER_TOPICS]


@pytest.fixture
async def router_for(pg_pool: Any, unique: str) -> AsyncIterator[Any]:
    """A router on an in-memory broker: ``router_for(intent, facts=..., diagnoses=..., inbox=...)``."""
    stack: list[TestKafkaBroker] = []

    async def make(
        intent: Intent,
        *,
        facts: list[CustomerFacts],
        diagnoses: dict[str, DiagnosisView],
        forgetful: bool = False,
    ) -> Router:
        broker = KafkaBroker("127.0.0.1:1")
        published: list[tuple[str, dict[str, Any]]] = []
        inbox_cls = ForgetfulInbox if forgetful else Inbox
        deps = RouterDeps(
            pool=pg_pool,
            broker=broker,
            classifier=FixedClassifier(intent),
            diagnostics=FakeDiagnostics(diagnoses),
            inbox=inbox_cls(pg_pool, f"router-test-{unique}"),
            facts=InMemoryFacts(facts),
        )

        @broker.subscriber(ContactReceivedV1.TOPIC, group_id=f"router-test-{unique}")
        async def on_contact(msg: ContactReceivedV1) -> None:
            await on_contact_received(deps, msg)

        for topic in CAPTURED:

            @broker.subscriber(topic, group_id=f"capture-{unique}")
            async def capture(body: Any, message: KafkaMessage) -> None:
                raw = body if isinstance(body, dict) else json.loads(body)
                published.append((message.raw_message.topic, raw))

        test_broker = TestKafkaBroker(broker)
        await test_broker.__aenter__()
        stack.append(test_broker)
        return Router(broker, deps, published)

    yield make
    for test_broker in stack:
        await test_broker.__aexit__(None, None, None)


# ------------------------------------------------------------------------------------------ tests
async def test_given_an_invoice_ask_from_the_customer_when_received_then_one_selfheal_request(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.INVOICE_REQUEST,
        facts=[CustomerFacts(customer_id=cid, in_store=True, store_plan="pro")],
        diagnoses={cid: healthy(cid)},
    )
    msg = contact(cid, f"ct_{unique}", "Could you send me last month's invoice?")

    await router.send(msg)

    ((topic, body),) = router.tier_messages()
    assert topic == SelfhealRequestedV1.TOPIC
    assert body["payload"]["action"] == "send_invoice"
    assert body["payload"]["source"] == "router"
    assert body["contact_id"] == msg.contact_id
    assert body["customer_id"] == cid
    routed = [a for a in router.on(AuditEventRecordedV1.TOPIC) if a["payload"]["action"] == "route"]
    assert [a["payload"]["target"] for a in routed] == [SelfhealRequestedV1.TOPIC]
    assert routed[0]["payload"]["details"]["gates"]["plan"] == "pro"


async def test_given_the_same_contact_twice_when_the_inbox_has_it_then_the_second_publishes_nothing(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.INVOICE_REQUEST,
        facts=[CustomerFacts(customer_id=cid, in_store=True)],
        diagnoses={cid: healthy(cid)},
    )
    msg = contact(cid, f"ct_{unique}", "Please send the invoice again.")

    await router.send(msg)
    first = list(router.published)
    await router.send(msg)

    assert router.published == first
    assert len(router.tier_messages()) == 1


async def test_given_a_redelivery_after_a_crash_when_handled_again_then_identical_messages_are_published(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.INVOICE_REQUEST,
        facts=[CustomerFacts(customer_id=cid, in_store=True)],
        diagnoses={cid: healthy(cid)},
        forgetful=True,  # the first run's mark is lost: the message comes again
    )
    msg = contact(cid, f"ct_{unique}", "I need my invoice for March.")

    await router.send(msg)
    await router.send(msg)

    first, second = (without_time(m) for _t, m in router.tier_messages())
    assert first == second  # same id (derived from the contact), same payload: downstream inboxes skip it
    audits = [without_time(a) for a in router.on(AuditEventRecordedV1.TOPIC)]
    half = len(audits) // 2
    assert audits[:half] == audits[half:]


async def test_given_an_email_from_a_stranger_when_received_then_policy_denied_to_a_person(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.REFUND_REQUEST,
        facts=[CustomerFacts(customer_id=cid, in_store=True, store_email=f"{cid}@example.com")],
        diagnoses={cid: healthy(cid)},
    )
    msg = contact(
        cid, f"ct_{unique}", "Refund my last charge please.", Sender(kind="email", email="eve@example.net")
    )

    await router.send(msg)

    ((topic, body),) = router.tier_messages()
    assert topic == EscalationOpenedV1.TOPIC
    assert body["payload"]["reason"] == "policy_denied"
    assert body["payload"]["opened_by"] == "router"


async def test_given_the_owner_email_when_received_then_the_sender_passes_the_gate(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.INVOICE_REQUEST,
        facts=[CustomerFacts(customer_id=cid, in_mirror=True, mirror_email=f"{cid}@example.com")],
        diagnoses={cid: healthy(cid)},
    )
    msg = contact(
        cid, f"ct_{unique}", "Send me my invoice.", Sender(kind="email", email=f"{cid}@EXAMPLE.com")
    )

    await router.send(msg)

    ((topic, _body),) = router.tier_messages()
    assert topic == SelfhealRequestedV1.TOPIC


async def test_given_a_dispute_only_in_the_mirror_when_a_refund_is_asked_then_a_person_gets_it(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(
        Intent.REFUND_REQUEST,
        facts=[
            CustomerFacts(
                customer_id=cid, in_store=True, disputes=(DisputeFact(id="dp_1", status="needs_response"),)
            )
        ],
        diagnoses={cid: healthy(cid)},  # computed before the dispute arrived: it does not name it
    )

    await router.send(contact(cid, f"ct_{unique}", "I want a refund for the last charge."))

    ((topic, body),) = router.tier_messages()
    assert topic == EscalationOpenedV1.TOPIC
    assert body["payload"]["reason"] == "dispute"


async def test_given_an_unknown_customer_when_received_then_policy_denied_and_no_tier_acts(
    router_for: Any, unique: str
) -> None:
    cid = f"cus_hr_{unique}"
    router = await router_for(Intent.INVOICE_REQUEST, facts=[], diagnoses={})

    await router.send(contact(cid, f"ct_{unique}", "Send my invoice."))

    ((topic, body),) = router.tier_messages()
    assert topic == EscalationOpenedV1.TOPIC
    assert body["payload"]["reason"] == "policy_denied"
