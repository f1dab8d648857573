"""Tier 2's answer, checked before it is said (issue 19): pure decisions over ``tierline.answer_check``.

The facts are the router's diagnosis (the one the agent saw), every tool result of the run (a fresh
diagnosis, knowledge hits, what an action returned) and the further asks done after it. An answer the
facts back is said as written. One that fails is rewritten from the facts — the customer messages the
tools themselves returned for what they did, or the charge explanation — when that text passes; otherwise
nobody is told anything automated and a person takes the contact (``low_confidence``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.messages import AgentRequestedPayload
from schemas.vocab import EscalationReason
from services.tier2_agent.ports import AgentResult, Escalation
from tierline.actions import ActionOutcome
from tierline.answer_check import Facts, ToolFact, Verdict, check_answer, facts_from

STOPPED_ACTION = "answer.quality_stopped"


def facts_for(
    payload: AgentRequestedPayload, result: AgentResult, extras: Sequence[ActionOutcome] = ()
) -> Facts:
    """Everything the answer may draw on for this contact."""
    calls = [
        ToolFact(tool=a.tool, ok=a.result.ok, args=dict(a.args), data=dict(a.result.data))
        for a in result.actions
    ]
    calls += [
        ToolFact(
            tool=e.action.value,
            ok=e.ok,
            args={"target": e.target or "", "amount_usd": e.amount_usd} if e.ok else {},
            data=dict(e.data),
        )
        for e in extras
    ]
    diagnosis = payload.diagnosis.model_dump(mode="json") if payload.diagnosis else None
    return facts_from(diagnosis, calls, customer_text=payload.text)


def template_answer(result: AgentResult, extras: Sequence[ActionOutcome] = ()) -> str:
    """The answer in the tools' own words: what each successful action told the customer, or the charge
    explanation; empty when the run has no such words (a free-form or knowledge answer)."""
    parts: list[str] = []
    for taken in result.performed():
        data = taken.result.data
        for key in ("customer_message", "explanation"):
            said = data.get(key)
            if isinstance(said, str) and said.strip() and said.strip() not in parts:
                parts.append(said.strip())
                break
    for extra in extras:
        said = extra.data.get("customer_message") or extra.data.get("explanation")
        if extra.ok and isinstance(said, str) and said.strip() and said.strip() not in parts:
            parts.append(said.strip())
    return " ".join(parts)


@dataclass(frozen=True)
class QualityDecision:
    """What happens to an answer: said as is (``verdict.ok``), rewritten (``answer`` holds the new text),
    or stopped with nothing said (``answer`` is None: a person takes the contact)."""

    verdict: Verdict
    answer: str | None

    @property
    def stopped(self) -> bool:
        return not self.verdict.ok

    @property
    def outcome(self) -> str:
        return "passed" if self.verdict.ok else ("rewritten" if self.answer is not None else "to_person")


def decide_answer(answer: str, facts: Facts, template: str) -> QualityDecision:
    verdict = check_answer(answer, facts)
    if verdict.ok:
        return QualityDecision(verdict, answer)
    if template and check_answer(template, facts).ok:
        return QualityDecision(verdict, template)
    return QualityDecision(verdict, None)


def stopped_escalation(decision: QualityDecision) -> Escalation:
    """The person's note when no answer could be said: what the check found."""
    found = "; ".join(f"{f.cause} {f.value!r}" for f in decision.verdict.findings[:10])
    return Escalation(
        reason=EscalationReason.LOW_CONFIDENCE,
        note=f"The automated answer was stopped by the quality check (not backed by the facts: {found}); "
        "nothing was said to the customer.",
        suggested_next_step="Answer the customer from the diagnosis; the stopped draft is in the transcript.",
    )
