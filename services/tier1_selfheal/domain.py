"""Tier 1 decisions, pure: who may ask, which fixes apply, what a request means, what happens after a fix.

No broker, database or Stripe here: every function takes values and returns values, so the tests can
hold the rules without any component running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import Action, EscalationReason, HealthStatus, Intent, RootCause
from schemas.messages import DiagnosisView, Sender
from tierline.actions import ActionOutcome
from tierline.billing.asks import (
    BillingDocument,
    MonthsAsked,
    documents_for,
    documents_from_evidence,
    months_asked,
)
from tierline.billing.vat import InvalidTaxId, TaxId, validate_tax_id
from tierline.language import localized_answer

# ----------------------------------------------------------------------------------------- vocabulary

#: What Tier 1 executes itself. Anything else that arrives on the topic is handed on (never dropped).
TIER1_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.RETRY_PAYMENT,
        Action.SEND_UPDATE_CARD_LINK,
        Action.REGENERATE_INVOICE_LINK,
        Action.SEND_INVOICE,
        Action.UPDATE_BILLING_DETAILS,
        Action.CANCEL_SUBSCRIPTION,
        Action.CHANGE_PLAN,
        Action.EXPLAIN_CHARGE,
    }
)

#: Actions that change the account as the customer asked: done is resolved, whatever the diagnosis says.
ACCOUNT_CHANGES: frozenset[Action] = frozenset(
    {
        Action.SEND_INVOICE,
        Action.UPDATE_BILLING_DETAILS,
        Action.CANCEL_SUBSCRIPTION,
        Action.CHANGE_PLAN,
    }
)

CARD_CAUSES = frozenset(
    {
        RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS,
        RootCause.CARD_DECLINED_SOFT,
        RootCause.CARD_DECLINED_HARD,
        RootCause.CARD_EXPIRED,
        RootCause.CARD_EXPIRING,
        RootCause.NO_PAYMENT_METHOD,
    }
)
SOFT_DECLINES = frozenset({RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, RootCause.CARD_DECLINED_SOFT})
#: Nothing to fix: a requested fix that succeeds on such an account resolves the contact.
BENIGN_CAUSES = frozenset({RootCause.HEALTHY, RootCause.REFUND_SUCCEEDED, RootCause.UNKNOWN})

#: Which root causes a successful diagnostic fix actually resolves (data, not code).
RESOLVES: dict[Action, frozenset[RootCause]] = {
    Action.SEND_UPDATE_CARD_LINK: CARD_CAUSES,
    Action.REGENERATE_INVOICE_LINK: frozenset({RootCause.INVOICE_LINK_EXPIRED}) | CARD_CAUSES,
    Action.EXPLAIN_CHARGE: frozenset(
        {
            RootCause.PAYMENT_PENDING,
            RootCause.REFUND_PENDING,
            RootCause.USAGE_OVERAGE,
            RootCause.CARD_EXPIRING,
        }
    ),
}

#: The intent an action stands for, when the request carries none (dashboard clicks).
ACTION_INTENT: dict[Action, Intent] = {
    Action.RETRY_PAYMENT: Intent.PAYMENT_FAILED,
    Action.SEND_UPDATE_CARD_LINK: Intent.CARD_EXPIRING,
    Action.REGENERATE_INVOICE_LINK: Intent.INVOICE_REQUEST,
    Action.SEND_INVOICE: Intent.INVOICE_REQUEST,
    Action.UPDATE_BILLING_DETAILS: Intent.UPDATE_BILLING_DETAILS,
    Action.CANCEL_SUBSCRIPTION: Intent.CANCEL_SUBSCRIPTION,
    Action.CHANGE_PLAN: Intent.PLAN_CHANGE,
    Action.EXPLAIN_CHARGE: Intent.PAYMENT_PENDING,
    Action.ESCALATE: Intent.HUMAN_AGENT,
}

# ----------------------------------------------------------------------------------------- tenant check


@dataclass(frozen=True)
class Authorization:
    allowed: bool
    reason: str


def authorize(source: str, sender: Sender, customer_id: str) -> Authorization:
    """May this sender act on ``customer_id``? (the router already checked what it forwards)."""
    if source == "router":
        return Authorization(True, "checked by the router")
    if sender.kind in ("system", "agent"):
        return Authorization(True, f"{sender.kind} sender")
    if sender.kind == "customer_session":
        if sender.subject and sender.subject == customer_id:
            return Authorization(True, "own account")
        return Authorization(False, f"session for {sender.subject or 'nobody'} may not act on {customer_id}")
    return Authorization(False, f"a {sender.kind} sender cannot use 1-click fixes; verify identity first")


# ----------------------------------------------------------------------------------------- fixes offered


@dataclass(frozen=True)
class Fix:
    action: Action
    label: str
    description: str
    primary: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "label": self.label,
            "description": self.description,
            "primary": self.primary,
            "params": self.params,
        }


TALK_TO_HUMAN = Fix(
    Action.ESCALATE,
    "Talk to a human",
    "A person from our billing team takes over, with everything we know so far.",
)


def fixes_for(diagnosis: DiagnosisView) -> list[Fix]:
    """The 1-click fixes that apply to this diagnosis, best first; "talk to a human" is always last."""
    cause = diagnosis.root_cause
    invoice = diagnosis.evidence.get("invoice") or {}
    inv_params = {"invoice_id": invoice["id"]} if invoice.get("id") else {}
    amount = invoice.get("amount_due_usd")
    amount_text = f" of ${float(amount):,.2f}" if amount else ""
    fixes: list[Fix] = []
    if cause in SOFT_DECLINES:
        fixes.append(
            Fix(
                Action.RETRY_PAYMENT,
                "Retry payment",
                f"Try the payment{amount_text} again now.",
                True,
                inv_params,
            )
        )
        fixes.append(
            Fix(Action.SEND_UPDATE_CARD_LINK, "Update card", "Get a secure link to use another card.")
        )
    elif cause in (RootCause.CARD_DECLINED_HARD, RootCause.CARD_EXPIRED, RootCause.NO_PAYMENT_METHOD):
        fixes.append(
            Fix(
                Action.SEND_UPDATE_CARD_LINK,
                "Update card",
                "Get a secure link to put in a new card; we retry the payment once it is saved.",
                True,
            )
        )
    elif cause is RootCause.CARD_EXPIRING:
        fixes.append(
            Fix(
                Action.SEND_UPDATE_CARD_LINK,
                "Update card",
                "Put in your new card before this one expires.",
                True,
            )
        )
    elif cause is RootCause.INVOICE_LINK_EXPIRED:
        fixes.append(
            Fix(
                Action.REGENERATE_INVOICE_LINK,
                "Get a new payment link",
                f"A fresh link to pay the invoice{amount_text}.",
                True,
                inv_params,
            )
        )
    elif cause in (
        RootCause.PAYMENT_PENDING,
        RootCause.REFUND_PENDING,
        RootCause.REFUND_SUCCEEDED,
        RootCause.USAGE_OVERAGE,
    ):
        fixes.append(
            Fix(Action.EXPLAIN_CHARGE, "Explain this", "A plain explanation with the figures.", True)
        )
    elif cause is RootCause.SEATS_OVER_PLAN:
        fixes.append(
            Fix(
                Action.CHANGE_PLAN,
                "Preview a larger plan",
                "See what a plan that covers your seats would cost, before changing anything.",
                True,
                {"preview_only": True},
            )
        )
    if (
        invoice.get("id")
        and cause not in (RootCause.DISPUTE_OPEN, RootCause.CARD_DECLINED_FRAUD)
        and all(f.action is not Action.REGENERATE_INVOICE_LINK for f in fixes)
        and cause not in SOFT_DECLINES
    ):
        fixes.append(
            Fix(
                Action.REGENERATE_INVOICE_LINK,
                "Pay by link",
                f"A link to pay the invoice{amount_text}.",
                False,
                inv_params,
            )
        )
    if not diagnosis.self_serve_eligible and cause not in BENIGN_CAUSES:
        # blocked states (dispute, fraud, missing subscription): no 1-click fix, a person takes over
        fixes = []
    fixes.append(TALK_TO_HUMAN)
    return fixes


# ----------------------------------------------------------------------------------------- requests


class InvalidFixRequest(ValueError):
    """The request's parameters are malformed (nothing was changed)."""


@dataclass(frozen=True)
class FixRequest:
    action: Action
    invoice_id: str | None = None
    charge_id: str | None = None
    email: str | None = None
    name: str | None = None
    address: dict[str, str] | None = None
    tax_id: TaxId | None = None
    plan: str | None = None
    seats: int | None = None
    preview_only: bool = False


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_ID = re.compile(r"[A-Za-z0-9_\-]{1,100}")
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")
PARAMS: dict[Action, frozenset[str]] = {
    Action.RETRY_PAYMENT: frozenset({"invoice_id"}),
    Action.REGENERATE_INVOICE_LINK: frozenset({"invoice_id"}),
    Action.SEND_INVOICE: frozenset({"invoice_id"}),
    Action.SEND_UPDATE_CARD_LINK: frozenset(),
    Action.EXPLAIN_CHARGE: frozenset({"charge_id"}),
    Action.UPDATE_BILLING_DETAILS: frozenset(
        {"billing_email", "email", "company_name", "name", "address", "tax_id", "tax_id_country"}
    ),
    Action.CANCEL_SUBSCRIPTION: frozenset({"reason"}),
    Action.CHANGE_PLAN: frozenset({"plan", "seats", "preview_only"}),
    Action.ESCALATE: frozenset({"text"}),
}


def _opt_id(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidFixRequest(f"{key} must be an id like in_123")
    return value


def _opt_text(params: dict[str, Any], *keys: str, limit: int = 200) -> str | None:
    for key in keys:
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidFixRequest(f"{key} must be non-empty text of at most {limit} characters")
        return value.strip()
    return None


def parse_fix(action: Action, params: dict[str, Any]) -> FixRequest:
    """Validate a request's params for its action (unknown keys, bad ids, bad emails, bad tax ids)."""
    allowed = PARAMS.get(action)
    if allowed is None:
        raise InvalidFixRequest(f"{action.value} is not a Tier 1 fix")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidFixRequest(f"unexpected parameter(s) for {action.value}: {', '.join(unknown)}")
    if action in (Action.RETRY_PAYMENT, Action.REGENERATE_INVOICE_LINK, Action.SEND_INVOICE):
        return FixRequest(action, invoice_id=_opt_id(params, "invoice_id"))
    if action is Action.EXPLAIN_CHARGE:
        return FixRequest(action, charge_id=_opt_id(params, "charge_id"))
    if action is Action.UPDATE_BILLING_DETAILS:
        return _billing_details(params)
    if action is Action.CHANGE_PLAN:
        return _plan_change(params)
    return FixRequest(action)


def _billing_details(params: dict[str, Any]) -> FixRequest:
    email = _opt_text(params, "billing_email", "email")
    if email is not None and not _EMAIL.fullmatch(email):
        raise InvalidFixRequest(f"{email!r} is not an email address")
    name = _opt_text(params, "company_name", "name")
    address: dict[str, str] | None = None
    if params.get("address") is not None:
        raw = params["address"]
        if not isinstance(raw, dict) or not raw:
            raise InvalidFixRequest("address must be an object with line1, city, postal_code, country ...")
        extra = sorted(set(raw) - set(ADDRESS_FIELDS))
        if extra:
            raise InvalidFixRequest(f"unexpected address field(s): {', '.join(extra)}")
        address = {}
        for key, value in raw.items():
            if not isinstance(value, str) or len(value) > 200:
                raise InvalidFixRequest(f"address.{key} must be text of at most 200 characters")
            address[key] = value.strip()
        if "country" in address:
            address["country"] = address["country"].upper()
            if not re.fullmatch(r"[A-Z]{2}", address["country"]):
                raise InvalidFixRequest("address.country must be a two-letter country code (e.g. DE)")
    tax_id: TaxId | None = None
    if params.get("tax_id") not in (None, ""):
        if not isinstance(params["tax_id"], str):
            raise InvalidFixRequest("tax_id must be text")
        country = params.get("tax_id_country") or (address or {}).get("country")
        try:
            tax_id = validate_tax_id(params["tax_id"], country if isinstance(country, str) else None)
        except InvalidTaxId as exc:
            raise InvalidFixRequest(str(exc)) from exc
    if email is None and name is None and address is None and tax_id is None:
        raise InvalidFixRequest("nothing to update: give billing_email, company_name, address or tax_id")
    return FixRequest(Action.UPDATE_BILLING_DETAILS, email=email, name=name, address=address, tax_id=tax_id)


def _plan_change(params: dict[str, Any]) -> FixRequest:
    plan = _opt_text(params, "plan", limit=100)
    seats = params.get("seats")
    if seats is not None and (
        isinstance(seats, bool) or not isinstance(seats, int) or not 1 <= seats <= 10_000
    ):
        raise InvalidFixRequest("seats must be a whole number between 1 and 10000")
    preview = params.get("preview_only", False)
    if not isinstance(preview, bool):
        raise InvalidFixRequest("preview_only must be true or false")
    if plan is None and seats is None:
        if preview:
            return FixRequest(Action.CHANGE_PLAN, preview_only=True)
        raise InvalidFixRequest("give the plan (e.g. pro) and/or seats")
    return FixRequest(Action.CHANGE_PLAN, plan=plan, seats=seats, preview_only=preview)


def period_invoices(
    text: str | None, diagnosis: DiagnosisView | None, now: datetime
) -> tuple[MonthsAsked, tuple[BillingDocument, ...]] | None:
    """The invoices of the period the customer's words name ("the invoice for October", "Q3"), oldest
    first; ``None`` when they name no period (the latest invoice is meant). An empty tuple: none on record."""
    asked = months_asked(text, now) if text else None
    if asked is None:
        return None
    documents = documents_from_evidence(diagnosis.evidence if diagnosis is not None else {})
    return asked, documents_for(asked, documents, now)


def suggested_plan(diagnosis: DiagnosisView | None) -> tuple[str | None, int | None]:
    """For a preview without a plan: the next tier up, sized for the seats in use."""
    order = ["starter", "pro", "business", "enterprise"]
    plan = (diagnosis.evidence.get("plan") if diagnosis else None) or {}
    tier = plan.get("tier")
    seats = plan.get("seats")
    if tier in order and order.index(tier) < len(order) - 2:
        return order[order.index(tier) + 1], seats
    return tier, seats


# ----------------------------------------------------------------------------------------- after a fix


@dataclass(frozen=True)
class Resolve:
    summary: str
    recovered_usd: float = 0.0


@dataclass(frozen=True)
class HandToTier2:
    reason: str


@dataclass(frozen=True)
class EscalateToHuman:
    reason: EscalationReason
    next_step: str


Decision = Resolve | HandToTier2 | EscalateToHuman

HARD_STOPS = frozenset({EscalationReason.FRAUD, EscalationReason.DISPUTE})


def decide_after_fix(
    outcome: ActionOutcome, diagnosis: DiagnosisView | None, *, retention_offer: str = ""
) -> Decision:
    """Resolved at Tier 1, handed to Tier 2 with what was tried, or straight to a person."""
    action = outcome.action
    if outcome.status == "needs_human":
        reason = outcome.escalation_reason or EscalationReason.POLICY_DENIED
        return EscalateToHuman(
            reason, f"Policy requires a person for {action.value}: {outcome.detail}".strip()
        )
    if outcome.status == "denied":
        if outcome.escalation_reason in HARD_STOPS:
            assert outcome.escalation_reason is not None
            return EscalateToHuman(
                outcome.escalation_reason,
                f"{action.value} was blocked ({outcome.escalation_reason.value}): "
                f"{outcome.detail}. No financial action may be taken.",
            )
        return HandToTier2(f"policy denied {action.value}: {outcome.detail}".strip())
    if outcome.status == "failed":
        return HandToTier2(f"{action.value} failed: {outcome.detail}".strip())
    cause = diagnosis.root_cause if diagnosis is not None else RootCause.UNKNOWN
    if action is Action.RETRY_PAYMENT:
        return Resolve(summarize(outcome, diagnosis, retention_offer), recovered_usd(outcome, diagnosis))
    if action in ACCOUNT_CHANGES or cause in BENIGN_CAUSES or cause in RESOLVES.get(action, frozenset()):
        return Resolve(summarize(outcome, diagnosis, retention_offer))
    return HandToTier2(
        f"{action.value} succeeded but does not resolve {cause.value}: "
        f"{diagnosis.explanation if diagnosis else ''}".strip()
    )


# The customer's language: the sentence key in ``tierline.language.ANSWERS`` for each fix.
ANSWER_KEYS: dict[Action, str] = {
    Action.SEND_INVOICE: "invoice_sent",
    Action.SEND_UPDATE_CARD_LINK: "card_link_sent",
    Action.RETRY_PAYMENT: "payment_retried",
    Action.REGENERATE_INVOICE_LINK: "invoice_link_sent",
    Action.CANCEL_SUBSCRIPTION: "subscription_cancelled",
    Action.UPDATE_BILLING_DETAILS: "billing_details_updated",
}


def localize_decision(
    decision: Decision, outcome: ActionOutcome, diagnosis: DiagnosisView | None, language: str | None
) -> Decision:
    """A resolved common fix summarised in the customer's language (es/de/fr/pt); otherwise unchanged."""
    key = ANSWER_KEYS.get(outcome.action)
    if not isinstance(decision, Resolve) or key is None or outcome.data.get("already_paid"):
        return decision
    amount = recovered_usd(outcome, diagnosis) if outcome.action is Action.RETRY_PAYMENT else 0.0
    text = localized_answer(key, language, amount=f"${amount:,.2f}" if amount else None)
    return decision if text is None else Resolve(text, decision.recovered_usd)


def summarize_in(outcome: ActionOutcome, diagnosis: DiagnosisView | None, language: str | None) -> str:
    """``summarize`` in the customer's language where a template exists, else in English."""
    english = Resolve(summarize(outcome, diagnosis))
    localized = localize_decision(english, outcome, diagnosis, language)
    return localized.summary if isinstance(localized, Resolve) else english.summary


def recovered_usd(outcome: ActionOutcome, diagnosis: DiagnosisView | None) -> float:
    """Money a retry actually collected (nothing when the invoice was already paid)."""
    if outcome.action is not Action.RETRY_PAYMENT or not outcome.ok or outcome.data.get("already_paid"):
        return 0.0
    if "recovered_usd" in outcome.data:
        return round(float(outcome.data["recovered_usd"] or 0.0), 2)
    if outcome.amount_usd:
        return round(float(outcome.amount_usd), 2)
    if outcome.data.get("amount_cents"):
        return round(int(outcome.data["amount_cents"]) / 100, 2)
    invoice = (diagnosis.evidence.get("invoice") if diagnosis else None) or {}
    return round(float(invoice.get("amount_due_usd") or 0.0), 2)


def _money(cents: Any) -> str:
    return f"${int(cents or 0) / 100:,.2f}"


def summarize(outcome: ActionOutcome, diagnosis: DiagnosisView | None, retention_offer: str = "") -> str:
    """One plain sentence or two for the customer and the outcome record (no links, no card data)."""
    d, action = outcome.data, outcome.action
    target = outcome.target or d.get("invoice") or d.get("invoice_id") or ""
    if action is Action.RETRY_PAYMENT:
        if d.get("already_paid"):
            return f"Invoice {target} was already paid; nothing more was charged.".replace("  ", " ")
        amount = recovered_usd(outcome, diagnosis)
        return f"Payment of ${amount:,.2f} for invoice {target} went through. Thank you!".replace("  ", " ")
    if action is Action.SEND_UPDATE_CARD_LINK:
        return (
            "We sent you a secure link to update your card. Once the new card is saved we retry the payment."
        )
    if action is Action.REGENERATE_INVOICE_LINK:
        return f"We sent you a fresh link to pay invoice {target}; it is valid for 30 days.".replace(
            "  ", " "
        )
    if action is Action.SEND_INVOICE:
        return f"We sent you invoice {target} (PDF and online copy).".replace("  ", " ")
    if action is Action.UPDATE_BILLING_DETAILS:
        return "Your billing details were updated; they appear on your next invoice."
    if action is Action.CANCEL_SUBSCRIPTION:
        end = d.get("current_period_end") or (
            (diagnosis.evidence.get("subscription") or {}).get("current_period_end") if diagnosis else None
        )
        when = f" on {_date(end)}" if end else " at the end of the current period"
        text = f"Your subscription is set to end{when}; you keep full access until then."
        return f"{text} {retention_offer}".strip()
    if action is Action.CHANGE_PLAN:
        found = [d[k] for k in ("preview", "proration") if isinstance(d.get(k), dict)]
        pr: dict[str, Any] = found[0] if found else d
        plan = d.get("plan") or pr.get("new_plan_id") or "the new plan"
        seats = pr.get("new_seats") or d.get("seats")
        what = f"{plan}" + (f" with {seats} seat{'' if seats == 1 else 's'}" if seats else "")
        figures = ""
        if "net_cents" in pr:
            figures = (
                f" Proration: credit {_money(pr.get('credit_cents'))} for unused time, charge "
                f"{_money(pr.get('charge_cents'))} for the rest of the period, net {_money(pr['net_cents'])} "
                "on the next invoice."
            )
        if d.get("preview_only") or "preview" in outcome.detail:
            return f"Preview of moving to {what}: nothing has changed yet.{figures}"
        return f"Your plan is now {what}.{figures}"
    if action is Action.EXPLAIN_CHARGE:
        return str(d.get("explanation") or (diagnosis.explanation if diagnosis else outcome.detail))
    return outcome.detail or f"{action.value} done."


def _date(value: Any) -> str:
    from datetime import UTC, datetime

    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC).strftime("%d %b %Y")
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%d %b %Y")
    except (ValueError, OSError, OverflowError):
        return str(value)


def health_colour(diagnosis: DiagnosisView) -> HealthStatus:
    return diagnosis.status


def human_next_step(diagnosis: DiagnosisView | None) -> str:
    base = "The customer asked for a person from the Billing Health Meter: reply personally."
    if diagnosis is not None and diagnosis.root_cause is not RootCause.HEALTHY:
        base += f" Diagnosis: {diagnosis.root_cause.value} — {diagnosis.explanation}"
    return base


# ----------------------------------------------------------------------------------------- honest status
@dataclass(frozen=True)
class HumanCaseStatus:
    """What the customer's pages say about a request a person holds: the truth from the case."""

    state: str  # "with_human" while the case is open or claimed, "resolved" once a person resolved it
    title: str
    detail: str


def human_case_status(
    case_status: str, *, sla_due_at: datetime | None, resolution_note: str | None
) -> HumanCaseStatus:
    """An open case is never "resolved": a person is on it, with the time they answer by (the case's SLA);
    a resolved case says so with the person's note."""
    if case_status == "resolved":
        note = (resolution_note or "").strip()
        return HumanCaseStatus(
            "resolved", "Resolved by our billing team", note or "A person on our billing team resolved this."
        )
    by = f"; expect an answer by {_sla(sla_due_at)}" if sla_due_at is not None else ""
    return HumanCaseStatus(
        "with_human", "A person is on it", f"A person on our billing team is looking at this{by}."
    )


def _sla(when: datetime) -> str:
    """e.g. "3 Dec 2026, 18:47 UTC" (a naive time is taken as UTC)."""
    from datetime import UTC

    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return f"{utc.day} {utc:%b %Y, %H:%M} UTC"
