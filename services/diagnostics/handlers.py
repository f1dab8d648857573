"""The diagnosis use case (mirror → live Stripe read on a miss → usage → decide → audit) and its doors."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from schemas import Envelope, derived_id
from schemas.messages import AuditEventPayload, AuditEventRecordedV1, DiagnosisView, UsageEventRecordedV1
from services.diagnostics.adapters.clickhouse import UsageEvent, UsageStore
from services.diagnostics.contracts import UsageReport
from services.diagnostics.domain import diagnose, usage_figures
from services.diagnostics.ports import AuditSink, StripeReader, UsageReader
from services.diagnostics.settings import DiagnosticsSettings
from tierline.billing.mirror import MirrorStore
from tierline.billing.records import BillingSnapshot
from tierline.diagnostics_client import CustomerNotFound, SourceUnavailable
from tierline.http import path_id
from tierline.pipeline import audit

log = structlog.get_logger(__name__)

ACTOR = "diagnostics"


class BrokerAuditSink:
    """Publishes each diagnosis to ``audit.event.recorded.v1`` (no card data in the record)."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def diagnosed(
        self, diagnosis: DiagnosisView, *, contact_id: str | None, cause: Envelope[Any] | None
    ) -> None:
        if cause is None:
            # tied to the contact, with an id derived from it and what was found: the same contact
            # diagnosed again to the same result (a redelivery) republishes the identical record
            found = diagnosis.model_dump_json(exclude={"computed_at"})
            cause = AuditEventRecordedV1.build(
                AuditEventPayload(actor=ACTOR, action="diagnosis.requested", target=diagnosis.customer_id),
                contact_id=contact_id or f"diagnosis:{uuid.uuid4()}",
                customer_id=diagnosis.customer_id,
                message_id=derived_id("diagnosis", contact_id, diagnosis.customer_id, found)
                if contact_id
                else None,
            )
        await audit(
            self.broker,
            cause=cause,
            actor=ACTOR,
            action="diagnosis.computed",
            target=diagnosis.customer_id,
            decision=diagnosis.root_cause.value,
            details={
                "status": diagnosis.status.value,
                "root_cause": diagnosis.root_cause.value,
                "recommended_action": diagnosis.recommended_action.value
                if diagnosis.recommended_action
                else None,
                "secondary_causes": [c.value for c in diagnosis.secondary_causes],
                "missing_sources": diagnosis.missing_sources,
                "sources": diagnosis.evidence.get("sources", {}),
            },
        )


class Diagnostician:
    """Joins the Stripe mirror (with a live read on a miss), the subscription store and usage."""

    def __init__(
        self,
        mirror: MirrorStore,
        stripe: StripeReader | None,
        usage: UsageReader | None,
        audit_sink: AuditSink | None,
        settings: DiagnosticsSettings | None = None,
    ) -> None:
        self.mirror = mirror
        self.stripe = stripe
        self.usage = usage
        self.audit_sink = audit_sink
        self.settings = settings or DiagnosticsSettings()

    async def snapshot(self, customer_id: str, now: datetime | None = None) -> BillingSnapshot:
        now = now or datetime.now(UTC)
        missing: list[str] = []
        # Usage does not depend on the mirror: read both at once (Postgres and chDB work in parallel).
        usage_read = asyncio.ensure_future(self.usage.recent(customer_id, now)) if self.usage else None
        try:
            snap, fresh = await self.mirror.load(customer_id)
        except Exception as exc:  # Postgres down: nothing from the mirror or the subscription store
            if usage_read is not None:
                usage_read.cancel()
                await asyncio.gather(usage_read, return_exceptions=True)
            log.error("diagnostics.mirror.unavailable", customer_id=customer_id, error=str(exc)[:300])
            return BillingSnapshot(
                customer_id=customer_id,
                customer_known=False,
                missing_sources=("stripe_mirror", "subscriptions"),
                sources={"stripe": "unavailable", "subscriptions": "unavailable"},
            )
        stripe_source = "mirror"
        age = fresh.age_s(now)
        if not fresh.known or age is None or age > self.settings.mirror_max_age_s:
            if self.stripe is None:
                missing.append("stripe")
                stripe_source = "unavailable"
            else:
                try:
                    started = time.perf_counter()
                    objects = await self.stripe.read_customer(customer_id)
                    read_ms = int(now.timestamp() * 1000)
                    await self.mirror.store_live_read(customer_id, objects, read_ms)
                    snap, fresh = await self.mirror.load(customer_id)
                    stripe_source = "live"
                    log.info(
                        "diagnostics.stripe.refreshed",
                        customer_id=customer_id,
                        ms=round((time.perf_counter() - started) * 1000, 1),
                        mirror_age_s=age,
                    )
                except CustomerNotFound:
                    if not (fresh.known or fresh.in_store):
                        raise
                    stripe_source = "mirror" if fresh.known else "not_in_stripe"
                except SourceUnavailable as exc:
                    log.warning(
                        "diagnostics.stripe.unavailable", customer_id=customer_id, error=exc.detail[:300]
                    )
                    missing.append("stripe")
                    stripe_source = "mirror_stale" if fresh.known else "unavailable"
        usage = None
        usage_source = "clickhouse"
        if usage_read is None:
            missing.append("usage")
            usage_source = "unavailable"
        else:
            subs = sorted(
                snap.subscriptions, key=lambda s: s.status in ("active", "trialing", "past_due"), reverse=True
            )
            sub = subs[0] if subs else None
            try:
                usage = usage_figures(
                    await usage_read,
                    sub.current_period_start if sub else None,
                    sub.current_period_end if sub else None,
                    now,
                )
            except SourceUnavailable as exc:
                log.warning("diagnostics.usage.unavailable", customer_id=customer_id, error=exc.detail[:300])
                missing.append("usage")
                usage_source = "unavailable"
        return dataclasses.replace(
            snap,
            usage=usage,
            missing_sources=tuple(missing),
            sources={"stripe": stripe_source, "subscriptions": "postgres", "usage": usage_source},
        )

    async def diagnose(
        self,
        customer_id: str,
        *,
        contact_id: str | None = None,
        cause: Envelope[Any] | None = None,
        now: datetime | None = None,
    ) -> DiagnosisView:
        now = now or datetime.now(UTC)
        snap = await self.snapshot(customer_id, now)
        if not snap.customer_known and not snap.missing_sources:
            raise CustomerNotFound(customer_id)
        result = diagnose(snap, now)
        log.info(
            "diagnostics.diagnosed",
            customer_id=customer_id,
            status=result.status.value,
            root_cause=result.root_cause.value,
            missing=result.missing_sources,
        )
        if self.audit_sink is not None and self.settings.audit:
            try:
                await self.audit_sink.diagnosed(result, contact_id=contact_id, cause=cause)
            except Exception as exc:  # noqa: BLE001 - the diagnosis is read-only; the failure is logged
                log.error(
                    "diagnostics.audit.failed", customer_id=customer_id, error=f"{type(exc).__name__}: {exc}"
                )
        return result


# ----------------------------------------------------------------------------- HTTP doors


def _not_found(customer_id: str) -> JSONResponse:
    return JSONResponse(
        {
            "error": "customer_not_found",
            "customer_id": customer_id,
            "detail": f"No customer {customer_id!r} in the Stripe mirror, the subscription store or Stripe.",
        },
        status_code=404,
    )


def http_handlers(diagnostician: Diagnostician, usage: UsageStore | None) -> dict[str, Any]:
    async def get_diagnosis(request: Request) -> JSONResponse:
        customer_id = path_id(request, "customer_id")
        contact_id = request.headers.get("x-contact-id") or None
        try:
            result = await diagnostician.diagnose(customer_id, contact_id=contact_id)
        except CustomerNotFound:
            return _not_found(customer_id)
        return JSONResponse(result.model_dump(mode="json"))

    async def get_usage(request: Request) -> JSONResponse:
        customer_id = path_id(request, "customer_id")
        try:
            days = max(1, min(int(request.query_params.get("days", "60")), 366))
        except ValueError:
            return JSONResponse(
                {"error": "bad_request", "detail": "days must be an integer"}, status_code=400
            )
        snap, fresh = await diagnostician.mirror.load(customer_id)
        if usage is None:
            return JSONResponse({"error": "usage_unavailable", "detail": "no usage store"}, status_code=503)
        now = datetime.now(UTC)
        sub = snap.subscriptions[0] if snap.subscriptions else None
        try:
            figures = await usage.figures(
                customer_id,
                sub.current_period_start if sub else None,
                sub.current_period_end if sub else None,
                now,
            )
            daily = await usage.daily(customer_id, days, now)
        except SourceUnavailable as exc:
            return JSONResponse({"error": "usage_unavailable", "detail": exc.detail}, status_code=503)
        # metering may run ahead of the mirror (no webhook or diagnosis yet): usage alone proves the customer
        if not (fresh.known or fresh.in_store) and not daily:
            return _not_found(customer_id)
        report = UsageReport.model_validate(  # the published contract (services/diagnostics/contracts.py)
            {
                "customer_id": customer_id,
                "period_start": sub.current_period_start.isoformat()
                if sub and sub.current_period_start
                else None,
                "period_end": sub.current_period_end.isoformat() if sub and sub.current_period_end else None,
                "metrics": [dataclasses.asdict(f) for f in figures],
                "events": int(sum(int(d.get("events", 0)) for d in daily)),
                "daily": daily,
            }
        )
        return JSONResponse(report.model_dump(mode="json"))

    return {"diagnosis": get_diagnosis, "usage": get_usage}


# ----------------------------------------------------------------------------- the usage consumer


class UsageBatchConsumer:
    """Writes ``usage.event.recorded.v1`` batches to ClickHouse; the offsets commit after the write."""

    def __init__(self, usage: UsageStore, dead_letters: Any | None = None) -> None:
        self.usage = usage
        self.dead_letters = dead_letters

    async def handle(self, bodies: list[bytes], records: tuple[Any, ...] | None = None) -> int:
        events: list[UsageEvent] = []
        for i, body in enumerate(bodies):
            try:
                msg = UsageEventRecordedV1.model_validate_json(body)
            except (ValidationError, ValueError) as exc:
                raw = records[i] if records and i < len(records) else None
                log.warning("diagnostics.usage.bad_message", error=str(exc)[:200])
                if self.dead_letters is not None and raw is not None:
                    await self.dead_letters.send(raw, exc, attempts=1)
                continue
            p = msg.payload
            events.append(UsageEvent(msg.customer_id, p.metric, p.ts, p.units, p.unit_price_usd, p.event_id))
        written = await self.usage.write(events) if events else 0  # raises → nack → redelivered
        log.info("diagnostics.usage.batch_written", received=len(bodies), written=written)
        return written
