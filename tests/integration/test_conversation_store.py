"""tierline.conversations on the real PostgreSQL and broker: conversations, turns, history and `say`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from schemas import Channel
from schemas.messages import Choice, ContactReceivedPayload, ContactReceivedV1
from tests.helpers import read_topic
from tierline import conversations as conv
from tierline.pipeline import start_contact

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(infra: Any) -> AsyncIterator[KafkaBroker]:
    b = KafkaBroker(infra.kafka_bootstrap, logger=None)
    await b.connect()
    yield b
    await b.stop()


async def new_contact(pool: Any, customer_id: str, text: str = "hello") -> ContactReceivedV1:
    msg = ContactReceivedV1.build(
        ContactReceivedPayload(channel=Channel.CHAT, text=text),
        contact_id=f"c-{uuid.uuid4()}",
        customer_id=customer_id,
    )
    await start_contact(
        pool, contact_id=msg.contact_id, customer_id=customer_id, trigger="contact", channel="chat"
    )
    return msg


async def test_given_a_conversation_id_when_opened_twice_then_one_conversation_another_customer_refused(
    pg_pool: Any, unique: str
) -> None:
    cid = f"conv-{unique}"

    first = await conv.open_conversation(
        pg_pool, conversation_id=cid, customer_id=f"cus-{unique}", channel=Channel.EMAIL, subject="Invoice"
    )
    again = await conv.open_conversation(
        pg_pool, conversation_id=cid, customer_id=f"cus-{unique}", channel=Channel.CHAT
    )

    assert first == again
    assert (first.channel, first.status, first.subject) == (Channel.EMAIL, "open", "Invoice")
    with pytest.raises(conv.ConversationMismatch):
        await conv.open_conversation(
            pg_pool, conversation_id=cid, customer_id=f"other-{unique}", channel=Channel.CHAT
        )
    assert await conv.get_conversation(pg_pool, cid) == first
    assert await conv.get_conversation(pg_pool, f"none-{unique}") is None


async def test_given_customer_turns_when_recorded_and_read_then_once_each_in_order_with_history_before(
    pg_pool: Any, unique: str
) -> None:
    customer = f"cus-{unique}"
    cid = f"conv-{unique}"
    await conv.open_conversation(pg_pool, conversation_id=cid, customer_id=customer, channel=Channel.CHAT)
    one = await new_contact(pg_pool, customer, "my card was declined")
    two = await new_contact(pg_pool, customer, "that didn't work")
    for msg in (one, two):
        await conv.attach_contact(pg_pool, contact_id=msg.contact_id, conversation_id=cid)

    assert await conv.record_customer_turn(
        pg_pool,
        conversation_id=cid,
        message_id=one.message_id,
        contact_id=one.contact_id,
        text="my card was declined",
    )
    assert not await conv.record_customer_turn(  # the same message again: stored once
        pg_pool,
        conversation_id=cid,
        message_id=one.message_id,
        contact_id=one.contact_id,
        text="my card was declined",
    )
    await pg_pool.execute(
        """INSERT INTO conversation_turns (turn_id, conversation_id, role, kind, author, contact_id, text)
           VALUES ($1, $2, 'assistant', 'answer', 'tier2_agent', $3, 'We sent a card link.')""",
        uuid.uuid4(),
        cid,
        one.contact_id,
    )
    await conv.record_customer_turn(
        pg_pool,
        conversation_id=cid,
        message_id=two.message_id,
        contact_id=two.contact_id,
        text="that didn't work",
    )

    all_turns = await conv.turns(pg_pool, cid)
    assert [(t.role, t.text) for t in all_turns] == [
        ("customer", "my card was declined"),
        ("assistant", "We sent a card link."),
        ("customer", "that didn't work"),
    ]
    assert [t.text for t in await conv.turns(pg_pool, cid, after_seq=all_turns[0].seq)] == [
        "We sent a card link.",
        "that didn't work",
    ]
    before_two = await conv.history(pg_pool, cid, before_contact=two.contact_id)
    assert [(t.role, t.text) for t in before_two] == [
        ("customer", "my card was declined"),
        ("assistant", "We sent a card link."),
    ]
    assert [t.text for t in await conv.history(pg_pool, cid, limit=1)] == ["that didn't work"]
    found = await conv.conversation_for_contact(pg_pool, two.contact_id)
    assert found is not None
    assert found.conversation_id == cid


async def test_given_a_contact_in_a_conversation_when_said_twice_then_one_turn_one_message_status_moves(
    pg_pool: Any, broker: KafkaBroker, infra: Any, unique: str
) -> None:
    customer = f"cus-{unique}"
    cid = f"conv-{unique}"
    await conv.open_conversation(pg_pool, conversation_id=cid, customer_id=customer, channel=Channel.CHAT)
    msg = await new_contact(pg_pool, customer)
    await conv.attach_contact(pg_pool, contact_id=msg.contact_id, conversation_id=cid)
    due = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)

    said = [
        await conv.say(
            broker,
            pg_pool,
            contact_id=msg.contact_id,
            customer_id=customer,
            kind="handoff_status",
            text="A person is looking at this.",
            author="tier3_handoff",
            key="case_1",
            sla_due_at=due,
            choices=[Choice(label="Cancel my request", value="cancel")],
        )
        for _ in range(2)
    ]

    assert said[0] is not None
    assert said[1] is not None
    assert said[0].message_id == said[1].message_id
    stored = [t for t in await conv.turns(pg_pool, cid) if t.kind == "handoff_status"]
    assert len(stored) == 1
    assert (stored[0].role, stored[0].author, stored[0].turn_id) == (
        "system",
        "tier3_handoff",
        said[0].message_id,
    )
    assert stored[0].choices == [{"label": "Cancel my request", "value": "cancel"}]
    conversation = await conv.get_conversation(pg_pool, cid)
    assert conversation is not None
    assert conversation.status == "with_human"
    records = await read_topic(
        infra.kafka_bootstrap, "conversation.message.sent.v1", lambda b: b.get("contact_id") == msg.contact_id
    )
    assert {r["message_id"] for r in records} == {str(said[0].message_id)}
    assert records[0]["payload"]["sla_due_at"].startswith("2026-12-03T16:30")

    await conv.say(
        broker,
        pg_pool,
        contact_id=msg.contact_id,
        customer_id=customer,
        kind="resolution",
        text="Done.",
        author="agent:ana",
        key="r1",
    )
    resolved = await conv.get_conversation(pg_pool, cid)
    assert resolved is not None
    assert resolved.status == "resolved"


async def test_given_a_contact_without_a_conversation_when_said_then_nothing_is_stored_or_sent(
    pg_pool: Any, broker: KafkaBroker, unique: str
) -> None:
    msg = await new_contact(pg_pool, f"cus-{unique}")

    result = await conv.say(
        broker,
        pg_pool,
        contact_id=msg.contact_id,
        customer_id=f"cus-{unique}",
        kind="answer",
        text="hello",
        author="tier2_agent",
        cause=msg,
    )

    assert result is None
    assert (
        await pg_pool.fetchval("SELECT count(*) FROM conversation_turns WHERE contact_id=$1", msg.contact_id)
        == 0
    )
