"""Shadow evaluation of a policy change: recorded decisions decided again under another policy, and the diff.

Pure: the caller reads the records (``tierline.policy_simulate`` reads Postgres, read-only) and hands them
here as :class:`RecordedDecision` (one per policy decision the executor made, with the :class:`PolicyContext`
of verified facts it was made on) and :class:`RecordedContact` (the contact's one outcome). :func:`simulate`
re-runs :meth:`PolicyEngine.check` on each recorded context and aggregates what happened against what the new
policy would have decided: refunds in count and dollars, escalations by reason, the automated rate, and the
contacts whose decision changed.

What is not guessed: a decision the new policy changes would have changed what followed it (a refund allowed
now but escalated then would have let the contact end without a person, and its later steps are unknown).
Such contacts are reported as changed, with ``cascaded`` set, and counted with only the effect of the changed
decision itself (the refund's recorded amount; the escalation's reason), nothing downstream.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.vocab import Action, EscalationReason
from tierline.billing.policy import Allow, NeedsHuman, PolicyContext, PolicyEngine, Verdict

VerdictKind = Literal["allow", "deny", "needs_human"]
_REASONS = {r.value for r in EscalationReason}
_CENT = Decimal("0.01")


class SimulateError(Exception):
    """Bad simulation input (e.g. a ``--since`` that is not a duration)."""


def parse_since(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` -> a duration (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw]?)\s*", text)
    if match is None or int(match.group(1)) <= 0:
        raise SimulateError(f"--since must be a positive duration like 30d, 12h or 2w, not {text!r}")
    value, unit = int(match.group(1)), match.group(2) or "d"
    return {
        "m": timedelta(minutes=value),
        "h": timedelta(hours=value),
        "d": timedelta(days=value),
        "w": timedelta(weeks=value),
    }[unit]


class RecordedDecision(BaseModel):
    """One policy decision as the executor recorded it (``policy_decisions`` joined with the ledger)."""

    model_config = ConfigDict(frozen=True)
    key: str
    contact_id: str
    customer_id: str
    action: Action
    target: str | None = None
    actor: str
    amount_usd: float = 0.0
    verdict: VerdictKind
    reason: str = ""
    rule: str = ""
    policy_version: str = ""
    #: The ledger's status for the key: ``succeeded``/``failed`` once executed, ``denied``, or None.
    executed: str | None = None
    decided_at: datetime
    context: PolicyContext


class RecordedContact(BaseModel):
    """A contact's one outcome (``outcomes``): who resolved it and, for a person, why."""

    model_config = ConfigDict(frozen=True)
    contact_id: str
    customer_id: str
    resolved_by: str
    escalation_reason: str | None = None

    @property
    def automated(self) -> bool:
        return self.resolved_by != "tier3"


class DecisionChange(BaseModel):
    model_config = ConfigDict(frozen=True)
    key: str
    action: str
    target: str | None
    actor: str
    amount_usd: float
    then_verdict: VerdictKind
    then_reason: str
    now_verdict: VerdictKind
    now_reason: str
    now_rule: str
    now_detail: str = ""


class ContactChange(BaseModel):
    model_config = ConfigDict(frozen=True)
    contact_id: str
    customer_id: str
    escalation_then: str | None
    escalation_now: str | None
    #: A decision went from refused to allowed or the other way: what the contact did after it is not
    #: simulated (only the changed decision's own effect is counted).
    cascaded: bool
    decisions: list[DecisionChange]


class Side(BaseModel):
    """One policy's figures over the recorded contacts."""

    model_config = ConfigDict(frozen=True)
    refunds: int
    refunds_usd: float
    escalations: dict[str, int]
    contacts: int
    automated: int

    @property
    def automated_rate(self) -> float:
        return self.automated / self.contacts if self.contacts else 0.0


class SimulationReport(BaseModel):
    model_config = ConfigDict(frozen=True)
    since: datetime | None
    current_policy_versions: list[str]
    new_policy_version: str
    decisions: int
    decisions_changed: int
    current: Side
    simulated: Side
    changed: list[ContactChange]
    note: str = (
        "A contact whose decision changed is counted with only that decision's own effect (a refund's "
        "recorded amount, an escalation's reason); what it would have done afterwards is not guessed."
    )

    def to_json(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        for name in ("current", "simulated"):
            side: Side = getattr(self, name)
            doc[name]["automated_rate"] = round(side.automated_rate, 4)
        doc["difference"] = {
            "refunds": self.simulated.refunds - self.current.refunds,
            "refunds_usd": _money(self.simulated.refunds_usd - self.current.refunds_usd),
            "automated_rate": round(self.simulated.automated_rate - self.current.automated_rate, 4),
            "escalations": {
                reason: self.simulated.escalations.get(reason, 0) - self.current.escalations.get(reason, 0)
                for reason in sorted(set(self.current.escalations) | set(self.simulated.escalations))
            },
        }
        return doc


def _money(value: float) -> float:
    return float(Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP))


def escalation_of(verdict: VerdictKind, reason: str) -> str | None:
    """The escalation a refused decision leads to, as the executor names it (None when allowed)."""
    if verdict == "allow":
        return None
    return reason if reason in _REASONS else EscalationReason.POLICY_DENIED.value


def _reason(verdict: Verdict) -> str:
    return "" if isinstance(verdict, Allow) else str(verdict.reason)


def _detail(verdict: Verdict) -> str:
    return verdict.detail if isinstance(verdict, NeedsHuman) else ""


def _refunded(decision: RecordedDecision) -> bool:
    return (
        decision.action is Action.REFUND and decision.verdict == "allow" and decision.executed == "succeeded"
    )


def simulate(
    engine: PolicyEngine,
    decisions: Iterable[RecordedDecision],
    contacts: Iterable[RecordedContact],
    *,
    since: datetime | None = None,
) -> SimulationReport:
    """Re-decide every recorded decision under ``engine`` and compare with what happened. No I/O."""
    by_contact: dict[str, list[RecordedDecision]] = {}
    for decision in sorted(decisions, key=lambda d: (d.decided_at, d.key)):
        by_contact.setdefault(decision.contact_id, []).append(decision)
    outcomes = {c.contact_id: c for c in contacts}

    then_refunds, now_refunds = 0, 0
    then_usd, now_usd = Decimal(0), Decimal(0)
    then_esc: Counter[str] = Counter()
    now_esc: Counter[str] = Counter()
    automated_then = automated_now = 0
    changed: list[ContactChange] = []
    total = changed_decisions = 0
    versions: set[str] = set()

    for contact_id in sorted(set(by_contact) | set(outcomes)):
        recorded = by_contact.get(contact_id, [])
        outcome = outcomes.get(contact_id)
        now_verdicts: list[Verdict] = [engine.check(d.action, d.context) for d in recorded]
        diffs: list[DecisionChange] = []
        for decision, verdict in zip(recorded, now_verdicts, strict=True):
            total += 1
            versions.add(decision.policy_version)
            if _refunded(decision):
                then_refunds += 1
                then_usd += Decimal(str(decision.amount_usd))
            allowed_now = isinstance(verdict, Allow)
            if decision.action is Action.REFUND and allowed_now:
                # allowed then and executed: the same refund; refused then: the refund it would have made
                if _refunded(decision) or decision.verdict != "allow":
                    now_refunds += 1
                    now_usd += Decimal(str(decision.amount_usd))
            if (verdict.kind, _reason(verdict)) != (decision.verdict, decision.reason):
                diffs.append(
                    DecisionChange(
                        key=decision.key,
                        action=decision.action.value,
                        target=decision.target,
                        actor=decision.actor,
                        amount_usd=decision.amount_usd,
                        then_verdict=decision.verdict,
                        then_reason=decision.reason,
                        now_verdict=verdict.kind,
                        now_reason=_reason(verdict),
                        now_rule=verdict.rule,
                        now_detail=_detail(verdict),
                    )
                )
        changed_decisions += len(diffs)

        escalation_then = outcome.escalation_reason if outcome is not None else None
        escalation_now = _escalation_now(recorded, now_verdicts, outcome) if diffs else escalation_then
        if outcome is not None:
            if escalation_then is not None:
                then_esc[escalation_then] += 1
            if escalation_now is not None:
                now_esc[escalation_now] += 1
            automated_then += outcome.automated
            automated_now += outcome.automated if not diffs else escalation_now is None
        if diffs:
            first = recorded[0]
            changed.append(
                ContactChange(
                    contact_id=contact_id,
                    customer_id=outcome.customer_id if outcome is not None else first.customer_id,
                    escalation_then=escalation_then,
                    escalation_now=escalation_now,
                    cascaded=any((d.then_verdict == "allow") != (d.now_verdict == "allow") for d in diffs),
                    decisions=diffs,
                )
            )
    counted = len(outcomes)
    return SimulationReport(
        since=since,
        current_policy_versions=sorted(v for v in versions if v),
        new_policy_version=engine.version,
        decisions=total,
        decisions_changed=changed_decisions,
        current=Side(
            refunds=then_refunds,
            refunds_usd=_money(float(then_usd)),
            escalations=dict(sorted(then_esc.items())),
            contacts=counted,
            automated=automated_then,
        ),
        simulated=Side(
            refunds=now_refunds,
            refunds_usd=_money(float(now_usd)),
            escalations=dict(sorted(now_esc.items())),
            contacts=counted,
            automated=automated_now,
        ),
        changed=changed,
    )


def _escalation_now(
    recorded: Sequence[RecordedDecision], now: Sequence[Verdict], outcome: RecordedContact | None
) -> str | None:
    """The contact's escalation under the new policy, for a contact with a changed decision.

    An escalation the policy did not cause (the customer asked for a person, a fraud report) stays. Otherwise
    the machine's decisions (not a person's, taken after the hand-over), in order, decide it: the first one
    refused now escalates with its reason, unless it was refused the same way then without escalating the
    contact (a refusal the tier answered). None refused now: the contact ends without a person.
    """
    then = outcome.escalation_reason if outcome is not None else None
    machine = [(d, v) for d, v in zip(recorded, now, strict=True) if d.actor != "human"]
    caused_by_policy = any(escalation_of(d.verdict, d.reason) == then for d, _ in machine)
    if then is not None and not caused_by_policy:
        return then
    for decision, verdict in machine:
        reason = escalation_of(verdict.kind, _reason(verdict))
        if reason is None:
            continue
        unchanged = (verdict.kind, _reason(verdict)) == (decision.verdict, decision.reason)
        if unchanged and reason != then:
            continue
        return reason
    return None


def render(report: SimulationReport) -> str:
    """The report as a table a person reads (``--json`` prints :meth:`SimulationReport.to_json`)."""
    cur, sim = report.current, report.simulated
    since = f" since {report.since:%Y-%m-%d %H:%M} UTC" if report.since else ""
    lines = [
        f"policy simulate: {report.decisions} recorded decisions on {cur.contacts} contacts{since}; "
        f"{report.decisions_changed} decided differently under policy version {report.new_policy_version}",
        "",
        f"{'':<28}{'current':>12}{'simulated':>12}{'change':>12}",
        f"{'refunds':<28}{cur.refunds:>12}{sim.refunds:>12}{sim.refunds - cur.refunds:>+12}",
        f"{'refunds (USD)':<28}{cur.refunds_usd:>12.2f}{sim.refunds_usd:>12.2f}"
        f"{sim.refunds_usd - cur.refunds_usd:>+12.2f}",
        f"{'automated rate':<28}{cur.automated_rate:>12.1%}{sim.automated_rate:>12.1%}"
        f"{(sim.automated_rate - cur.automated_rate) * 100:>+11.1f}pt",
        "escalations by reason",
    ]
    reasons = sorted(set(cur.escalations) | set(sim.escalations))
    for reason in reasons:
        a, b = cur.escalations.get(reason, 0), sim.escalations.get(reason, 0)
        lines.append(f"  {reason:<26}{a:>12}{b:>12}{b - a:>+12}")
    if not reasons:
        lines.append("  (none)")
    lines.append("")
    lines.append(f"contacts whose decision changed: {len(report.changed)}")
    for contact in report.changed:
        mark = " *" if contact.cascaded else ""
        lines.append(
            f"  {contact.contact_id} ({contact.customer_id}): escalation "
            f"{contact.escalation_then or '-'} -> {contact.escalation_now or '-'}{mark}"
        )
        for d in contact.decisions:
            then = d.then_verdict + (f" {d.then_reason}" if d.then_reason else "")
            now = d.now_verdict + (f" {d.now_reason}" if d.now_reason else "")
            lines.append(
                f"      {d.action} {d.target or '-'} ${d.amount_usd:.2f} by {d.actor}: {then} -> {now} "
                f"[{d.now_rule}]"
            )
    if any(c.cascaded for c in report.changed):
        lines.append(
            "  * the verdict changed between allowed and refused: later steps of the contact not simulated"
        )
    lines.append("")
    lines.append(f"note: {report.note}")
    return "\n".join(lines)


__all__ = [
    "ContactChange",
    "DecisionChange",
    "RecordedContact",
    "RecordedDecision",
    "SimulateError",
    "SimulationReport",
    "escalation_of",
    "parse_since",
    "render",
    "simulate",
]
