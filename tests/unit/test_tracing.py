"""Tracing costs nothing when off, and follows one contact across hops (Kafka headers) when on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tierline import observability
from tierline.messaging import make_broker
from tierline.observability import configure_tracing, consume_span, disable_tracing, trace_headers
from tierline.settings import TracingSettings


@dataclass
class Record:
    """The fields of an aiokafka ConsumerRecord the tracing reads."""

    topic: str
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    offset: int = 0


def record(topic: str, contact_id: str, trace: dict[str, str]) -> Record:
    headers = {"contact-id": contact_id, **trace}
    return Record(topic, [(k, v.encode()) for k, v in headers.items()])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert configure_tracing("test", settings=TracingSettings(), exporter=exporter, ratio=1.0)
    yield exporter
    disable_tracing()


def sampled(headers: dict[str, str]) -> bool:
    return bool(int(headers["traceparent"].split("-")[3], 16) & 1)


def trace_id(span: Any) -> int:
    return int(span.context.trace_id)


def test_given_no_endpoint_when_configured_then_tracing_is_off_and_no_span_or_middleware_is_built() -> None:
    assert configure_tracing("test", settings=TracingSettings(otlp_endpoint="")) is False
    assert observability.tracing_enabled() is False
    assert trace_headers("contact.received.v1", "c-1") == {}
    broker = make_broker("127.0.0.1:1", "router")
    assert not [m for m in broker.middlewares if "Telemetry" in m.__name__ or "Tracing" in m.__name__]
    with consume_span([record("contact.received.v1", "c-1", {})], "router"):
        assert not observability.trace.get_current_span().get_span_context().is_valid


def test_given_an_otlp_endpoint_when_configured_then_tracing_is_on_with_the_middleware() -> None:
    try:
        settings = TracingSettings(otlp_endpoint="http://127.0.0.1:4318")
        assert configure_tracing("router", settings=settings) is True
        broker = make_broker("127.0.0.1:1", "router")
        assert [m for m in broker.middlewares if m.__name__ == "TracingMiddleware"]
    finally:
        disable_tracing()


def test_given_tracing_on_when_a_contact_crosses_two_hops_then_every_span_is_in_one_trace(
    spans: InMemorySpanExporter,
) -> None:
    door = trace_headers("contact.received.v1", "c-1")  # the chat widget publishes: the trace starts
    assert sampled(door)
    with consume_span([record("contact.received.v1", "c-1", door)], "router"):
        hop = trace_headers("tier1.selfheal.requested.v1", "c-1")
    with consume_span([record("tier1.selfheal.requested.v1", "c-1", hop)], "tier1_selfheal"):
        trace_headers("contact.outcome.recorded.v1", "c-1")
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == [
        "contact.received.v1 publish",
        "tier1.selfheal.requested.v1 publish",
        "contact.received.v1 process",
        "contact.outcome.recorded.v1 publish",
        "tier1.selfheal.requested.v1 process",
    ]
    assert len({trace_id(s) for s in finished}) == 1
    by_name = {s.name: s for s in finished}
    assert by_name["tier1.selfheal.requested.v1 process"].parent.span_id == (
        by_name["tier1.selfheal.requested.v1 publish"].context.span_id
    )


def test_given_a_batch_of_two_contacts_when_the_handler_publishes_then_each_continues_its_own_trace(
    spans: InMemorySpanExporter,
) -> None:
    first, second = trace_headers("contact.received.v1", "c-1"), trace_headers("contact.received.v1", "c-2")
    batch = [record("contact.received.v1", "c-1", first), record("contact.received.v1", "c-2", second)]
    with consume_span(batch, "router"):  # the handler publishes in any order
        out_second = trace_headers("tier2.agent.requested.v1", "c-2")
        out_first = trace_headers("tier1.selfheal.requested.v1", "c-1")
    assert out_first["traceparent"].split("-")[1] == first["traceparent"].split("-")[1]
    assert out_second["traceparent"].split("-")[1] == second["traceparent"].split("-")[1]
    assert first["traceparent"].split("-")[1] != second["traceparent"].split("-")[1]
    assert len({trace_id(s) for s in spans.get_finished_spans()}) == 2


def test_given_a_ratio_of_zero_when_a_contact_starts_then_nothing_is_recorded_on_any_hop(
    spans: InMemorySpanExporter,
) -> None:
    configure_tracing("test", settings=TracingSettings(), exporter=spans, ratio=0.0)
    door = trace_headers("contact.received.v1", "c-1")
    assert not sampled(door)  # the decision travels in the header: the next hops follow it
    with consume_span([record("contact.received.v1", "c-1", door)], "router"):
        trace_headers("tier1.selfheal.requested.v1", "c-1")
    assert spans.get_finished_spans() == ()


def test_given_tracing_on_when_a_hop_logs_then_the_line_carries_trace_and_contact_ids(
    spans: InMemorySpanExporter,
) -> None:
    out = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            observability._add_trace_ids,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    try:
        door = trace_headers("contact.received.v1", "c-1")
        with consume_span([record("contact.received.v1", "c-1", door)], "router"):
            structlog.get_logger("t").info("router.routed")
        batch = [record("contact.received.v1", "c-2", trace_headers("contact.received.v1", "c-2"))] * 2
        with consume_span(batch, "router"):
            structlog.get_logger("t").info("router.routed", contact_id="c-2")
    finally:
        structlog.reset_defaults()
    single, batched = (json.loads(line) for line in out.getvalue().splitlines())
    assert single["contact_id"] == "c-1"
    assert single["trace_id"] == door["traceparent"].split("-")[1]
    assert batched["contact_id"] == "c-2"
    assert len(batched["trace_id"]) == 32
