"""What the notifier says about an account change (``billing.change.recorded.v1``), and to whom: pure
decisions, no I/O. The customer's email ("a teammate changed your billing email") and the support team's
Slack message are written here; ``change_handlers.py`` sends them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas.messages import BillingChangeRecordedPayload

CHANNELS = ("email", "slack")
DEFAULT_CHANNELS: tuple[str, ...] = ("email", "slack")

_WHAT = {
    "billing_email": "billing email",
    "company_details": "company details on your invoices",
    "tax_id": "VAT / tax id",
    "plan": "plan",
    "cancellation": "subscription",
    "card": "default card",
}
_FIELD = {
    "email": "Billing email",
    "name": "Company name",
    "address": "Address",
    "tax_ids": "Tax ids",
    "card": "Card",
    "plan": "Plan",
    "seats": "Seats",
    "monthly_usd": "Monthly price",
    "cancel_at_period_end": "Cancels at period end",
    "ends_at": "Ends on",
    "status": "Status",
}


def channels_for(change: str, configured: Mapping[str, list[str]]) -> list[str]:
    """The channels configured for a kind of change (unknown channel names are ignored)."""
    chosen = configured.get(change, list(DEFAULT_CHANNELS))
    return [c for c in dict.fromkeys(chosen) if c in CHANNELS]


def who(actor: str, actor_kind: str) -> str:
    """Who made the change, in the customer's words."""
    if actor_kind == "selfheal":
        return "someone on your team, in the billing portal"
    if actor_kind == "human":
        return f"our billing team ({actor.split(':', 1)[-1]})"
    if actor_kind == "ai":
        return "our billing assistant, as you asked"
    return "our billing system"


def show(value: Any) -> str:
    if value in (None, "", [], {}):
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"${value:,.2f}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(str(v) for v in value.values() if v)
    return str(value)


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field label, before, after) for each field that changed."""
    rows = []
    for key in dict.fromkeys([*after, *before]):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        label = _FIELD.get(key, key.replace("_", " ").capitalize())
        if key == "monthly_usd":
            rows.append((label, show(float(old or 0)), show(float(new or 0))))
        else:
            rows.append((label, show(old), show(new)))
    return rows


@dataclass(frozen=True)
class Notice:
    subject: str
    body: str


def customer_email(p: BillingChangeRecordedPayload) -> Notice:
    """The email to the customer's billing address(es)."""
    by = who(p.actor, p.actor_kind)
    when = p.changed_at.strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"- {label}: {old} → {new}" for label, old, new in differences(p.before, p.after)]
    if p.change == "cancellation":
        subject = "Your subscription is set to end"
        lead = f"Your subscription was set to end at the end of the current period by {by} on {when}."
    elif p.change == "billing_email":
        subject = "Your billing email was changed"
        lead = f"Your billing email was changed by {by} on {when}."
    else:
        subject = f"Your {_WHAT[p.change]} changed"
        lead = f"Your {_WHAT[p.change]} changed, by {by} on {when}."
    body = "\n".join(
        [
            lead,
            "",
            *lines,
            "",
            "If you or a teammate made this change, there is nothing to do. If not, reply to this email "
            "and a person on our billing team will look at it straight away.",
        ]
    )
    return Notice(subject, body)


def slack_message(p: BillingChangeRecordedPayload, customer_id: str) -> dict[str, Any]:
    """The support team's Slack message (incoming-webhook JSON)."""
    changes = "\n".join(f"• {label}: {old} → {new}" for label, old, new in differences(p.before, p.after))
    text = (
        f"*{_WHAT[p.change].capitalize()} changed* for `{customer_id}` by {p.actor} ({p.actor_kind}) "
        f"at {p.changed_at.strftime('%Y-%m-%d %H:%M UTC')}\n{changes}"
    )
    return {"text": text, "unfurl_links": False, "unfurl_media": False}
