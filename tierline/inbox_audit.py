"""The support-inbox audit's plumbing: helpdesk exports read, reasons ranked, the CSV and chart written.

``tierline audit-inbox FILE`` (``services/router/audit_inbox.py`` classifies the tickets with the router's
model) and ``tierline audit-inbox --from-history`` (tierline's own contacts and outcomes, read here from
Postgres) both end in :func:`rank_reasons`: one row per reason customers wrote, most frequent first,
with its share of volume, the cumulative share (a Pareto reading: "the top three reasons are 70%"), the
median time to resolution, the human cost at a rate per ticket, and which tier or portal screen could
absorb it.

Helpdesk exports (CSV, UTF-8, comma/semicolon/tab separated) are matched by column name, ignoring case,
spacing, ``_``/``-`` and camelCase: Zendesk's ticket export (``Id``, ``Subject``, ``Created at``,
``Solved at``; ``Description`` when the export has it — Zendesk's CSV export carries no ticket body, so
the subject alone is read), Help Scout's conversation export (``Conversation ID``/``Number``,
``Subject``, ``Preview``, ``Created At``, ``Closed At``) and a generic
``subject,body,created,resolved``. Dates are ISO 8601 (with ``T`` or a space, optional seconds and
offset; naive times are UTC) or ``31 Jan 2026 09:15`` / ``Jan 31, 2026 09:15 AM``; ambiguous numeric
forms such as ``01/02/2026`` are refused rather than guessed.

Errors are :class:`InboxAuditError` subclasses with a message meant for the person running the command.
"""

from __future__ import annotations

import csv
import html
import io
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from tierline.textprep import clean_text

log = structlog.get_logger(__name__)

UNKNOWN_REASON = "unclassified"
CSV_COLUMNS: tuple[str, ...] = (
    "rank",
    "reason",
    "count",
    "share",
    "cumulative_share",
    "median_hours_to_resolution",
    "reached_people",
    "human_cost_usd",
    "absorbed_by",
    "screen",
    "confident_share",
)


# --------------------------------------------------------------------------- errors


class InboxAuditError(Exception):
    """A problem with the input the person running the command can fix (exit code 2)."""


class InboxFileNotFound(InboxAuditError):
    pass


class UnknownColumns(InboxAuditError):
    pass


class BadDate(InboxAuditError):
    pass


class EmptyInbox(InboxAuditError):
    pass


# --------------------------------------------------------------------------- formats


class InboxFormat(StrEnum):
    AUTO = "auto"
    ZENDESK = "zendesk"
    HELPSCOUT = "helpscout"
    GENERIC = "generic"


@dataclass(frozen=True)
class FormatSpec:
    """Accepted (normalised) names for each field; the first one present wins."""

    ticket_id: tuple[str, ...]
    subject: tuple[str, ...]
    body: tuple[str, ...]
    created: tuple[str, ...]
    resolved: tuple[str, ...]
    markers: tuple[str, ...]  # columns only this helpdesk's export has (for --format auto)


SPECS: dict[InboxFormat, FormatSpec] = {
    InboxFormat.ZENDESK: FormatSpec(
        ticket_id=("id", "ticket id"),
        subject=("subject",),
        body=("description", "ticket description", "first comment", "comment"),
        created=("created at", "request date", "ticket created timestamp"),
        resolved=("solved at", "ticket solved timestamp", "solved"),
        markers=("solved at", "requester", "requester email", "requester id", "via", "ticket type"),
    ),
    InboxFormat.HELPSCOUT: FormatSpec(
        ticket_id=("conversation id", "conversation number", "number", "id"),
        subject=("subject",),
        body=("preview", "first message", "customer message", "body", "thread"),
        created=("created at", "created"),
        resolved=("closed at", "closed", "resolved at"),
        markers=(
            "conversation id",
            "conversation number",
            "closed at",
            "mailbox",
            "customer email",
            "preview",
        ),
    ),
    InboxFormat.GENERIC: FormatSpec(
        ticket_id=("id", "ticket id", "ticket"),
        subject=("subject", "title"),
        body=("body", "text", "message", "description", "content"),
        created=("created", "created at", "opened", "opened at", "date"),
        resolved=("resolved", "resolved at", "closed", "closed at", "solved", "solved at"),
        markers=(),
    ),
}


def normalise_header(name: str) -> str:
    """``Created At`` / ``created_at`` / ``createdAt`` / `` created-at`` -> ``created at``."""
    name = name.replace("\ufeff", "")
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return " ".join(re.sub(r"[_\-./:]+", " ", name).lower().split())


@dataclass(frozen=True)
class ColumnMap:
    """Which CSV column holds each field (original header names; ``None``: not in this export)."""

    format: InboxFormat
    ticket_id: str | None
    subject: str | None
    body: str | None
    created: str | None
    resolved: str | None


def _pick(headers: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((headers[n] for n in names if n in headers), None)


def _column_map(fmt: InboxFormat, headers: Mapping[str, str]) -> ColumnMap:
    spec = SPECS[fmt]
    return ColumnMap(
        format=fmt,
        ticket_id=_pick(headers, spec.ticket_id),
        subject=_pick(headers, spec.subject),
        body=_pick(headers, spec.body),
        created=_pick(headers, spec.created),
        resolved=_pick(headers, spec.resolved),
    )


def _expected(fmt: InboxFormat) -> str:
    spec = SPECS[fmt]
    return (
        f"{fmt.value}: a text column ({' / '.join(spec.subject + spec.body)}), "
        f"optionally created ({' / '.join(spec.created)}) and resolved ({' / '.join(spec.resolved)})"
    )


def detect_columns(headers: Sequence[str], fmt: InboxFormat = InboxFormat.AUTO) -> ColumnMap:
    """The columns to read; :class:`UnknownColumns` naming the columns found and expected if none fit."""
    by_name = {normalise_header(h): h for h in headers if h is not None}
    if fmt is InboxFormat.AUTO:
        scored = sorted(
            (InboxFormat.ZENDESK, InboxFormat.HELPSCOUT),
            key=lambda f: -sum(m in by_name for m in SPECS[f].markers),
        )
        candidates = [f for f in scored if any(m in by_name for m in SPECS[f].markers)]
        candidates.append(InboxFormat.GENERIC)
    else:
        candidates = [fmt]
    for candidate in candidates:
        columns = _column_map(candidate, by_name)
        if columns.subject or columns.body:
            return columns
    found = ", ".join(repr(h) for h in headers) or "none"
    expected = "; ".join(_expected(f) for f in (candidates if fmt is not InboxFormat.AUTO else SPECS))
    raise UnknownColumns(f"no ticket text column: found columns {found}; expected {expected}")


# --------------------------------------------------------------------------- dates

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|UTC|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)
_WORDY_FORMATS = (
    "%d %b %Y %H:%M",
    "%d %B %Y %H:%M",
    "%b %d, %Y %H:%M",
    "%b %d, %Y %I:%M %p",
    "%B %d, %Y %I:%M %p",
)


def parse_datetime(value: str) -> datetime:
    """An export's timestamp as an aware UTC datetime; ``ValueError`` for anything else."""
    text = value.strip()
    match = _ISO.match(text)
    if match:
        year, month, day, hour, minute, second, zone = match.groups()
        offset = ""
        if zone and zone.upper() not in ("Z", "UTC"):
            offset = zone if ":" in zone else f"{zone[:3]}:{zone[3:]}"
        stamp = f"{year}-{month}-{day}T{int(hour or 0):02d}:{minute or '00'}:{second or '00'}{offset}"
        parsed = datetime.fromisoformat(stamp)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    for fmt in _WORDY_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"not a date: {value!r}")


# --------------------------------------------------------------------------- reading an export


@dataclass(frozen=True)
class Ticket:
    row: int  # line in the file (the header is line 1)
    ticket_id: str
    text: str  # subject and cleaned body, what the classifier reads
    created: datetime | None
    resolved: datetime | None


_SUBJECT_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>@]{0,200}>")
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|tr|rv)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def ticket_text(subject: str, body: str) -> str:
    """The words the classifier reads: the subject without ``Re:``/``Fwd:``, then the body's new words."""
    subject = html.unescape(_SUBJECT_TAG.sub(" ", subject or ""))
    subject = " ".join(_SUBJECT_PREFIX.sub("", subject).split())
    cleaned = clean_text(body) if (body or "").strip() else ""
    if subject and cleaned and subject.lower() not in cleaned.lower():
        return f"{subject}{'' if subject[-1] in '.!?' else '.'} {cleaned}"
    return cleaned or subject


def _date(raw: str | None, column: str | None, row: int) -> datetime | None:
    if column is None or raw is None or not raw.strip():
        return None
    try:
        return parse_datetime(raw)
    except ValueError:
        raise BadDate(
            f"line {row}: column {column!r} holds {raw.strip()!r}, not a date "
            "(expected e.g. 2026-01-31 09:15, 2026-01-31T09:15:00Z or 31 Jan 2026 09:15)"
        ) from None


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        return csv.excel


def read_export(path: Path, fmt: InboxFormat = InboxFormat.AUTO) -> tuple[ColumnMap, list[Ticket]]:
    """The tickets of a helpdesk CSV export, in file order (rows without any text are skipped)."""
    if not path.is_file():
        raise InboxFileNotFound(f"no such file: {path}")
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InboxAuditError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_export(content, fmt, source=str(path))


def parse_export(
    content: str, fmt: InboxFormat = InboxFormat.AUTO, *, source: str = "input"
) -> tuple[ColumnMap, list[Ticket]]:
    if not content.strip():
        raise EmptyInbox(f"{source} is empty: no header and no tickets")
    csv.field_size_limit(16 * 1024 * 1024)
    reader = csv.DictReader(io.StringIO(content, newline=""), dialect=_dialect(content[:8192]))
    columns = detect_columns(list(reader.fieldnames or []), fmt)
    tickets: list[Ticket] = []
    try:
        for record in reader:
            row = reader.line_num
            subject = (record.get(columns.subject) or "") if columns.subject else ""
            body = (record.get(columns.body) or "") if columns.body else ""
            text = ticket_text(subject, body)
            if not text:
                continue
            created = _date(record.get(columns.created or ""), columns.created, row)
            resolved = _date(record.get(columns.resolved or ""), columns.resolved, row)
            if created and resolved and resolved < created:
                raise BadDate(
                    f"line {row}: resolved {resolved.isoformat()} is before created {created.isoformat()}"
                )
            ticket_id = (record.get(columns.ticket_id) or "").strip() if columns.ticket_id else ""
            tickets.append(Ticket(row, ticket_id or f"line-{row}", text, created, resolved))
    except csv.Error as exc:
        raise InboxAuditError(f"{source}: line {reader.line_num}: not valid CSV ({exc})") from None
    if not tickets:
        raise EmptyInbox(f"{source} has a header but no ticket with any text")
    return columns, tickets


# --------------------------------------------------------------------------- ranking


@dataclass(frozen=True)
class Absorber:
    """Who could take a reason off people's hands: a tier, how, and the portal screen a customer would use."""

    tier: str  # "tier1" | "tier2" | "tier3"
    how: str
    screen: str = ""

    def label(self) -> str:
        return f"{self.tier}: {self.how}"


@dataclass(frozen=True)
class ClassifiedTicket:
    reason: str
    created: datetime | None = None
    resolved: datetime | None = None
    reached_people: bool = True  # every ticket of a helpdesk export was handled by a person
    confident: bool = True  # the router would act on the reading (confidence >= its threshold)
    ticket_id: str = ""
    confidence: float | None = None
    text: str = ""


@dataclass(frozen=True)
class ReasonRow:
    rank: int
    reason: str
    count: int
    share: float
    cumulative_share: float
    median_hours_to_resolution: float | None
    reached_people: int
    human_cost_usd: float
    absorbed_by: str
    screen: str
    confident_share: float

    def as_csv(self) -> dict[str, Any]:
        hours = self.median_hours_to_resolution
        return {
            "rank": self.rank,
            "reason": self.reason,
            "count": self.count,
            "share": f"{self.share:.4f}",
            "cumulative_share": f"{self.cumulative_share:.4f}",
            "median_hours_to_resolution": "" if hours is None else f"{hours:.2f}",
            "reached_people": self.reached_people,
            "human_cost_usd": f"{self.human_cost_usd:.2f}",
            "absorbed_by": self.absorbed_by,
            "screen": self.screen,
            "confident_share": f"{self.confident_share:.4f}",
        }


def rank_reasons(
    tickets: Iterable[ClassifiedTicket],
    cost_per_ticket: float,
    absorbers: Mapping[str, Absorber],
) -> list[ReasonRow]:
    """One row per reason, most tickets first (ties by name); shares of all tickets, human cost of those
    that reached a person."""
    if cost_per_ticket < 0:
        raise InboxAuditError(f"--cost-per-ticket must be >= 0, got {cost_per_ticket}")
    groups: dict[str, list[ClassifiedTicket]] = defaultdict(list)
    for ticket in tickets:
        groups[ticket.reason].append(ticket)
    total = sum(len(g) for g in groups.values())
    if total == 0:
        raise EmptyInbox("no tickets to rank")
    rows: list[ReasonRow] = []
    running = 0
    for rank, (reason, group) in enumerate(
        sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])), start=1
    ):
        running += len(group)
        hours = [
            (t.resolved - t.created).total_seconds() / 3600.0
            for t in group
            if t.created is not None and t.resolved is not None
        ]
        people = sum(1 for t in group if t.reached_people)
        absorber = absorbers.get(reason, Absorber("tier3", "a person (no route known)"))
        rows.append(
            ReasonRow(
                rank=rank,
                reason=reason,
                count=len(group),
                share=len(group) / total,
                cumulative_share=running / total,
                median_hours_to_resolution=statistics.median(hours) if hours else None,
                reached_people=people,
                human_cost_usd=round(people * cost_per_ticket, 2),
                absorbed_by=absorber.label(),
                screen=absorber.screen,
                confident_share=sum(1 for t in group if t.confident) / len(group),
            )
        )
    return rows


def write_csv(rows: Sequence[ReasonRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(row.as_csv() for row in rows)
    return path


TICKET_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "reason",
    "confidence",
    "confident",
    "hours_to_resolution",
    "text",
)


def write_tickets_csv(tickets: Sequence[ClassifiedTicket], path: Path) -> Path:
    """Each ticket's reading, for checking the ranking by eye (what the classifier read, not the original)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TICKET_COLUMNS))
        writer.writeheader()
        for t in tickets:
            hours = (t.resolved - t.created).total_seconds() / 3600.0 if t.created and t.resolved else None
            writer.writerow(
                {
                    "ticket_id": t.ticket_id,
                    "reason": t.reason,
                    "confidence": "" if t.confidence is None else f"{t.confidence:.4f}",
                    "confident": "yes" if t.confident else "no",
                    "hours_to_resolution": "" if hours is None else f"{hours:.2f}",
                    "text": t.text,
                }
            )
    return path


TIER_COLOURS = {"tier1": "#2e7d32", "tier2": "#1565c0", "tier3": "#c62828"}


def write_chart(rows: Sequence[ReasonRow], path: Path, title: str) -> Path | None:
    """A Pareto chart (tickets per reason, coloured by the absorbing tier, and the cumulative share).

    ``None`` when matplotlib (the ``tooling`` extra) is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(rows) + 3), 5))
    xs = list(range(len(rows)))
    colours = [TIER_COLOURS.get(r.absorbed_by.split(":")[0], "#757575") for r in rows]
    ax.bar(xs, [r.count for r in rows], color=colours)
    ax.set_xticks(xs, [r.reason for r in rows], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("tickets")
    ax.set_title(title)
    share = ax.twinx()
    share.plot(xs, [100 * r.cumulative_share for r in rows], color="#424242", marker="o", linewidth=1.5)
    share.set_ylim(0, 105)
    share.set_ylabel("cumulative share of volume (%)")
    ax.legend(
        handles=[Patch(color=c, label=f"absorbed by {t}") for t, c in TIER_COLOURS.items()],
        loc="center right",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render_table(rows: Sequence[ReasonRow], total_cost: float) -> str:
    """A plain-text table for the terminal (the CSV has every column)."""
    cols = f"{'#':>2}  {'reason':<26} {'count':>6} {'share':>6} {'cum.':>6} {'med.h':>7} {'cost $':>9}"
    header = f"{cols}  absorbed by"
    lines = [header, "-" * len(header)]
    for r in rows:
        hours = "-" if r.median_hours_to_resolution is None else f"{r.median_hours_to_resolution:.1f}"
        screen = f" · {r.screen}" if r.screen else ""
        lines.append(
            f"{r.rank:>2}  {r.reason:<26} {r.count:>6} {100 * r.share:>5.1f}%"
            f" {100 * r.cumulative_share:>5.1f}% {hours:>7} {r.human_cost_usd:>9.2f}  {r.absorbed_by}{screen}"
        )
    lines.append(f"human cost in total: ${total_cost:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- tierline's own history


async def read_history(dsn: str, since: datetime, threshold: float | None = None) -> list[ClassifiedTicket]:
    """Customer contacts since ``since`` (Stripe-event contacts excluded) with their outcome, read-only.

    The reason is the intent the router recorded (else the outcome's); a contact reached people when a
    person resolved it (``resolved_by = tier3``); time to resolution is outcome recorded - contact started.
    """
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            records = await conn.fetch(
                """SELECT COALESCE(c.intent, o.message->'payload'->>'intent') AS intent, c.confidence,
                          c.started_at, o.recorded_at, o.resolved_by
                   FROM contacts c LEFT JOIN outcomes o USING (contact_id)
                   WHERE c.started_at >= $1 AND c.trigger <> 'stripe_event'
                   ORDER BY c.started_at, c.contact_id""",
                since,
            )
    finally:
        await conn.close()
    log.info("inbox_audit.history_read", contacts=len(records), since=since.isoformat())
    return [
        ClassifiedTicket(
            reason=r["intent"] or UNKNOWN_REASON,
            created=r["started_at"],
            resolved=r["recorded_at"],
            reached_people=r["resolved_by"] == "tier3",
            confident=threshold is None or r["confidence"] is None or r["confidence"] >= threshold,
        )
        for r in records
    ]


__all__ = [
    "Absorber",
    "BadDate",
    "ClassifiedTicket",
    "ColumnMap",
    "EmptyInbox",
    "InboxAuditError",
    "InboxFileNotFound",
    "InboxFormat",
    "ReasonRow",
    "Ticket",
    "UnknownColumns",
    "detect_columns",
    "parse_datetime",
    "parse_export",
    "rank_reasons",
    "read_export",
    "read_history",
    "render_table",
    "ticket_text",
    "write_chart",
    "write_csv",
    "write_tickets_csv",
]
