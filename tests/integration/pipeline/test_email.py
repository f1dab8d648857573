"""Email through the real doors (issue 19): mail sent with smtplib to the support address's SMTP door
(served by the notifier) becomes a contact in its thread's conversation, replies come back in the same
thread through the dev mail sink, and bad mail (unknown or spoofed sender, 20 MB, HTML only, a reply to
another customer's thread, a bounce) each ends in a clear outcome that touches no other customer."""

from __future__ import annotations

import asyncio
import json
import smtplib
import time
import uuid
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import KafkaBroker

from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from schemas.vocab import Channel
from services.notifier.domain import message_id_for
from services.notifier.settings import NotifierSettings
from tests.helpers import chat_contact, read_topic, wait_rows
from tierline.conversations import say
from tierline.messaging import publish
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

SUPPORT = "support@tierline.local"
DOMAIN = NotifierSettings().message_id_domain


# ----------------------------------------------------------------------------- helpers
def compose(
    frm: str,
    text: str,
    *,
    subject: str = "Billing question",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    html: str | None = None,
    attachment: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    mid = message_id or f"<{uuid.uuid4().hex}@mail.example.test>"
    msg["Message-ID"] = mid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        msg[name] = value
    if html is not None and not text:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="statement.pdf")
    return mid, msg.as_bytes()


async def smtp_send(port: int, raw: bytes, envelope_from: str) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.sendmail(envelope_from, [SUPPORT], raw)

    await asyncio.to_thread(send)


def sink_mail(stack: Any, to: str) -> list[EmailMessage]:
    box = Path(stack.smtp().maildir)
    out: list[EmailMessage] = []
    for path in sorted(box.glob("*.json")) if box.exists() else []:
        record = json.loads(path.read_text())
        if to in record["rcpt_tos"]:
            parsed = message_from_string(record["data"], policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
    return out


async def wait_mail(stack: Any, to: str, where: Any, timeout: float = 60.0) -> list[EmailMessage]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    found: list[EmailMessage] = []
    while time.monotonic() < deadline:
        found = [m for m in sink_mail(stack, to) if where(m)]
        if found:
            return found
        await asyncio.sleep(0.2)
    return found


async def inbound(pg_pool: Any, message_id: str) -> Any:
    rows = await wait_rows(
        pg_pool, "SELECT * FROM inbound_emails WHERE message_id=$1", message_id, timeout=60
    )
    assert rows, f"the door recorded nothing for {message_id}"
    return rows[0]


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


# ----------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
async def people(stack: Any, infra: Any, pipeline: Any, pg_pool: Any) -> dict[str, Any]:
    """Given two customers with their emails on file (mirrored, as the door looks them up)."""
    tag = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {"port": infra.smtp_inbound_port}
    token = infra.service_token.get_secret_value()
    diagnostics = f"http://127.0.0.1:{stack.service_ports['diagnostics']}"
    async with httpx.AsyncClient(timeout=60) as http:
        for who in ("ana", "ben"):
            email = f"{who}-{tag}@customers.tierline.test"
            world = await build_world(
                {"customer": {"plan": "pro", "email": email}}, StripeActions(infra), label=f"mail-{who}-{tag}"
            )
            # a diagnosis reads Stripe live and mirrors the customer (its email) into the store
            r = await http.get(
                f"{diagnostics}/v1/customers/{world.customer_id}/diagnosis",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert r.status_code == 200, r.text
            rows = await wait_rows(
                pg_pool,
                """SELECT 1 FROM customers WHERE id=$1 AND lower(email)=lower($2)
                   UNION ALL SELECT 1 FROM stripe_customers WHERE id=$1 AND lower(email)=lower($2)""",
                world.customer_id,
                email,
            )
            assert rows, f"{email} never reached the store"
            out[who] = {"customer_id": world.customer_id, "email": email}
    return out


@pytest.fixture(scope="module")
async def broker(infra: Any) -> Any:
    b = KafkaBroker(infra.kafka_bootstrap, logger=None)
    await b.connect()
    yield b
    await b.stop()


@pytest.fixture(scope="module")
async def ana_thread(people: dict[str, Any], pg_pool: Any) -> dict[str, Any]:
    """Given Ana's first mail to the support address, taken by the door."""
    ana = people["ana"]
    mid, raw = compose(
        f"Ana Lopez <{ana['email']}>",
        "Hello,\n\nplease send me the invoice for last month.\n\nThanks,\nAna\n",
        subject="Invoice for last month",
    )
    await smtp_send(people["port"], raw, ana["email"])
    row = await inbound(pg_pool, mid)
    return {"message_id": mid, "row": row}


# ----------------------------------------------------------------------------- the happy path
async def test_given_a_customer_mail_when_received_then_it_becomes_an_email_contact_in_its_own_conversation(
    people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any, infra: Any
) -> None:
    row = ana_thread["row"]
    assert row["outcome"] == "contact"
    assert row["customer_id"] == people["ana"]["customer_id"]
    contact = await wait_rows(
        pg_pool,
        "SELECT * FROM contacts WHERE contact_id=$1 AND conversation_id IS NOT NULL",
        row["contact_id"],
    )
    assert contact, "the router never took the contact"
    assert contact[0]["channel"] == "email"
    assert contact[0]["conversation_id"] == row["conversation_id"]
    conversation = await pg_pool.fetchrow(
        "SELECT * FROM conversations WHERE conversation_id=$1", row["conversation_id"]
    )
    assert conversation["channel"] == "email"
    assert conversation["customer_email"].lower() == people["ana"]["email"]
    assert ana_thread["message_id"] in conversation["email_thread_ids"]
    received = await read_topic(
        infra.kafka_bootstrap, "contact.received.v1", lambda m: m["contact_id"] == row["contact_id"]
    )
    payload = received[0]["payload"]
    assert (payload["channel"], payload["sender"]["kind"]) == ("email", "email")
    assert payload["sender"]["email"].lower() == people["ana"]["email"]
    assert "Thanks" not in payload["text"]  # the sign-off and signature are gone before classification
    assert "invoice for last month" in payload["text"]


async def test_given_a_turn_said_in_an_email_conversation_then_it_is_mailed_in_the_thread_once(
    stack: Any, people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any, broker: Any
) -> None:
    row = ana_thread["row"]
    key = f"email-test-{uuid.uuid4().hex}"

    async def reply(text: str, key: str) -> Any:
        return await say(
            broker,
            pg_pool,
            contact_id=row["contact_id"],
            customer_id=row["customer_id"],
            kind="human_reply",
            text=text,
            author="agent:test",
            key=key,
        )

    # When a person says something in Ana's conversation, and the message is published twice
    sent = await reply("Hi Ana, the invoice is on its way.\n\n<b>Kind regards</b>", key)
    again = await reply("Hi Ana, the invoice is on its way.\n\n<b>Kind regards</b>", key)
    assert sent is not None
    assert again is not None
    assert again.message_id == sent.message_id
    expected_id = message_id_for("turn", str(sent.message_id), DOMAIN)
    # Then it reaches her mailbox, in the thread she started, exactly once
    mails = await wait_mail(stack, people["ana"]["email"], lambda m: m["Message-ID"] == expected_id)
    assert len(mails) == 1, [m["Subject"] for m in sink_mail(stack, people["ana"]["email"])]
    mail = mails[0]
    assert mail["Subject"] == "Re: Invoice for last month"
    assert mail["In-Reply-To"] == ana_thread["message_id"]
    assert ana_thread["message_id"] in str(mail["References"])
    assert mail["Reply-To"] == SUPPORT
    assert "the invoice is on its way" in text_of(mail)
    html = mail.get_body(preferencelist=("html",))
    assert html is not None
    assert "&lt;b&gt;Kind regards&lt;/b&gt;" in str(html.get_content())
    turn = await wait_rows(
        pg_pool,
        "SELECT * FROM conversation_turns WHERE turn_id=$1 AND delivery='sent'",
        sent.message_id,
    )
    assert turn, "the turn was never marked sent"
    assert turn[0]["email_message_id"] == expected_id
    thread = await pg_pool.fetchval(
        "SELECT email_thread_ids FROM conversations WHERE conversation_id=$1", row["conversation_id"]
    )
    assert expected_id in thread
    # a later turn on the same partition is mailed after the duplicate was read: still one mail of the first
    later = await reply("One more thing: the invoice PDF is attached to your billing page too.", key + "-2")
    assert later is not None
    later_id = message_id_for("turn", str(later.message_id), DOMAIN)
    assert await wait_mail(stack, people["ana"]["email"], lambda m: m["Message-ID"] == later_id)
    assert len([m for m in sink_mail(stack, people["ana"]["email"]) if m["Message-ID"] == expected_id]) == 1


async def test_given_a_customer_mail_when_the_pipeline_answers_then_an_in_thread_reply_arrives(
    stack: Any, people: dict[str, Any], ana_thread: dict[str, Any]
) -> None:
    """End to end, no turn inserted by the test: whatever tier takes the contact answers it by mail."""
    mails = await wait_mail(
        stack,
        people["ana"]["email"],
        lambda m: m["In-Reply-To"] == ana_thread["message_id"] and m["X-Tierline-Turn"] != "human_reply",
        timeout=120,
    )
    assert mails, "no in-thread reply from the pipeline"
    assert mails[0]["Subject"] == "Re: Invoice for last month"


async def test_given_a_reply_in_the_thread_when_received_then_it_joins_the_same_conversation(
    stack: Any, people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any
) -> None:
    ana = people["ana"]
    ours = sink_mail(stack, ana["email"])
    assert ours, "no mail of ours to reply to"
    last = ours[-1]
    mid, raw = compose(
        ana["email"],
        "That worked, thank you. Can you also send the one from two months ago?\n\n"
        f"On Monday, support wrote:\n> {text_of(last)[:80]}\n",
        subject=f"Re: {last['Subject']}",
        in_reply_to=str(last["Message-ID"]),
        references=[ana_thread["message_id"], str(last["Message-ID"])],
    )
    await smtp_send(people["port"], raw, ana["email"])
    row = await inbound(pg_pool, mid)
    assert row["outcome"] == "contact"
    assert row["conversation_id"] == ana_thread["row"]["conversation_id"]
    joined = await wait_rows(
        pg_pool,
        "SELECT * FROM contacts WHERE contact_id=$1 AND conversation_id=$2",
        row["contact_id"],
        row["conversation_id"],
    )
    assert joined, "the follow-up did not join the conversation"
    turn = await wait_rows(
        pg_pool,
        "SELECT text FROM conversation_turns WHERE contact_id=$1 AND role='customer'",
        row["contact_id"],
    )
    assert "two months ago" in turn[0]["text"]
    assert "support wrote" not in turn[0]["text"]  # quoted history is not the customer's new words


# ----------------------------------------------------------------------------- bad mail
async def test_given_an_unknown_sender_when_mail_arrives_then_no_contact_and_one_auto_reply(
    stack: Any, people: dict[str, Any], pg_pool: Any
) -> None:
    stranger = f"stranger-{uuid.uuid4().hex[:8]}@example.test"
    first, raw = compose(stranger, "Refund my last payment please.", subject="Refund")
    await smtp_send(people["port"], raw, stranger)
    second, raw2 = compose(stranger, "Hello? Refund please.", subject="Refund")
    await smtp_send(people["port"], raw2, stranger)
    rows = [await inbound(pg_pool, first), await inbound(pg_pool, second)]
    assert [r["outcome"] for r in rows] == ["unknown_sender", "unknown_sender"]
    assert all(r["contact_id"] is None and r["customer_id"] is None for r in rows)
    assert rows[0]["detail"].startswith("auto-replied")
    assert "already answered" in rows[1]["detail"]
    replies = await wait_mail(stack, stranger, lambda m: True)
    assert len(replies) == 1
    assert replies[0]["Auto-Submitted"] == "auto-replied"
    assert replies[0]["In-Reply-To"] == first
    assert "could not match" in text_of(replies[0])
    assert not await pg_pool.fetch("SELECT 1 FROM conversations WHERE lower(customer_email)=$1", stranger)


async def test_given_a_spoofed_sender_when_mail_arrives_then_it_never_joins_the_thread_and_a_person_checks_it(
    people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any
) -> None:
    ana = people["ana"]
    # Mallory's server claims Ana's address and replies into Ana's thread
    mid, raw = compose(
        ana["email"],
        "Please change the card on file and refund the last charge to my new card.",
        in_reply_to=ana_thread["message_id"],
        references=[ana_thread["message_id"]],
    )
    await smtp_send(people["port"], raw, "mallory@evil.test")
    row = await inbound(pg_pool, mid)
    assert row["outcome"] == "spoofed"
    assert "mallory@evil.test" in row["detail"]
    assert row["conversation_id"] != ana_thread["row"]["conversation_id"]
    case = await wait_rows(pg_pool, "SELECT * FROM cases WHERE contact_id=$1", row["contact_id"], timeout=60)
    assert case, "the spoofed mail reached no person"
    assert case[0]["reason"] == "policy_denied"
    ledger = await pg_pool.fetch("SELECT * FROM action_ledger WHERE contact_id=$1", row["contact_id"])
    assert [r for r in ledger if r["status"] == "succeeded"] == []
    assert not await pg_pool.fetch(
        "SELECT 1 FROM conversation_turns WHERE conversation_id=$1 AND contact_id=$2",
        ana_thread["row"]["conversation_id"],
        row["contact_id"],
    )


async def test_given_a_20_mb_mail_when_sent_then_the_door_refuses_it_with_552_and_records_nothing(
    people: dict[str, Any], pg_pool: Any
) -> None:
    ben = people["ben"]
    mid, raw = compose(ben["email"], "see attached", attachment=b"\x00" * (20 * 1024 * 1024))
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
        await smtp_send(people["port"], raw, ben["email"])
    assert refused.value.smtp_code == 552
    assert not await pg_pool.fetch("SELECT 1 FROM inbound_emails WHERE message_id=$1", mid)


async def test_given_an_html_only_mail_with_an_attachment_then_text_is_extracted_and_the_file_kept(
    stack: Any, people: dict[str, Any], pg_pool: Any, infra: Any
) -> None:
    ben = people["ben"]
    pdf = b"%PDF-1.4 statement " + uuid.uuid4().bytes
    mid, raw = compose(
        ben["email"],
        "",
        html="<html><body><p>Why was I <b>charged twice</b> this month?</p>"
        "<script>steal()</script><blockquote>old quoted mail</blockquote></body></html>",
        attachment=pdf,
    )
    await smtp_send(people["port"], raw, ben["email"])
    row = await inbound(pg_pool, mid)
    assert row["outcome"] == "contact"
    assert "html-only" in row["detail"]
    (attachment,) = (
        json.loads(row["attachments"]) if isinstance(row["attachments"], str) else row["attachments"]
    )
    assert attachment["filename"] == "statement.pdf"
    assert (Path(infra.data_dir) / attachment["stored_as"]).read_bytes() == pdf
    received = await read_topic(
        infra.kafka_bootstrap, "contact.received.v1", lambda m: m["contact_id"] == row["contact_id"]
    )
    payload = received[0]["payload"]
    assert "Why was I charged twice this month?" in payload["text"]
    for gone in ("<", "steal", "old quoted"):
        assert gone not in payload["text"]
    assert payload["attachments"][0]["sha256"] == attachment["sha256"]


async def test_given_a_reply_to_another_customers_thread_then_it_starts_its_own_conversation(
    stack: Any, people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any
) -> None:
    ben = people["ben"]
    mid, raw = compose(
        ben["email"],
        "What is the balance on this account?",
        in_reply_to=ana_thread["message_id"],
        references=[ana_thread["message_id"]],
    )
    await smtp_send(people["port"], raw, ben["email"])
    row = await inbound(pg_pool, mid)
    assert row["outcome"] == "contact"
    assert row["customer_id"] == ben["customer_id"]
    assert row["conversation_id"] != ana_thread["row"]["conversation_id"]
    assert "another customer's thread" in row["detail"]
    conversation = await pg_pool.fetchrow(
        "SELECT * FROM conversations WHERE conversation_id=$1", row["conversation_id"]
    )
    assert conversation["customer_id"] == ben["customer_id"]
    assert ana_thread["message_id"] not in conversation["email_thread_ids"]
    # whatever Ben is told never lands in Ana's thread or mailbox
    replies = await wait_mail(
        stack, ben["email"], lambda m: m["X-Tierline-Conversation"] == row["conversation_id"]
    )
    for mail in replies:
        assert ana_thread["message_id"] not in str(mail["References"] or "")
    assert not [
        m
        for m in sink_mail(stack, people["ana"]["email"])
        if m["X-Tierline-Conversation"] == row["conversation_id"]
    ]


async def test_given_a_bounce_for_a_reply_when_received_then_the_turn_fails_and_a_person_gets_a_case(
    stack: Any, people: dict[str, Any], ana_thread: dict[str, Any], pg_pool: Any, infra: Any
) -> None:
    sent = await pg_pool.fetchrow(
        """SELECT * FROM conversation_turns WHERE conversation_id=$1 AND delivery='sent'
           AND email_message_id IS NOT NULL ORDER BY seq LIMIT 1""",
        ana_thread["row"]["conversation_id"],
    )
    assert sent is not None, "no mailed turn to bounce"
    original = EmailMessage()
    original["From"] = "billing@tierline.local"
    original["To"] = people["ana"]["email"]
    original["Message-ID"] = sent["email_message_id"]
    original["Subject"] = "Re: Invoice for last month"
    original.set_content("...")
    dsn = EmailMessage()
    dsn["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.test>"
    dsn["To"] = "billing@tierline.local"
    dsn["Subject"] = "Undelivered Mail Returned to Sender"
    dsn["Message-ID"] = f"<dsn-{uuid.uuid4().hex}@mx.example.test>"
    dsn.set_content("550 5.1.1 <ana>: Recipient address rejected: mailbox unavailable")
    dsn.add_attachment(original)
    dsn.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"; boundary="bnd1"')
    await smtp_send(people["port"], dsn.as_bytes(), "")
    row = await inbound(pg_pool, str(dsn["Message-ID"]))
    assert row["outcome"] == "bounce"
    assert row["detail"] == "bounce for 1 of our mails"
    failed = await pg_pool.fetchval(
        "SELECT delivery FROM conversation_turns WHERE turn_id=$1", sent["turn_id"]
    )
    assert failed == "failed"
    escalations = await read_topic(
        infra.kafka_bootstrap,
        "tier3.escalation.opened.v1",
        lambda m: m["contact_id"] == sent["contact_id"] and m["payload"]["opened_by"] == "notifier",
    )
    assert escalations, "the bounce reached no person"
    assert "could not be delivered" in escalations[0]["payload"]["suggested_next_step"]
    # a case of its own, or the open case of the conversation when a person already holds it
    held = await wait_rows(
        pg_pool,
        """SELECT note AS text FROM case_actions WHERE record->>'contact_id' = $1
           UNION ALL SELECT packet->>'text' FROM cases WHERE contact_id = $1""",
        sent["contact_id"],
        timeout=60,
    )
    assert held, "no case holds the failed delivery"
    assert any((r["text"] or "").startswith("[email not delivered to ") for r in held), held


async def test_given_the_inbound_webhook_when_posted_then_it_takes_raw_mail_behind_the_service_token(
    stack: Any, people: dict[str, Any], pg_pool: Any, infra: Any
) -> None:
    ben = people["ben"]
    mid, raw = compose(ben["email"], "Please send my latest invoice.", subject="Invoice")
    url = f"http://127.0.0.1:{stack.service_ports['notifier']}/v1/inbound/email"
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(url, content=raw, headers={"Content-Type": "message/rfc822"})
        token = infra.service_token.get_secret_value()
        auth = {"Content-Type": "message/rfc822", "Authorization": f"Bearer {token}"}
        taken = await http.post(url, content=raw, headers=auth)
        again = await http.post(url, content=raw, headers=auth)
    assert refused.status_code == 401
    assert taken.status_code == 202, taken.text
    assert taken.json()["outcome"] == "contact"
    assert again.json()["duplicate"] is True
    assert again.json()["contact_id"] == taken.json()["contact_id"]
    row = await inbound(pg_pool, mid)
    assert row["door"] == "webhook"


async def test_given_turns_on_other_doors_then_chat_is_not_mailed_and_email_goes_to_the_address_on_file(
    stack: Any, people: dict[str, Any], pg_pool: Any, broker: Any
) -> None:
    ben = people["ben"]
    chat = chat_contact(ben["customer_id"], "Please send me my latest invoice.")
    emailed = ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.EMAIL,
            text="Please send me my latest invoice.",
            sender=Sender(kind="customer_session", subject=ben["customer_id"]),
        ),
        contact_id=f"c-{uuid.uuid4()}",
        customer_id=ben["customer_id"],
    )
    # When a chat contact and an email contact from another door (no thread, no address) are answered
    await publish(broker, chat)
    await publish(broker, emailed)
    delivered = await wait_rows(
        pg_pool,
        "SELECT * FROM conversation_turns WHERE contact_id=$1 AND role <> 'customer' AND delivery='sent'",
        chat.contact_id,
        timeout=90,
    )
    # Then the chat answer is delivered in the chat (marked sent, no mail, no Message-ID)
    assert delivered, "the chat turn was never marked delivered"
    assert all(t["email_message_id"] is None for t in delivered)
    # (the invoice itself is a notice, mailed whatever the channel: only conversation turns count here)
    turn_mails = [m for m in sink_mail(stack, ben["email"]) if m["X-Tierline-Turn"] is not None]
    assert not [m for m in turn_mails if m["X-Tierline-Contact"] == chat.contact_id]
    # and the email answer reaches the customer's address on file
    mails = await wait_mail(
        stack,
        ben["email"],
        lambda m: m["X-Tierline-Contact"] == emailed.contact_id and m["X-Tierline-Turn"] is not None,
    )
    assert mails, "the email contact's answer was not mailed"
