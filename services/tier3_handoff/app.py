"""Tier 3 handoff service: wiring only (consumers, console routes, the SLA job)."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError

from schemas.messages import DeadLetterRecordedV1, EscalationOpenedV1
from services.tier3_handoff.adapters.actions import PolicyCheckedHumanActions
from services.tier3_handoff.auth import agent_verifier
from services.tier3_handoff.console import console_routes
from services.tier3_handoff.handlers import Tier3Handoff
from services.tier3_handoff.ports import HumanActions
from services.tier3_handoff.settings import Tier3Settings
from tierline.messaging import SUBSCRIBER_DEFAULTS, consumer_group
from tierline.runtime import Service
from tierline.settings import InfraSettings
from tierline.sweeper import ContactSweeper, SweeperSettings

NAME = "tier3_handoff"

log = structlog.get_logger(__name__)


def create_service(
    settings: InfraSettings,
    tier3: Tier3Settings | None = None,
    actions: HumanActions | None = None,
    *,
    diagnostics: Any = None,
    name: str = NAME,
    sweeper: SweeperSettings | None = None,
) -> Service:
    """The service; ``actions`` defaults to the shared policy-checked tools with a human actor.

    ``diagnostics`` is what those tools read facts from (default: the diagnostics service over HTTP).
    """
    tier3 = tier3 or Tier3Settings()
    holder: dict[str, Tier3Handoff] = {}

    def handoff() -> Tier3Handoff:
        if "handoff" not in holder:
            raise RuntimeError("tier3_handoff not started")
        return holder["handoff"]

    service = Service.create(
        name,
        settings,
        http_port=settings.http_port,
        routes=console_routes(handoff, agent_verifier(settings.agent_token_keyset(), tier3)),
    )

    async def on_start(svc: Service) -> None:
        human = actions
        if human is None:
            from tierline.actions import ActionExecutor
            from tierline.diagnostics_client import HttpDiagnostics

            executor = ActionExecutor(
                pool=svc.db,
                broker=svc.broker,
                settings=settings,
                diagnostics=diagnostics
                or HttpDiagnostics(settings.diagnostics_url, token=settings.service_token.get_secret_value()),
            )
            human = PolicyCheckedHumanActions(executor)
        holder["handoff"] = Tier3Handoff(pool=svc.db, broker=svc.broker, actions=human, settings=tier3)
        svc.state["handoff"] = holder["handoff"]

    async def sla_job(svc: Service) -> None:
        await handoff().sla_loop()

    # never a dead end: a contact with no outcome long after it started is handed to a person
    sweeper_settings = sweeper or SweeperSettings()

    async def start_sweeper(svc: Service) -> None:
        contacts = ContactSweeper(svc.db, svc.broker, sweeper_settings, swept_by=name)
        svc.state["sweeper"] = contacts
        svc.health_checks["sweeper"] = contacts.health

    async def sweeper_job(svc: Service) -> None:
        if sweeper_settings.enabled:
            await svc.state["sweeper"].run()

    async def on_escalation_opened(msg: EscalationOpenedV1) -> None:
        await handoff().on_escalation_opened(msg)

    async def on_dead_letter_recorded(body: dict[str, Any]) -> None:
        # Validated here, not by the subscriber: a malformed dead letter must not be dead-lettered again
        # onto the topic this consumer reads (that would loop).
        try:
            msg = DeadLetterRecordedV1.model_validate(body)
        except ValidationError as exc:
            log.error("tier3.deadletter.unreadable", error=str(exc)[:500])
            return
        await handoff().on_dead_letter_recorded(msg)

    group = consumer_group(name)
    service.broker.subscriber(EscalationOpenedV1.TOPIC, group_id=group, **SUBSCRIBER_DEFAULTS)(
        on_escalation_opened
    )
    # its own group: one topic per consumer group (see analytics/sink.py)
    service.broker.subscriber(
        DeadLetterRecordedV1.TOPIC, group_id=f"{group}.dead_letters", **SUBSCRIBER_DEFAULTS
    )(on_dead_letter_recorded)
    service.on_start.append(on_start)
    service.background.append(sla_job)
    service.on_start.append(start_sweeper)
    service.background.append(sweeper_job)
    return service
