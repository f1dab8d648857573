"""Clarifying questions: the router's pure decisions (issue 19).

When the router is unsure which billing ask a message is (its reading is under the threshold and two or
more billing intents are plausible), it asks the customer ONE short question with those intents as
choices and "Talk to a person", instead of handing an unsure reading on. The customer's next message in
the conversation answers it:

* a choice (``payload.choice``) that was offered, or its number / label typed back, is routed as that
  intent with confidence 1.0 — through the same table and gates as any other reading (a choice never
  bypasses the sender check, a dispute, a fraud signal or the policy);
* ``human`` (offered with every question, and honoured anywhere) goes to a person (``customer_asked``);
* free text is classified as usual; a reading under the threshold still counts when it is one of the
  intents the question offered (the question is its context);
* anything else (a reply read as not about billing, too) is a second unclear turn: a person takes it
  (``low_confidence``), never a second question.

No I/O here: the router's handler finds the pending question and says the question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.messages import Choice
from schemas.vocab import EscalationReason, Intent, Tier
from services.router.domain import (
    TOPIC_BY_TIER,
    MessageReading,
    RouteDecision,
    reading_for_choice,
)
from tierline.clarify_words import (  # the question's words, shared with tier 2
    HUMAN_CHOICE,
    HUMAN_LABEL,
    LABELS,
    QUESTION,
    clarifying_question,
)

__all__ = ["HUMAN_LABEL", "LABELS", "QUESTION", "clarifying_question"]

#: The route reason that makes a question possible: the table's "unsure" row.
CLARIFY_ROUTE_REASON = "low_confidence"
#: A candidate is offered when the classifier gives it at least this much.
CLARIFY_FLOOR = 0.10
#: The offered intents together hold at least this much (else the text is likely not about billing at all).
CLARIFY_MASS = 0.35
#: At most this many intents are offered (plus "Talk to a person").
MAX_OFFERED = 3
#: A reply read under the threshold still counts at this confidence or more when the question offered it.
CONTEXT_FLOOR = 0.30
#: What a question may offer: billing asks a tier can take (a person and a fraud report are never guessed).
CLARIFIABLE: frozenset[Intent] = frozenset(Intent) - {
    Intent.OUT_OF_SCOPE,
    Intent.HUMAN_AGENT,
    Intent.FRAUD_COMPROMISED,
}
#: The reading reasons a reply can carry (for the audit and the tests).
CHOICE_READING = "choice"
CONTEXT_READING = "question_context"
UNCLEAR_AFTER_QUESTION = "unclear_after_question"


def question_intents(
    candidates: Sequence[tuple[Intent, float]],
    decision: RouteDecision,
    reading: MessageReading,
    *,
    flagged: bool = False,
) -> tuple[Intent, ...]:
    """The intents to offer in a question, most likely first; ``()`` when no question is asked.

    A question only replaces the "unsure" route (``low_confidence``): every gate (unknown sender, fraud,
    dispute, a person asked for) has already had its say. A text the guardrail flagged, or one read from
    its clauses or the diagnosis, takes its usual path. Two billing candidates at least.
    """
    if decision.reason != CLARIFY_ROUTE_REASON or decision.tier is Tier.TIER3 or flagged:
        return ()
    if reading.reason != "whole_text":
        return ()
    ranked = sorted(candidates, key=lambda ic: -ic[1])
    offered = [i for i, c in ranked if i in CLARIFIABLE and c >= CLARIFY_FLOOR]
    offered = list(dict.fromkeys(offered))[:MAX_OFFERED]
    mass = sum(c for i, c in ranked if i in offered)
    return tuple(offered) if len(offered) >= 2 and mass >= CLARIFY_MASS else ()


@dataclass(frozen=True)
class PendingQuestion:
    """The question the conversation is waiting on: the choices it offered, in order."""

    choices: tuple[Choice, ...]

    @property
    def intents(self) -> tuple[Intent, ...]:
        return tuple(Intent(c.value) for c in self.choices if c.value in Intent.__members__.values())


_NUMBER = re.compile(r"^\s*(?:#|option\s+|n[ºo°]\.?\s*)?(\d)\s*[.)]?\s*$", re.IGNORECASE)


#: "yes" to a question that offered one change (tier 2's confirmation), in the languages tierline speaks
_AFFIRMATIVE = re.compile(
    r"^\s*(?:yes|yeah|yep|yup|sure|correct|confirm(?:ed)?|ok(?:ay)?|s[ií]|ja|oui|sim|claro|genau|exacto|exactly)"
    r"\b(?:[\s,]*(?:please|por\s+favor|bitte|s'il\s+vous\s+pla[iî]t|thanks|thank\s+you|gracias|danke|merci|"
    r"obrigad[oa]|do\s+it|go\s+ahead|that'?s\s+(?:it|right)))*[\s.!]*$",
    re.IGNORECASE,
)


def _typed_choice(question: PendingQuestion, text: str) -> Choice | None:
    """A choice typed back: its number ("2", "2.", "option 2") or its label, e.g. in an email reply; "yes"
    picks the change when the question offered exactly one (a confirmation)."""
    if len(question.intents) == 1 and _AFFIRMATIVE.match(text):
        return next(c for c in question.choices if c.value == question.intents[0].value)
    number = _NUMBER.match(text)
    if number:
        index = int(number.group(1)) - 1
        return question.choices[index] if 0 <= index < len(question.choices) else None
    said = " ".join(text.casefold().split()).strip(" .!")
    return next((c for c in question.choices if " ".join(c.label.casefold().split()) == said), None)


def read_reply(
    question: PendingQuestion | None,
    choice: str | None,
    text: str,
    reading: MessageReading,
    threshold: float,
) -> MessageReading | None:
    """The reading of a message, given the question it may answer. ``None``: a second unclear turn.

    Without a pending question only ``human`` changes anything (a person always, at once); another
    choice value is ignored and the text read as usual.
    """
    if choice == HUMAN_CHOICE:
        return reading_for_choice(reading, choice)
    if question is None:
        return reading
    picked = choice if choice in {c.value for c in question.choices} else None
    if picked is None and choice is None:
        typed = _typed_choice(question, text)
        picked = typed.value if typed is not None else None
    if picked == HUMAN_CHOICE:
        return reading_for_choice(reading, picked)
    if picked is not None and picked in Intent.__members__.values():
        return MessageReading(intent=Intent(picked), confidence=1.0, reason=CHOICE_READING)
    if reading.intent is Intent.OUT_OF_SCOPE:
        return None  # not an answer to a billing question: still unclear
    if reading.confidence >= threshold:
        return reading  # a clear new message: read as usual
    if reading.intent in question.intents and reading.confidence >= CONTEXT_FLOOR:
        return MessageReading(
            intent=reading.intent,
            confidence=min(1.0, threshold),  # the question vouches for the reading
            secondary_intents=reading.secondary_intents,
            reason=CONTEXT_READING,
        )
    return None


def unclear_after_question() -> RouteDecision:
    """A second unclear turn: a person takes it, with the question and the reply in the transcript."""
    return RouteDecision(
        tier=Tier.TIER3,
        topic=TOPIC_BY_TIER[Tier.TIER3],
        reason=UNCLEAR_AFTER_QUESTION,
        escalation_reason=EscalationReason.LOW_CONFIDENCE,
    )
