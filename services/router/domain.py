"""The router's pure decision: which tier a contact goes to, and why.

Two tables, read top to bottom, first match wins:

* ``ROUTING_TABLE`` maps (intent, confidence band, gate, diagnosis root cause) to a route;
* ``SELFHEAL_TABLE`` picks the Tier 1 action for a Tier 1 route from the intent and the diagnosis.
  A Tier 1 route with no executable action goes to Tier 2 instead (never a dead end).

No I/O here; see intents.md and scenarios.md for the behaviour the tables encode.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.messages import AgentRequestedV1, EscalationOpenedV1, SelfhealRequestedV1
from schemas.vocab import Action, EscalationReason, Intent, RootCause, Tier

TOPIC_BY_TIER: dict[Tier, str] = {
    Tier.TIER1: SelfhealRequestedV1.TOPIC,
    Tier.TIER2: AgentRequestedV1.TOPIC,
    Tier.TIER3: EscalationOpenedV1.TOPIC,
}
REPEAT_CONTACT_LIMIT = 3  # this many contacts in 7 days: self-heal has not worked, skip Tier 1

MONEY_INTENTS: frozenset[Intent] = frozenset(
    {
        Intent.REFUND_REQUEST,
        Intent.DUPLICATE_CHARGE,
        Intent.PAYMENT_FAILED,
        Intent.UNRECOGNIZED_CHARGE,
        Intent.UNEXPECTED_CHARGE,
    }
)
TIER1_INTENTS: frozenset[Intent] = frozenset(
    {
        Intent.PAYMENT_FAILED,
        Intent.CARD_EXPIRING,
        Intent.PAYMENT_PENDING,
        Intent.INVOICE_REQUEST,
        Intent.UPDATE_BILLING_DETAILS,
        Intent.CANCEL_SUBSCRIPTION,
        Intent.PLAN_CHANGE,
        Intent.REFUND_STATUS,
    }
)
TIER2_INTENTS: frozenset[Intent] = frozenset(
    {
        Intent.UNRECOGNIZED_CHARGE,
        Intent.UNEXPECTED_CHARGE,
        Intent.DUPLICATE_CHARGE,
        Intent.REFUND_REQUEST,
        Intent.PAYMENT_METHODS_QUESTION,
    }
)
# An expired pay-invoice link is fixed by a fresh link whatever payment-side intent the text was
# read as; cancel / plan change / refund status keep their own action.
LINK_INTENTS: frozenset[Intent] = frozenset(
    {
        Intent.PAYMENT_FAILED,
        Intent.PAYMENT_PENDING,
        Intent.INVOICE_REQUEST,
        Intent.CARD_EXPIRING,
        Intent.UPDATE_BILLING_DETAILS,
        Intent.PAYMENT_METHODS_QUESTION,
    }
)
SOFT_DECLINES: frozenset[RootCause] = frozenset(
    {RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS, RootCause.CARD_DECLINED_SOFT}
)
NEEDS_NEW_CARD: frozenset[RootCause] = frozenset(
    {RootCause.CARD_DECLINED_HARD, RootCause.CARD_EXPIRED, RootCause.NO_PAYMENT_METHOD}
)
NO_SUBSCRIPTION: frozenset[RootCause] = frozenset(
    {RootCause.SUBSCRIPTION_MISSING, RootCause.SUBSCRIPTION_CANCELED}
)
ALL_INTENTS: frozenset[Intent] = frozenset(Intent)
IN_SCOPE_INTENTS: frozenset[Intent] = ALL_INTENTS - {Intent.OUT_OF_SCOPE}


class Gates(BaseModel):
    """What the router knows about the sender and the account before deciding."""

    model_config = ConfigDict(frozen=True)

    customer_found: bool
    sender_authorized: bool
    plan: str | None = None
    dispute_open: bool = False
    fraud_signal: bool = False
    repeat_contacts_7d: int = 0
    enterprise: bool = False


NEUTRAL_GATES = Gates(customer_found=True, sender_authorized=True)


class RouteDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    tier: Tier
    topic: str
    reason: str
    escalation_reason: EscalationReason | None = None
    selfheal_action: Action | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RouteDecision:
        if self.topic != TOPIC_BY_TIER.get(self.tier):
            raise ValueError(f"topic {self.topic!r} does not belong to {self.tier}")
        if (self.tier is Tier.TIER3) != (self.escalation_reason is not None):
            raise ValueError("an escalation reason is given exactly when the route is tier3")
        if (self.tier is Tier.TIER1) != (self.selfheal_action is not None):
            raise ValueError("a self-heal action is given exactly when the route is tier1")
        return self


class Band(StrEnum):
    HIGH = "high"  # confidence >= threshold
    LOW = "low"  # confidence < threshold
    ANY = "any"


class Gate(StrEnum):
    """Named conditions on ``Gates`` and the diagnosis a routing row may require."""

    UNVERIFIED = "unverified"  # unknown customer or sender not authorised for the account
    FRAUD_SIGNAL = "fraud_signal"
    DISPUTE_OPEN = "dispute_open"
    ENTERPRISE = "enterprise"
    REPEAT_CONTACTS = "repeat_contacts"
    INVOICE_LINK_EXPIRED = "invoice_link_expired"  # from the diagnosis


GATE_CHECKS: dict[Gate, Callable[[Gates, RootCause | None], bool]] = {
    Gate.UNVERIFIED: lambda g, _rc: not (g.customer_found and g.sender_authorized),
    Gate.FRAUD_SIGNAL: lambda g, rc: g.fraud_signal or rc is RootCause.CARD_DECLINED_FRAUD,
    Gate.DISPUTE_OPEN: lambda g, rc: g.dispute_open or rc is RootCause.DISPUTE_OPEN,
    Gate.ENTERPRISE: lambda g, _rc: g.enterprise or (g.plan or "").lower() == "enterprise",
    Gate.REPEAT_CONTACTS: lambda g, _rc: g.repeat_contacts_7d >= REPEAT_CONTACT_LIMIT,
    Gate.INVOICE_LINK_EXPIRED: lambda _g, rc: rc is RootCause.INVOICE_LINK_EXPIRED,
}


class RouteRule(BaseModel):
    """One row of the routing table; ``None`` / ``Band.ANY`` mean "any"."""

    model_config = ConfigDict(frozen=True)

    name: str
    intents: frozenset[Intent]
    band: Band
    gate: Gate | None
    tier: Tier
    escalation_reason: EscalationReason | None = None


def _rule(
    name: str,
    intents: frozenset[Intent],
    band: Band,
    gate: Gate | None,
    tier: Tier,
    reason: EscalationReason | None = None,
) -> RouteRule:
    return RouteRule(name=name, intents=intents, band=band, gate=gate, tier=tier, escalation_reason=reason)


T1, T2, T3 = Tier.TIER1, Tier.TIER2, Tier.TIER3
ER = EscalationReason

ROUTING_TABLE: tuple[RouteRule, ...] = (
    # _rule(name, intents, confidence band, gate, tier, escalation reason) — first match wins
    _rule("customer_asked", frozenset({Intent.HUMAN_AGENT}), Band.HIGH, None, T3, ER.CUSTOMER_ASKED),
    _rule("policy_denied", ALL_INTENTS, Band.ANY, Gate.UNVERIFIED, T3, ER.POLICY_DENIED),
    _rule("fraud_signal", ALL_INTENTS, Band.ANY, Gate.FRAUD_SIGNAL, T3, ER.FRAUD),
    _rule("fraud_reported", frozenset({Intent.FRAUD_COMPROMISED}), Band.HIGH, None, T3, ER.FRAUD),
    _rule("dispute_open", MONEY_INTENTS, Band.ANY, Gate.DISPUTE_OPEN, T3, ER.DISPUTE),
    _rule("out_of_scope", frozenset({Intent.OUT_OF_SCOPE}), Band.HIGH, None, T3, ER.OUT_OF_SCOPE),
    _rule("low_confidence", ALL_INTENTS, Band.LOW, None, T2),
    _rule("enterprise_money", MONEY_INTENTS, Band.HIGH, Gate.ENTERPRISE, T2),
    _rule("repeat_contacts", TIER1_INTENTS, Band.HIGH, Gate.REPEAT_CONTACTS, T2),
    _rule("invoice_link", LINK_INTENTS, Band.HIGH, Gate.INVOICE_LINK_EXPIRED, T1),
    _rule("selfheal", TIER1_INTENTS, Band.HIGH, None, T1),
    _rule("agent", TIER2_INTENTS, Band.HIGH, None, T2),
)
FALLBACK_RULE = _rule("fallback", ALL_INTENTS, Band.ANY, None, T2)


class SelfhealRule(BaseModel):
    """One row of the Tier 1 action table; ``root_causes=None`` means any (including no diagnosis).

    ``action=None`` with ``use_recommended`` picks the diagnosis' recommended action when it is in
    ``allowed``; ``action=None`` alone means "nothing Tier 1 can execute".
    """

    model_config = ConfigDict(frozen=True)

    intents: frozenset[Intent]
    root_causes: frozenset[RootCause] | None
    action: Action | None
    use_recommended: bool = False
    allowed: frozenset[Action] = frozenset()


def _heal(
    intents: frozenset[Intent] | Intent,
    root_causes: frozenset[RootCause] | RootCause | None,
    action: Action | None,
    *,
    allowed: frozenset[Action] = frozenset(),
) -> SelfhealRule:
    return SelfhealRule(
        intents=intents if isinstance(intents, frozenset) else frozenset({intents}),
        root_causes=frozenset({root_causes}) if isinstance(root_causes, RootCause) else root_causes,
        action=action,
        use_recommended=bool(allowed),
        allowed=allowed,
    )


PAY_FIX_ACTIONS = frozenset(
    {Action.RETRY_PAYMENT, Action.SEND_UPDATE_CARD_LINK, Action.REGENERATE_INVOICE_LINK}
)
I = Intent  # noqa: E741 - table shorthand
RC = RootCause

SELFHEAL_TABLE: tuple[SelfhealRule, ...] = (
    # _heal(intents, root causes (None = any), action) — first match wins
    _heal(LINK_INTENTS, RC.INVOICE_LINK_EXPIRED, Action.REGENERATE_INVOICE_LINK),
    _heal(I.PAYMENT_FAILED, SOFT_DECLINES, Action.RETRY_PAYMENT),
    _heal(I.PAYMENT_FAILED, NEEDS_NEW_CARD, Action.SEND_UPDATE_CARD_LINK),
    _heal(I.PAYMENT_FAILED, None, None, allowed=PAY_FIX_ACTIONS),  # else: the diagnosis' recommendation
    _heal(I.CARD_EXPIRING, None, Action.SEND_UPDATE_CARD_LINK),
    _heal(I.PAYMENT_PENDING, None, Action.EXPLAIN_CHARGE),
    _heal(I.INVOICE_REQUEST, None, Action.SEND_INVOICE),
    _heal(I.UPDATE_BILLING_DETAILS, None, Action.UPDATE_BILLING_DETAILS),
    _heal(frozenset({I.CANCEL_SUBSCRIPTION, I.PLAN_CHANGE}), NO_SUBSCRIPTION, None),  # nothing to change
    _heal(I.CANCEL_SUBSCRIPTION, None, Action.CANCEL_SUBSCRIPTION),
    _heal(I.PLAN_CHANGE, None, Action.CHANGE_PLAN),
    _heal(I.REFUND_STATUS, None, Action.EXPLAIN_CHARGE),
)


def band_of(confidence: float, threshold: float) -> Band:
    return Band.HIGH if confidence >= threshold else Band.LOW


def _matches(rule: RouteRule, intent: Intent, band: Band, gates: Gates, root_cause: RootCause | None) -> bool:
    return (
        intent in rule.intents
        and rule.band in (Band.ANY, band)
        and (rule.gate is None or GATE_CHECKS[rule.gate](gates, root_cause))
    )


def select_route_rule(
    intent: Intent, confidence: float, gates: Gates, root_cause: RootCause | None, threshold: float
) -> RouteRule:
    band = band_of(confidence, threshold)
    return next((r for r in ROUTING_TABLE if _matches(r, intent, band, gates, root_cause)), FALLBACK_RULE)


def select_selfheal_action(
    intent: Intent, root_cause: RootCause | None, recommended_action: Action | None
) -> Action | None:
    """The Tier 1 action for ``intent`` given the diagnosis, or ``None`` when Tier 1 cannot act."""
    for row in SELFHEAL_TABLE:
        if intent not in row.intents:
            continue
        if row.root_causes is not None and root_cause not in row.root_causes:
            continue
        if row.use_recommended:
            return recommended_action if recommended_action in row.allowed else None
        return row.action
    return None


def decide_route(
    intent: Intent,
    confidence: float,
    gates: Gates,
    root_cause: RootCause | None,
    recommended_action: Action | None,
    threshold: float,
) -> RouteDecision:
    """Route one contact. Pure: same inputs, same decision."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence must be within [0, 1], got {confidence}")
    rule = select_route_rule(intent, confidence, gates, root_cause, threshold)
    if rule.tier is Tier.TIER1:
        action = select_selfheal_action(intent, root_cause, recommended_action)
        if action is None:
            return RouteDecision(
                tier=Tier.TIER2, topic=TOPIC_BY_TIER[Tier.TIER2], reason="no_selfheal_action"
            )
        return RouteDecision(
            tier=Tier.TIER1, topic=TOPIC_BY_TIER[Tier.TIER1], reason=rule.name, selfheal_action=action
        )
    return RouteDecision(
        tier=rule.tier,
        topic=TOPIC_BY_TIER[rule.tier],
        reason=rule.name,
        escalation_reason=rule.escalation_reason,
    )
