"""The notifier service: ``notification.requested.v1`` → email over SMTP, once per dedupe key, rate-limited.

``tierline serve notifier`` runs :func:`create_service`.
"""

from __future__ import annotations

import structlog

from schemas.messages import NotificationRequestedV1
from services.tier0_prevent.adapters.notifications import NotificationStore
from services.tier0_prevent.adapters.smtp import SmtpMailer
from services.tier0_prevent.domain import SendVerdict
from services.tier0_prevent.settings import Tier0Settings
from tierline.messaging import SUBSCRIBER_DEFAULTS, consumer_group
from tierline.runtime import Service
from tierline.settings import DEFAULT_PORTS, InfraSettings

log = structlog.get_logger(__name__)

NAME = "notifier"


class Notifier:
    def __init__(self, store: NotificationStore, mailer: SmtpMailer, settings: Tier0Settings) -> None:
        self.store = store
        self.mailer = mailer
        self.settings = settings

    async def on_notification_requested(self, msg: NotificationRequestedV1) -> SendVerdict:
        p = msg.payload
        verdict = await self.store.reserve(
            msg,
            max_per_window=self.settings.notify_max_per_customer,
            window_hours=self.settings.notify_window_hours,
        )
        if verdict is not SendVerdict.SEND:
            log.info(
                "notifier.skipped",
                dedupe_key=p.dedupe_key,
                customer_id=msg.customer_id,
                verdict=verdict.value,
            )
            return verdict
        message_id = await self.mailer.send(
            to=p.to,
            subject=p.subject,
            body=p.body,
            dedupe_key=p.dedupe_key,
            headers={"X-Tierline-Contact": msg.contact_id, "X-Tierline-Template": p.template},
        )
        await self.store.mark_delivered(p.dedupe_key)
        log.info(
            "notifier.delivered",
            dedupe_key=p.dedupe_key,
            customer_id=msg.customer_id,
            template=p.template,
            smtp_message_id=message_id,
        )
        return verdict


def create_service(settings: InfraSettings, *, tier0: Tier0Settings | None = None) -> Service:
    t0 = tier0 or Tier0Settings()
    service = Service.create(NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME])
    mailer = SmtpMailer(
        settings.smtp_host, settings.smtp_port, sender=t0.mail_from, timeout_s=t0.smtp_timeout_s
    )

    async def on_start(svc: Service) -> None:
        svc.state["notifier"] = Notifier(NotificationStore(svc.db), mailer, t0)

    service.on_start.append(on_start)

    @service.broker.subscriber(
        NotificationRequestedV1.TOPIC, group_id=consumer_group(NAME), **SUBSCRIBER_DEFAULTS
    )
    async def on_notification_requested(msg: NotificationRequestedV1) -> None:
        await service.state["notifier"].on_notification_requested(msg)

    return service
