"""The router's pure decision: which tier a contact goes to, and why.

Two tables, read top to bottom, first match wins:

* ``ROUTING_TABLE`` maps (intent, confidence band, gate, diagnosis root cause) to a route;
* ``SELFHEAL_TABLE`` picks the Tier 1 action for a Tier 1 route from the intent and the diagnosis.
  A Tier 1 route with no executable action goes to Tier 2 instead (never a dead end).

No I/O here; see intents.md and scenarios.md for the behaviour the tables encode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.messages import AgentRequestedV1, EscalationOpenedV1, SelfhealRequestedV1
from schemas.vocab import (
    MONEY_ASKS,
    SIDE_ASK_ACTIONS,
    Action,
    EscalationReason,
    Intent,
    RootCause,
    Tier,
)
from tierline.clarify_words import HUMAN_CHOICE  # the choice that asks for a person (shared with tier 2)

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
        Intent.TEAM_MEMBER,  # tier 2's product tool reads ``intent`` (issue 23)
        Intent.API_KEY,
    }
)
#: Sign-in, password, 2FA, the account's email: identity, which a person checks (issue 23).
PERSON_INTENTS: frozenset[Intent] = frozenset({Intent.ACCOUNT_ACCESS})
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
    _rule("account_access", PERSON_INTENTS, Band.HIGH, None, T3, ER.ACCOUNT_ACCESS),
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


#: Intents whose route can move money or change the subscription: a refund, a retry, a cancellation, a
#: plan change, new billing details. The intent model calibrates a stricter threshold for each (issue 20).
MONEY_MOVING_INTENTS: frozenset[Intent] = MONEY_ASKS | {Intent.PAYMENT_FAILED}


def routing_threshold(intent: Intent, threshold: float, intent_thresholds: Mapping[Intent, float]) -> float:
    """The confidence ``intent`` needs to be acted on: the model's threshold, or the stricter one the model
    calibrated for it (a money-moving intent). Under it the reading is unsure: a clarifying question or
    Tier 2 (``low_confidence``), never a money-moving Tier 1 action."""
    return max(threshold, intent_thresholds.get(intent, threshold))


#: Readings something other than the model vouches for (the diagnosis, the clarifying question's context,
#: a clicked choice): the model's own threshold applies, not a money-moving intent's stricter one.
VOUCHED_READINGS: frozenset[str] = frozenset(
    {"vague_with_red_diagnosis", "question_context", "choice", "chose_human"}
)


def reading_threshold(
    intent: Intent, reason: str, threshold: float, intent_thresholds: Mapping[Intent, float]
) -> float:
    """``routing_threshold`` for a reading of the model; the model's threshold for a vouched reading."""
    if reason in VOUCHED_READINGS:
        return threshold
    return routing_threshold(intent, threshold, intent_thresholds)


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


UNSUPPORTED_LANGUAGE = "unsupported_language"


def route_for_language(decision: RouteDecision, language_supported: bool) -> RouteDecision:
    """A contact in a language tierline does not read goes to a person; a tier 3 route keeps its reason.

    Pure: the language itself (its name goes into the packet) is detected by ``tierline.language``.
    """
    if language_supported or decision.tier is Tier.TIER3:
        return decision
    return RouteDecision(
        tier=Tier.TIER3,
        topic=TOPIC_BY_TIER[Tier.TIER3],
        reason=UNSUPPORTED_LANGUAGE,
        escalation_reason=EscalationReason.OUT_OF_SCOPE,
    )


# --------------------------------------------------------------------------- reading a whole message
# A message may hold several asks ("send me a new card link and last month's invoice"), or be vague
# ("it's not working") from a customer whose diagnosis says exactly what is wrong. ``read_message``
# turns the classifier's view of the whole text and of its sentences/clauses into one main intent
# (what ``decide_route`` routes) and the further asks, most urgent first.

#: Asks a tier may act on after the main one without anyone deciding: they only send or explain.
SAFE_SECONDARY_INTENTS: frozenset[Intent] = frozenset(
    {
        Intent.PAYMENT_FAILED,
        Intent.CARD_EXPIRING,
        Intent.PAYMENT_PENDING,
        Intent.INVOICE_REQUEST,
        Intent.UNEXPECTED_CHARGE,
        Intent.UNRECOGNIZED_CHARGE,
        Intent.REFUND_STATUS,
    }
)
SAFE_SECONDARY_ACTIONS: frozenset[Action] = SIDE_ASK_ACTIONS
#: Asks that move money or change the account: never done as a side ask, a person decides them.
MONEY_ASK_INTENTS: frozenset[Intent] = MONEY_ASKS
#: Asks that stop everything else: a person, or a fraud report.
STOP_INTENTS: frozenset[Intent] = frozenset({Intent.HUMAN_AGENT, Intent.FRAUD_COMPROMISED})
#: What blocks payment first, then the invoice, then explanations.
ASK_PRIORITY: dict[Intent, int] = {
    Intent.PAYMENT_FAILED: 0,
    Intent.CARD_EXPIRING: 0,
    Intent.PAYMENT_PENDING: 1,
    Intent.INVOICE_REQUEST: 2,
    Intent.UPDATE_BILLING_DETAILS: 3,
    Intent.REFUND_STATUS: 4,
    Intent.UNEXPECTED_CHARGE: 4,
    Intent.UNRECOGNIZED_CHARGE: 4,
}
#: A clause alone (a few words, out of context) counts at this confidence or more, and at the threshold
#: at least; at ``CUE_FLOOR`` when its words agree (``ASK_CUES``) in a message read as in scope.
CLAUSE_FLOOR = 0.9
CUE_FLOOR = 0.45
#: A money ask read in a clause only is listed (for a person) at this confidence or more.
MONEY_CLAUSE_FLOOR = 0.95
_CARD_CUE = re.compile(
    r"\b(?:card|payment\s+(?:method|details)|tarjeta|karte|carte|cartão)\b.{0,40}"
    r"\b(?:link|update|new|change|replace|expired?|declined?)\b"
    r"|\b(?:link|update|new|change|replace|expired?|declined?)\b.{0,40}"
    r"\b(?:card|payment\s+(?:method|details)|tarjeta|karte|carte|cartão)\b",
    re.IGNORECASE,
)
_INVOICE_CUE = re.compile(
    r"\b(?:invoices?|receipts?|factura|rechnung|facture|fatura|nota\s+fiscal)\b", re.IGNORECASE
)
#: An explicit ask for a card-update link, which the model reads poorly out of context ("a new card link").
CARD_LINK_ASK = re.compile(
    r"\b(?:new|updated?|change|replace|different|another)\s+(?:my\s+|the\s+|our\s+|a\s+)?"
    r"(?:credit\s+|debit\s+)?card\b(?!\s+(?:was|is|got|has)\b)"
    r"|\bcard[\s-]+(?:update\s+)?link\b"
    r"|\blink\s+to\s+(?:update|change|replace|add)\s+(?:my\s+|the\s+|our\s+|a\s+)?(?:new\s+)?"
    r"(?:card|payment\s+method|payment\s+details)\b"
    r"|\bupdate\s+(?:my\s+|the\s+|our\s+)?(?:payment\s+method|payment\s+details|billing\s+card)\b",
    re.IGNORECASE,
)
#: Clause readings an explicit card-link ask overrides (never a money ask, a person or a fraud report).
CARD_LINK_OVERRIDABLE: frozenset[Intent] = frozenset(
    {
        Intent.OUT_OF_SCOPE,
        Intent.CARD_EXPIRING,
        Intent.PAYMENT_FAILED,
        Intent.PAYMENT_METHODS_QUESTION,
        Intent.UPDATE_BILLING_DETAILS,
        Intent.INVOICE_REQUEST,
    }
)
ASK_CUES: dict[Intent, re.Pattern[str]] = {
    Intent.CARD_EXPIRING: _CARD_CUE,
    Intent.PAYMENT_FAILED: _CARD_CUE,
    Intent.INVOICE_REQUEST: _INVOICE_CUE,
}
#: "account locked", "it's not working", "why can't I log in", "dashboard says something is wrong".
VAGUE_TROUBLE = re.compile(
    r"\b(?:locked(?:\s+out)?|lock\s*out|blocked|suspended|disabled|deactivated|read[\s-]?only"
    r"|access\s+denied|no\s+access|lost\s+access|not\s+working|\w*n[o']?t\s+work(?:ing)?|stopped\s+working"
    r"|something(?:'s|\s+is)?\s+(?:wrong|off|broken)|what'?s\s+wrong)\b"
    r"|\b(?:can'?t|cannot|can\s+not|unable\s+to|not\s+able\s+to|won'?t\s+let\s+me)\s+"
    r"(?:\w+\s+){0,2}(?:log\s*(?:in|on)|login|sign\s*(?:in|on)|access|get\s+in(?:to)?|use|open|reach)\b"
    r"|\b(?:account|dashboard|app|site|login|workspace|portal|service|tool|product)\b[^.?!]{0,40}"
    r"\b(?:error|warning|banner|broken|restricted|frozen|paused|down|gone|red)\b"
    r"|\b(?:error|warning|banner)\b[^.?!]{0,40}\b(?:account|dashboard|app|site|login|workspace|portal)\b",
    re.IGNORECASE,
)
VAGUE_MAX_WORDS = 40
#: Red diagnoses whose fix is the payment fix (a retry, a card link, a fresh invoice link).
PAYMENT_BLOCKERS: frozenset[RootCause] = SOFT_DECLINES | NEEDS_NEW_CARD | {RootCause.INVOICE_LINK_EXPIRED}


class ClauseReading(BaseModel):
    """The classifier's reading of one sentence or clause of the message."""

    model_config = ConfigDict(frozen=True)

    text: str
    intent: Intent
    confidence: float


class MessageReading(BaseModel):
    """The main intent to route on, and the further asks (most urgent first)."""

    model_config = ConfigDict(frozen=True)

    intent: Intent
    confidence: float
    secondary_intents: tuple[Intent, ...] = ()
    #: whole_text | several_asks | from_clause | vague_with_red_diagnosis | stop_ask
    reason: str = "whole_text"


def reading_for_choice(reading: MessageReading, choice: str | None) -> MessageReading:
    """A clicked "talk to a human" is the customer asking for a person, whatever the text reads as."""
    if choice != HUMAN_CHOICE:
        return reading
    return MessageReading(intent=Intent.HUMAN_AGENT, confidence=1.0, reason="chose_human")


def _clause_counts(clause: ClauseReading, threshold: float, whole_confident: bool) -> bool:
    if clause.intent is Intent.OUT_OF_SCOPE:
        return False
    if clause.confidence >= max(threshold, CLAUSE_FLOOR):
        return True
    cue = ASK_CUES.get(clause.intent)
    agrees = clause.confidence >= CUE_FLOOR and cue is not None and bool(cue.search(clause.text))
    return agrees and (whole_confident or clause.confidence >= threshold)


def _card_link_ask(clause: ClauseReading) -> ClauseReading:
    """A clause that explicitly asks for a card-update link is that ask, whatever the model read."""
    if clause.intent not in CARD_LINK_OVERRIDABLE or not CARD_LINK_ASK.search(clause.text):
        return clause
    if clause.intent is Intent.CARD_EXPIRING:
        return clause
    if clause.intent is Intent.INVOICE_REQUEST and _INVOICE_CUE.search(clause.text):
        return clause  # "the invoice and a new card": both words, the whole sentence; its clauses decide
    return ClauseReading(text=clause.text, intent=Intent.CARD_EXPIRING, confidence=CUE_FLOOR)


def is_vague_trouble(text: str) -> bool:
    return len(text.split()) <= VAGUE_MAX_WORDS and bool(VAGUE_TROUBLE.search(text))


def _payment_fix(threshold: float) -> MessageReading:
    """A vague trouble text from a red payment diagnosis: the diagnosis vouches for the payment fix."""
    return MessageReading(
        intent=Intent.PAYMENT_FAILED, confidence=min(1.0, threshold), reason="vague_with_red_diagnosis"
    )


def read_message(
    text: str,
    intent: Intent,
    confidence: float,
    clauses: list[ClauseReading],
    threshold: float,
    *,
    diagnosis_red: bool = False,
    root_cause: RootCause | None = None,
) -> MessageReading:
    """One main intent and the further asks from the whole text's reading and its clauses'. Pure.

    * A person asked for, or a fraud report, anywhere in the message wins alone.
    * The whole text's own intent stays the main one when it is not a safe ask (a refund, a plan change,
      a question): it takes its usual path, unsure or not; safe clauses ride along as further asks.
    * A money ask read in a clause only, or by an unsure whole text beside a safe ask, is never the main
      one nor done on the side: it is listed with the further asks, and the tier hands the contact to a
      person after the safe ones.
    * Otherwise the most urgent safe ask is the main one: what blocks payment, then the invoice, then
      explanations. A clause counts at the threshold, or (in a message read as in scope) at
      ``CUE_FLOOR`` when its words agree.
    * A sign-in trouble ("I can't log in") from a red payment diagnosis: the payment fix (the account is
      locked for non-payment), not a person.
    * Nothing in scope, a vague trouble text ("it's not working") and a red payment diagnosis: the
      diagnosis' payment fix.
    """
    in_scope = intent is not Intent.OUT_OF_SCOPE
    whole_confident = in_scope and confidence >= threshold
    if whole_confident:
        clauses = [_card_link_ask(c) for c in clauses]
    counted = [c for c in clauses if _clause_counts(c, threshold, whole_confident)]
    stops = [c for c in counted if c.intent in STOP_INTENTS and c.confidence >= threshold]
    if intent in STOP_INTENTS:
        agreeing = [c.confidence for c in stops if c.intent == intent]
        return MessageReading(intent=intent, confidence=max([confidence, *agreeing]))
    if stops:
        stop = max(stops, key=lambda c: c.confidence)
        return MessageReading(intent=stop.intent, confidence=stop.confidence, reason="stop_ask")

    if (
        intent in PERSON_INTENTS
        and diagnosis_red
        and root_cause in PAYMENT_BLOCKERS
        and is_vague_trouble(text)
    ):
        # "I can't log in" from an account locked for non-payment: the payment fix, not a password reset
        return _payment_fix(threshold)
    asks: dict[Intent, float] = {intent: confidence} if in_scope else {}
    for clause in counted:
        if not in_scope and clause.intent not in SAFE_SECONDARY_INTENTS:
            continue  # only safe asks count inside a message read as out of scope
        asks[clause.intent] = max(asks.get(clause.intent, 0.0), clause.confidence)

    def reliable(ask: Intent) -> bool:
        return whole_confident or asks[ask] >= threshold

    safe = sorted(
        (a for a in asks if a in SAFE_SECONDARY_INTENTS and reliable(a)), key=lambda a: ASK_PRIORITY.get(a, 9)
    )
    money = [a for a in asks if a in MONEY_ASK_INTENTS and asks[a] >= max(threshold, MONEY_CLAUSE_FLOOR)]
    # an unsure whole text whose money ask a clause reads confidently, beside a safe ask, is a money ask
    # read in a clause: the safe ask is done, a person decides the money (the clause never makes it act)
    unsure_money = intent in money and not whole_confident and bool(safe)
    if in_scope and intent not in SAFE_SECONDARY_INTENTS and not unsure_money:
        main, main_confidence = intent, asks[intent]
    elif safe:
        main = safe[0]
        main_confidence = max(confidence, asks[main]) if whole_confident else asks[main]
    elif diagnosis_red and root_cause in PAYMENT_BLOCKERS and is_vague_trouble(text):
        return _payment_fix(threshold)
    else:
        return MessageReading(intent=intent, confidence=confidence)

    rest = [a for a in safe if a != main] + [a for a in money if a != main]
    if main == intent and not rest:
        return MessageReading(intent=intent, confidence=main_confidence)
    return MessageReading(
        intent=main,
        confidence=min(1.0, main_confidence),
        secondary_intents=tuple(rest),
        reason="several_asks" if rest else "from_clause",
    )


def secondary_actions(
    reading: MessageReading,
    main_action: Action | None,
    root_cause: RootCause | None,
    recommended_action: Action | None,
) -> list[Action]:
    """The safe action each further ask takes (the Tier 1 table's), once each, never the main one's."""
    out: list[Action] = []
    for ask in reading.secondary_intents:
        if ask not in SAFE_SECONDARY_INTENTS:
            continue  # money asks are noted for a person, never done on the side
        action = select_selfheal_action(ask, root_cause, recommended_action)
        if action is None and ask in {Intent.UNEXPECTED_CHARGE, Intent.UNRECOGNIZED_CHARGE}:
            action = Action.EXPLAIN_CHARGE
        if action in SAFE_SECONDARY_ACTIONS and action != main_action and action not in out:
            out.append(action)
    return out
