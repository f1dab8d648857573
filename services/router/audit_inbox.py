"""`tierline audit-inbox FILE | --from-history`: why customers write, ranked, and who could absorb it.

``FILE`` is a helpdesk export (Zendesk, Help Scout or generic CSV; see ``tierline/inbox_audit.py``). Each
ticket's text is cleaned (quotes and signatures dropped, ``tierline.textprep``) and read by the router's
own intent model, batched (``--batch`` texts per encoder call). ``--from-history`` reads tierline's own
contacts and outcomes from Postgres instead and shows what still reaches people.

Who could absorb a reason comes from the router's tables (``services.router.domain``): the route a
confident reading of that intent takes for a known, authorised customer, the Tier 1 action and the
Health Meter screen it uses; intents Tier 1 acts on only when the diagnosis names a fix say so.

Writes ``reasons.csv`` and ``reasons.png`` (matplotlib, the ``tooling`` extra) into ``--out`` and prints
the table. Input problems (a missing file, unknown columns, a bad date, an empty file) exit 2 with the
reason, without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

from schemas.vocab import Action, Intent, RootCause, Tier
from services.router.domain import NEUTRAL_GATES, decide_route, select_selfheal_action
from services.router.intent.model import IntentClassifier, IntentModelError, IntentPrediction
from tierline.inbox_audit import (
    Absorber,
    ClassifiedTicket,
    InboxAuditError,
    InboxFormat,
    Ticket,
    rank_reasons,
    read_export,
    read_history,
    render_table,
    write_chart,
    write_csv,
    write_tickets_csv,
)

log = structlog.get_logger(__name__)

DEFAULT_COST_PER_TICKET = 8.0  # the cost model's tier3 default (tierline.pipeline.CostModel)
DEFAULT_BATCH = 256
HEALTH_METER = "Health Meter"
#: the Health Meter's 1-click fix for each Tier 1 action (services/tier1_selfheal/domain.py ``fixes_for``);
#: an action missing here is done by Tier 1 on a chat or e-mail contact, with no portal screen yet
SCREEN_BY_ACTION: dict[Action, str] = {
    Action.RETRY_PAYMENT: f"{HEALTH_METER}: Retry payment",
    Action.SEND_UPDATE_CARD_LINK: f"{HEALTH_METER}: Update card (/update-card)",
    Action.REGENERATE_INVOICE_LINK: f"{HEALTH_METER}: Get a new payment link (/pay/{{invoice}})",
    Action.EXPLAIN_CHARGE: f"{HEALTH_METER}: Explain this",
    Action.CHANGE_PLAN: f"{HEALTH_METER}: Preview a larger plan (seats over plan only)",
}
NO_SCREEN = "no portal screen yet (Tier 1 acts on a chat/e-mail contact)"


def absorber_for(intent: Intent, threshold: float) -> Absorber:
    """The route the router gives a confident reading of ``intent`` (neutral gates, no diagnosis)."""
    decision = decide_route(intent, 1.0, NEUTRAL_GATES, None, None, threshold)
    if decision.tier is Tier.TIER1 and decision.selfheal_action is not None:
        action = decision.selfheal_action
        return Absorber("tier1", f"self-heal ({action.value})", SCREEN_BY_ACTION.get(action, NO_SCREEN))
    if decision.reason == "no_selfheal_action":
        # Tier 1 acts when the diagnosis names the fix (a soft decline: retry; an expired card: new card)
        fixes = sorted(
            {
                a.value
                for rc in RootCause
                for rec in (None, *Action)
                if (a := select_selfheal_action(intent, rc, rec)) is not None
            }
        )
        if fixes:
            buttons = sorted(
                SCREEN_BY_ACTION[Action(f)].removeprefix(f"{HEALTH_METER}: ")
                for f in fixes
                if Action(f) in SCREEN_BY_ACTION
            )
            return Absorber(
                "tier1",
                f"self-heal when the diagnosis names the fix ({', '.join(fixes)})",
                f"{HEALTH_METER}: {' / '.join(buttons)}" if buttons else NO_SCREEN,
            )
        return Absorber("tier2", "AI agent (no Tier 1 action)")
    if decision.tier is Tier.TIER2:
        return Absorber("tier2", "AI agent")
    reason = decision.escalation_reason.value if decision.escalation_reason else decision.reason
    return Absorber("tier3", f"a person ({reason})")


def absorbers(threshold: float) -> dict[str, Absorber]:
    return {intent.value: absorber_for(intent, threshold) for intent in Intent}


Progress = Callable[[int, int, float], None]


class TicketReader(Protocol):
    """What the audit needs of the intent model (``IntentClassifier``)."""

    threshold: float

    def predict(self, texts: list[str]) -> list[IntentPrediction]: ...


def print_progress(done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else 0.0
    print(f"audit-inbox: {done}/{total} tickets classified ({rate:.0f}/s)", file=sys.stderr, flush=True)


def classify_tickets(
    tickets: Sequence[Ticket],
    classifier: TicketReader,
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
) -> list[ClassifiedTicket]:
    """Each ticket's reason: the model's intent, in batches of ``batch_size`` texts per encoder call."""
    out: list[ClassifiedTicket] = []
    started = time.perf_counter()
    for start in range(0, len(tickets), batch_size):
        batch = tickets[start : start + batch_size]
        predictions = classifier.predict([t.text for t in batch])
        for ticket, prediction in zip(batch, predictions, strict=True):
            out.append(
                ClassifiedTicket(
                    reason=prediction.intent.value,
                    created=ticket.created,
                    resolved=ticket.resolved,
                    reached_people=True,
                    confident=prediction.confidence >= classifier.threshold,
                    ticket_id=ticket.ticket_id,
                    confidence=prediction.confidence,
                    text=ticket.text,
                )
            )
        if progress is not None:
            progress(len(out), len(tickets), time.perf_counter() - started)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tierline audit-inbox",
        description="Rank why customers write (a helpdesk export, or tierline's own history) "
        "and who could absorb each reason.",
    )
    p.add_argument("file", nargs="?", type=Path, help="helpdesk export (CSV)")
    p.add_argument(
        "--from-history", action="store_true", help="tierline's own contacts and outcomes (Postgres)"
    )
    p.add_argument("--since", default="30d", help="with --from-history: how far back (30d, 12h, 2w)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default .tierline/inbox-audit)")
    p.add_argument(
        "--cost-per-ticket",
        type=float,
        default=DEFAULT_COST_PER_TICKET,
        help=f"human cost of one ticket in USD (default {DEFAULT_COST_PER_TICKET})",
    )
    p.add_argument("--format", choices=[f.value for f in InboxFormat], default=InboxFormat.AUTO.value)
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="texts per encoder call")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def _model_threshold() -> float | None:
    try:
        return IntentClassifier.load().threshold
    except IntentModelError:
        return None


def _history(args: argparse.Namespace) -> tuple[list[ClassifiedTicket], float, str]:
    import asyncpg

    from tierline.billing.simulate import SimulateError, parse_since
    from tierline.settings import InfraSettings

    try:
        since = datetime.now(UTC) - parse_since(args.since)
    except SimulateError as exc:
        raise InboxAuditError(str(exc)) from None
    # beside `tierline up`'s stack: `tierline audit-inbox` puts the stack's addresses in the environment
    dsn = InfraSettings().postgres_dsn
    threshold = _model_threshold()
    try:
        tickets = asyncio.run(read_history(dsn, since, threshold))
    except OSError as exc:
        raise InboxAuditError(f"cannot reach Postgres ({exc}); is the stack up (`tierline up`)?") from None
    except asyncpg.PostgresError as exc:
        raise InboxAuditError(f"cannot read the contact history: {exc}") from None
    if not tickets:
        raise InboxAuditError(f"no contacts since {since:%Y-%m-%d %H:%M} UTC in the history")
    return (
        tickets,
        threshold if threshold is not None else 0.5,
        f"contacts since {since:%Y-%m-%d} (tierline history)",
    )


def _inbox(args: argparse.Namespace) -> tuple[list[ClassifiedTicket], float, str]:
    columns, tickets = read_export(args.file, InboxFormat(args.format))
    print(
        f"audit-inbox: {len(tickets)} tickets read from {args.file} as {columns.format.value} "
        f"(text: {', '.join(c for c in (columns.subject, columns.body) if c)}; "
        f"created: {columns.created or '-'}; resolved: {columns.resolved or '-'})",
        file=sys.stderr,
    )
    try:
        classifier = IntentClassifier.load()
    except IntentModelError as exc:
        raise InboxAuditError(str(exc)) from None
    progress = None if args.quiet else print_progress
    classified = classify_tickets(tickets, classifier, batch_size=max(1, args.batch), progress=progress)
    return classified, classifier.threshold, f"{len(tickets)} tickets in {args.file.name}"


def run(args: argparse.Namespace) -> int:
    if args.from_history == (args.file is not None):
        raise InboxAuditError("give either a helpdesk export FILE or --from-history")
    if args.out is None:
        from tierline.settings import InfraSettings

        args.out = InfraSettings().data_dir / "inbox-audit"
    started = time.perf_counter()
    tickets, threshold, source = _history(args) if args.from_history else _inbox(args)
    rows = rank_reasons(tickets, args.cost_per_ticket, absorbers(threshold))
    csv_path = write_csv(rows, args.out / "reasons.csv")
    if not args.from_history:
        write_tickets_csv(tickets, args.out / "tickets.csv")
    title = "What still reaches people" if args.from_history else "Why customers write"
    chart = write_chart(rows, args.out / "reasons.png", f"{title}: {source}")
    total_cost = sum(r.human_cost_usd for r in rows)
    print(render_table(rows, total_cost))
    print(f"wrote {csv_path}")
    if chart is None:
        print("no chart: matplotlib is not installed (`pip install 'tierline[tooling]'`)", file=sys.stderr)
    else:
        print(f"wrote {chart}")
    seconds = time.perf_counter() - started
    log.info(
        "inbox_audit.completed",
        source=source,
        tickets=len(tickets),
        reasons=len(rows),
        seconds=round(seconds, 2),
        tickets_per_second=round(len(tickets) / seconds, 1) if seconds > 0 else None,
    )
    return 0


def audit_inbox_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except InboxAuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(audit_inbox_main())
