"""The notifier's decisions, pure: what an inbound mail is, which thread it continues, whether its sender
is believable, what a reply's headers are, and whether a delivery failure is worth another try.

No SMTP, Postgres or broker here: ``handlers.py`` does the I/O with what these functions return.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from enum import StrEnum
from html.parser import HTMLParser

from tierline.textprep import clean_lines


# ----------------------------------------------------------------------------- notifications
class SendVerdict(StrEnum):
    SEND = "send"
    DUPLICATE = "duplicate"  # already delivered, suppressed or failed: once only
    SUPPRESSED = "suppressed"  # over the per-customer rate limit


def notification_verdict(existing_status: str | None, recent_sent: int, max_per_window: int) -> SendVerdict:
    """Once per dedupe key; at most ``max_per_window`` deliveries per customer in the window."""
    if existing_status in ("delivered", "suppressed", "failed"):
        return SendVerdict.DUPLICATE
    if existing_status == "sending":  # a previous attempt did not finish: deliver it now
        return SendVerdict.SEND
    if recent_sent >= max_per_window:
        return SendVerdict.SUPPRESSED
    return SendVerdict.SEND


#: Notices the customer must get whatever else was sent today: a change to their account (a security
#: notice: "a teammate changed your billing email") and a refund a person approved.
NEVER_RATE_LIMITED = frozenset({"billing_change", "refund_approved"})


def window_limit(template: str, configured: int) -> int:
    """How many notices a customer may get in the window before this one is suppressed."""
    return sys.maxsize if template in NEVER_RATE_LIMITED else configured


# ----------------------------------------------------------------------------- delivery failures
def is_permanent_smtp_code(code: int | None) -> bool:
    """5xx is the server's final word (unknown mailbox, refused); 4xx and no answer may pass later."""
    return code is not None and 500 <= code < 600


def backoff_delays(attempts: int, first_s: float, max_s: float) -> list[float]:
    """The waits between ``attempts`` tries: doubling from ``first_s``, capped at ``max_s``."""
    return [min(first_s * (2**i), max_s) for i in range(max(attempts - 1, 0))]


def message_id_for(kind: str, key: str, domain: str) -> str:
    """The Message-ID of a mail we send, derived from what caused it (a redelivery sends the same id,
    so a receiver, and our bounce matching, sees one message)."""
    digest = hashlib.sha256(f"{kind}|{key}".encode()).hexdigest()[:32]
    return f"<{kind}-{digest}@{domain}>"


# ----------------------------------------------------------------------------- replies in a thread
_RE_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw|r)\s*:\s*", re.IGNORECASE)
#: References carried on a reply (RFC 5322 lets it grow; mail clients keep the first and the last ones).
MAX_REFERENCES = 20


def reply_subject(subject: str | None) -> str:
    base = (subject or "").strip() or "Your billing question"
    while _RE_PREFIX.match(base):
        base = _RE_PREFIX.sub("", base, count=1)
    return f"Re: {base}"


@dataclass(frozen=True)
class ThreadHeaders:
    subject: str
    in_reply_to: str | None
    references: list[str]


def thread_headers(subject: str | None, thread_ids: list[str], last_inbound: str | None) -> ThreadHeaders:
    """Headers that keep a reply in the customer's thread: Re: subject, In-Reply-To the last message the
    customer sent (else the thread's last), References the thread (first + most recent when long)."""
    ids = [i for i in dict.fromkeys(thread_ids) if i]
    if last_inbound and last_inbound not in ids:
        ids.append(last_inbound)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    in_reply_to = last_inbound or (ids[-1] if ids else None)
    return ThreadHeaders(subject=reply_subject(subject), in_reply_to=in_reply_to, references=ids)


# ----------------------------------------------------------------------------- HTML to text
_BLOCK_TAGS = {
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6", "section",
    "article", "header", "footer", "hr", "pre", "address",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "head", "title", "template", "noscript"}


class _TextExtractor(HTMLParser):
    """Visible text of an HTML mail; quoted history (``blockquote``, Gmail's ``gmail_quote``) left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip: list[str] = []  # open tags whose content is dropped

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = " ".join(v or "" for k, v in attrs if k == "class")
        if self._skip and tag not in ("br", "hr", "img", "meta", "link", "input"):
            self._skip.append(tag)
            return
        if tag in _SKIP_TAGS or tag == "blockquote" or "gmail_quote" in classes:
            self._skip.append(tag)
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    def text(self) -> str:
        joined = "".join(self.parts).replace("\xa0", " ")
        lines = [" ".join(line.split()) for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text()


# ----------------------------------------------------------------------------- inbound mail
@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class InboundMail:
    message_id: str
    from_addr: str | None
    from_count: int
    subject: str | None
    body: str
    html_only: bool
    in_reply_to: str | None
    references: list[str]
    auth_results: str | None
    auto_submitted: bool
    is_bounce: bool
    bounced_message_ids: list[str]
    size_bytes: int
    sha256: str
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def thread_ids(self) -> list[str]:
        """The ids this mail answers, nearest first (In-Reply-To, then References newest first)."""
        ids = [self.in_reply_to, *reversed(self.references)]
        return [i for i in dict.fromkeys(ids) if i]


_MSGID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")  # printable ASCII, no spaces or angle brackets


def storable(text: str) -> str:
    """Text Postgres and the broker take: no NUL, no lone surrogates (undecodable header bytes)."""
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def message_ids(value: str | None) -> list[str]:
    """The ``<...>`` ids in a Message-ID / In-Reply-To / References header value, in order."""
    return _MSGID.findall(value or "")


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        return None if value is None else storable(str(value))
    except Exception:  # noqa: BLE001 - a header the parser cannot read is a header we do not have
        return None


def _from_addresses(msg: Message) -> list[str]:
    try:
        header = msg.get("From")
        addresses: Iterable[Address] = getattr(header, "addresses", ())
        found = [a.addr_spec for a in addresses if a.addr_spec and "@" in a.addr_spec]
    except Exception:  # noqa: BLE001 - fall back to the lenient parser on a malformed header
        found = []
    if not found:
        raw = _header(msg, "From") or ""
        found = [addr for _name, addr in getaddresses([raw]) if "@" in addr]
    return [storable(a.strip().lower())[:320] for a in found]


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - unknown charset or broken encoding: keep what decodes
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    return storable(content) if isinstance(content, str) else ""


def _bounce_ids(msg: EmailMessage) -> list[str]:
    """The Message-IDs of our mail that a delivery status notification reports (in its returned
    message or headers part)."""
    found: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global", "text/rfc822-headers"):
            payload = part.get_payload()
            if isinstance(payload, list):
                for inner in payload:
                    if isinstance(inner, Message):
                        found += message_ids(_header(inner, "Message-ID"))
            elif isinstance(payload, str):
                header = re.search(r"^Message-ID:\s*(<[^>]+>)", payload, re.IGNORECASE | re.MULTILINE)
                if header:
                    found.append(header.group(1))
    return list(dict.fromkeys(found))


def parse_mail(raw: bytes) -> InboundMail:
    """Read one RFC 822 message with the standard library (policy=default). Never raises on bad mail:
    what cannot be read is left empty."""
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    sha = hashlib.sha256(raw).hexdigest()
    own_ids = message_ids(_header(msg, "Message-ID"))
    message_id = own_ids[0] if own_ids else f"<sha256-{sha[:40]}@inbound.tierline>"
    addresses = _from_addresses(msg)
    body, html_only = "", False
    try:
        plain = msg.get_body(preferencelist=("plain",))
        if plain is not None:
            body = _part_text(plain)
        else:
            html = msg.get_body(preferencelist=("html",))
            if html is not None:
                body, html_only = html_to_text(_part_text(html)), True
    except Exception:  # noqa: BLE001 - a broken MIME tree: no body rather than no contact
        body = ""
    attachments: list[Attachment] = []
    try:
        for part in msg.iter_attachments():
            data = part.get_payload(decode=True)
            if not isinstance(data, bytes) or part.get_content_maintype() == "multipart":
                continue
            name = storable(part.get_filename() or "attachment")
            attachments.append(
                Attachment(filename=name[:200], content_type=part.get_content_type(), data=data)
            )
    except Exception:  # noqa: BLE001 - same
        attachments = []
    auto = (_header(msg, "Auto-Submitted") or "no").strip().lower()
    precedence = (_header(msg, "Precedence") or "").strip().lower()
    report = msg.get_content_type() == "multipart/report" and (
        msg.get_param("report-type") == "delivery-status"
    )
    sender_local = (addresses[0].split("@", 1)[0] if addresses else "").lower()
    is_bounce = bool(report or sender_local in ("mailer-daemon", "postmaster"))
    return InboundMail(
        message_id=message_id,
        from_addr=addresses[0] if addresses else None,
        from_count=len(addresses),
        subject=(_header(msg, "Subject") or "").strip()[:500] or None,
        body=body,
        html_only=html_only,
        in_reply_to=next(iter(message_ids(_header(msg, "In-Reply-To"))), None),
        references=message_ids(_header(msg, "References")),
        auth_results=_header(msg, "Authentication-Results"),
        auto_submitted=auto != "no" or precedence in ("bulk", "junk", "list", "auto_reply"),
        is_bounce=is_bounce,
        bounced_message_ids=_bounce_ids(msg) if is_bounce else [],
        size_bytes=len(raw),
        sha256=sha,
        attachments=attachments,
    )


def customer_text(mail: InboundMail) -> str:
    """The customer's new words for classification: quoted history, signature and greeting stripped
    (``tierline.textprep``); the subject when the body holds nothing."""
    paragraphs = clean_lines(mail.body) if mail.body.strip() else []
    text = "\n\n".join(paragraphs).strip()
    if not text:
        text = mail.body.strip() or (mail.subject or "").strip() or "(empty message)"
    return text


# ----------------------------------------------------------------------------- sender and thread checks
_AUTH_FAIL = re.compile(r"\b(dmarc|spf|dkim)\s*=\s*(fail|softfail|permerror)\b", re.IGNORECASE)
_DMARC_PASS = re.compile(r"\bdmarc\s*=\s*pass\b", re.IGNORECASE)


def _domain(address: str | None) -> str:
    return (address or "").rsplit("@", 1)[-1].strip().lower() if address and "@" in address else ""


def spoof_reason(mail: InboundMail, envelope_from: str | None) -> str | None:
    """Why this mail's From cannot be believed, or None. The relay's verdict first (an
    Authentication-Results dmarc/spf/dkim failure), then what the mail itself shows: several From
    addresses, or an SMTP envelope sender in another domain than From (unless DMARC passed)."""
    if mail.from_count > 1:
        return "several From addresses"
    results = mail.auth_results or ""
    failed = _AUTH_FAIL.search(results)
    if failed:
        return f"{failed.group(1).lower()}={failed.group(2).lower()} in Authentication-Results"
    envelope = parseaddr(envelope_from or "")[1].strip().lower()
    if envelope and mail.from_addr and _domain(envelope) != _domain(mail.from_addr):
        if not _DMARC_PASS.search(results):
            return f"envelope sender {envelope} does not match From {mail.from_addr}"
    return None


class ThreadVerdict(StrEnum):
    NEW = "new"  # no thread named, or one we do not know: a conversation of its own
    CONTINUES = "continues"  # the sender's own conversation
    FOREIGN = "foreign"  # a thread of another customer: never joined


def thread_verdict(thread_customer: str | None, sender_customer: str, *, spoofed: bool) -> ThreadVerdict:
    """Whether a mail joins the conversation its headers name. Only the sender's own, and only when the
    sender is believable: a spoofed mail always starts a conversation of its own."""
    if thread_customer is None:
        return ThreadVerdict.NEW
    if thread_customer != sender_customer:
        return ThreadVerdict.FOREIGN
    return ThreadVerdict.NEW if spoofed else ThreadVerdict.CONTINUES


def should_auto_reply(mail: InboundMail) -> bool:
    """Never answer a machine: auto-submitted, bulk/list mail or bounces get no auto-reply (mail loops)."""
    local = (mail.from_addr or "").split("@", 1)[0].lower()
    return bool(
        mail.from_addr
        and not mail.auto_submitted
        and not mail.is_bounce
        and not local.startswith(("no-reply", "noreply", "donotreply", "do-not-reply"))
    )
