"""Logs as events (structlog: JSON when not a terminal) and tracing that costs nothing when it is off."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog
from faststream._internal.middlewares import BaseMiddleware
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tierline.settings import TracingSettings

_configured = False


def configure_logging(service: str = "tierline", json_logs: bool | None = None, level: str = "INFO") -> None:
    global _configured
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _configured = True


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The current span's trace and span ids; in a batch, those of the contact the line names."""
    if _tracer is None:
        return event
    ctx = trace.get_current_span().get_span_context()
    parents = _batch_parents.get()
    if not ctx.is_valid and parents and event.get("contact_id") in parents:
        ctx = trace.get_current_span(parents[event["contact_id"]]).get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


# --- Tracing -------------------------------------------------------------------------------------
# One trace per contact: the door's publish starts it, every hop's consume continues the context it
# finds in the record's Kafka headers (W3C ``traceparent``, written by ``trace_headers``), and every
# publish is a child span. Nothing is built unless tracing is configured (an OTLP endpoint, or an
# exporter given by a test): no provider, no middleware, no span objects. New traces are sampled by
# ratio; hops follow their parent's decision (ParentBased), so a contact is traced whole or not at all.

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
#: In a batch consume scope: each record's parent context by contact id (publishes for that contact
#: continue its trace, whichever order the batch handler publishes in).
_batch_parents: ContextVar[dict[str, Context] | None] = ContextVar("tierline_batch_parents", default=None)


def configure_tracing(
    service: str = "tierline",
    *,
    settings: TracingSettings | None = None,
    exporter: SpanExporter | None = None,
    ratio: float | None = None,
) -> bool:
    """Turn tracing on when an exporter is given (tests) or an OTLP endpoint is configured.

    Returns whether tracing is on. Without either, tracing stays off and costs nothing.
    """
    global _provider, _tracer
    settings = settings if settings is not None else TracingSettings()
    if exporter is None and not settings.otlp_endpoint:
        disable_tracing()
        return False
    sample = settings.trace_sample_ratio if ratio is None else ratio
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(sample)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = provider, provider.get_tracer("tierline")
    return True


def disable_tracing() -> None:
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, None


def tracing_enabled() -> bool:
    return _tracer is not None


def tracer_provider() -> TracerProvider | None:
    """The configured provider, or None when tracing is off."""
    return _provider


def _header_map(headers: Any) -> dict[str, str]:
    """A Kafka record's headers (a list of (name, bytes)) or a dict, as text."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    out: dict[str, str] = {}
    for name, value in items:
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode()
            except UnicodeDecodeError:
                continue
        out[str(name)] = str(value)
    return out


def trace_headers(topic: str, contact_id: str) -> dict[str, str]:
    """The headers that carry the contact's trace to the next hop: a producer span for this message,
    child of the current context (the consume span; in a batch, the record's own context for this
    contact; at a door nothing, so the span starts the contact's trace). ``{}`` when tracing is off."""
    if _tracer is None:
        return {}
    parents = _batch_parents.get()
    parent = parents.get(contact_id) if parents else None
    carrier: dict[str, str] = {}
    with _tracer.start_as_current_span(
        f"{topic} publish",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes={"messaging.destination.name": topic, "tierline.contact_id": contact_id},
    ):
        _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def consume_span(records: list[Any], service: str) -> Iterator[None]:
    """The consumer span(s) of one consume scope: a single record continues the trace in its headers
    (its span is current while the handler runs, and logs carry its trace and contact ids); a batch
    remembers each record's context so publishes for a contact continue that contact's trace."""
    if _tracer is None or not records:
        yield
        return
    if len(records) == 1:
        record = records[0]
        headers = _header_map(getattr(record, "headers", None))
        contact = headers.get("contact-id", "")
        with _tracer.start_as_current_span(
            f"{record.topic} process",
            context=_PROPAGATOR.extract(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": record.topic,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": service,
                "tierline.contact_id": contact,
            },
        ):
            with structlog.contextvars.bound_contextvars(contact_id=contact):
                yield
        return
    parents: dict[str, Context] = {}
    for record in records:
        headers = _header_map(getattr(record, "headers", None))
        contact = headers.get("contact-id", "")
        if not contact or "traceparent" not in headers:
            continue
        # one consumer span per traced record, ended at once: the hop shows in the contact's trace
        with _tracer.start_as_current_span(
            f"{record.topic} process",
            context=_PROPAGATOR.extract(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": record.topic,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
                "messaging.consumer.group.name": service,
                "messaging.batch.message_count": len(records),
                "tierline.contact_id": contact,
            },
        ):
            parents[contact] = otel_context.get_current()
    token = _batch_parents.set(parents)
    try:
        yield
    finally:
        _batch_parents.reset(token)


def tracing_middleware(service: str) -> type[BaseMiddleware]:
    """FastStream middleware opening ``consume_span`` around every consume scope (install it only when
    tracing is on: ``make_broker`` does)."""

    class TracingMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            raw = msg.raw_message
            records = [r for r in raw if r is not None] if isinstance(raw, tuple | list) else [raw]
            with consume_span([r for r in records if r is not None], service):
                return await call_next(msg)

    return TracingMiddleware
