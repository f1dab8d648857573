"""Tier 2 asks its own clarifying question (issue 19), router and tier 2 handlers chained on FastStream's
TestKafkaBroker with the conversation store, contacts and inboxes on the real Postgres.

The router hands on an account change it read under that intent's own threshold (a single candidate, so
it asks nothing itself); tier 2's planner asks the customer to confirm instead of changing the account or
handing it to a person: a clarifying_question turn with choices, stored in the conversation, the contact's
outcome a question (no action, no case). The customer's "yes" in the same conversation is read by the router
as the offered change, a sure reading routed by the router's table (tier 1's one-click cancel). A reply to
tier 2's question that is still unclear goes to a person, never a second question.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from schemas import Action, Channel, HealthStatus, Intent, RootCause
from schemas.messages import (
    AgentRequestedV1,
    AuditEventRecordedV1,
    ContactReceivedPayload,
    ContactReceivedV1,
    ConversationMessageSentV1,
    DiagnosisView,
    EscalationOpenedV1,
    OutcomeRecordedV1,
    SelfhealRequestedV1,
    Sender,
)
from services.router.handlers import RouterDeps, on_contact_received
from services.tier2_agent.handlers import AgentDeps, on_agent_requested
from services.tier2_agent.planner import OfflinePlanner
from tierline.actions import ActionContext, ActionOutcome
from tierline.billing.facts import CustomerFacts, InMemoryFacts
from tierline.ledger import idempotency_key
from tierline.messaging import Inbox

pytestmark = pytest.mark.integration

CAPTURED = (
    SelfhealRequestedV1.TOPIC,
    EscalationOpenedV1.TOPIC,
    OutcomeRecordedV1.TOPIC,
    ConversationMessageSentV1.TOPIC,
    AuditEventRecordedV1.TOPIC,
)
FIRST = "maybe stop the subscription thing?"


@dataclass(frozen=True)
class Reading:
    intent: Intent
    confidence: float
    candidates: list[tuple[Intent, float]]


class TextClassifier:
    """The first message reads as a cancellation at 0.80 (under cancel's own 0.90); anything else as not
    about billing, so only the question can make a reply mean something."""

    threshold = 0.5
    intent_thresholds = {Intent.CANCEL_SUBSCRIPTION: 0.90}

    def predict(self, texts: list[str]) -> list[Reading]:
        return [
            Reading(Intent.CANCEL_SUBSCRIPTION, 0.80, [(Intent.CANCEL_SUBSCRIPTION, 0.80)])
            if "subscription" in t
            else Reading(Intent.OUT_OF_SCOPE, 0.90, [(Intent.OUT_OF_SCOPE, 0.90)])
            for t in texts
        ]


@dataclass
class FakeDiagnostics:
    view: DiagnosisView

    async def diagnose(self, customer_id: str, **_: Any) -> DiagnosisView:
        return self.view


@dataclass
class FakeActions:
    """Tier 2's actions port: the cancellation recorded (no other action exists here)."""

    view: DiagnosisView
    cancelled: list[str] = field(default_factory=list)

    async def diagnose(self, ctx: ActionContext) -> ActionOutcome:
        return ActionOutcome(
            Action.EXPLAIN_CHARGE, "succeeded", data={"diagnosis": self.view.model_dump(mode="json")}
        )

    async def cancel_subscription(self, ctx: ActionContext, at_period_end: bool = True) -> ActionOutcome:
        self.cancelled.append(ctx.contact_id)
        return ActionOutcome(
            Action.CANCEL_SUBSCRIPTION,
            "succeeded",
            detail="cancel at period end",
            target="sub_1",
            idempotency_key=idempotency_key(ctx.contact_id, Action.CANCEL_SUBSCRIPTION.value, "sub_1"),
            data={"message": "Your subscription will end at the end of the current period."},
        )


@dataclass
class Pipeline:
    broker: KafkaBroker
    published: list[tuple[str, dict[str, Any]]]
    agent_requests: list[dict[str, Any]]

    async def send(self, msg: ContactReceivedV1) -> None:
        await self.broker.publish(msg.model_dump_json().encode(), topic=msg.TOPIC, key=msg.key())

    def on(self, topic: str, contact_id: str) -> list[dict[str, Any]]:
        return [b for t, b in self.published if t == topic and b["contact_id"] == contact_id]


def healthy(cid: str) -> DiagnosisView:
    return DiagnosisView(
        customer_id=cid,
        status=HealthStatus.GREEN,
        root_cause=RootCause.HEALTHY,
        explanation="All good.",
        evidence={"plan": {"tier": "pro"}, "subscription": {"id": "sub_1", "status": "active"}},
    )


def contact(cid: str, contact_id: str, text: str, conversation_id: str | None = None) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            text=text,
            channel=Channel.CHAT,
            sender=Sender(kind="customer_session", subject=cid),
            conversation_id=conversation_id,
        ),
        contact_id=contact_id,
        customer_id=cid,
    )


@pytest.fixture
async def pipeline_for(pg_pool: Any, unique: str) -> AsyncIterator[Callable[[str], Awaitable[Any]]]:
    started: list[TestKafkaBroker] = []

    async def make(cid: str) -> tuple[Pipeline, FakeActions]:
        broker = KafkaBroker("127.0.0.1:1")
        published: list[tuple[str, dict[str, Any]]] = []
        agent_requests: list[dict[str, Any]] = []
        view = healthy(cid)
        actions = FakeActions(view)
        router = RouterDeps(
            pool=pg_pool,
            broker=broker,
            classifier=TextClassifier(),
            diagnostics=FakeDiagnostics(view),
            inbox=Inbox(pg_pool, f"router-q-{unique}"),
            facts=InMemoryFacts([CustomerFacts(customer_id=cid)]),
        )
        agent = AgentDeps(
            pool=pg_pool,
            broker=broker,
            actions=actions,  # type: ignore[arg-type]
            diagnostics=FakeDiagnostics(view),
            knowledge=None,
            agent=OfflinePlanner(),
            inbox=Inbox(pg_pool, f"tier2-q-{unique}"),
        )

        @broker.subscriber(ContactReceivedV1.TOPIC, group_id=f"router-q-{unique}")
        async def on_contact(msg: ContactReceivedV1) -> None:
            await on_contact_received(router, msg)

        @broker.subscriber(AgentRequestedV1.TOPIC, group_id=f"tier2-q-{unique}")
        async def on_agent(msg: AgentRequestedV1) -> None:
            agent_requests.append(msg.model_dump(mode="json"))
            await on_agent_requested(agent, msg)

        for topic in CAPTURED:

            @broker.subscriber(topic, group_id=f"capture-q-{unique}")
            async def capture(body: Any, message: KafkaMessage) -> None:
                raw = body if isinstance(body, dict) else json.loads(body)
                published.append((message.raw_message.topic, raw))

        test_broker = TestKafkaBroker(broker)
        await test_broker.__aenter__()
        started.append(test_broker)
        return Pipeline(broker, published, agent_requests), actions

    yield make
    for test_broker in started:
        await test_broker.__aexit__(None, None, None)


async def asked(pipe: Pipeline, actions: FakeActions, cid: str, contact_id: str) -> dict[str, Any]:
    """The first message: tier 2's confirmation question, said in the conversation, nothing changed."""
    await pipe.send(contact(cid, contact_id, FIRST))

    (request,) = pipe.agent_requests
    assert request["payload"]["handoff_reason"] == "low_confidence"
    assert request["payload"]["answers_question"] is False
    (said,) = pipe.on(ConversationMessageSentV1.TOPIC, contact_id)
    assert said["payload"]["kind"] == "clarifying_question"
    assert said["payload"]["author"] == "tier2_agent"
    assert [c["value"] for c in said["payload"]["choices"]] == ["cancel_subscription", "human"]
    (outcome,) = pipe.on(OutcomeRecordedV1.TOPIC, contact_id)
    assert outcome["payload"]["resolved_by"] == "tier2"
    assert outcome["payload"]["actions"] == []
    assert outcome["payload"]["summary"].startswith("clarifying_question:")
    assert pipe.on(EscalationOpenedV1.TOPIC, contact_id) == []
    assert actions.cancelled == []
    return said


async def test_given_an_unsure_cancellation_when_the_customer_confirms_then_tier2_asked_once_and_cancels(
    pipeline_for: Any, pg_pool: Any, unique: str
) -> None:
    cid = f"cus_q_{unique}"
    pipe, actions = await pipeline_for(cid)
    first, reply = f"ct_q1_{unique}", f"ct_q2_{unique}"
    await asked(pipe, actions, cid, first)
    status = await pg_pool.fetchval("SELECT status FROM conversations WHERE conversation_id=$1", first)
    assert status == "waiting_customer"

    await pipe.send(contact(cid, reply, "Yes please.", conversation_id=first))

    # a sure cancellation now: the router's table sends it to tier 1's one-click cancel (the executor,
    # policy and ledger there), not to a person and not back to tier 2 for a second question
    (fix,) = pipe.on(SelfhealRequestedV1.TOPIC, reply)
    assert fix["payload"]["action"] == "cancel_subscription"
    assert fix["payload"]["intent"] == "cancel_subscription"
    assert fix["payload"]["conversation_id"] == first
    assert [r["contact_id"] for r in pipe.agent_requests] == [first]
    assert pipe.on(EscalationOpenedV1.TOPIC, reply) == []


async def test_given_tier2s_question_when_the_reply_is_still_unclear_then_a_person_and_no_second_question(
    pipeline_for: Any, unique: str
) -> None:
    cid = f"cus_q_{unique}"
    pipe, actions = await pipeline_for(cid)
    first, reply = f"ct_q1_{unique}", f"ct_q2_{unique}"
    await asked(pipe, actions, cid, first)

    await pipe.send(contact(cid, reply, "what do you mean", conversation_id=first))

    (escalation,) = pipe.on(EscalationOpenedV1.TOPIC, reply)
    assert escalation["payload"]["reason"] == "low_confidence"
    kinds = [b["payload"]["kind"] for b in pipe.on(ConversationMessageSentV1.TOPIC, reply)]
    assert "clarifying_question" not in kinds
    assert actions.cancelled == []
