"""The notifier service wiring: ``tierline serve notifier`` runs :func:`create_service`.

Consumes ``notification.requested.v1`` and ``conversation.message.sent.v1`` (one consumer group each),
serves the support address's inbound door over SMTP (``TIERLINE_SMTP_INBOUND_PORT``) and HTTP
(``POST /v1/inbound/email``, a raw RFC 822 message, behind the service token: a mail provider's inbound
webhook or relay posts there).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from schemas.messages import (
    AuditEventRecordedV1,
    BillingChangeRecordedV1,
    ContactReceivedV1,
    ConversationMessageSentV1,
    EscalationOpenedV1,
    NotificationRequestedV1,
)
from services.notifier.adapters.files import FileAttachmentStore
from services.notifier.adapters.inbound_smtp import InboundSmtpDoor
from services.notifier.adapters.slack import SlackWebhook
from services.notifier.adapters.smtp import SmtpMailer
from services.notifier.change_handlers import ChangeNotifier
from services.notifier.handlers import InboundDoor, Outbound
from services.notifier.settings import NotifierSettings
from tierline import http as http_guard
from tierline.messaging import SUBSCRIBER_DEFAULTS, consumer_group
from tierline.runtime import Service
from tierline.service_auth import require_service_token
from tierline.settings import DEFAULT_PORTS, InfraSettings

NAME = "notifier"
CONVERSATIONS_GROUP = consumer_group(f"{NAME}.conversations")
CHANGES_GROUP = consumer_group(f"{NAME}.changes")


def create_service(settings: InfraSettings, *, notifier: NotifierSettings | None = None) -> Service:
    cfg = notifier or NotifierSettings()
    service = Service.create(NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME])
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        timeout_s=cfg.smtp_timeout_s,
        attempts=cfg.send_attempts,
        backoff_s=cfg.send_backoff_s,
        backoff_max_s=cfg.send_backoff_max_s,
    )

    async def on_start(svc: Service) -> None:
        outbound = Outbound(svc.db, svc.broker, mailer, cfg)
        door = InboundDoor(svc.db, svc.broker, outbound, FileAttachmentStore(settings.data_dir), cfg)
        svc.state["outbound"] = outbound
        slack_url = cfg.slack_webhook_url.get_secret_value() if cfg.slack_webhook_url else None
        svc.state["changes"] = ChangeNotifier(
            svc.db,
            svc.broker,
            cfg,
            SlackWebhook(slack_url, timeout_s=cfg.slack_timeout_s) if slack_url else None,
        )
        svc.state["inbound"] = door
        if cfg.inbound_enabled and settings.smtp_inbound_port is not None:
            smtp_door = InboundSmtpDoor(
                door.receive,
                host=settings.http_host,
                port=settings.smtp_inbound_port,
                max_bytes=cfg.inbound_max_bytes,
            )
            await smtp_door.start()
            svc.state["smtp_door"] = smtp_door

    async def on_stop(svc: Service) -> None:
        smtp_door = svc.state.pop("smtp_door", None)
        if smtp_door is not None:
            await smtp_door.stop()
        await mailer.close()

    service.on_start.append(on_start)
    service.on_stop.append(on_stop)
    service.documents_publishing(
        ContactReceivedV1, EscalationOpenedV1, AuditEventRecordedV1, NotificationRequestedV1
    )

    async def inbound_door_health() -> tuple[bool, str]:
        smtp_door = service.state.get("smtp_door")
        if smtp_door is None:
            return True, "no SMTP door here (webhook only)"
        return (
            smtp_door.listening,
            f"SMTP door on {smtp_door.host}:{smtp_door.port}, {mailer.sent} mails sent",
        )

    service.health_checks["email"] = inbound_door_health

    async def inbound_webhook(request: Request) -> JSONResponse:
        """One raw RFC 822 message (``message/rfc822``) from a mail provider's inbound webhook or relay."""
        raw = await http_guard.read_body(request)
        if not raw.strip():
            return JSONResponse({"error": "empty_message", "detail": "send the raw message"}, status_code=400)
        result = await service.state["inbound"].receive(raw, None, door="webhook")
        return JSONResponse(result.as_json(), status_code=202)

    service.routes.append(
        Route(
            "/v1/inbound/email",
            require_service_token(settings.service_token.get_secret_value(), inbound_webhook),
            methods=["POST"],
        )
    )

    @service.broker.subscriber(
        NotificationRequestedV1.TOPIC, group_id=consumer_group(NAME), **SUBSCRIBER_DEFAULTS
    )
    async def on_notification_requested(msg: NotificationRequestedV1) -> None:
        await service.state["outbound"].on_notification_requested(msg)

    @service.broker.subscriber(
        ConversationMessageSentV1.TOPIC, group_id=CONVERSATIONS_GROUP, **SUBSCRIBER_DEFAULTS
    )
    async def on_conversation_message(msg: ConversationMessageSentV1) -> None:
        await service.state["outbound"].on_conversation_message(msg)

    @service.broker.subscriber(BillingChangeRecordedV1.TOPIC, group_id=CHANGES_GROUP, **SUBSCRIBER_DEFAULTS)
    async def on_billing_change(msg: BillingChangeRecordedV1) -> None:
        """An account change: the customer's email and the support team's Slack message, as configured."""
        await service.state["changes"].on_change_recorded(msg)

    return service
