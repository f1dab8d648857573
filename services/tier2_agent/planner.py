"""The offline planner: the LLM's stand-in when no model endpoint is configured (and its fallback).

Same interface as :class:`~services.tier2_agent.agent.AgentLoop`: ``run(request, tools)``. The plan
is a pure function of the intent, the Billing Diagnosis (root cause, recommended action, evidence)
and a few text cues (a request for a person, a fraud report, plan/seat names, a billing email).
The customer's words are a ceiling, never the floor: a refund is what they asked for (an amount, a
fraction, a charge or period; ``tierline.billing.asks``), else the charge record's refundable amount;
a credit, coupon, downgrade, multi-month refund or another person's account is never turned into a
refund. The policy engine behind the tools still decides. Every path ends resolved or escalated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from schemas.vocab import MONEY_ASKS, Action, EscalationReason, Intent, RootCause
from services.tier2_agent.clarify import UNSURE_NEVER_CHANGES, confirm_unsure_change, which_ask
from services.tier2_agent.ports import AgentRequest, AgentResult, AgentTools, InjectionDetector, ToolResult
from services.tier2_agent.product_tools import PRODUCT_INTENTS, handle_product_ask
from services.tier2_agent.tools import MAX_REFUND_USD, RunRecorder, default_refusal_reason
from tierline.billing.asks import (
    BillingDocument,
    ChargeRef,
    HandOff,
    MonthsAsked,
    RefundPlan,
    cents,
    documents_for,
    documents_from_evidence,
    months_asked,
    parse_ask,
    resolve_refund,
)
from tierline.billing.details import DetailsAsked, extract_details, question_for
from tierline.experiments import UPDATE_CARD_LINK_ANSWER
from tierline.followups import did_not_work
from tierline.language import localized_answer

log = structlog.get_logger(__name__)

SOFT_DECLINES = frozenset(
    {
        "insufficient_funds",
        "processing_error",
        "try_again_later",
        "card_declined",
        "generic_decline",
        "approve_with_id",
        "issuer_not_available",
        "reenter_transaction",
    }
)
HARD_DECLINES = frozenset(
    {
        "expired_card",
        "incorrect_number",
        "invalid_number",
        "stolen_card",
        "lost_card",
        "pickup_card",
        "invalid_account",
        "card_not_supported",
        "restricted_card",
        "incorrect_cvc",
        "invalid_expiry_year",
    }
)
_SOFT_CAUSES = {RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS.value, RootCause.CARD_DECLINED_SOFT.value}
_HARD_CAUSES = {
    RootCause.CARD_DECLINED_HARD.value,
    RootCause.CARD_EXPIRED.value,
    RootCause.CARD_EXPIRING.value,
    RootCause.NO_PAYMENT_METHOD.value,
}
# Intents whose plan only reads and explains: safe to act on even when the router was unsure.
EXPLANATORY_INTENTS = frozenset(
    {
        Intent.UNEXPECTED_CHARGE,
        Intent.UNRECOGNIZED_CHARGE,
        Intent.PAYMENT_METHODS_QUESTION,
        Intent.REFUND_STATUS,
        Intent.PAYMENT_PENDING,
    }
)

_ASKS_FOR_HUMAN = re.compile(
    r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|some\s*one\s*|some\s+)?"
    r"(?:real\s+|live\s+|actual\s+)?(?:human|person|agent|representative|one)\b"
    r"|\b(?:real|live|actual)\s+(?:person|human|agent)\b|\bhuman\s+(?:agent|being)\b"
    r"|\b(?:don'?t|do not)\s+want\s+(?:a|to\s+talk\s+to\s+a)\s+bot\b|\bnot\s+a\s+bot\b",
    re.IGNORECASE,
)
_REPORTS_FRAUD = re.compile(
    r"\b(?:stolen|compromised|hacked|unauthori[sz]ed|fraud(?:ulent)?|identity\s+theft)\b"
    r"|\blost\s+(?:my\s+)?(?:card|wallet)\b"
    r"|\b(?:did\s*n[o']?t|never)\s+(?:make|authori[sz]e|approve)\s+(?:this|these|that|those|it)\b"
    r"|\bsomeone\s+(?:else\s+)?(?:used|is\s+using)\s+my\s+(?:card|account)\b",
    re.IGNORECASE,
)
_PLAN_NAMES = ("starter", "pro", "business", "enterprise")
_TARGET_PLAN = re.compile(
    r"\b(?:to|onto|into|for)\s+(?:the\s+)?(starter|pro|business|enterprise)\b", re.IGNORECASE
)
_ANY_PLAN = re.compile(r"\b(starter|pro|business|enterprise)\b", re.IGNORECASE)
_SEATS = re.compile(r"\b(\d{1,5})\s*(?:seats?|users?|licen[cs]es?)\b", re.IGNORECASE)
_INSISTS = re.compile(
    r"\b(?:i'?m|i\s+am|we'?re|we\s+are)\s+(?:sure|certain)\b|\b(?:it|this|that)(?:'s|\s+is)\s+(?:correct|right)\b"
    r"|\bjust\s+(?:change|update|use|put|do)\b|\bas\s+i\s+(?:said|wrote)\b|\bi\s+already\s+(?:told|sent|gave)\b",
    re.IGNORECASE,
)


def _changed(asked: DetailsAsked) -> str:
    """What an update changes, in words: "company name to Acme GmbH, VAT id to DE136695976"."""
    parts = []
    if asked.billing_email:
        parts.append(f"billing email to {asked.billing_email}")
    if asked.company_name:
        parts.append(f"company name to {asked.company_name}")
    if asked.address is not None:
        a = asked.address
        place = " ".join(p for p in (a.postal_code, a.city) if p)
        parts.append("address to " + ", ".join(p for p in (a.line1, a.line2, place, a.state, a.country) if p))
    if asked.tax_id is not None:
        parts.append(f"VAT / tax id to {asked.tax_id.value}")
    return ", ".join(parts)


def no_invoice_answer(asked: MonthsAsked, documents: list[BillingDocument]) -> str:
    """No invoice of the period asked: say so, and offer the ones there are (never send another)."""
    head = f"I couldn't find an invoice for {asked.label} on your account, so I haven't sent anything."
    if not documents:
        return f"{head} There is no invoice on your account yet."
    listed = "; ".join(d.describe() for d in documents[:12])
    return f"{head} The invoices I can send you: {listed}. Which one would you like?"


# --------------------------------------------------------------------------- evidence readers


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _created(charge: dict[str, Any]) -> datetime | None:
    raw = charge.get("created_at")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def charges_from(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    """Charge records with an id and a positive amount, newest first."""
    raw = evidence.get("charges")
    charges = [
        c
        for c in (raw if isinstance(raw, list) else [])
        if isinstance(c, dict) and isinstance(c.get("id"), str) and (_float(c.get("amount_usd")) or 0) > 0
    ]
    stamps = [_created(c) for c in charges]
    if charges and all(s is not None for s in stamps) and len({s.tzinfo is None for s in stamps if s}) == 1:
        order = sorted(range(len(charges)), key=lambda i: stamps[i], reverse=True)  # type: ignore[arg-type,return-value]
        charges = [charges[i] for i in order]
    return charges


def refundable_usd(charge: dict[str, Any]) -> float:
    amount = _float(charge.get("amount_usd")) or 0.0
    refunded = _float(charge.get("refunded_usd")) or 0.0
    return max(0.0, round(amount - refunded, 2))


def _is_settled(charge: dict[str, Any]) -> bool:
    return charge.get("status") in (None, "succeeded", "paid")


def charge_refs(charges: list[dict[str, Any]]) -> list[ChargeRef]:
    """The evidence's charge records as the billing core reads them (same order)."""
    return [
        ChargeRef(
            id=c["id"],
            amount_usd=cents(_float(c.get("amount_usd")) or 0.0),
            refundable_usd=cents(refundable_usd(c)),
            created_at=_created(c),
        )
        for c in charges
    ]


def refund_plan(
    text: str, charges: list[dict[str, Any]], *, default_charge_id: str | None = None
) -> RefundPlan | HandOff:
    """What the customer's own words allow refunding of these charges: a ceiling, never the floor."""
    plan = resolve_refund(
        parse_ask(text), charge_refs(charges), datetime.now(UTC), default_charge_id=default_charge_id
    )
    if isinstance(plan, RefundPlan) and plan.amount_usd > cents(MAX_REFUND_USD):
        return HandOff(EscalationReason.REFUND_OVER_POLICY, f"asks ${plan.amount_usd:,.2f}")
    return plan


def _money_handoff(rec: RunRecorder, reason: EscalationReason) -> EscalationReason:
    """A money ask handed to a person before any tool ran: ``policy_denied`` when the text is flagged as
    trying to instruct the system (scenarios.md, "Default policy"), else the ask's own reason."""
    return EscalationReason.POLICY_DENIED if "prompt_injection" in rec.flags else reason


def _money(value: float) -> str:
    return f"${value:,.2f}"


def usage_sentence(evidence: dict[str, Any]) -> str | None:
    usage = evidence.get("usage")
    if not isinstance(usage, dict):
        return None
    metric = str(usage.get("metric") or "usage").replace("_", " ")
    limit, last, prev = (
        _float(usage.get("limit")),
        _float(usage.get("last_30d")),
        _float(usage.get("prev_30d")),
    )
    if last is None:
        return None
    sentence = f"Your {metric} in the last 30 days were {last:,.0f}"
    if limit is not None:
        sentence += f", against {limit:,.0f} included in your plan"
    if prev is not None:
        sentence += f" (the 30 days before: {prev:,.0f})"
    sentence += "."
    units, cost = _float(usage.get("overage_units")), _float(usage.get("overage_usd"))
    if units is None and limit is not None and last > limit:
        units = last - limit
    if units and units > 0:
        sentence += f" The {units:,.0f} above your plan were billed as overage"
        sentence += f" ({_money(cost)})." if cost else "."
    return sentence


# --------------------------------------------------------------------------- the planner


# --------------------------------------------------------------------------- the customer's language

# The tool whose effect the answer reports -> the sentence key in ``tierline.language.ANSWERS``.
ANSWER_KEYS: dict[str, str] = {
    "send_invoice": "invoice_sent",
    "send_update_card_link": "card_link_sent",
    "retry_payment": "payment_retried",
    "refund": "refund_done",
    "regenerate_invoice_link": "invoice_link_sent",
    "cancel_subscription": "subscription_cancelled",
    "update_billing_details": "billing_details_updated",
}
_AMOUNT = re.compile(r"\$\d[\d,]*(?:\.\d{2})?")


def localize_result(result: AgentResult, language: str | None) -> AgentResult:
    """The answer in the customer's language for the common outcomes (an escalation, or the last
    effect that happened); anything else, and every English answer, is left as it is."""
    if result.escalation is not None:
        key: str | None = "escalated"
    else:
        done = [a.tool for a in result.performed() if a.tool in ANSWER_KEYS]
        key = ANSWER_KEYS[done[-1]] if done else None
    if key is None:
        return result
    amount = _AMOUNT.search(result.final_answer)
    text = localized_answer(key, language, amount=amount.group(0) if amount else None)
    if text is None:
        return result
    return result.model_copy(update={"final_answer": text})


class OfflinePlanner:
    """Deterministic plan from intent + diagnosis + text cues. ``run`` never raises."""

    def __init__(
        self,
        *,
        injection_detector: InjectionDetector | None = None,
        min_confidence: float = 0.55,
        min_knowledge_score: float = 0.3,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._now = clock or (lambda: datetime.now(UTC))  # the months "last month", "October" name
        self._detect_injection = injection_detector
        self._min_confidence = min_confidence
        self._min_knowledge_score = min_knowledge_score

    async def run(self, request: AgentRequest, tools: AgentTools) -> AgentResult:
        rec = RunRecorder(request.text, engine="planner")
        try:
            return localize_result(await self._run(request, tools, rec), request.language)
        except Exception as exc:  # never a dead end, even on a bug
            log.exception("tier2.planner.crashed", error_type=type(exc).__name__)
            result = await rec.escalate(
                tools, EscalationReason.ERROR, f"planner_exception: {type(exc).__name__}"
            )
            return localize_result(result, request.language)

    # ------------------------------------------------------------------ routing

    async def _run(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        text = request.text
        if "prompt_injection" in request.flags or (
            self._detect_injection is not None and self._detect_injection(text)
        ):
            # the text is answered as data; the policy refuses every automatic money action for it
            # (the tools carry the flag into the executor's policy context)
            rec.flag("prompt_injection")
            log.info("tier2.planner.injection_flagged", intent=request.intent)
        intent = request.intent
        if intent is Intent.HUMAN_AGENT or _ASKS_FOR_HUMAN.search(text):
            return await rec.escalate(tools, EscalationReason.CUSTOMER_ASKED, "customer asked for a person")
        if intent is Intent.FRAUD_COMPROMISED or (
            _REPORTS_FRAUD.search(text) and intent not in PRODUCT_INTENTS  # a leaked API key is no card fraud
        ):
            return await rec.escalate(
                tools,
                EscalationReason.FRAUD,
                "customer reports a stolen/compromised card or unauthorised use",
            )
        if intent is Intent.OUT_OF_SCOPE:
            return await rec.escalate(tools, EscalationReason.OUT_OF_SCOPE, "not a billing question")
        earlier = did_not_work(text, request.history)
        if earlier is not None:
            # "that didn't work" after our answer: the same fix again would not help; a person takes it
            return await rec.escalate(
                tools,
                EscalationReason.LOW_CONFIDENCE,
                f'the customer says our earlier answer did not work: "{earlier[:300]}"; '
                "automated fixes already tried, take it from here",
            )
        if intent is None or request.confidence < self._min_confidence:
            top = max(request.candidates, key=lambda c: c.confidence).intent if request.candidates else intent
            if top not in EXPLANATORY_INTENTS:
                question = which_ask(request)
                if question is not None:  # ask which one it is, once, instead of handing it on
                    return rec.ask(*question)
                return await rec.escalate(
                    tools,
                    EscalationReason.LOW_CONFIDENCE,
                    f"intent {intent.value if intent else 'unknown'} at confidence {request.confidence:.2f}; "
                    f"top candidate {top.value if top else 'none'} needs an action, not an explanation",
                )
            rec.say("system", f"low confidence: acting on read-only candidate {top.value}")
            intent = top

        if "prompt_injection" in rec.flags and intent in MONEY_ASKS:
            # scenarios.md, "Default policy": a flagged text that asks for a money or account action
            # goes to a person with policy_denied and the flag; the executor would refuse it anyway.
            return await rec.escalate(
                tools,
                EscalationReason.POLICY_DENIED,
                f"the text tries to instruct the system and asks for {intent.value}",
            )
        if request.handoff_reason == "low_confidence" and intent in UNSURE_NEVER_CHANGES:
            # the router was unsure (its per-intent gate held the reading back): an account is never
            # cancelled, re-planned or re-addressed on an unsure reading of the text; the customer confirms
            # (one question), or, when they were asked already, a person does
            question = confirm_unsure_change(request, intent)
            if question is not None:
                return rec.ask(*question)
            return await rec.escalate(
                tools,
                EscalationReason.LOW_CONFIDENCE,
                f"the router was unsure whether the customer asks for {intent.value} "
                f"(confidence {request.confidence:.2f}); confirm with the customer before changing it",
            )
        handler = {
            Intent.DUPLICATE_CHARGE: self._duplicate_charge,
            Intent.REFUND_REQUEST: self._refund_request,
            Intent.UNEXPECTED_CHARGE: self._explain,
            Intent.UNRECOGNIZED_CHARGE: self._explain,
            Intent.PAYMENT_PENDING: self._explain,
            Intent.REFUND_STATUS: self._refund_status,
            Intent.PAYMENT_METHODS_QUESTION: self._answer_from_knowledge,
            Intent.PAYMENT_FAILED: self._payment_failed,
            Intent.CARD_EXPIRING: self._card_expiring,
            Intent.INVOICE_REQUEST: self._invoice_request,
            Intent.UPDATE_BILLING_DETAILS: self._update_billing_details,
            Intent.CANCEL_SUBSCRIPTION: self._cancel_subscription,
            Intent.PLAN_CHANGE: self._plan_change,
            Intent.TEAM_MEMBER: handle_product_ask,  # the product's own asks (issue 23): product_tools.py
            Intent.API_KEY: handle_product_ask,
        }.get(intent)
        if handler is None:
            return await rec.escalate(tools, EscalationReason.LOW_CONFIDENCE, f"no plan for intent {intent}")
        return await handler(request, tools, rec)

    # ------------------------------------------------------------------ shared steps

    async def _diagnosis(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> dict[str, Any]:
        """Fresh diagnosis from the tools; the one in the request if that fails; else empty."""
        result = await rec.call(tools, "get_billing_diagnosis")
        if result.ok and result.data:
            return result.data
        rec.flag("diagnosis_refresh_failed")
        return dict(request.diagnosis or {})

    @staticmethod
    def _evidence(diagnosis: dict[str, Any]) -> dict[str, Any]:
        evidence = diagnosis.get("evidence")
        return evidence if isinstance(evidence, dict) else {}

    async def _after_effect(
        self, tools: AgentTools, rec: RunRecorder, tool: str, result: ToolResult, done_message: str
    ) -> AgentResult:
        if result.ok:
            message = result.data.get("customer_message")
            return rec.resolved(message if isinstance(message, str) and message else done_message)
        if result.policy_refused:
            reason = default_refusal_reason(tool, result)
            return await rec.escalate(tools, reason, f"policy refused {tool}: {result.error or reason.value}")
        return await rec.escalate(
            tools, EscalationReason.ERROR, f"{tool} failed: {result.error or 'unknown error'}"
        )

    async def _explain_with(
        self,
        tools: AgentTools,
        rec: RunRecorder,
        diagnosis: dict[str, Any],
        charge_id: str | None,
        *,
        lead: str = "",
    ) -> AgentResult:
        result = await rec.call(tools, "explain_charge", charge_id=charge_id)
        if result.policy_refused:
            return await self._after_effect(tools, rec, "explain_charge", result, "")
        if not result.ok:
            return await rec.escalate(
                tools, EscalationReason.ERROR, f"explain_charge failed: {result.error or 'unknown error'}"
            )
        evidence = self._evidence(diagnosis)
        explanation = result.data.get("explanation")
        if not (isinstance(explanation, str) and explanation.strip()):
            parts = [str(diagnosis.get("explanation") or "").strip(), usage_sentence(evidence) or ""]
            explanation = " ".join(p for p in parts if p)
        if not explanation:
            charge = next((c for c in charges_from(evidence) if c.get("id") == charge_id), None)
            if charge is None:
                return await rec.escalate(
                    tools, EscalationReason.LOW_CONFIDENCE, "no evidence to explain the charge with"
                )
            explanation = f"The charge {charge['id']} was {_money(_float(charge['amount_usd']) or 0)}."
        return rec.resolved(f"{lead}{explanation}".strip())

    # ------------------------------------------------------------------ intents

    async def _duplicate_charge(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        evidence = self._evidence(diagnosis)
        charges = charges_from(evidence)
        pair = self._duplicate_pair(evidence, diagnosis, charges)
        if pair is None:
            newest = charges[0]["id"] if charges else None
            if newest is None:
                return await rec.escalate(
                    tools,
                    EscalationReason.LOW_CONFIDENCE,
                    "duplicate charge reported; no charge records to verify",
                )
            return await self._explain_with(
                tools, rec, diagnosis, newest, lead="I couldn't find a second charge for the same amount. "
            )
        charge_id, amount = pair
        if amount <= 0:
            return rec.resolved(f"The duplicate charge {charge_id} has already been refunded in full.")
        asked = refund_plan(request.text, charges, default_charge_id=charge_id)  # the words: a ceiling
        if isinstance(asked, HandOff):
            return await rec.escalate(
                tools, _money_handoff(rec, asked.reason), f"duplicate charge reported; {asked.detail}"
            )
        if asked.charge_asked and asked.charge_id != charge_id:
            return await rec.escalate(
                tools,
                EscalationReason.LOW_CONFIDENCE,
                f"duplicate reported; the customer names {asked.charge_id}, the duplicate is {charge_id}",
            )
        if asked.amount_asked:
            amount = float(asked.amount_usd)
        result = await rec.call(tools, "refund", charge_id=charge_id, amount_usd=amount, reason="duplicate")
        return await self._after_effect(
            tools,
            rec,
            "refund",
            result,
            f"You're right, you were charged twice. I've refunded the duplicate charge of {_money(amount)}; "
            "it usually appears on your statement within 5-10 business days.",
        )

    @staticmethod
    def _duplicate_pair(
        evidence: dict[str, Any], diagnosis: dict[str, Any], charges: list[dict[str, Any]]
    ) -> tuple[str, float] | None:
        """The newer twin's charge id and its refundable amount (from the charge record)."""
        by_id = {c["id"]: c for c in charges}
        position = {c["id"]: i for i, c in enumerate(charges)}
        dup = evidence.get("duplicate")
        if isinstance(dup, dict) and isinstance(dup.get("charge_id"), str):
            ids = [dup["charge_id"]]
            if isinstance(dup.get("twin_charge_id"), str):
                ids.append(dup["twin_charge_id"])
            known = [i for i in ids if i in position]
            newer = min(known, key=position.__getitem__) if known else dup["charge_id"]
            if newer in by_id:
                return newer, refundable_usd(by_id[newer])
            amount = _float(dup.get("amount_usd"))
            return (newer, round(amount, 2)) if amount and amount > 0 else None
        # Tolerance: the diagnosis named the cause but not the pair; find it in the records.
        if diagnosis.get("root_cause") == RootCause.DUPLICATE_CHARGE.value and len(charges) >= 2:
            first, second = charges[0], charges[1]
            same = _float(first.get("amount_usd")) == _float(second.get("amount_usd"))
            t1, t2 = _created(first), _created(second)
            close = t1 is None or t2 is None or abs((t1 - t2).total_seconds()) <= 48 * 3600
            if same and close and _is_settled(first):
                return first["id"], refundable_usd(first)
        return None

    async def _refund_request(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        charges = [c for c in charges_from(self._evidence(diagnosis)) if _is_settled(c)]
        # What was asked (amount, fraction, charge, period; or a credit, another account...) is the
        # ceiling; with none named, the charge record's refundable amount. The policy still decides.
        plan = refund_plan(request.text, charges)
        if isinstance(plan, HandOff):
            return await rec.escalate(
                tools, _money_handoff(rec, plan.reason), f"refund request: {plan.detail}"
            )
        amount = float(plan.amount_usd)
        result = await rec.call(
            tools, "refund", charge_id=plan.charge_id, amount_usd=amount, reason="requested_by_customer"
        )
        which = f"the charge {plan.charge_id}" if plan.charge_asked else "your most recent payment"
        return await self._after_effect(
            tools,
            rec,
            "refund",
            result,
            f"I've refunded {_money(amount)} for {which}; it usually appears on your "
            "statement within 5-10 business days.",
        )

    async def _explain(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        charges = charges_from(self._evidence(diagnosis))
        return await self._explain_with(tools, rec, diagnosis, charges[0]["id"] if charges else None)

    async def _refund_status(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        charges = charges_from(self._evidence(diagnosis))
        refunded = next((c for c in charges if (_float(c.get("refunded_usd")) or 0) > 0), None)
        target = refunded or (charges[0] if charges else None)
        return await self._explain_with(tools, rec, diagnosis, target["id"] if target else None)

    async def _answer_from_knowledge(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        query = " ".join(request.text.split())[:500] or "accepted payment methods"
        if len(query) < 2:
            query = "accepted payment methods"
        result = await rec.call(tools, "search_knowledge", query=query)
        hits = [h for h in (result.data.get("hits") or []) if isinstance(h, dict)] if result.ok else []
        best = hits[0] if hits else None
        score = _float(best.get("score")) if best else None
        body = str(
            (best or {}).get("text") or (best or {}).get("snippet") or (best or {}).get("body") or ""
        ).strip()
        if best is None or not body or (score is not None and score < self._min_knowledge_score):
            return await rec.escalate(
                tools, EscalationReason.LOW_CONFIDENCE, "no knowledge article answers the question"
            )
        article_id = str(best.get("article_id") or best.get("id") or "")
        title = str(best.get("title") or article_id)
        if len(body) > 700:
            body = body[:700].rsplit(". ", 1)[0].rstrip(".") + "."
        rec.cite(article_id)
        return rec.resolved(f"{body}\n\nSource: {title} [source: {article_id}]")

    async def _payment_failed(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        evidence = self._evidence(diagnosis)
        root = diagnosis.get("root_cause")
        recommended = diagnosis.get("recommended_action")
        invoice = _dict(evidence.get("invoice"))
        invoice_id = invoice.get("id") if isinstance(invoice.get("id"), str) else None
        failed_before = {t.action for t in request.tried if t.status in ("failed", "denied")}

        if root == RootCause.CARD_DECLINED_FRAUD.value:
            return await rec.escalate(
                tools, EscalationReason.FRAUD, "issuer declined the card as lost/stolen/fraud"
            )
        if invoice_id and (
            invoice.get("link_expired") is True or root == RootCause.INVOICE_LINK_EXPIRED.value
        ):
            if Action.REGENERATE_INVOICE_LINK not in failed_before:
                return await self._regenerate_link(tools, rec, invoice_id)
        if not invoice_id and root not in _SOFT_CAUSES | _HARD_CAUSES:
            charges = charges_from(evidence)
            lead = "I checked your account and there is no failed payment right now. "
            return await self._explain_with(
                tools, rec, diagnosis, charges[0]["id"] if charges else None, lead=lead
            )

        kind = self._decline_kind(invoice, root, recommended)
        if kind == "soft" and invoice_id and Action.RETRY_PAYMENT not in failed_before:
            result = await rec.call(tools, "retry_payment", invoice_id=invoice_id)
            if result.ok:
                amount = _float(invoice.get("amount_due_usd"))
                paid = f" of {_money(amount)}" if amount else ""
                return await self._after_effect(
                    tools, rec, "retry_payment", result, f"I retried your payment{paid} and it went through."
                )
            if result.policy_refused:
                return await self._after_effect(tools, rec, "retry_payment", result, "")
            rec.say("system", "retry did not succeed; falling back to an update-card link")
        if Action.SEND_UPDATE_CARD_LINK in failed_before:
            return await rec.escalate(
                tools, EscalationReason.LOW_CONFIDENCE, "payment still failing; automated fixes already tried"
            )
        return await self._update_card_link(tools, rec)

    @staticmethod
    def _decline_kind(invoice: dict[str, Any], root: Any, recommended: Any) -> str:
        code = str(invoice.get("decline_code") or "").lower()
        if code == "do_not_honor":
            attempts = _float(invoice.get("attempt_count")) or 1
            return "soft" if attempts < 2 else "hard"
        if code in SOFT_DECLINES:
            return "soft"
        if code in HARD_DECLINES:
            return "hard"
        if root in _SOFT_CAUSES or recommended == Action.RETRY_PAYMENT.value:
            return "soft"
        return "hard"

    async def _regenerate_link(self, tools: AgentTools, rec: RunRecorder, invoice_id: str) -> AgentResult:
        result = await rec.call(tools, "regenerate_invoice_link", invoice_id=invoice_id)
        return await self._after_effect(
            tools,
            rec,
            "regenerate_invoice_link",
            result,
            "The old payment link had expired. I've sent you a fresh link to pay the invoice.",
        )

    async def _update_card_link(self, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        result = await rec.call(tools, "send_update_card_link")
        return await self._after_effect(
            tools,
            rec,
            "send_update_card_link",
            result,
            UPDATE_CARD_LINK_ANSWER.control,  # an A/B template (tierline.experiments): the handler splits it
        )

    async def _card_expiring(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        return await self._update_card_link(tools, rec)

    async def _invoice_request(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        evidence = self._evidence(diagnosis)
        invoice = _dict(evidence.get("invoice"))
        invoice_id = invoice.get("id") if isinstance(invoice.get("id"), str) else None
        now = self._now()
        asked = months_asked(request.text, now)
        if asked is not None:  # "the invoice for October", "Q3": that period's invoices, never the latest
            documents = documents_from_evidence(evidence)
            picked = documents_for(asked, documents, now)
            if not picked:
                return rec.resolved(no_invoice_answer(asked, documents))
            return await self._send_documents(tools, rec, asked, picked)
        if invoice_id and invoice.get("link_expired") is True and invoice.get("status") in ("open", None):
            return await self._regenerate_link(tools, rec, invoice_id)
        target = invoice_id if invoice.get("status") == "paid" else None  # None: the latest invoice
        result = await rec.call(tools, "send_invoice", invoice_id=target)
        return await self._after_effect(
            tools,
            rec,
            "send_invoice",
            result,
            "I've emailed you the invoice; it's also in your billing portal.",
        )

    async def _send_documents(
        self, tools: AgentTools, rec: RunRecorder, asked: MonthsAsked, picked: tuple[BillingDocument, ...]
    ) -> AgentResult:
        """Send each invoice of the period asked (oldest first); stop at the first that does not go out."""
        result: ToolResult | None = None
        for document in picked:
            result = await rec.call(tools, "send_invoice", invoice_id=document.id)
            if not result.ok:
                return await self._after_effect(tools, rec, "send_invoice", result, "")
        assert result is not None
        ids = ", ".join(d.id for d in picked)
        what = "the invoice" if len(picked) == 1 else f"the {len(picked)} invoices"
        return rec.resolved(
            f"I've emailed you {what} for {asked.label} ({ids}); they're also in your billing portal."
            if len(picked) > 1
            else f"I've emailed you {what} for {asked.label} ({ids}); it's also in your billing portal."
        )

    async def _update_billing_details(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        asked = extract_details(request.text)
        fields = asked.tool_fields()
        if asked.problems or not fields:
            if asked.problems and _INSISTS.search(request.text):
                detail = "; ".join(f"{p.field} {p.value!r} does not validate" for p in asked.problems)
                return await rec.escalate(
                    tools, EscalationReason.LOW_CONFIDENCE, f"billing details: the customer insists; {detail}"
                )
            # a question back, nothing changed: an invalid value or none at all is asked for again
            log.info("tier2.billing_details.asked_back", problems=[p.field for p in asked.problems])
            return rec.resolved(question_for(asked))
        result = await rec.call(tools, "update_billing_details", **fields)
        return await self._after_effect(
            tools, rec, "update_billing_details", result, f"Done: I've updated your {_changed(asked)}."
        )

    async def _cancel_subscription(
        self, request: AgentRequest, tools: AgentTools, rec: RunRecorder
    ) -> AgentResult:
        result = await rec.call(tools, "cancel_subscription", at_period_end=True)
        return await self._after_effect(
            tools,
            rec,
            "cancel_subscription",
            result,
            "Your subscription is cancelled and won't renew; you keep access until the paid period ends.",
        )

    async def _plan_change(self, request: AgentRequest, tools: AgentTools, rec: RunRecorder) -> AgentResult:
        diagnosis = await self._diagnosis(request, tools, rec)
        plan_info = self._evidence(diagnosis).get("plan")
        current = str(plan_info.get("name") or "").lower() if isinstance(plan_info, dict) else ""
        text = request.text
        target = _TARGET_PLAN.search(text)
        plan = target.group(1).lower() if target else None
        if plan is None:
            named = {m.group(1).lower() for m in _ANY_PLAN.finditer(text)} - {current}
            plan = named.pop() if len(named) == 1 else None
        seats_match = _SEATS.search(text)
        seats = int(seats_match.group(1)) if seats_match else None
        if plan is None and seats is not None and current in _PLAN_NAMES:
            plan = current
        if plan is None or (plan == current and seats is None):
            return await rec.escalate(
                tools, EscalationReason.LOW_CONFIDENCE, "plan change requested; target plan/seats unclear"
            )
        result = await rec.call(tools, "change_plan", plan=plan, seats=seats)
        confirm = result.data.get("confirm_url")
        if not result.ok and isinstance(confirm, str) and confirm:
            # a higher price asked in text: nothing changed; the customer confirms the new price first
            return rec.resolved(str(result.data.get("customer_message") or confirm))
        what = f"{plan} plan" + (f" with {seats} seats" if seats else "")
        return await self._after_effect(tools, rec, "change_plan", result, f"Done: you're now on the {what}.")
