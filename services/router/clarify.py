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
    HUMAN_CHOICE,
    TOPIC_BY_TIER,
    MessageReading,
    RouteDecision,
    reading_for_choice,
)

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


def _typed_choice(question: PendingQuestion, text: str) -> Choice | None:
    """A choice typed back: its number ("2", "2.", "option 2") or its label, e.g. in an email reply."""
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


# --------------------------------------------------------------------------- the question's words
LABELS: dict[str, dict[Intent, str]] = {
    "en": {
        Intent.PAYMENT_FAILED: "A payment that failed",
        Intent.CARD_EXPIRING: "Updating my card",
        Intent.PAYMENT_PENDING: "A payment still pending",
        Intent.UNRECOGNIZED_CHARGE: "A charge I don't recognise",
        Intent.UNEXPECTED_CHARGE: "A charge higher than expected",
        Intent.DUPLICATE_CHARGE: "Being charged twice",
        Intent.REFUND_REQUEST: "Asking for a refund",
        Intent.REFUND_STATUS: "A refund I'm waiting for",
        Intent.INVOICE_REQUEST: "Getting an invoice or receipt",
        Intent.UPDATE_BILLING_DETAILS: "Changing my billing details",
        Intent.CANCEL_SUBSCRIPTION: "Cancelling my subscription",
        Intent.PLAN_CHANGE: "Changing my plan",
        Intent.PAYMENT_METHODS_QUESTION: "Ways to pay",
    },
    "es": {
        Intent.PAYMENT_FAILED: "Un pago que falló",
        Intent.CARD_EXPIRING: "Actualizar mi tarjeta",
        Intent.PAYMENT_PENDING: "Un pago pendiente",
        Intent.UNRECOGNIZED_CHARGE: "Un cargo que no reconozco",
        Intent.UNEXPECTED_CHARGE: "Un cargo mayor de lo esperado",
        Intent.DUPLICATE_CHARGE: "Un cobro doble",
        Intent.REFUND_REQUEST: "Pedir un reembolso",
        Intent.REFUND_STATUS: "Un reembolso que espero",
        Intent.INVOICE_REQUEST: "Obtener una factura o recibo",
        Intent.UPDATE_BILLING_DETAILS: "Cambiar mis datos de facturación",
        Intent.CANCEL_SUBSCRIPTION: "Cancelar mi suscripción",
        Intent.PLAN_CHANGE: "Cambiar de plan",
        Intent.PAYMENT_METHODS_QUESTION: "Formas de pago",
    },
    "de": {
        Intent.PAYMENT_FAILED: "Eine fehlgeschlagene Zahlung",
        Intent.CARD_EXPIRING: "Meine Karte aktualisieren",
        Intent.PAYMENT_PENDING: "Eine ausstehende Zahlung",
        Intent.UNRECOGNIZED_CHARGE: "Eine Abbuchung, die ich nicht kenne",
        Intent.UNEXPECTED_CHARGE: "Eine höhere Abbuchung als erwartet",
        Intent.DUPLICATE_CHARGE: "Doppelt abgebucht",
        Intent.REFUND_REQUEST: "Eine Erstattung beantragen",
        Intent.REFUND_STATUS: "Eine Erstattung, auf die ich warte",
        Intent.INVOICE_REQUEST: "Eine Rechnung oder Quittung",
        Intent.UPDATE_BILLING_DETAILS: "Meine Rechnungsdaten ändern",
        Intent.CANCEL_SUBSCRIPTION: "Mein Abonnement kündigen",
        Intent.PLAN_CHANGE: "Meinen Tarif wechseln",
        Intent.PAYMENT_METHODS_QUESTION: "Zahlungsarten",
    },
    "fr": {
        Intent.PAYMENT_FAILED: "Un paiement qui a échoué",
        Intent.CARD_EXPIRING: "Mettre à jour ma carte",
        Intent.PAYMENT_PENDING: "Un paiement en attente",
        Intent.UNRECOGNIZED_CHARGE: "Un prélèvement que je ne reconnais pas",
        Intent.UNEXPECTED_CHARGE: "Un prélèvement plus élevé que prévu",
        Intent.DUPLICATE_CHARGE: "Un double prélèvement",
        Intent.REFUND_REQUEST: "Demander un remboursement",
        Intent.REFUND_STATUS: "Un remboursement que j'attends",
        Intent.INVOICE_REQUEST: "Obtenir une facture ou un reçu",
        Intent.UPDATE_BILLING_DETAILS: "Modifier mes informations de facturation",
        Intent.CANCEL_SUBSCRIPTION: "Résilier mon abonnement",
        Intent.PLAN_CHANGE: "Changer de formule",
        Intent.PAYMENT_METHODS_QUESTION: "Moyens de paiement",
    },
    "pt": {
        Intent.PAYMENT_FAILED: "Um pagamento que falhou",
        Intent.CARD_EXPIRING: "Atualizar meu cartão",
        Intent.PAYMENT_PENDING: "Um pagamento pendente",
        Intent.UNRECOGNIZED_CHARGE: "Uma cobrança que não reconheço",
        Intent.UNEXPECTED_CHARGE: "Uma cobrança maior que o esperado",
        Intent.DUPLICATE_CHARGE: "Uma cobrança em dobro",
        Intent.REFUND_REQUEST: "Pedir um reembolso",
        Intent.REFUND_STATUS: "Um reembolso que estou esperando",
        Intent.INVOICE_REQUEST: "Obter uma fatura ou recibo",
        Intent.UPDATE_BILLING_DETAILS: "Alterar meus dados de cobrança",
        Intent.CANCEL_SUBSCRIPTION: "Cancelar minha assinatura",
        Intent.PLAN_CHANGE: "Mudar de plano",
        Intent.PAYMENT_METHODS_QUESTION: "Formas de pagamento",
    },
}
QUESTION: dict[str, str] = {
    "en": "Just to be sure I help with the right thing: which of these is it about?",
    "es": "Para asegurarme de ayudarle con lo correcto: ¿de cuál de estos temas se trata?",
    "de": "Damit ich Ihnen richtig helfe: Worum geht es?",
    "fr": "Pour être sûr de bien vous aider : de quoi s'agit-il ?",
    "pt": "Para ter certeza de ajudar com a coisa certa: qual destes é o assunto?",
}
HUMAN_LABEL: dict[str, str] = {
    "en": "Talk to a person",
    "es": "Hablar con una persona",
    "de": "Mit einem Menschen sprechen",
    "fr": "Parler à une personne",
    "pt": "Falar com uma pessoa",
}


def clarifying_question(intents: Sequence[Intent], language: str | None) -> tuple[str, list[Choice]]:
    """The question's text and its choices in the customer's language (English when there is no template).

    The text lists the choices numbered too, so a channel without buttons (email) can answer with a number.
    """
    lang = language if language in QUESTION else "en"
    labels = LABELS[lang]
    choices = [Choice(label=labels.get(i) or LABELS["en"][i], value=i.value) for i in intents]
    choices.append(Choice(label=HUMAN_LABEL[lang], value=HUMAN_CHOICE))
    lines = "\n".join(f"{n}. {c.label}" for n, c in enumerate(choices, start=1))
    return f"{QUESTION[lang]}\n{lines}", choices
