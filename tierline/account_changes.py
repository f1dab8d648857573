"""Changes to a customer's account (billing email, company details, VAT id, plan, cancellation, card):
what each ledgered change records (before → after, who), the ``billing.change.recorded.v1`` event the
executor publishes once it succeeded, and the audit timeline read back from the action ledger.

The executor (``tierline/actions.py``) stores ``before``/``after``/``changed_by`` in the action's ledger
result and publishes the event under an id derived from the ledger key, so a redelivered request (which
replays the ledger) republishes the identical event and the notifier's inbox skips it: one change, one
email and one Slack message. The timeline reads the ledger only: nothing else to keep in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from schemas import Action, derived_id
from schemas.messages import BillingChangeRecordedPayload, BillingChangeRecordedV1

if TYPE_CHECKING:
    import asyncpg
    from faststream.kafka import KafkaBroker

    from tierline.actions import ActionContext

log = structlog.get_logger(__name__)

CHANGE_ACTIONS = frozenset({Action.UPDATE_BILLING_DETAILS, Action.CHANGE_PLAN, Action.CANCEL_SUBSCRIPTION})
#: the kinds of change, in the order one event names them when a request changed several things at once
CHANGE_KINDS = ("billing_email", "tax_id", "company_details", "card", "plan", "cancellation")
_ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")


def _address(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {k: str(value[k]) for k in _ADDRESS_FIELDS if value.get(k)}


def _tax_ids(customer: Mapping[str, Any]) -> list[str]:
    raw = customer.get("tax_ids") or {}
    items = raw.get("data", []) if isinstance(raw, Mapping) else raw
    return sorted(str(t.get("value")) for t in items if isinstance(t, Mapping) and t.get("value"))


def _card_label(card: Mapping[str, Any] | None) -> str | None:
    if not card:
        return None
    return f"{str(card.get('brand') or 'card').title()} ending {card.get('last4') or '?'}"


def details_change(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    changed: Iterable[str],
    *,
    previous_card: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``before``/``after`` of a billing-details change, from the Stripe customer read before and after it
    (only the fields asked to change; card numbers never appear, only brand and last four)."""
    fields = set(changed)
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    if "email" in fields:
        old["email"], new["email"] = before.get("email"), after.get("email")
    if "name" in fields:
        old["name"], new["name"] = before.get("name"), after.get("name")
    if "address" in fields:
        old["address"], new["address"] = _address(before.get("address")), _address(after.get("address"))
    if "tax_id" in fields:
        old["tax_ids"], new["tax_ids"] = _tax_ids(before), _tax_ids(after)
    if "payment_method" in fields:
        old["card"], new["card"] = _card_label(previous_card), _card_label(card)
    return {"before": old, "after": new}


def change_kind(action: Action, after: Mapping[str, Any]) -> str | None:
    """What kind of change a ledgered action made (None: not an account change)."""
    if action is Action.CHANGE_PLAN:
        return "plan"
    if action is Action.CANCEL_SUBSCRIPTION:
        return "cancellation"
    if action is Action.PRODUCT_ACTION:  # the product connector's actions (issue 23): team, API keys
        return str(after.get("product_action") or "product")
    if action is not Action.UPDATE_BILLING_DETAILS:
        return None
    if "email" in after:
        return "billing_email"
    if "tax_ids" in after:
        return "tax_id"
    if "name" in after or "address" in after:
        return "company_details"
    if "card" in after:
        return "card"
    return None


def changed_by(ctx: ActionContext) -> dict[str, str]:
    return {"actor": f"{ctx.tier.value}:{ctx.actor_id}", "actor_kind": ctx.actor}


def change_event(
    ctx: ActionContext, action: Action, key: str, result: Mapping[str, Any]
) -> BillingChangeRecordedV1 | None:
    """The event for a succeeded change, or None (not a change, a preview, or a result without before →
    after). Its id is derived from the ledger key: a replay publishes the same message."""
    after = result.get("after")
    if action not in CHANGE_ACTIONS or not isinstance(after, Mapping) or result.get("preview_only"):
        return None
    kind = change_kind(action, after)
    if kind is None:
        return None
    raw_before, raw_who = result.get("before"), result.get("changed_by")
    before: Mapping[str, Any] = raw_before if isinstance(raw_before, Mapping) else {}
    who: Mapping[str, Any] = raw_who if isinstance(raw_who, Mapping) else changed_by(ctx)
    notify = [a for a in (result.get("notify") or []) if isinstance(a, str) and "@" in a]
    if kind == "billing_email":  # the old address hears of it too: that is where a takeover shows
        notify = [*notify, str(before.get("email") or ""), str(after.get("email") or "")]
    actor_kind = who.get("actor_kind")
    changed_at = result.get("changed_at")
    return BillingChangeRecordedV1.build(
        BillingChangeRecordedPayload(
            change=kind,  # type: ignore[arg-type]
            action=action,
            actor=str(who.get("actor") or "system"),
            actor_kind=actor_kind if actor_kind in ("system", "ai", "selfheal", "human") else "system",
            changed_at=datetime.fromisoformat(changed_at)
            if isinstance(changed_at, str)
            else datetime.now(UTC),
            before=dict(before),
            after=dict(after),
            notify=list(dict.fromkeys(a for a in notify if "@" in a)),
            idempotency_key=key,
        ),
        contact_id=ctx.contact_id,
        customer_id=ctx.customer_id,
        cause=ctx.cause,
        message_id=derived_id("billing-change", key),
    )


def stamp(ctx: ActionContext, result: dict[str, Any], *, notify: Iterable[str | None] = ()) -> dict[str, Any]:
    """Add who and when (and the addresses to tell) to an effect's ledger result."""
    return {
        **result,
        "changed_by": changed_by(ctx),
        "changed_at": datetime.now(UTC).isoformat(),
        "notify": [a for a in notify if a],
    }


async def publish_change(
    broker: KafkaBroker, ctx: ActionContext, action: Action, key: str, result: Mapping[str, Any]
) -> None:
    from tierline.messaging import publish

    event = change_event(ctx, action, key, result)
    if event is None:
        return
    await publish(broker, event)
    log.info("account.change.recorded", change=event.payload.change, customer_id=ctx.customer_id)


# ----------------------------------------------------------------------------- the timeline
async def account_history(pool: asyncpg.Pool, customer_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The customer's account changes, newest first: who, when, what, before → after (the ledger)."""
    rows = await pool.fetch(
        """SELECT action, tier, actor, result, created_at, updated_at FROM action_ledger
           WHERE customer_id=$1 AND status='succeeded' AND action = ANY($2::text[])
             AND result ? 'after'
           ORDER BY updated_at DESC LIMIT $3""",
        customer_id,
        sorted(a.value for a in (*CHANGE_ACTIONS, Action.PRODUCT_ACTION)),
        limit,
    )
    out = []
    for row in rows:
        result = row["result"] if isinstance(row["result"], Mapping) else {}
        action = Action(row["action"])
        after = result.get("after") or {}
        who = result.get("changed_by") or {
            "actor": f"{row['tier']}:{row['actor']}",
            "actor_kind": row["actor"],
        }
        out.append(
            {
                "change": change_kind(action, after),
                "action": action.value,
                "who": who.get("actor"),
                "who_kind": who.get("actor_kind"),
                "when": result.get("changed_at") or row["updated_at"].isoformat(),
                "before": result.get("before") or {},
                "after": after,
            }
        )
    return out
