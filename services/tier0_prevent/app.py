"""Tier 0 prevent: wiring only (webhook ingress, event consumers, mirror sync, dunning, expiry scan)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from schemas import EscalationReason, Tier
from schemas.messages import EscalationOpenedPayload, StripeEventReceivedV1, UsageEventRecordedV1
from services.tier0_prevent.adapters.diagnostics import diagnostics_client
from services.tier0_prevent.adapters.stripe import billing_actions
from services.tier0_prevent.domain import Handling, route_event
from services.tier0_prevent.dunning import DunningWorker
from services.tier0_prevent.forecast import ForecastNudger, UsageForecasts
from services.tier0_prevent.handlers import MirrorSync, Tier0Deps, Tier0Handlers, utc_now
from services.tier0_prevent.ingress import BatchingIngestor, WebhookIngress
from services.tier0_prevent.ports import BillingActions, Diagnostics, MirrorSink, Tier0Actions
from services.tier0_prevent.settings import Tier0Settings
from tierline.actions import ActionExecutor
from tierline.billing.declines import classify_decline
from tierline.billing.mirror import MirrorStore
from tierline.billing.policy import PolicyEngine
from tierline.messaging import ORDERED_DEFAULTS, SUBSCRIBER_DEFAULTS, consumer_group, publish
from tierline.pipeline import escalate
from tierline.runtime import Service
from tierline.settings import DEFAULT_PORTS, InfraSettings

log = structlog.get_logger(__name__)

NAME = "tier0_prevent"
MIRROR_GROUP = f"{consumer_group(NAME)}.mirror"
FORECAST_GROUP = f"{consumer_group(NAME)}.forecast"


async def _raw_batch(msg: Any, original: Any = None) -> list[bytes]:
    """Batch decoder: the raw values (the forecast watch reads only each one's customer id)."""
    body = msg.body
    return [bytes(b) for b in body] if isinstance(body, list | tuple) else [bytes(body)]


def _mirror(pool: Any) -> MirrorSink:
    return MirrorStore(pool)


def system_actions(
    pool: Any,
    broker: Any,
    settings: InfraSettings,
    *,
    billing: BillingActions,
    diagnostics: Diagnostics,
    policy: PolicyEngine | None = None,
) -> Tier0Actions:
    """The shared executor, built as the other tiers build it: Tier 0 hands it the facts it verified
    (``ActionContext.facts``), so ``diagnostics`` is only its fallback."""
    return ActionExecutor(
        pool=pool,
        broker=broker,
        settings=settings,
        diagnostics=diagnostics,
        stripe=billing,
        policy=policy or PolicyEngine.from_yaml(),
    )


def create_service(
    settings: InfraSettings,
    *,
    tier0: Tier0Settings | None = None,
    diagnostics: Diagnostics | None = None,
    billing: BillingActions | None = None,
    policy: PolicyEngine | None = None,
    usage: UsageForecasts | None = None,
    clock: Callable[[], datetime] = utc_now,
    background: bool = True,
    worker_id: str | None = None,
) -> Service:
    t0 = tier0 or Tier0Settings()
    service = Service.create(NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME])
    ingestor = BatchingIngestor(
        None,
        lambda m: publish(service.broker, m),  # type: ignore[arg-type]
        batch_max=t0.ingest_batch_max,
        workers=t0.ingest_workers,
    )
    ingress = WebhookIngress(
        ingestor,
        settings.webhook_secrets,
        tolerance_s=t0.signature_tolerance_s,
        max_body_bytes=t0.max_body_bytes,
    )
    service.routes.append(ingress.route())
    service.state["ingress"] = ingress

    async def on_start(svc: Service) -> None:
        ingestor.pool = svc.db
        await ingestor.start()
        diag = diagnostics or diagnostics_client(settings)
        stripe = billing or billing_actions(settings)
        deps = Tier0Deps(
            pool=svc.db,
            broker=svc.broker,
            settings=t0,
            diagnostics=diag,
            classify=classify_decline,
            billing=stripe,
            actions=system_actions(
                svc.db, svc.broker, settings, billing=stripe, diagnostics=diag, policy=policy
            ),
            return_url=t0.return_url or f"{settings.public_base_url.rstrip('/')}/billing",
            clock=clock,
        )
        svc.state["deps"] = deps
        svc.state["handlers"] = Tier0Handlers(deps)
        svc.state["mirror"] = MirrorSync(_mirror(svc.db))
        svc.state["dunning"] = DunningWorker(deps, worker_id or f"{NAME}-{uuid.uuid4().hex[:8]}")
        if usage is None:
            from tierline.diagnostics_client import HttpDiagnostics

            door: UsageForecasts = HttpDiagnostics(
                settings.diagnostics_url, token=settings.service_token.get_secret_value()
            )
        else:
            door = usage
        svc.state["forecast"] = ForecastNudger(
            pool=svc.db,
            broker=svc.broker,
            actions=deps.actions,
            usage=door,
            usage_url=t0.usage_page_url or f"{settings.public_base_url.rstrip('/')}/billing/usage",
            threshold=t0.forecast_threshold,
            settle_s=t0.forecast_settle_s,
            clock=clock,
        )

    async def on_stop(svc: Service) -> None:
        await ingestor.stop()

    service.on_start.append(on_start)
    service.on_stop.append(on_stop)

    @service.broker.subscriber(
        StripeEventReceivedV1.TOPIC, group_id=consumer_group(NAME), **SUBSCRIBER_DEFAULTS
    )
    async def on_stripe_event(msg: StripeEventReceivedV1) -> None:
        await service.state["handlers"].on_stripe_event(msg)

    @service.broker.subscriber(StripeEventReceivedV1.TOPIC, group_id=MIRROR_GROUP, **SUBSCRIBER_DEFAULTS)
    async def on_stripe_event_mirror(msg: StripeEventReceivedV1) -> None:
        await service.state["mirror"].on_stripe_event(msg)

    async def on_give_up(body: dict[str, Any], error: BaseException) -> None:
        """An actionable event that kept failing: a human gets it (never a dead end)."""
        try:
            msg = StripeEventReceivedV1.model_validate(body)
        except Exception:  # noqa: BLE001 - not even an envelope: the dead letter is the record
            return
        if route_event(msg.payload.event_type) in (Handling.IGNORE, Handling.INVOICE_PAID):
            return
        await escalate(
            service.broker,
            cause=msg,
            payload=EscalationOpenedPayload(
                reason=EscalationReason.ERROR,
                opened_by=Tier.TIER0,
                tier_path=[Tier.TIER0],
                text=f"Stripe event {msg.payload.event_type} ({msg.payload.event_id}) could not be processed",
                suggested_next_step=f"Check the dead letter: {type(error).__name__}: {str(error)[:300]}",
            ),
        )

    service.dead_letters.give_up_hooks[StripeEventReceivedV1.TOPIC] = on_give_up

    if t0.forecast_nudge_enabled:

        @service.broker.subscriber(
            UsageEventRecordedV1.TOPIC,
            group_id=FORECAST_GROUP,
            batch=True,
            max_records=500,
            batch_timeout_ms=200,
            decoder=_raw_batch,
            **ORDERED_DEFAULTS,
            title="tier0_prevent:usage.event.recorded.v1",
        )
        async def on_usage_events_recorded(bodies: list[bytes]) -> None:
            """Usage marks its customers for the forecast sweep (no I/O here)."""
            service.state["forecast"].on_usage_events(bodies)

    if background:

        async def dunning_worker(svc: Service) -> None:
            await svc.state["dunning"].run_forever(svc)

        async def expiry_scan(svc: Service) -> None:
            while True:
                try:
                    await svc.state["handlers"].scan_expiring_cards()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - next scan tries again
                    log.error("tier0.expiry_scan.failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(t0.expiry_scan_interval_s)

        service.background.extend([dunning_worker, expiry_scan])

        if t0.forecast_nudge_enabled:

            async def forecast_sweep(svc: Service) -> None:
                while True:
                    await asyncio.sleep(t0.forecast_sweep_interval_s)  # at most once a minute
                    try:
                        await svc.state["forecast"].sweep()
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - the next sweep tries again
                        log.error("tier0.forecast.sweep_failed", error=f"{type(exc).__name__}: {exc}")

            service.background.append(forecast_sweep)
    return service
