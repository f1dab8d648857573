"""Tier 1 self-heal service wiring: the selfheal consumer, the Health Meter API and pages, the chat widget."""

from __future__ import annotations

import functools
from typing import Any

from faststream import Context
from faststream.kafka.message import KafkaMessage

from schemas import Tier
from schemas.messages import (
    AgentRequestedV1,
    AlertRaisedV1,
    AuditEventRecordedV1,
    BillingChangeRecordedV1,
    ContactReceivedV1,
    ConversationMessageSentV1,
    EscalationOpenedV1,
    OutcomeRecordedV1,
    SelfhealRequestedV1,
)
from services.tier1_selfheal.adapters.chat_store import PostgresChatStore
from services.tier1_selfheal.adapters.postgres import PostgresRequestStore, verify_schema
from services.tier1_selfheal.api import MeterDeps, meter_routes
from services.tier1_selfheal.auth import CustomerKeys
from services.tier1_selfheal.chat import ChatDeps, chat_routes
from services.tier1_selfheal.handlers import SelfhealDeps, on_selfheal_requested
from services.tier1_selfheal.portal_cards import CardDeps, portal_card_routes
from services.tier1_selfheal.portal_details import PortalDeps, portal_details_routes
from services.tier1_selfheal.portal_history import HistoryDeps, portal_history_routes
from services.tier1_selfheal.portal_invoices import InvoicesDeps, invoices_routes
from services.tier1_selfheal.portal_plan import PlanDeps, plan_routes
from services.tier1_selfheal.portal_stripe import StripePortalDeps, stripe_portal_routes
from services.tier1_selfheal.portal_team import TeamDeps, portal_team_routes
from services.tier1_selfheal.portal_usage import UsageDeps, UsageSource, usage_routes
from services.tier1_selfheal.ports import Actions, CardVault, Diagnostics
from services.tier1_selfheal.price_confirm import PriceConfirmDeps, price_confirmation_routes
from services.tier1_selfheal.settings import Tier1Settings
from tierline.messaging import (
    BATCH_SUBSCRIBER_DEFAULTS,
    Inbox,
    batch_records,
    consume_batch,
    consumer_group,
    long_poll,
    publish,
)
from tierline.pipeline import escalate_failed_message
from tierline.runtime import Service
from tierline.settings import InfraSettings

NAME = "tier1_selfheal"


def create_service(
    settings: InfraSettings,
    *,
    actions: Actions | None = None,
    diagnostics: Diagnostics | None = None,
    cards: CardVault | None = None,
    usage: UsageSource | None = None,
) -> Service:
    """The service. ``actions`` / ``diagnostics`` / ``cards`` are seams; defaults are the real adapters."""
    cfg = settings if isinstance(settings, Tier1Settings) else Tier1Settings(**settings.model_dump())
    holder: dict[str, Any] = {}

    def meter() -> MeterDeps:
        if "meter" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        return holder["meter"]  # type: ignore[no-any-return]

    def chat() -> ChatDeps:
        if "chat" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        return holder["chat"]  # type: ignore[no-any-return]

    def price_confirm() -> PriceConfirmDeps:
        if "deps" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        deps = holder["deps"]
        return PriceConfirmDeps(deps.pool, deps.actions, cfg.session_secret.get_secret_value())

    def portal_usage() -> UsageDeps:  # the portal's usage page (issue 21)
        if "usage" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        deps = holder["deps"]
        keys = CustomerKeys.from_settings(cfg)
        return UsageDeps(deps.pool, holder["usage"], deps.diagnostics, deps.actions, keys)

    def portal_invoices() -> InvoicesDeps:  # the portal's invoices, receipts and /billing (issue 21)
        if "meter" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        if "invoices" not in holder:
            from tierline.stripe_adapter import StripeActions

            m = holder["meter"]
            holder["invoices"] = InvoicesDeps(m.pool, m.broker, m.requests, m.secret, StripeActions(cfg))
        return holder["invoices"]  # type: ignore[no-any-return]

    def portal_plan() -> PlanDeps:  # the portal's plan page and "my requests" (issue 21)
        if "deps" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        deps = holder["deps"]
        keys = CustomerKeys.from_settings(cfg)
        return PlanDeps(
            deps.pool,
            deps.broker,
            deps.actions,
            deps.diagnostics,
            deps.requests,
            keys,
            cfg.tier1_retention_offer,
        )

    def portal_details() -> PortalDeps:  # the portal's billing details form (issue 21)
        if "meter" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        m = holder["meter"]
        return PortalDeps(m.pool, holder["deps"].actions, m.cards, m.secret, m.broker)

    def portal_cards() -> CardDeps:  # the card page: Stripe collects the card (issue 21)
        if "meter" not in holder:
            raise RuntimeError("tier1_selfheal not started")
        return CardDeps(holder["meter"], holder["deps"].actions, cfg.stripe_api_base)

    def portal_stripe() -> StripePortalDeps:  # the billing home's "Manage in Stripe" (issue 21)
        if "stripe_portal" not in holder:
            from tierline.stripe_adapter import StripeActions

            holder["stripe_portal"] = StripePortalDeps(
                StripeActions(cfg),
                CustomerKeys.from_settings(cfg),
                f"{cfg.public_base_url.rstrip('/')}/billing",
                cfg.tier1_stripe_portal_configuration,
            )
        return holder["stripe_portal"]  # type: ignore[no-any-return]

    service = Service.create(
        NAME,
        cfg,
        http_port=cfg.http_port,
        routes=[
            *meter_routes(meter),
            *chat_routes(chat),
            *price_confirmation_routes(price_confirm),
            *usage_routes(portal_usage),
            *plan_routes(portal_plan),
            *invoices_routes(portal_invoices),
            *portal_details_routes(portal_details),
            *portal_card_routes(portal_cards, stripe_api_base=cfg.stripe_api_base),
            *portal_history_routes(lambda: HistoryDeps(meter().pool, meter().secret)),  # account history
            *stripe_portal_routes(portal_stripe),  # "Manage in Stripe": a Customer Portal session
            *portal_team_routes(  # the product's Team and API keys sections (issue 23)
                lambda: TeamDeps(meter().pool, holder["deps"].actions, meter().secret)
            ),
        ],
    )

    async def wire(svc: Service) -> None:
        await verify_schema(svc.db)
        diag = diagnostics
        if diag is None:
            from tierline.diagnostics_client import HttpDiagnostics

            diag = HttpDiagnostics(cfg.diagnostics_url, token=cfg.service_token.get_secret_value())
        acts = actions
        if acts is None:
            from tierline.actions import ActionExecutor  # type: ignore[attr-defined]

            acts = ActionExecutor(pool=svc.db, broker=svc.broker, settings=cfg, diagnostics=diag)
        vault = cards
        if vault is None:
            from services.tier1_selfheal.adapters.stripe_cards import StripeCardVault

            vault = StripeCardVault(cfg, publishable_key=cfg.tier1_stripe_publishable_key)
        requests = PostgresRequestStore(svc.db)
        holder["deps"] = SelfhealDeps(
            pool=svc.db,
            broker=svc.broker,
            actions=acts,
            diagnostics=diag,
            inbox=Inbox(svc.db, consumer_group(NAME)),
            requests=requests,
            retention_offer=cfg.tier1_retention_offer,
        )
        holder["meter"] = MeterDeps(
            pool=svc.db,
            broker=svc.broker,
            diagnostics=diag,
            cards=vault,
            requests=requests,
            secret=CustomerKeys.from_settings(cfg),
            diagnosis_timeout_s=cfg.tier1_diagnosis_timeout_s,
            cookie_secure=cfg.tier1_cookie_secure,
        )
        holder["chat"] = ChatDeps(
            store=PostgresChatStore(svc.db),
            publish=functools.partial(publish, svc.broker),
            secret=CustomerKeys.from_settings(cfg),
            frame_ancestors=cfg.tier1_chat_frame_ancestors,
        )
        if usage is not None:
            holder["usage"] = usage
        else:
            from tierline.diagnostics_client import HttpDiagnostics as UsageDoor

            holder["usage"] = UsageDoor(cfg.diagnostics_url, token=cfg.service_token.get_secret_value())
        svc.state.update(holder)

    service.on_start.append(wire)
    service.documents_publishing(
        OutcomeRecordedV1,
        AgentRequestedV1,
        EscalationOpenedV1,
        AuditEventRecordedV1,
        SelfhealRequestedV1,
        ConversationMessageSentV1,
        ContactReceivedV1,  # the chat widget's messages
        BillingChangeRecordedV1,  # account changes (the executor, after a change went through)
        AlertRaisedV1,  # the spend breaker (the executor's automatic refunds)
    )

    @long_poll(
        service.broker.subscriber(
            SelfhealRequestedV1.TOPIC,
            group_id=consumer_group(NAME),
            **BATCH_SUBSCRIBER_DEFAULTS,
            title="tier1_selfheal:tier1.selfheal.requested.v1",
        )
    )
    async def on_selfheal_batch(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        # a batch: customers concurrently, each one's requests in order; publishes awaited together
        async def one(msg: SelfhealRequestedV1) -> None:
            await on_selfheal_requested(holder["deps"], msg)

        await consume_batch(service.dead_letters, SelfhealRequestedV1, bodies, batch_records(message), one)

    async def give_up(body: dict[str, Any], error: BaseException) -> None:
        await escalate_failed_message(service.broker, body, error, opened_by=Tier.TIER1)

    service.dead_letters.give_up_hooks[SelfhealRequestedV1.TOPIC] = give_up
    return service
