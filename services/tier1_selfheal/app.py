"""Tier 1 self-heal service wiring: the selfheal consumer, the Health Meter API and pages, the chat widget."""

from __future__ import annotations

import functools
from typing import Any

from schemas import Tier
from schemas.messages import (
    AgentRequestedV1,
    AuditEventRecordedV1,
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
from services.tier1_selfheal.ports import Actions, CardVault, Diagnostics
from services.tier1_selfheal.price_confirm import PriceConfirmDeps, price_confirmation_routes
from services.tier1_selfheal.settings import Tier1Settings
from tierline.messaging import SUBSCRIBER_DEFAULTS, Inbox, consumer_group, publish
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

    service = Service.create(
        NAME,
        cfg,
        http_port=cfg.http_port,
        routes=[*meter_routes(meter), *chat_routes(chat), *price_confirmation_routes(price_confirm)],
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

            vault = StripeCardVault(cfg)
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
    )

    @service.broker.subscriber(
        SelfhealRequestedV1.TOPIC,
        group_id=consumer_group(NAME),
        **SUBSCRIBER_DEFAULTS,
        title="tier1_selfheal:tier1.selfheal.requested.v1",
    )
    async def on_selfheal(msg: SelfhealRequestedV1) -> None:
        await on_selfheal_requested(holder["deps"], msg)

    async def give_up(body: dict[str, Any], error: BaseException) -> None:
        await escalate_failed_message(service.broker, body, error, opened_by=Tier.TIER1)

    service.dead_letters.give_up_hooks[SelfhealRequestedV1.TOPIC] = give_up
    return service
