"""Account changes (``billing.change.recorded.v1``) → the notifications configured for their kind: an
email to the customer (published as ``notification.requested.v1``, which this service's own consumer
sends once per dedupe key) and a Slack message to the support team (once per change: a row in
``notifications`` with channel ``slack`` reserves it)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import derived_id
from schemas.messages import BillingChangeRecordedV1, NotificationRequestedPayload, NotificationRequestedV1
from services.notifier import change_notices
from services.notifier.adapters.slack import SlackWebhook
from services.notifier.settings import NotifierSettings
from tierline.messaging import publish

log = structlog.get_logger(__name__)

TEMPLATE = "billing_change"


@dataclass
class ChangeNotifier:
    pool: asyncpg.Pool
    broker: KafkaBroker
    settings: NotifierSettings
    slack: SlackWebhook | None = None

    async def on_change_recorded(self, msg: BillingChangeRecordedV1) -> list[str]:
        """Tell whoever the change's kind names; returns the channels used (for logs and tests)."""
        p = msg.payload
        channels = change_notices.channels_for(p.change, self.settings.change_channels)
        used = []
        if "email" in channels and p.notify:
            await self._email(msg)
            used.append("email")
        if "slack" in channels:
            if self.slack is None:
                log.info("notifier.change.slack_off", change=p.change, customer_id=msg.customer_id)
            elif await self._slack(msg):
                used.append("slack")
        log.info("notifier.change.notified", change=p.change, customer_id=msg.customer_id, channels=used)
        return used

    async def _email(self, msg: BillingChangeRecordedV1) -> None:
        notice = change_notices.customer_email(msg.payload)
        for address in msg.payload.notify:
            key = f"change:{msg.payload.idempotency_key}:{address.lower()}"
            await publish(
                self.broker,
                NotificationRequestedV1.build(
                    NotificationRequestedPayload(
                        to=address,
                        template=TEMPLATE,
                        subject=notice.subject,
                        body=notice.body,
                        dedupe_key=key,
                    ),
                    contact_id=msg.contact_id,
                    customer_id=msg.customer_id,
                    cause=msg,
                    message_id=derived_id("change-email", key),
                ),
            )

    async def _slack(self, msg: BillingChangeRecordedV1) -> bool:
        """Post once per change: reserve a row, post, mark it delivered (a failed post leaves 'sending' and
        raises, so the redelivered event tries again)."""
        assert self.slack is not None
        key = f"change:{msg.payload.idempotency_key}:slack"
        status = await self.pool.fetchval(
            """INSERT INTO notifications (dedupe_key, message_id, contact_id, customer_id, channel, to_addr,
                   template, subject, status, attempts)
               VALUES ($1,$2,$3,$4,'slack','slack',$5,$6,'sending',1)
               ON CONFLICT (dedupe_key) DO UPDATE SET attempts = notifications.attempts + 1
               RETURNING status""",
            key,
            msg.message_id,
            msg.contact_id,
            msg.customer_id,
            TEMPLATE,
            f"{msg.payload.change} changed",
        )
        if status == "delivered":
            log.info("notifier.change.slack_duplicate", customer_id=msg.customer_id)
            return False
        await self.slack.post(change_notices.slack_message(msg.payload, msg.customer_id))
        await self.pool.execute(
            "UPDATE notifications SET status='delivered', delivered_at=now() WHERE dedupe_key=$1", key
        )
        return True
