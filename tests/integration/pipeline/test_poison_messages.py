"""Poison messages on the real pipeline: each is dead-lettered once by each reader, with a bounded copy,
and its partition moves on; a burst of them opens a handful of cases, not one per record; an envelope version
the consumer does not know is refused, never read as v1."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas.messages import (
    AgentRequestedV1,
    AuditEventRecordedV1,
    ContactReceivedV1,
    DeadLetterRecordedV1,
    EscalationOpenedV1,
    NotificationRequestedV1,
    OutcomeRecordedV1,
    SelfhealRequestedV1,
    UsageEventRecordedV1,
)
from tests.helpers import chat_contact, read_topic, wait_rows
from tierline.messaging import DEAD_LETTER_VALUE_MAX, encode, headers_for

pytestmark = pytest.mark.integration

ONE_MIB = 1024 * 1024

#: How many consumer groups read a topic when it is not one: each reader dead-letters a record it cannot
#: read (the router routes contacts, the analytics service keeps their texts for the knowledge gaps).
READERS = {ContactReceivedV1.TOPIC: ("router", "analytics_sink")}

TOPICS = (
    ContactReceivedV1.TOPIC,
    SelfhealRequestedV1.TOPIC,
    AgentRequestedV1.TOPIC,
    EscalationOpenedV1.TOPIC,
    UsageEventRecordedV1.TOPIC,
    AuditEventRecordedV1.TOPIC,
    OutcomeRecordedV1.TOPIC,
    NotificationRequestedV1.TOPIC,
)


contact = chat_contact


def with_version(message: ContactReceivedV1, version: int) -> bytes:
    body = json.loads(encode(message))
    body["schema_version"] = version
    return json.dumps(body).encode()


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    # a producer that may send the ~1 MiB records this test needs (the services' own limit is the default)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * ONE_MIB)
    await producer.start()
    try:
        for topic, key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def good_contact_record(message: ContactReceivedV1) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    return (
        message.TOPIC,
        message.key(),
        encode(message),
        [(k, v.encode()) for k, v in headers_for(message).items()],
    )


async def test_given_a_1_mib_contact_when_consumed_then_dead_lettered_bounded_and_its_key_moves_on(
    pipeline, infra, pg_pool, unique
) -> None:
    """Given a 1 MiB contact followed by a valid one with the same key (same partition), When the router
    consumes them, Then the big one is dead-lettered once with a bounded copy and the next is processed."""
    customer = f"cus_big_{unique}"
    big = contact(customer, "placeholder")
    topic, key, value, headers = good_contact_record(big)
    big_value = value.replace(b'"placeholder"', b'"' + b"x" * ONE_MIB + b'"')
    nxt = contact(customer, "I'd like to speak with a human please")
    await produce(infra.kafka_bootstrap, [(topic, key, big_value, headers), good_contact_record(nxt)])

    dead = await read_topic(
        infra.kafka_bootstrap,
        DeadLetterRecordedV1.TOPIC,
        lambda b: b.get("payload", {}).get("key") == customer,
        min_count=len(READERS[ContactReceivedV1.TOPIC]),
        timeout=60,
        settle=3,
    )
    assert sorted(d["payload"]["consumer"] for d in dead) == sorted(READERS[ContactReceivedV1.TOPIC]), [
        (d["payload"]["consumer"], d["payload"]["error"][:200]) for d in dead
    ]
    payload = next(d["payload"] for d in dead if d["payload"]["consumer"] == "router")
    assert payload["original_topic"] == ContactReceivedV1.TOPIC
    assert payload["value_truncated"] is True
    assert len(payload["value"]) <= DEAD_LETTER_VALUE_MAX
    assert payload["value_bytes"] > ONE_MIB
    assert payload["error_kind"] == "invalid_message"
    rows = await wait_rows(pg_pool, "SELECT 1 FROM outcomes WHERE contact_id=$1", nxt.contact_id, timeout=60)
    assert len(rows) == 1
    # the big contact itself reached a person (never a dead end)
    rows = await wait_rows(pg_pool, "SELECT resolved_by FROM outcomes WHERE contact_id=$1", big.contact_id)
    assert [r["resolved_by"] for r in rows] == ["tier3"]


async def test_given_envelope_version_99_when_consumed_then_dead_lettered_with_that_reason(
    pipeline, infra, pg_pool, unique
) -> None:
    customer = f"cus_v99_{unique}"
    message = contact(customer, "my card was declined, can you retry it?")
    await produce(
        infra.kafka_bootstrap,
        [(ContactReceivedV1.TOPIC, message.key(), with_version(message, 99), [])],
    )
    dead = await read_topic(
        infra.kafka_bootstrap,
        DeadLetterRecordedV1.TOPIC,
        lambda b: b.get("payload", {}).get("key") == customer,
        min_count=len(READERS[ContactReceivedV1.TOPIC]),
        timeout=60,
        settle=3,
    )
    assert sorted(d["payload"]["consumer"] for d in dead) == sorted(READERS[ContactReceivedV1.TOPIC])
    for record in dead:
        assert record["payload"]["error_kind"] == "unknown_schema_version"
        assert "unknown schema version 99" in record["payload"]["error"]
    # it was not routed as a v1 contact
    routed = await pg_pool.fetchval("SELECT intent FROM contacts WHERE contact_id=$1", message.contact_id)
    assert routed is None


def poison_mix(unique: str) -> list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]:
    """Five bad records on each of eight topics: 40, each with a key of its own."""
    records = []
    for t, topic in enumerate(TOPICS):
        bad = [
            b"not json at all " + unique.encode(),
            b'["a", "json", "list"]',
            json.dumps({"message_id": str(uuid.uuid4()), "payload": {"x": unique}}).encode(),
            b'{"text": "nul \x00 and invalid utf-8 \xff\xfe"}',
            json.dumps({"padding": "y" * ONE_MIB}).encode(),
        ]
        if topic == ContactReceivedV1.TOPIC:
            bad[2] = with_version(contact(f"cus_poison_{unique}_{t}_2", "where is my invoice"), 99)
        for i, value in enumerate(bad):
            key = f"cus_poison_{unique}_{t}_{i}".encode()
            records.append((topic, key, value, [("contact-id", b"\x00" * 3 + key)]))
    return records


async def test_given_40_bad_messages_over_the_topics_when_consumed_then_40_dead_letters_and_few_cases(
    pipeline, infra, pg_pool, unique
) -> None:
    """Given 40 bad records (not JSON, a list, missing fields, NUL and invalid UTF-8, 1 MiB, version 99)
    over eight topics, When consumed, Then one dead letter per record and reader (no storm after them),
    and Tier 3 opens at most one case per (topic, error kind) — not one per record."""
    prefix = f"cus_poison_{unique}_"
    before = await pg_pool.fetchval("SELECT count(*) FROM cases WHERE reason='dead_letter'")
    counted_before = await pg_pool.fetchval(
        "SELECT coalesce(sum((packet->>'count')::int), 0) FROM cases WHERE reason='dead_letter'"
    )
    await produce(infra.kafka_bootstrap, poison_mix(unique))

    expected = sum(5 * len(READERS.get(topic, ("one",))) for topic in TOPICS)  # 45: contacts have two readers
    dead = await read_topic(
        infra.kafka_bootstrap,
        DeadLetterRecordedV1.TOPIC,
        lambda b: str(b.get("payload", {}).get("key") or "").startswith(prefix),
        min_count=expected,
        timeout=120,
        settle=8,
    )
    origins = sorted(
        (d["payload"]["original_topic"], d["payload"]["key"], d["payload"]["consumer"]) for d in dead
    )
    assert len(dead) == expected, f"{len(dead)} dead letters for 40 bad records ({expected} reads)"
    assert len(set(origins)) == expected
    assert len({o[:2] for o in origins}) == 40  # every bad record, each once per reader
    for record in dead:
        payload = record["payload"]
        assert len(payload["value"]) <= DEAD_LETTER_VALUE_MAX
        assert "\x00" not in payload["value"]
        assert payload["error_kind"] in {"not_json", "invalid_message", "unknown_schema_version"}

    kinds = {(d["payload"]["original_topic"], d["payload"]["error_kind"]) for d in dead}

    async def all_counted() -> bool:
        counted = await pg_pool.fetchval(
            "SELECT coalesce(sum((packet->>'count')::int), 0) FROM cases WHERE reason='dead_letter'"
        )
        return bool(counted - counted_before >= 40)

    deadline_rows = await wait_until(all_counted)
    assert deadline_rows
    opened = await pg_pool.fetchval("SELECT count(*) FROM cases WHERE reason='dead_letter'") - before
    assert 0 < opened <= len(kinds) < 40


async def wait_until(check: Any, within: float = 60.0) -> bool:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.5)
    return False
