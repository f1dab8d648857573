"""The notifier's handlers: outbound (notices and conversation turns by email) and the inbound door.

Each reads like a sentence: read the message, decide (``domain``), record, send or publish. A mail that
cannot be delivered ends in a tier 3 case, never in silence.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import asyncpg
import structlog
from faststream.kafka import KafkaBroker

from schemas import EscalationReason, derived_id
from schemas.messages import (
    ContactReceivedPayload,
    ContactReceivedV1,
    ConversationMessageSentV1,
    EscalationOpenedPayload,
    EscalationOpenedV1,
    NotificationRequestedV1,
    Sender,
    Turn,
)
from schemas.vocab import Channel
from services.notifier.adapters.postgres import MailStore, NotificationStore
from services.notifier.adapters.smtp import DeliveryFailed
from services.notifier.adapters.templates import MailTemplates
from services.notifier.domain import (
    InboundMail,
    SendVerdict,
    ThreadVerdict,
    customer_text,
    message_id_for,
    parse_mail,
    should_auto_reply,
    spoof_reason,
    thread_headers,
    thread_verdict,
    window_limit,
)
from services.notifier.ports import AttachmentStore, Mailer
from services.notifier.settings import NotifierSettings
from tierline.conversations import ConversationMismatch, get_conversation, open_conversation
from tierline.messaging import publish
from tierline.pipeline import audit
from tierline.safetext import safe_text

log = structlog.get_logger(__name__)

ACTOR = "notifier"


def build_mail(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id
    if reply_to:
        msg["Reply-To"] = reply_to
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def _when(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else None


@dataclass
class Outbound:
    """Notices (``notification.requested.v1``) and conversation turns (``conversation.message.sent.v1``)
    by email, once each."""

    pool: asyncpg.Pool
    broker: KafkaBroker
    mailer: Mailer
    settings: NotifierSettings
    templates: MailTemplates = field(default_factory=MailTemplates)

    @property
    def notifications(self) -> NotificationStore:
        return NotificationStore(self.pool)

    @property
    def mail(self) -> MailStore:
        return MailStore(self.pool)

    async def on_notification_requested(self, msg: NotificationRequestedV1) -> SendVerdict:
        p = msg.payload
        verdict = await self.notifications.reserve(
            msg,
            max_per_window=window_limit(p.template, self.settings.notify_max_per_customer),
            window_hours=self.settings.notify_window_hours,
        )
        if verdict is not SendVerdict.SEND:
            log.info(
                "notifier.skipped", dedupe_key=p.dedupe_key, customer_id=msg.customer_id, verdict=verdict
            )
            return verdict
        message_id = message_id_for("notice", p.dedupe_key, self.settings.message_id_domain)
        text, html = self.templates.render(
            "notification", subject=p.subject, body=p.body, link=p.link, language=None
        )
        mail = build_mail(
            sender=self.settings.mail_from,
            to=p.to,
            subject=p.subject,
            text=text,
            html=html,
            message_id=message_id,
            reply_to=self.settings.support_address,
            headers={
                "X-Tierline-Contact": msg.contact_id,
                "X-Tierline-Template": p.template,
                "X-Tierline-Dedupe-Key": p.dedupe_key,
            },
        )
        try:
            await self.mailer.send(mail)
        except DeliveryFailed as exc:
            if await self.notifications.mark_failed(p.dedupe_key, exc.detail, message_id):
                await self.delivery_failed(msg, to=p.to, text=p.body, detail=exc.detail, conversation_id=None)
            return verdict
        await self.notifications.mark_delivered(p.dedupe_key, message_id)
        log.info(
            "notifier.delivered",
            dedupe_key=p.dedupe_key,
            customer_id=msg.customer_id,
            template=p.template,
            smtp_message_id=message_id,
        )
        return verdict

    async def on_conversation_message(self, msg: ConversationMessageSentV1) -> str:
        """Mail an email conversation's turn in its thread; a chat or dashboard turn is delivered where
        the customer reads it (marked delivered, no mail). Once per turn: a turn already sent or failed
        is skipped on redelivery. Returns what happened."""
        p = msg.payload
        delivery = await self.mail.turn_delivery(msg.message_id)
        if delivery is None:
            log.warning(
                "notifier.turn.unknown", turn_id=str(msg.message_id), conversation_id=p.conversation_id
            )
            return "unknown_turn"
        if delivery != "stored":
            log.info("notifier.turn.duplicate_skipped", turn_id=str(msg.message_id), delivery=delivery)
            return "duplicate"
        conversation = await get_conversation(self.pool, p.conversation_id)
        if conversation is None or conversation.channel is not Channel.EMAIL:
            await self.mail.mark_turn(msg.message_id, "sent")
            return "delivered_in_channel"
        to = conversation.customer_email or await self.mail.address_on_file(
            conversation.conversation_id, conversation.customer_id
        )
        if not to:
            await self._turn_failed(msg, to="(no address)", detail="the conversation has no customer email")
            return "failed"
        headers = thread_headers(
            conversation.subject,
            conversation.email_thread_ids,
            await self.mail.last_inbound(conversation.conversation_id),
        )
        message_id = message_id_for("turn", str(msg.message_id), self.settings.message_id_domain)
        text, html = self.templates.render(
            "turn",
            subject=headers.subject,
            text=p.text,
            kind=p.kind,
            choices=[c.model_dump() for c in p.choices],
            sla_due_at=_when(p.sla_due_at),
            language=p.language,
        )
        mail = build_mail(
            sender=self.settings.mail_from,
            to=to,
            subject=headers.subject,
            text=text,
            html=html,
            message_id=message_id,
            reply_to=self.settings.support_address,
            in_reply_to=headers.in_reply_to,
            references=headers.references,
            headers={
                "X-Tierline-Contact": msg.contact_id,
                "X-Tierline-Conversation": conversation.conversation_id,
                "X-Tierline-Turn": p.kind,
            },
        )
        try:
            await self.mailer.send(mail)
        except DeliveryFailed as exc:
            await self._turn_failed(msg, to=to, detail=exc.detail, message_id=message_id)
            return "failed"
        await self.mail.mark_turn(
            msg.message_id, "sent", email_message_id=message_id, conversation_id=conversation.conversation_id
        )
        log.info(
            "notifier.turn.mailed",
            conversation_id=conversation.conversation_id,
            kind=p.kind,
            smtp_message_id=message_id,
            in_reply_to=headers.in_reply_to,
        )
        return "sent"

    async def _turn_failed(
        self, msg: ConversationMessageSentV1, *, to: str, detail: str, message_id: str | None = None
    ) -> None:
        if await self.mail.mark_turn(msg.message_id, "failed", email_message_id=message_id):
            await self.delivery_failed(
                msg, to=to, text=msg.payload.text, detail=detail, conversation_id=msg.payload.conversation_id
            )

    async def delivery_failed(
        self,
        cause: Any,
        *,
        to: str,
        text: str,
        detail: str,
        conversation_id: str | None,
    ) -> None:
        """A mail we could not deliver (refused, retries spent, bounced) goes to a person: a tier 3 case
        for the contact (reason ``error``), and an audit record."""
        await escalate_delivery_failure(
            self.broker,
            contact_id=cause.contact_id,
            customer_id=cause.customer_id,
            to=to,
            text=text,
            detail=detail,
            conversation_id=conversation_id,
        )
        await audit(
            self.broker,
            cause=cause,
            actor=ACTOR,
            action="email.delivery_failed",
            target=to,
            decision="escalated",
            details={"error": detail[:300]},
        )


async def escalate_delivery_failure(
    broker: KafkaBroker,
    *,
    contact_id: str,
    customer_id: str,
    to: str,
    text: str,
    detail: str,
    conversation_id: str | None,
) -> EscalationOpenedV1:
    # the text says what it is: a case (or the open case of the conversation) shows it as our failure,
    # never as the customer's words
    note = safe_text(f"[email not delivered to {to}: {detail[:300]}]\n\n{text}", 20_000)[0]
    msg = EscalationOpenedV1.build(
        EscalationOpenedPayload(
            reason=EscalationReason.ERROR,
            opened_by="notifier",
            text=note,
            transcript=[Turn(role="system", text=note)],
            suggested_next_step=(
                f"Our email to {to} could not be delivered ({detail[:300]}). Check the address on file "
                "and reach the customer another way; the message that did not arrive is attached."
            ),
            conversation_id=conversation_id,
        ),
        contact_id=contact_id,
        customer_id=customer_id,
        message_id=derived_id("escalation", contact_id),
    )
    await publish(broker, msg)
    log.warning("notifier.delivery_failed", contact_id=contact_id, to=to, error=detail[:300])
    return msg


# ----------------------------------------------------------------------------- inbound
@dataclass(frozen=True)
class InboundResult:
    outcome: str  # contact | unknown_sender | spoofed | bounce | ignored
    message_id: str
    detail: str = ""
    customer_id: str | None = None
    conversation_id: str | None = None
    contact_id: str | None = None
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message_id": self.message_id,
            "detail": self.detail,
            "conversation_id": self.conversation_id,
            "contact_id": self.contact_id,
            "duplicate": self.duplicate,
        }


def contact_id_for(message_id: str) -> str:
    return f"email-{derived_id('email.inbound', message_id).hex}"


@dataclass
class InboundDoor:
    """The support address: each mail becomes a contact in its thread's conversation, or a clear
    outcome that touches no customer (unknown sender, bounce)."""

    pool: asyncpg.Pool
    broker: KafkaBroker
    outbound: Outbound
    attachments: AttachmentStore
    settings: NotifierSettings

    @property
    def mail(self) -> MailStore:
        return MailStore(self.pool)

    async def receive(
        self, raw: bytes, envelope_from: str | None = None, *, door: str = "smtp"
    ) -> InboundResult:
        mail = parse_mail(raw)
        seen = await self.mail.inbound_seen(mail.message_id)
        if seen is not None:
            log.info("email.inbound.duplicate_skipped", message_id=mail.message_id, outcome=seen["outcome"])
            return InboundResult(
                outcome=seen["outcome"],
                message_id=mail.message_id,
                detail=seen["detail"] or "",
                customer_id=seen["customer_id"],
                conversation_id=seen["conversation_id"],
                contact_id=seen["contact_id"],
                duplicate=True,
            )
        if mail.is_bounce:
            return await self._bounce(mail, envelope_from, door)
        sender = await self.mail.customer_by_email(mail.from_addr) if mail.from_addr else None
        if sender is None:
            return await self._unknown_sender(mail, envelope_from, door)
        spoofed = spoof_reason(mail, envelope_from)
        owner = await self.mail.thread_owner(mail.thread_ids)
        verdict = thread_verdict(owner[1] if owner else None, sender.customer_id, spoofed=spoofed is not None)
        contact_id = contact_id_for(mail.message_id)
        conversation_id = owner[0] if owner and verdict is ThreadVerdict.CONTINUES else contact_id
        if verdict is ThreadVerdict.FOREIGN:
            log.warning(
                "email.inbound.thread_foreign", message_id=mail.message_id, customer_id=sender.customer_id
            )
        try:
            await open_conversation(
                self.pool,
                conversation_id=conversation_id,
                customer_id=sender.customer_id,
                channel=Channel.EMAIL,
                subject=mail.subject,
                customer_email=sender.email,
            )
        except ConversationMismatch:  # a race on a new id: never another's conversation
            conversation_id = contact_id
            await open_conversation(
                self.pool,
                conversation_id=conversation_id,
                customer_id=sender.customer_id,
                channel=Channel.EMAIL,
                subject=mail.subject,
                customer_email=sender.email,
            )
        if spoofed is None:
            await self.mail.append_thread_id(conversation_id, mail.message_id)
        kept = [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "size_bytes": len(a.data),
                "sha256": a.sha256,
                "stored_as": await asyncio.to_thread(self.attachments.keep, a),
            }
            for a in mail.attachments
        ]
        text = customer_text(mail)
        if spoofed is not None:
            # the claimed sender stays unverified: the router's sender gate hands the contact to a person
            verified_as: str | None = envelope_from if envelope_from and "@" in envelope_from else None
            log.warning("email.inbound.spoofed", message_id=mail.message_id, reason=spoofed)
        else:
            verified_as = sender.email
        contact = ContactReceivedV1.build(
            ContactReceivedPayload(
                channel=Channel.EMAIL,
                text=safe_text(text, 20_000)[0],
                sender=Sender(kind="email", email=verified_as),
                subject_line=mail.subject,
                conversation_id=conversation_id,
                attachments=kept,
            ),
            contact_id=contact_id,
            customer_id=sender.customer_id,
            message_id=derived_id("email.inbound", mail.message_id, ContactReceivedV1.TOPIC),
        )
        await publish(self.broker, contact)
        outcome = "spoofed" if spoofed is not None else "contact"
        detail = spoofed or (
            "reply to another customer's thread: started a conversation of its own"
            if verdict is ThreadVerdict.FOREIGN
            else ("html-only: text extracted" if mail.html_only else "")
        )
        await self._record(
            mail,
            envelope_from,
            door,
            outcome,
            detail,
            customer_id=sender.customer_id,
            conversation_id=conversation_id,
            contact_id=contact_id,
            attachments=kept,
        )
        log.info(
            "email.inbound.contact",
            message_id=mail.message_id,
            contact_id=contact_id,
            conversation_id=conversation_id,
            thread=verdict,
            spoofed=spoofed is not None,
            attachments=len(kept),
        )
        return InboundResult(
            outcome=outcome,
            message_id=mail.message_id,
            detail=detail,
            customer_id=sender.customer_id,
            conversation_id=conversation_id,
            contact_id=contact_id,
        )

    async def _unknown_sender(self, mail: InboundMail, envelope_from: str | None, door: str) -> InboundResult:
        """No account has this address: no contact, nothing read or acted on; one automatic reply per
        address per window says so (never to a machine, so no mail loops)."""
        address = mail.from_addr or ""
        if not should_auto_reply(mail):
            detail = "no auto-reply: automatic or unaddressable sender"
        elif await self.mail.replied_to_unknown_recently(address, self.settings.unknown_sender_reply_hours):
            detail = "no auto-reply: already answered this address recently"
        else:
            detail = await self._auto_reply(mail, address)
        await self._record(mail, envelope_from, door, "unknown_sender", detail)
        log.info("email.inbound.unknown_sender", message_id=mail.message_id, detail=detail)
        return InboundResult(outcome="unknown_sender", message_id=mail.message_id, detail=detail)

    async def _auto_reply(self, mail: InboundMail, address: str) -> str:
        subject = mail.subject or "your message"
        text, html = self.outbound.templates.render(
            "unknown_sender",
            subject=subject,
            address=address,
            support_address=self.settings.support_address,
            language=None,
        )
        reply = build_mail(
            sender=self.settings.support_address,
            to=address,
            subject=thread_headers(subject, [], None).subject,
            text=text,
            html=html,
            message_id=message_id_for("autoreply", mail.message_id, self.settings.message_id_domain),
            in_reply_to=mail.message_id,
            references=[*mail.references, mail.message_id],
            headers={"Auto-Submitted": "auto-replied"},
        )
        try:
            await self.outbound.mailer.send(reply)
        except DeliveryFailed as exc:  # nobody's account: logged and recorded, no case
            log.warning("email.inbound.auto_reply_failed", message_id=mail.message_id, error=exc.detail)
            return f"auto-reply failed: {exc.detail}"[:500]
        return "auto-replied: address not on any account"

    async def _bounce(self, mail: InboundMail, envelope_from: str | None, door: str) -> InboundResult:
        """A delivery status notification for a mail of ours: the turn or notice ends failed and the
        contact goes to a person."""
        sent = await self.mail.sent_mail(mail.bounced_message_ids)
        for item in sent:
            if item.kind == "turn":
                changed = await self.mail.mark_turn_bounced(item.key)
            else:
                changed = await NotificationStore(self.pool).mark_failed(item.key, "bounced")
            if changed and item.contact_id:
                await escalate_delivery_failure(
                    self.broker,
                    contact_id=item.contact_id,
                    customer_id=item.customer_id,
                    to=item.to_addr or "(unknown)",
                    text=customer_text(mail),
                    detail="bounced: " + (mail.subject or "delivery status notification"),
                    conversation_id=None,
                )
        detail = f"bounce for {len(sent)} of our mails" if sent else "bounce for no mail of ours"
        await self._record(mail, envelope_from, door, "bounce", detail)
        log.warning("email.inbound.bounce", message_id=mail.message_id, matched=len(sent))
        return InboundResult(outcome="bounce", message_id=mail.message_id, detail=detail)

    async def _record(
        self,
        mail: InboundMail,
        envelope_from: str | None,
        door: str,
        outcome: str,
        detail: str,
        **found: Any,
    ) -> None:
        await self.mail.record_inbound(
            message_id=mail.message_id,
            door=door,
            envelope_from=envelope_from,
            from_addr=mail.from_addr,
            subject=mail.subject,
            outcome=outcome,
            detail=detail,
            size_bytes=mail.size_bytes,
            sha256=mail.sha256,
            **found,
        )
