"""Foundation wiring on the real broker and Postgres: a contact flows to an outcome, bad input is
dead-lettered while the consumer keeps going, and a restarted consumer resumes from its committed
offset without losing or re-emitting anything."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from schemas.messages import ContactReceivedV1
from tests.helpers import chat_contact, read_topic, wait_rows
from tierline.messaging import encode, headers_for
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline

pytestmark = pytest.mark.integration


contact = chat_contact


async def send(bootstrap: str, *messages: ContactReceivedV1 | bytes, key: bytes = b"k") -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for m in messages:
            if isinstance(m, bytes):
                await producer.send_and_wait(ContactReceivedV1.TOPIC, m, key=key)
            else:
                await producer.send_and_wait(
                    m.TOPIC,
                    encode(m),
                    key=m.key(),
                    headers=[(k, v.encode()) for k, v in headers_for(m).items()],
                )
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
async def services(stack, infra) -> AsyncIterator[dict]:
    started = await start_pipeline(
        infra, stack.service_ports, services=("diagnostics", "tier3_handoff", "router")
    )
    yield {s.name: s for s in started}
    await stop_pipeline(started)


async def test_given_running_router_when_contact_published_then_one_outcome_is_recorded(
    services, infra, pg_pool, unique
) -> None:
    # Given an unknown customer asking something: the router can only hand it to a human
    msg = contact(f"cus_unknown_{unique}", "Hello, I would like to talk to a person about my account")
    # When
    await send(infra.kafka_bootstrap, msg)
    # Then exactly one outcome for the contact, on the topic and in Postgres
    outcomes = await read_topic(
        infra.kafka_bootstrap,
        "contact.outcome.recorded.v1",
        lambda b: b.get("contact_id") == msg.contact_id,
        timeout=60,
        settle=2,
    )
    assert len(outcomes) == 1
    assert outcomes[0]["payload"]["resolved_by"] == "tier3"
    rows = await pg_pool.fetch("SELECT resolved_by FROM outcomes WHERE contact_id=$1", msg.contact_id)
    assert [r["resolved_by"] for r in rows] == ["tier3"]


async def test_given_malformed_messages_when_consumed_then_dead_lettered_and_consumer_keeps_going(
    services, infra, pg_pool, unique
) -> None:
    key = f"cus_bad_{unique}".encode()
    garbage = b"{not json at all " + unique.encode()
    wrong_shape = b'{"message_id": "x", "payload": {"text": "' + unique.encode() + b'"}}'
    good = contact(key.decode(), "I'd like to speak with a human please")
    await send(infra.kafka_bootstrap, garbage, wrong_shape, key=key)
    await send(infra.kafka_bootstrap, good)
    dead = await read_topic(
        infra.kafka_bootstrap,
        "deadletter.message.recorded.v1",
        lambda b: unique in b.get("payload", {}).get("value", ""),
        min_count=2,
        timeout=60,
    )
    assert len(dead) == 2
    for record in dead:
        assert record["payload"]["original_topic"] == ContactReceivedV1.TOPIC
        assert record["payload"]["consumer"] == "router"
        assert record["payload"]["error"]
        assert record["payload"]["offset"] is not None
    assert any("validation" in d["payload"]["error"] for d in dead)
    rows = await wait_rows(pg_pool, "SELECT 1 FROM outcomes WHERE contact_id=$1", good.contact_id, timeout=60)
    assert len(rows) == 1


async def test_given_router_stopped_when_contacts_arrive_and_it_restarts_then_each_processed_exactly_once(
    services, infra, pg_pool, unique
) -> None:
    router = services["router"]
    await router.stop()
    batch = [contact(f"cus_restart_{unique}_{i}", "Please connect me with a real person") for i in range(5)]
    await send(infra.kafka_bootstrap, *batch)
    await router.start()
    ids = [m.contact_id for m in batch]
    rows = await wait_rows(
        pg_pool,
        "SELECT contact_id FROM outcomes WHERE contact_id = ANY($1::text[])",
        ids,
        min_count=5,
        timeout=90,
    )
    assert sorted(r["contact_id"] for r in rows) == sorted(ids)
    # restart once more: committed offsets mean nothing is processed or emitted again
    await router.stop()
    await router.start()
    escalations = await read_topic(
        infra.kafka_bootstrap,
        "tier3.escalation.opened.v1",
        lambda b: b.get("contact_id") in ids,
        min_count=5,
        timeout=30,
        settle=6,
    )
    assert sorted(e["contact_id"] for e in escalations) == sorted(ids)
    audits = await read_topic(
        infra.kafka_bootstrap,
        "audit.event.recorded.v1",
        lambda b: b.get("contact_id") in ids and b["payload"]["action"] == "route",
        min_count=5,
        timeout=30,
        settle=3,
    )
    assert len(audits) == 5
