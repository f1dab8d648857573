"""/metrics of real running services on the real broker and Postgres: after a contact went through the
router to a person, and a poison record was dead-lettered, the counters scraped over HTTP moved.

The services run in this process (as in test_wiring.py): they share one registry, so each sample is told
apart by its labels (the consuming service, the topic) and every figure is compared before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from schemas.messages import ContactReceivedV1, EscalationOpenedV1, OutcomeRecordedV1
from tests.helpers import chat_contact, read_topic, wait_rows
from tierline.messaging import encode, headers_for
from tierline.settings import TOPIC_PARTITIONS
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
async def services(stack, infra) -> AsyncIterator[dict]:
    started = await start_pipeline(
        infra, stack.service_ports, services=("diagnostics", "tier3_handoff", "router")
    )
    yield {s.name: s for s in started}
    await stop_pipeline(started)


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient(timeout=30) as client:
        res = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(res.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= lbls)


async def test_given_running_services_when_a_contact_and_a_poison_record_went_through_then_counters_moved(
    services, infra, pg_pool, unique
) -> None:
    port = services["router"].http_port
    # Given the figures before
    before = await scrape(port)
    # When a contact a person must take, and a record that is not JSON, arrive
    msg = chat_contact(f"cus_metrics_{unique}", "Hello, I would like to talk to a person about my account")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            msg.TOPIC,
            encode(msg),
            key=msg.key(),
            headers=[(k, v.encode()) for k, v in headers_for(msg).items()],
        )
        await producer.send_and_wait(ContactReceivedV1.TOPIC, b"{not json " + unique.encode(), key=b"k")
    finally:
        await producer.stop()
    await wait_rows(pg_pool, "SELECT 1 FROM outcomes WHERE contact_id=$1", msg.contact_id, timeout=90)
    await read_topic(
        infra.kafka_bootstrap,
        "deadletter.message.recorded.v1",
        lambda b: unique in b.get("payload", {}).get("value", ""),
        timeout=60,
    )
    await wait_rows(
        pg_pool,
        "SELECT 1 FROM conversation_turns WHERE contact_id=$1 AND role <> 'customer'",
        msg.contact_id,
        timeout=60,
    )
    after = await scrape(port)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # Then what the router and tier 3 consumed and produced, the outcome, the escalation and the dead
    # letter are counted; handler latency has observations; the first answer's time was observed
    router_in = {"service": "router", "topic": ContactReceivedV1.TOPIC}
    assert moved("tierline_messages_consumed_total", **router_in) >= 2
    assert moved("tierline_handler_duration_seconds_count", **router_in, result="ok") >= 1
    assert moved("tierline_messages_dead_lettered_total", **router_in, error_kind="not_json") >= 1
    assert moved("tierline_messages_produced_total", topic=EscalationOpenedV1.TOPIC) >= 1
    assert moved("tierline_messages_produced_total", topic=OutcomeRecordedV1.TOPIC) >= 1
    assert (
        moved("tierline_messages_consumed_total", service="tier3_handoff", topic=EscalationOpenedV1.TOPIC)
        >= 1
    )
    assert moved("tierline_contact_outcomes_total", resolved_by="tier3") >= 1
    assert moved("tierline_escalations_total") >= 1
    assert moved("tierline_first_response_seconds_count") >= 1
    # and consumer lag is exported for every partition the router's group holds
    lag = {
        dict(lbls)["partition"]
        for (name, lbls), _ in after.items()
        if name == "tierline_consumer_lag"
        and dict(lbls).get("group") == "tierline.router"
        and dict(lbls).get("topic") == ContactReceivedV1.TOPIC
    }
    assert lag == {str(p) for p in range(TOPIC_PARTITIONS)}
