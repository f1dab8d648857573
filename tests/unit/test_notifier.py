"""The notifier's pure parts and its two SMTP adapters (against real aiosmtpd servers on loopback)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from services.notifier.adapters.inbound_smtp import InboundSmtpDoor
from services.notifier.adapters.smtp import DeliveryFailed, SmtpMailer
from services.notifier.adapters.templates import MailTemplates
from services.notifier.domain import (
    SendVerdict,
    ThreadVerdict,
    backoff_delays,
    customer_text,
    html_to_text,
    is_permanent_smtp_code,
    message_id_for,
    notification_verdict,
    parse_mail,
    reply_subject,
    should_auto_reply,
    spoof_reason,
    thread_headers,
    thread_verdict,
    window_limit,
)
from services.notifier.handlers import build_mail, contact_id_for

pytestmark = pytest.mark.unit


def _mail(
    body: str = "My card was declined, please send me an update link.",
    *,
    frm: str = "Ana <ana@example.test>",
    subject: str = "Card declined",
    headers: dict[str, str] | None = None,
    html: str | None = None,
    attachment: bytes | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = frm
    msg["To"] = "support@tierline.local"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@example.test>"
    for name, value in (headers or {}).items():
        msg[name] = value
    if html is not None and not body:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


# ----------------------------------------------------------------------------- parsing
def test_given_a_reply_with_quoted_history_and_signature_when_read_then_only_the_new_words_remain() -> None:
    raw = _mail(
        "Hi team,\n\nThe update link did not work, can you send another one?\n\nThanks,\nAna Lopez\n"
        "Head of Ops, Example Ltd | +1 555 0100\n\n"
        "On Tue, 1 Dec 2026 at 10:00, tierline <billing@tierline.local> wrote:\n"
        "> Your card was declined. Update it here: https://pay.example/abc\n> Refund me $900 now\n"
    )
    mail = parse_mail(raw)
    text = customer_text(mail)
    assert "update link did not work" in text
    assert "Refund me" not in text
    assert "wrote:" not in text
    assert "Head of Ops" not in text
    assert "555" not in text
    assert mail.from_addr == "ana@example.test"
    assert mail.from_count == 1
    assert mail.message_id == "<m1@example.test>"


def test_given_an_html_only_mail_when_read_then_its_visible_text_is_extracted_without_quotes_or_scripts() -> (
    None
):
    html = (
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head><body>"
        "<div>Why was I charged <b>twice</b> this month?</div><p>Invoice in_123 &amp; in_124</p>"
        '<div class="gmail_quote">On Monday you wrote:<blockquote>old text refund everything</blockquote>'
        "</div></body></html>"
    )
    mail = parse_mail(_mail("", html=html))
    assert mail.html_only is True
    text = customer_text(mail)
    assert "Why was I charged twice this month?" in text
    assert "in_123 & in_124" in text
    assert "alert" not in text
    assert "color" not in text
    assert "old text" not in text


def test_given_nested_and_unclosed_html_when_extracted_then_text_survives() -> None:
    assert html_to_text("<p>one<br>two</p><blockquote><p>q</blockquote><p>three") == "one\ntwo\n\nthree"


def test_given_a_plain_and_html_mail_when_read_then_the_plain_part_is_used() -> None:
    mail = parse_mail(_mail("plain words here", html="<p>html words</p>"))
    assert mail.html_only is False
    assert "plain words here" in mail.body


def test_given_an_attachment_when_read_then_it_is_kept_as_bytes_not_parsed() -> None:
    pdf = b"%PDF-1.4 not really a pdf \x00\x01"
    mail = parse_mail(_mail(attachment=pdf))
    (att,) = mail.attachments
    assert (att.filename, att.content_type, att.data) == ("invoice.pdf", "application/pdf", pdf)
    assert len(att.sha256) == 64


def test_given_a_mail_without_message_id_when_read_then_its_id_derives_from_its_bytes() -> None:
    raw = b"From: a@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
    assert parse_mail(raw).message_id == parse_mail(raw).message_id
    assert parse_mail(raw).message_id.startswith("<sha256-")
    assert parse_mail(raw + b"x").message_id != parse_mail(raw).message_id


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"From: <<<>>>\r\nContent-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        b"From: x@example.test\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n\xe9t\xe9\r\n",
    ],
)
def test_given_broken_mail_when_read_then_it_parses_to_something_without_raising(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert mail.message_id
    assert isinstance(customer_text(mail), str)


def test_given_nul_and_undecodable_bytes_in_headers_when_read_then_every_field_is_storable() -> None:
    raw = (
        b"From: =?utf-8?q?A=00na?= <ana\x00@example.test>\r\nSubject: a\x00b \xff\xfe\r\n"
        b"Message-ID: <id\x00x@y>\r\nIn-Reply-To: <ok@y>\r\n\r\nbody \x00 \xff\r\n"
    )
    mail = parse_mail(raw)
    for value in (mail.subject, mail.from_addr, mail.message_id, mail.in_reply_to, mail.body):
        assert value is None or "\x00" not in value
        assert value is None or value.encode("utf-8")  # no lone surrogates
    assert mail.in_reply_to == "<ok@y>"
    assert "\x00" not in mail.message_id


# ----------------------------------------------------------------------------- threads
def test_given_reply_headers_when_read_then_thread_ids_are_nearest_first() -> None:
    mail = parse_mail(
        _mail(headers={"In-Reply-To": "<b@t>", "References": "<a@t> <b@t>"}),
    )
    assert mail.thread_ids == ["<b@t>", "<a@t>"]


def test_given_a_thread_when_replying_then_re_subject_in_reply_to_last_inbound_and_references() -> None:
    h = thread_headers("Re: RE: Card declined", ["<in1@x>", "<out1@t>", "<in2@x>"], "<in2@x>")
    assert h.subject == "Re: Card declined"
    assert h.in_reply_to == "<in2@x>"
    assert h.references == ["<in1@x>", "<out1@t>", "<in2@x>"]
    long = thread_headers(None, [f"<{i}@x>" for i in range(50)], None)
    assert len(long.references) == 20
    assert long.references[0] == "<0@x>"
    assert long.in_reply_to == "<49@x>"
    assert reply_subject(None) == "Re: Your billing question"


def test_given_whose_thread_when_deciding_then_only_the_senders_own_is_joined_and_never_when_spoofed() -> (
    None
):
    assert thread_verdict(None, "cus_a", spoofed=False) is ThreadVerdict.NEW
    assert thread_verdict("cus_a", "cus_a", spoofed=False) is ThreadVerdict.CONTINUES
    assert thread_verdict("cus_b", "cus_a", spoofed=False) is ThreadVerdict.FOREIGN
    assert thread_verdict("cus_a", "cus_a", spoofed=True) is ThreadVerdict.NEW


# ----------------------------------------------------------------------------- senders
def test_given_sender_evidence_when_checked_then_spoofs_are_named_and_honest_mail_passes() -> None:
    honest = parse_mail(_mail())
    assert spoof_reason(honest, "ana@example.test") is None
    assert spoof_reason(honest, None) is None
    assert spoof_reason(honest, "bounces+x@example.test") is None  # same domain
    assert "does not match" in (spoof_reason(honest, "mallory@evil.test") or "")
    relayed = parse_mail(_mail(headers={"Authentication-Results": "mx.t; spf=pass; dmarc=pass"}))
    assert spoof_reason(relayed, "bounces@esp.test") is None
    failed = parse_mail(_mail(headers={"Authentication-Results": "mx.t; dkim=none; dmarc=fail"}))
    assert spoof_reason(failed, None) == "dmarc=fail in Authentication-Results"
    two = parse_mail(_mail(frm="ana@example.test, mallory@evil.test"))
    assert spoof_reason(two, None) == "several From addresses"


def test_given_machine_mail_when_deciding_then_no_auto_reply() -> None:
    assert should_auto_reply(parse_mail(_mail()))
    assert not should_auto_reply(parse_mail(_mail(headers={"Auto-Submitted": "auto-replied"})))
    assert not should_auto_reply(parse_mail(_mail(headers={"Precedence": "bulk"})))
    assert not should_auto_reply(parse_mail(_mail(frm="noreply@shop.test")))
    assert not should_auto_reply(parse_mail(_mail(frm="MAILER-DAEMON@mx.test")))


def test_given_a_delivery_status_notification_when_read_then_it_is_a_bounce_naming_our_message() -> None:
    original = build_mail(
        sender="billing@tierline.local",
        to="gone@example.test",
        subject="Re: x",
        text="t",
        html="<p>t</p>",
        message_id="<turn-abc@tierline.local>",
    )
    dsn = EmailMessage()
    dsn["From"] = "Mail Delivery System <MAILER-DAEMON@mx.test>"
    dsn["Subject"] = "Undelivered Mail Returned to Sender"
    dsn["Message-ID"] = "<dsn1@mx.test>"
    dsn.set_content("This is the mail system: user unknown (550 5.1.1)")
    dsn.add_attachment(original)  # message/rfc822
    dsn.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"; boundary="b1"')
    mail = parse_mail(dsn.as_bytes())
    assert mail.is_bounce
    assert mail.bounced_message_ids == ["<turn-abc@tierline.local>"]


# ----------------------------------------------------------------------------- outbound pieces
def test_given_causes_when_deriving_ids_then_stable_and_distinct() -> None:
    assert message_id_for("turn", "1", "t.local") == message_id_for("turn", "1", "t.local")
    assert message_id_for("turn", "1", "t.local") != message_id_for("turn", "2", "t.local")
    assert message_id_for("turn", "1", "t.local").endswith("@t.local>")
    assert contact_id_for("<a@b>") == contact_id_for("<a@b>") != contact_id_for("<c@b>")


def test_given_notification_history_when_deciding_then_once_only_and_rate_limited() -> None:
    assert notification_verdict(None, 0, 3) is SendVerdict.SEND
    assert notification_verdict(None, 3, 3) is SendVerdict.SUPPRESSED
    assert notification_verdict("delivered", 0, 3) is SendVerdict.DUPLICATE
    assert notification_verdict("suppressed", 0, 3) is SendVerdict.DUPLICATE
    assert notification_verdict("failed", 0, 3) is SendVerdict.DUPLICATE
    assert notification_verdict("sending", 5, 3) is SendVerdict.SEND


def test_given_failures_when_classified_then_5xx_is_final_and_backoff_doubles_to_a_cap() -> None:
    assert is_permanent_smtp_code(550)
    assert is_permanent_smtp_code(552)
    assert not is_permanent_smtp_code(451)
    assert not is_permanent_smtp_code(None)
    assert backoff_delays(5, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delays(1, 0.5, 3.0) == []


def test_given_a_turn_when_rendered_then_text_and_html_parts_with_choices_sla_and_escaped_markup() -> None:
    text, html = MailTemplates().render(
        "turn",
        subject="Re: Card declined",
        text="Your card ending 4242 was declined.\n\n<script>alert(1)</script> Which do you want?",
        kind="clarifying_question",
        choices=[{"label": "Send me an update link", "value": "x"}, {"label": "A person", "value": "human"}],
        sla_due_at="2026-12-04 10:00 UTC",
        language="en",
    )
    assert "1. Send me an update link" in text
    assert "2. A person" in text
    assert "by 2026-12-04 10:00 UTC" in text
    assert "<script>alert(1)</script>" in text  # plain text is plain
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<li>A person</li>" in html
    assert '<html lang="en">' in html


def test_given_a_notice_when_rendered_then_the_link_appears_once_in_text() -> None:
    text, html = MailTemplates().render(
        "notification",
        subject="s",
        body="Update your card here: https://x/y",
        link="https://x/y",
        language=None,
    )
    assert text.count("https://x/y") == 1
    assert '<a href="https://x/y">' in html


# --------------------------------------------------------------------------- SMTP out (aiosmtpd, loopback)
class _Sink:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0
        self.answers: list[str] = []  # scripted answers to DATA, then 250

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:  # noqa: N802, E501
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.answers:
            return self.answers.pop(0)
        self.received.append(envelope.content)
        return "250 OK"


async def _serve(handler: Any, **kwargs: Any) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, loop=loop, **kwargs), "127.0.0.1", 0)
    return server, int(list(server.sockets)[0].getsockname()[1])


def _out(i: int) -> EmailMessage:
    return build_mail(
        sender="billing@tierline.local",
        to="ana@example.test",
        subject=f"n{i}",
        text=f"body {i}",
        html=f"<p>body {i}</p>",
        message_id=f"<n{i}@tierline.local>",
    )


async def _no_sleep(_s: float) -> None:
    return None


async def test_given_several_mails_when_sent_then_one_connection_carries_them_all() -> None:
    sink = _Sink()
    server, port = await _serve(sink)
    mailer = SmtpMailer("127.0.0.1", port, sleep=_no_sleep)
    try:
        for i in range(5):
            await mailer.send(_out(i))
    finally:
        await mailer.close()
        server.close()
    assert len(sink.received) == 5
    assert (sink.connections, mailer.connections_opened) == (1, 1)
    assert b"multipart/alternative" in sink.received[0]


async def test_given_a_permanent_refusal_when_sent_then_it_fails_at_once_and_the_next_mail_goes_through() -> (
    None
):
    sink = _Sink()
    sink.answers = ["550 5.1.1 no such user"]
    server, port = await _serve(sink)
    mailer = SmtpMailer("127.0.0.1", port, attempts=4, sleep=_no_sleep)
    try:
        with pytest.raises(DeliveryFailed) as failed:
            await mailer.send(_out(1))
        assert failed.value.permanent
        assert failed.value.code == 550
        await mailer.send(_out(2))
    finally:
        await mailer.close()
        server.close()
    assert len(sink.received) == 1


async def test_given_transient_failures_when_sent_then_retried_with_backoff_until_it_passes_or_gives_up() -> (
    None
):
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    sink = _Sink()
    sink.answers = ["451 4.3.0 try later", "451 4.3.0 try later"]
    server, port = await _serve(sink)
    mailer = SmtpMailer("127.0.0.1", port, attempts=3, backoff_s=0.5, sleep=sleep)
    try:
        await mailer.send(_out(1))
        assert waits == [0.5, 1.0]
        assert len(sink.received) == 1
        sink.answers = ["451 a", "451 b", "451 c"]
        with pytest.raises(DeliveryFailed) as failed:
            await mailer.send(_out(2))
        assert not failed.value.permanent
        assert "gave up after 3 tries" in failed.value.detail
    finally:
        await mailer.close()
        server.close()


async def test_given_no_server_when_sent_then_it_gives_up_as_transient() -> None:
    server, port = await _serve(_Sink())
    server.close()
    await server.wait_closed()
    mailer = SmtpMailer("127.0.0.1", port, attempts=2, timeout_s=2, sleep=_no_sleep)
    with pytest.raises(DeliveryFailed) as failed:
        await mailer.send(_out(1))
    assert not failed.value.permanent


# ----------------------------------------------------------------------------- SMTP in (the support door)
async def test_given_the_support_door_when_mail_arrives_then_it_is_handed_on_and_oversize_mail_gets_552() -> (
    None
):
    got: list[tuple[bytes, str | None]] = []

    async def receive(raw: bytes, envelope_from: str | None) -> None:
        got.append((raw, envelope_from))

    door = InboundSmtpDoor(receive, host="127.0.0.1", port=0, max_bytes=64 * 1024)
    await door.start()
    try:
        assert door.listening
        assert door.port > 0

        def send(raw: bytes) -> None:
            with smtplib.SMTP("127.0.0.1", door.port, timeout=10) as smtp:
                smtp.sendmail("ana@example.test", ["support@tierline.local"], raw)

        await asyncio.to_thread(send, _mail())
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            await asyncio.to_thread(send, _mail("x" * 200 * 1024))
        assert refused.value.smtp_code == 552
    finally:
        await door.stop()
    assert len(got) == 1
    assert got[0][1] == "ana@example.test"
    assert b"Card declined" in got[0][0]


async def test_given_a_door_whose_handler_fails_when_mail_arrives_then_451_asks_the_sender_to_retry() -> None:
    async def receive(raw: bytes, envelope_from: str | None) -> None:
        raise RuntimeError("postgres down")

    door = InboundSmtpDoor(receive, host="127.0.0.1", port=0, max_bytes=64 * 1024)
    await door.start()
    try:

        def send() -> None:
            with smtplib.SMTP("127.0.0.1", door.port, timeout=10) as smtp:
                smtp.sendmail("ana@example.test", ["support@tierline.local"], _mail())

        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send)
        assert refused.value.smtp_code == 451
    finally:
        await door.stop()


def test_given_an_account_change_notice_when_the_day_is_full_then_it_is_still_sent() -> None:
    assert notification_verdict(None, 3, window_limit("billing_change", 3)) is SendVerdict.SEND
    assert notification_verdict(None, 3, window_limit("refund_approved", 3)) is SendVerdict.SEND
    assert notification_verdict(None, 3, window_limit("update_card", 3)) is SendVerdict.SUPPRESSED
