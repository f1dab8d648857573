"""One trace per contact on the real broker: door → router → Tier 1 → outcome, context in Kafka headers.

The router and Tier 1 run in this process (the real services, the trained intent model, an in-process
diagnostics over the real mirror and the Stripe emulator) with an in-memory exporter; the contact is
published as a door publishes it (``tierline.messaging.publish``, outside any consume scope).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas import Channel
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, OutcomeRecordedV1, Sender
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.router.app import create_service as create_router
from services.tier1_selfheal.app import create_service as create_tier1
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import publish
from tierline.observability import configure_tracing, disable_tracing
from tierline.settings import TracingSettings
from tierline.stripe_adapter import StripeActions
from tierline_tools.stack.procs import free_port
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

OUTCOME = OutcomeRecordedV1.TOPIC


@pytest.fixture(scope="module")
async def traced(infra: Any, pg_pool: Any) -> AsyncIterator[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    configure_tracing("test", settings=TracingSettings(), exporter=exporter, ratio=1.0)
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    router = create_router(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    tier1 = create_tier1(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    outcomes = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, enable_auto_commit=False)
    try:
        world, *_ = await asyncio.gather(
            build_world(
                {"charges": [{"amount_usd": 49, "days_ago": 3}]},
                StripeActions(infra),
                label=f"trace-{uuid.uuid4().hex[:8]}",
            ),
            router.start(),
            tier1.start(),
            outcomes.start(),
        )
        parts = [TopicPartition(OUTCOME, p) for p in outcomes.partitions_for_topic(OUTCOME) or range(4)]
        outcomes.assign(parts)
        await outcomes.seek_to_end(*parts)
        for tp in parts:
            await outcomes.position(tp)
        contact = ContactReceivedV1.build(
            ContactReceivedPayload(
                channel=Channel.CHAT,
                text="Our accountant needs the invoice PDF for last month's payment, can you send it?",
                sender=Sender(kind="customer_session", subject=world.customer_id),
            ),
            contact_id=f"c-trace-{uuid.uuid4().hex[:8]}",
            customer_id=world.customer_id,
        )
        await publish(router.broker, contact)  # as a door does: outside any consume scope
        record = None
        deadline = time.monotonic() + 120  # exits as soon as the outcome is there
        while record is None and time.monotonic() < deadline:
            batch = await outcomes.getmany(timeout_ms=500)
            for rec in (r for rs in batch.values() for r in rs):
                if json.loads(rec.value).get("contact_id") == contact.contact_id:
                    record = rec
        assert record is not None, "no outcome within 120 s"
        # Tier 1's consume span ends when its handler returns, just after it published the outcome
        await tier1.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(  # noqa: ASYNC110 - the exporter sets no event
            s.name == "tier1.selfheal.requested.v1 process" for s in exporter.get_finished_spans()
        ):
            await asyncio.sleep(0.1)
        yield {"contact": contact, "outcome": record, "exporter": exporter}
    finally:
        await router.stop()
        await tier1.stop()
        await outcomes.stop()
        disable_tracing()


def test_given_a_traced_contact_when_it_crosses_router_and_tier1_then_all_hops_are_one_trace(
    traced: dict[str, Any],
) -> None:
    contact_id = traced["contact"].contact_id
    spans = [
        s
        for s in traced["exporter"].get_finished_spans()
        if (s.attributes or {}).get("tierline.contact_id") == contact_id
    ]
    names = {s.name for s in spans}
    assert {
        "contact.received.v1 publish",  # the door: the trace's root
        "contact.received.v1 process",  # the router
        "tier1.selfheal.requested.v1 publish",
        "tier1.selfheal.requested.v1 process",  # Tier 1
        f"{OUTCOME} publish",  # the outcome
    } <= names, names
    assert len({s.context.trace_id for s in spans}) == 1
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == ["contact.received.v1 publish"]


def test_given_a_traced_contact_when_its_outcome_is_read_then_its_headers_carry_the_same_trace(
    traced: dict[str, Any],
) -> None:
    headers = {k: v.decode() for k, v in traced["outcome"].headers or []}
    assert headers["contact-id"] == traced["contact"].contact_id
    root = next(s for s in traced["exporter"].get_finished_spans() if s.name == "contact.received.v1 publish")
    assert headers["traceparent"].split("-")[1] == format(root.context.trace_id, "032x")
