"""Wiring of the diagnostics service: HTTP doors, the usage consumer, the ClickHouse health check.

The analyst stream (outcomes, audit records, case resolutions) is not written here: it is the analytics
service's (services/analytics/), with its own ClickHouse store.
"""

from __future__ import annotations

from typing import Any

from faststream import Context
from faststream.kafka.message import KafkaMessage
from starlette.responses import Response

from schemas.messages import DiagnosisView, UsageEventRecordedV1
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.contracts import UsageQuery, UsageReport
from services.diagnostics.handlers import BrokerAuditSink, Diagnostician, UsageBatchConsumer, http_handlers
from services.diagnostics.settings import DiagnosticsSettings
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.http_contracts import Call, api_route
from tierline.messaging import ORDERED_DEFAULTS, consumer_group
from tierline.runtime import Service
from tierline.service_auth import ServiceBearer
from tierline.settings import DEFAULT_PORTS, InfraSettings

NAME = "diagnostics"


async def _raw_batch(msg: Any, original: Any = None) -> list[bytes]:
    """Batch decoder: hand the raw values to the handler, which validates each one."""
    body = msg.body
    return [bytes(b) for b in body] if isinstance(body, list | tuple) else [bytes(body)]


def create_service(settings: InfraSettings, diag_settings: DiagnosticsSettings | None = None) -> Service:
    diag_settings = diag_settings or DiagnosticsSettings()
    service = Service.create(NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME])
    usage = UsageStore(settings.resolved_clickhouse_dsn())
    stripe = StripeLiveReader(
        settings.stripe_api_key.get_secret_value(),
        settings.stripe_api_base,
        timeout_s=diag_settings.stripe_timeout_s,
        emulated=settings.emulated_stripe,
    )
    consumer = UsageBatchConsumer(usage, service.dead_letters)
    service.state["usage_store"] = usage

    async def on_start(svc: Service) -> None:
        await usage.ensure_schema()
        mirror = MirrorStore(svc.db)
        diagnostician = Diagnostician(mirror, stripe, usage, BrokerAuditSink(svc.broker), diag_settings)
        svc.state["mirror"] = mirror
        svc.state["diagnostician"] = diagnostician
        svc.state["client"] = InProcessDiagnostics(diagnostician)

    service.on_start.append(on_start)

    # internal API: callers send the service token (a dependency of each typed route)
    service_token = ServiceBearer(settings.service_token.get_secret_value())

    async def get_diagnosis(call: Call[str, None]) -> Response:
        """Diagnose a customer's billing.

        Reads the Stripe mirror (live Stripe on a miss or when stale), the subscription store and
        ClickHouse usage. A source that is down is listed in missing_sources and the status is never
        green. Every diagnosis is audited (header x-contact-id: the contact it is for)."""
        handlers = http_handlers(service.state["diagnostician"], usage)
        return await handlers["diagnosis"](call.request)  # type: ignore[no-any-return]

    async def get_usage(call: Call[str, None]) -> Response:
        """Usage by metric (period, last 30 days vs previous 30, forecast) and by day."""
        handlers = http_handlers(service.state["diagnostician"], usage)
        return await handlers["usage"](call.request)  # type: ignore[no-any-return]

    unknown = {404: "unknown customer (or not a customer id)"}
    service.routes.extend(
        [
            api_route(
                "/v1/customers/{customer_id}/diagnosis",
                get_diagnosis,
                method="GET",
                auth=service_token,
                response=DiagnosisView,
                errors=unknown,
            ),
            api_route(
                "/v1/customers/{customer_id}/usage",
                get_usage,
                method="GET",
                auth=service_token,
                query=UsageQuery,
                response=UsageReport,
                errors={**unknown, 503: "usage store unavailable"},
            ),
        ]
    )

    @service.broker.subscriber(
        UsageEventRecordedV1.TOPIC,
        group_id=consumer_group(NAME),
        batch=True,
        max_records=diag_settings.usage_batch_size,
        batch_timeout_ms=diag_settings.usage_batch_timeout_ms,
        decoder=_raw_batch,
        **ORDERED_DEFAULTS,
    )
    async def on_usage_events_recorded(
        bodies: list[bytes], message: KafkaMessage = Context("message")
    ) -> None:
        records = message.raw_message if isinstance(message.raw_message, tuple) else None
        await consumer.handle(bodies, records)

    service.health_checks["clickhouse"] = usage.ping
    return service
