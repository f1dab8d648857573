"""Router service wiring: consumes contact.received.v1, publishes to one tier topic."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import Context
from faststream.kafka.message import KafkaMessage

from schemas.messages import (
    AgentRequestedV1,
    AuditEventRecordedV1,
    ContactReceivedV1,
    EscalationOpenedV1,
    SelfhealRequestedV1,
)
from services.router.handlers import RouterDeps, on_contacts_received
from services.router.settings import RouterSettings
from tierline.messaging import (
    BATCH_SUBSCRIBER_DEFAULTS,
    Inbox,
    batch_records,
    consumer_group,
    long_poll,
    parse_batch,
)
from tierline.pipeline import escalate_failed_message
from tierline.runtime import Service
from tierline.settings import InfraSettings

NAME = "router"


def create_service(settings: InfraSettings, *, classifier: Any = None, diagnostics: Any = None) -> Service:
    cfg = RouterSettings(**settings.model_dump())
    service = Service.create(NAME, cfg, http_port=cfg.http_port)
    holder: dict[str, RouterDeps] = {}

    async def wire(svc: Service) -> None:
        clf = classifier
        if clf is None:
            from services.router.intent.model import IntentClassifier

            clf = await asyncio.to_thread(IntentClassifier.load, cfg.intent_model_dir)
            # Load the encoder now, not on the first contact (it takes seconds); ready means ready.
            await asyncio.to_thread(clf.predict, ["warm-up: is my invoice ready?"])
        diag = diagnostics
        if diag is None:
            from tierline.diagnostics_client import HttpDiagnostics

            diag = HttpDiagnostics(cfg.diagnostics_url, token=cfg.service_token.get_secret_value())
        holder["deps"] = RouterDeps(
            pool=svc.db,
            broker=svc.broker,
            classifier=clf,
            diagnostics=diag,
            inbox=Inbox(svc.db, consumer_group(NAME)),
            repeat_window_days=cfg.repeat_contact_window_days,
        )

    service.on_start.append(wire)
    service.documents_publishing(
        SelfhealRequestedV1, AgentRequestedV1, EscalationOpenedV1, AuditEventRecordedV1
    )

    @long_poll(
        service.broker.subscriber(
            ContactReceivedV1.TOPIC,
            group_id=consumer_group(NAME),
            **BATCH_SUBSCRIBER_DEFAULTS,
            title="router:contact.received.v1",
        )
    )
    async def on_contacts(bodies: list[bytes], message: KafkaMessage = Context("message")) -> None:
        # a batch: bad records are dead-lettered alone (with the give-up hook below), the rest routed
        good, bad = parse_batch(ContactReceivedV1, bodies, batch_records(message))
        for raw, exc in bad:
            await service.dead_letters.give_up(raw, exc, attempts=1)
        await on_contacts_received(holder["deps"], good, service.dead_letters)

    async def give_up(body: dict[str, Any], error: BaseException) -> None:
        await escalate_failed_message(service.broker, body, error, opened_by="router")

    service.dead_letters.give_up_hooks[ContactReceivedV1.TOPIC] = give_up
    return service
