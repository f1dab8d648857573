"""Tier 2's own clarifying questions (issue 19): ask instead of guessing, once.

Two moments where the agent is unsure and a question serves the customer better than a person:

* the router handed on an account change (cancel, plan change, billing details) on a reading it was unsure
  of: the agent asks the customer to confirm the change before anything is changed;
* the reading is under the agent's floor and the likeliest asks need an action, not an explanation: the
  agent asks which one it is (two or three plausible asks) or confirms the one plausible ask.

Never a second question: a message that answers one (``answers_question``) is acted on or handed to a
person. Never on a text the guardrail flagged. The customer's answer comes back through the router, which
reads a clicked choice, its number, its label or "yes" (services/router/clarify.py ``read_reply``) and
routes it as that intent — through the same gates and the same policy as any other reading.

No I/O here: the planner and the LLM loop turn the words into ``RunRecorder.ask``.
"""

from __future__ import annotations

from schemas.messages import Choice
from schemas.vocab import Intent
from services.tier2_agent.ports import AgentRequest
from tierline.clarify_words import clarifying_question, confirming_question
from tierline.guardrails import INJECTION_FLAG

#: Account changes never made on a reading the router was unsure of (it hands those on as low_confidence).
UNSURE_NEVER_CHANGES = frozenset(
    {Intent.CANCEL_SUBSCRIPTION, Intent.PLAN_CHANGE, Intent.UPDATE_BILLING_DETAILS}
)
#: What a question may offer: billing asks a tier can take (a person and a fraud report are never guessed).
ASKABLE: frozenset[Intent] = frozenset(Intent) - {
    Intent.OUT_OF_SCOPE,
    Intent.HUMAN_AGENT,
    Intent.FRAUD_COMPROMISED,
}
#: A candidate is offered when the classifier gives it at least this much (the router's floor).
ASK_FLOOR = 0.10
#: The offered asks together hold at least this much; under it the text is likely not about billing.
ASK_MASS = 0.35
#: At most this many asks are offered (plus "Talk to a person").
MAX_OFFERED = 3

Words = tuple[str, list[Choice]]


def may_ask(request: AgentRequest) -> bool:
    """A question is possible: not already an answer to one, and not a text that tries to instruct us."""
    return not request.answers_question and INJECTION_FLAG not in request.flags


def confirm_unsure_change(request: AgentRequest, intent: Intent) -> Words | None:
    """The confirmation asked before an account change the router was unsure of; ``None``: no question."""
    if request.handoff_reason != "low_confidence" or intent not in UNSURE_NEVER_CHANGES:
        return None
    return confirming_question(intent, request.language) if may_ask(request) else None


def which_ask(request: AgentRequest) -> Words | None:
    """Which ask it is, when the reading is unsure: two or three plausible asks offered, or the one
    plausible ask confirmed; ``None`` when no ask is plausible enough (a person takes it)."""
    if not may_ask(request):
        return None
    ranked = sorted(request.candidates, key=lambda c: -c.confidence)
    offered: list[Intent] = []
    mass = 0.0
    for c in ranked:
        if c.intent in ASKABLE and c.confidence >= ASK_FLOOR and c.intent not in offered:
            offered.append(c.intent)
            mass += c.confidence
        if len(offered) == MAX_OFFERED:
            break
    if not offered or mass < ASK_MASS:
        return None
    if len(offered) == 1:
        return confirming_question(offered[0], request.language)
    return clarifying_question(offered, request.language)
