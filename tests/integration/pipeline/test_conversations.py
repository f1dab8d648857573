"""Conversations through the real doors (issue 19): every automated contact that ends tells the customer
once, in their conversation; a follow-up while a person holds the conversation joins that person's case.

Contacts are published on contact.received.v1 as the chat and email doors do; what the customer is told
is read back from the stored turns and from conversation.message.sent.v1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas import Channel
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from tests.helpers import read_topic, wait_rows
from tierline.messaging import publish
from tierline_tools.scenarios.model import Scenario
from tierline_tools.scenarios.runner import ScenarioRunner

pytestmark = pytest.mark.integration

SENT = "conversation.message.sent.v1"
DUPLICATE_CHARGE = {
    "customer": {"plan": "pro"},
    "charges": [{"amount_usd": 49, "days_ago": 1}, {"amount_usd": 49, "days_ago": 1}],
}
PAID_LAST_MONTH = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 12}]}
EXPIRED_CARD = {
    "customer": {"plan": "starter"},
    "card": "expired",
    "subscription": {"status": "past_due", "monthly_usd": 19},
    "failed_invoice": {"amount_usd": 19, "days_ago": 1, "decline_code": "expired_card"},
}
INVOICE_ASK = "Can I get the invoice for last month's payment? Our accountant needs it."


@pytest.fixture(scope="module")
async def runner(stack: Any, infra: Any, pipeline: list[Any]) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=90) as r:
        yield r


async def first_contact(runner: ScenarioRunner, world: dict[str, Any], text: str) -> tuple[str, str, Any]:
    """A new customer's first chat message through the doors: (contact id, customer id, outcome)."""
    scenario = Scenario.model_validate(
        {"id": f"conv-{uuid.uuid4().hex[:8]}", "world": world, "contact": {"channel": "chat", "text": text}}
    )
    result = await runner.run(scenario)
    assert result.error is None, result.error
    assert result.contact_id is not None
    customer_id = await runner.db.fetchval(
        "SELECT customer_id FROM contacts WHERE contact_id=$1", result.contact_id
    )
    outcome = await runner.wait_outcome(result.contact_id)
    assert outcome is not None
    return result.contact_id, str(customer_id), outcome


def contact(customer_id: str, text: str, *, conversation_id: str | None = None) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.CHAT,
            text=text,
            sender=Sender(kind="customer_session", subject=customer_id),
            conversation_id=conversation_id,
        ),
        contact_id=f"c-{uuid.uuid4()}",
        customer_id=customer_id,
    )


async def turns_of(runner: ScenarioRunner, conversation_id: str) -> list[Any]:
    return list(
        await runner.db.fetch(
            """SELECT role, kind, author, contact_id, text FROM conversation_turns
               WHERE conversation_id=$1 ORDER BY seq""",
            conversation_id,
        )
    )


async def said_in(runner: ScenarioRunner, conversation_id: str, *, min_count: int = 1) -> list[Any]:
    """What the conversation told the customer (the turn is stored just after the outcome: waited for)."""
    return list(
        await wait_rows(
            runner.db,
            """SELECT role, kind, author, contact_id, text FROM conversation_turns
               WHERE conversation_id=$1 AND role <> 'customer' ORDER BY seq""",
            conversation_id,
            min_count=min_count,
        )
    )


async def sent_for(infra: Any, contact_id: str, *, min_count: int = 1) -> list[dict[str, Any]]:
    """The distinct conversation.message.sent.v1 messages of a contact (a retry republishes the same id)."""
    records = await read_topic(
        infra.kafka_bootstrap,
        SENT,
        lambda b: b.get("contact_id") == contact_id,
        min_count=min_count,
        timeout=30,
        settle=2,
    )
    return list({r["message_id"]: r for r in records}.values())


async def send_and_wait(runner: ScenarioRunner, msg: ContactReceivedV1) -> dict[str, Any]:
    await publish(runner.broker, msg)
    outcome = await runner.wait_outcome(msg.contact_id)
    assert outcome is not None, f"no outcome for {msg.contact_id}"
    return outcome


async def test_given_a_tier2_contact_when_it_is_answered_then_one_answer_turn_and_one_message_are_sent(
    runner: ScenarioRunner, infra: Any
) -> None:
    contact_id, _, outcome = await first_contact(
        runner, DUPLICATE_CHARGE, "I was charged twice for my subscription yesterday, please fix this"
    )

    assert outcome["payload"]["resolved_by"] == "tier2"
    said = await said_in(runner, contact_id)
    assert [(t["kind"], t["author"], t["contact_id"]) for t in said] == [
        ("answer", "tier2_agent", contact_id)
    ]
    assert said[0]["text"].startswith(outcome["payload"]["summary"][:200])
    sent = await sent_for(infra, contact_id)
    assert len(sent) == 1
    assert sent[0]["payload"]["kind"] == "answer"
    assert sent[0]["payload"]["conversation_id"] == contact_id
    assert sent[0]["payload"]["channel"] == "chat"
    status = await runner.db.fetchval("SELECT status FROM conversations WHERE conversation_id=$1", contact_id)
    assert status == "open"


async def test_given_a_tier1_contact_when_the_fix_is_done_then_the_customer_gets_a_fix_confirmation(
    runner: ScenarioRunner, infra: Any
) -> None:
    contact_id, _, outcome = await first_contact(runner, PAID_LAST_MONTH, INVOICE_ASK)

    assert outcome["payload"]["resolved_by"] == "tier1"
    said = await said_in(runner, contact_id)
    assert [(t["kind"], t["author"]) for t in said] == [("fix_confirmation", "tier1_selfheal")]
    assert "invoice" in said[0]["text"].lower()
    sent = await sent_for(infra, contact_id)
    assert [s["payload"]["kind"] for s in sent] == ["fix_confirmation"]


async def test_given_a_handoff_then_follow_ups_when_a_person_holds_it_then_one_case_one_status_turn(
    runner: ScenarioRunner, infra: Any
) -> None:
    """Given a customer who asked for a person (a case, a handoff status turn with the SLA), When the
    escalation is redelivered, the customer writes again in the same conversation, and another customer
    names that conversation, Then: one case, one handoff turn, the follow-up in the case's transcript and
    actions, the other customer's message in a conversation of its own."""
    contact_id, customer_id, outcome = await first_contact(
        runner, {"customer": {"plan": "pro"}}, "I don't want a bot. Let me talk to a person please."
    )
    conversation_id = contact_id
    assert outcome["payload"]["resolved_by"] == "tier3"
    case = await runner.db.fetchrow("SELECT case_id, sla_due_at FROM cases WHERE contact_id=$1", contact_id)
    assert case is not None
    handoffs = await wait_rows(
        runner.db,
        "SELECT text FROM conversation_turns WHERE conversation_id=$1 AND kind='handoff_status'",
        conversation_id,
    )
    assert len(handoffs) == 1
    sent = await sent_for(infra, contact_id)
    assert len(sent) == 1
    assert sent[0]["payload"]["kind"] == "handoff_status"
    assert sent[0]["payload"]["sla_due_at"] is not None
    due = case["sla_due_at"]
    assert due.strftime("%H:%M UTC") in handoffs[0]["text"]
    held = await wait_rows(  # the status moves just after the turn is stored
        runner.db,
        "SELECT 1 FROM conversations WHERE conversation_id=$1 AND status='with_human'",
        conversation_id,
    )
    assert held

    # the escalation is delivered again (as after a crash before the commit): nothing new is said
    escalations = await read_topic(
        infra.kafka_bootstrap, "tier3.escalation.opened.v1", lambda b: b.get("contact_id") == contact_id
    )
    assert escalations
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            "tier3.escalation.opened.v1",
            json.dumps(escalations[0]).encode(),
            key=customer_id.encode(),
        )
    finally:
        await producer.stop()

    before_follow_up = await runner.db.fetchval(
        "SELECT count(*) FROM conversation_turns WHERE conversation_id=$1", conversation_id
    )

    # a follow-up in the conversation the person holds (after the redeliveries on the same keys)
    follow_up = contact(
        customer_id, "Any news? I'm still waiting for someone.", conversation_id=conversation_id
    )
    follow_outcome = await send_and_wait(runner, follow_up)

    assert follow_outcome["payload"]["resolved_by"] == "tier3"
    assert follow_outcome["payload"]["summary"] == f"follow-up added to open case {case['case_id']}"
    cases = await runner.db.fetch("SELECT case_id, packet FROM cases WHERE customer_id=$1", customer_id)
    assert [c["case_id"] for c in cases] == [case["case_id"]]  # no second case
    transcript = cases[0]["packet"]["transcript"]
    assert transcript[-1] == {"role": "customer", "text": "Any news? I'm still waiting for someone."}
    replies = await runner.db.fetch(
        "SELECT agent_id, note, record FROM case_actions WHERE case_id=$1 AND kind='customer_reply'",
        case["case_id"],
    )
    assert [(r["agent_id"], r["note"], r["record"]["contact_id"]) for r in replies] == [
        ("customer", "Any news? I'm still waiting for someone.", follow_up.contact_id)
    ]
    turns = await turns_of(runner, conversation_id)
    assert [t["kind"] for t in turns if t["kind"] == "handoff_status"] == ["handoff_status"]
    assert len(turns) == before_follow_up + 1  # the follow-up's own turn, nothing said twice
    assert (
        await runner.db.fetchval(
            "SELECT conversation_id FROM contacts WHERE contact_id=$1", follow_up.contact_id
        )
        == conversation_id
    )

    # another customer names this conversation: it is not joined, nothing of it is shown or changed
    _, other_customer, _ = await first_contact(runner, PAID_LAST_MONTH, INVOICE_ASK)
    intruder = contact(
        other_customer, "Talk to a person about this case please", conversation_id=conversation_id
    )
    await send_and_wait(runner, intruder)

    own = await runner.db.fetchval(
        "SELECT conversation_id FROM contacts WHERE contact_id=$1", intruder.contact_id
    )
    assert own == intruder.contact_id
    assert (
        await runner.db.fetchval("SELECT customer_id FROM conversations WHERE conversation_id=$1", own)
        == other_customer
    )
    assert len(await turns_of(runner, conversation_id)) == len(turns)
    assert await runner.db.fetchval("SELECT count(*) FROM cases WHERE customer_id=$1", customer_id) == 1
    assert await runner.db.fetchval(
        "SELECT count(*) FROM case_actions WHERE case_id=$1", case["case_id"]
    ) == len(replies)


async def test_given_a_contact_when_it_is_delivered_twice_then_no_turn_is_added(
    runner: ScenarioRunner, infra: Any
) -> None:
    _, customer_id, _ = await first_contact(runner, PAID_LAST_MONTH, INVOICE_ASK)
    msg = contact(customer_id, "I was charged twice for my subscription yesterday, please fix this")
    await send_and_wait(runner, msg)
    await said_in(runner, msg.contact_id)
    before = await turns_of(runner, msg.contact_id)

    await publish(runner.broker, msg)  # the same message, same id: a redelivery
    marker = contact(customer_id, INVOICE_ASK)
    await send_and_wait(runner, marker)  # same key, same partition: processed after the redelivery

    assert await turns_of(runner, msg.contact_id) == before
    assert len([t for t in before if t["role"] != "customer"]) == 1
    assert len(await sent_for(infra, msg.contact_id)) == 1


async def test_given_a_card_link_sent_when_the_customer_says_it_did_not_work_then_a_person_gets_the_thread(
    runner: ScenarioRunner,
) -> None:
    """Given a card link sent for an expired card (a fix confirmation or an answer), When the customer
    writes "that didn't work" in the same conversation, Then no second link is sent: a person gets the case
    with the earlier answer in its transcript, and the customer is told a person has it."""
    contact_id, customer_id, outcome = await first_contact(
        runner, EXPIRED_CARD, "My card payment failed this month, can you help?"
    )
    assert "send_update_card_link" in outcome["payload"]["actions"]
    said = await said_in(runner, contact_id)
    assert [t["kind"] for t in said] in (["fix_confirmation"], ["answer"])

    follow_up = contact(
        customer_id, "That didn't work, my card is still declined.", conversation_id=contact_id
    )
    follow_outcome = await send_and_wait(runner, follow_up)

    assert follow_outcome["payload"]["resolved_by"] == "tier3"
    assert "send_update_card_link" not in await runner.ledger_actions(follow_up.contact_id)
    packet = await runner.db.fetchval("SELECT packet FROM cases WHERE contact_id=$1", follow_up.contact_id)
    assert packet is not None
    assert said[0]["text"] in [t["text"] for t in packet["transcript"]]
    said_after = await said_in(runner, contact_id, min_count=2)
    assert [t["kind"] for t in said_after][-1] == "handoff_status"
    assert said_after[-1]["contact_id"] == follow_up.contact_id
