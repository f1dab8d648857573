"""The embedded components really start and answer (Given the session stack ...)."""

from __future__ import annotations

import asyncpg
import pytest
import stripe
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tierline.messaging import topic_names

pytestmark = pytest.mark.integration


async def test_given_stack_when_listing_topics_then_every_schema_topic_exists_with_partitions(stack, infra):
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap)
    await consumer.start()
    try:
        topics = await consumer.topics()
        for name in topic_names():
            assert name in topics
            assert len(consumer.partitions_for_topic(name) or ()) == 4
    finally:
        await consumer.stop()


async def test_given_stack_when_producing_keyed_message_then_it_is_consumed_with_headers(
    stack, infra, unique
):
    from tierline.messaging import ensure_topics

    topic = f"test.stack.{unique}.v1"  # a topic of its own: other tests read the real ones from the start
    await ensure_topics(infra.kafka_bootstrap, 2, topics=[topic])
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"{}", key=unique.encode(), headers=[("h", b"v")])
    await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"t-{unique}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        found = None
        async for record in consumer:
            if record.key == unique.encode():
                found = record
                break
        assert found is not None
        assert dict(found.headers)["h"] == b"v"
    finally:
        await consumer.stop()


async def test_given_stack_when_migrated_then_core_tables_exist(infra):
    conn = await asyncpg.connect(infra.postgres_dsn)
    try:
        tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
    finally:
        await conn.close()
    assert {"inbox", "action_ledger", "contacts", "outcomes", "webhook_events", "schema_migrations"} <= tables


def test_given_stack_when_creating_customer_in_emulator_then_it_can_be_read_back(infra, unique):
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": infra.stripe_api_base})
    created = client.v1.customers.create(params={"email": f"{unique}@example.com"})
    assert client.v1.customers.retrieve(created.id).email == f"{unique}@example.com"
