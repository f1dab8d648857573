"""The words of a clarifying question, shared by every tier that asks one (issue 19).

The router asks which billing ask a message is when its reading is unsure; Tier 2 asks the customer to
confirm an account change the router was unsure of. Both say the question through
``tierline.conversations.say(kind="clarifying_question")`` with these choices, and both record the
contact's outcome with the summary prefix ``CLARIFY_SUMMARY_PREFIX``; the router reads the customer's next
message as the answer (services/router/clarify.py ``read_reply``).

Every choice's ``value`` is an intent value or ``HUMAN_CHOICE``; the text lists the choices numbered too, so
a channel without buttons (email) can answer with a number.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.messages import Choice
from schemas.vocab import Intent

#: The choice that asks for a person (offered with every question, honoured anywhere).
HUMAN_CHOICE = "human"
#: The summary of a contact whose outcome is a question (an automated reply; the answer is a contact).
CLARIFY_SUMMARY_PREFIX = "clarifying_question:"

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
        Intent.TEAM_MEMBER: "Adding or removing a teammate",
        Intent.API_KEY: "An API key",
        Intent.ACCOUNT_ACCESS: "Signing in to my account",
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
        Intent.TEAM_MEMBER: "Añadir o quitar a un miembro del equipo",
        Intent.API_KEY: "Una clave de API",
        Intent.ACCOUNT_ACCESS: "Acceder a mi cuenta",
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
        Intent.TEAM_MEMBER: "Ein Teammitglied hinzufügen oder entfernen",
        Intent.API_KEY: "Ein API-Schlüssel",
        Intent.ACCOUNT_ACCESS: "Anmeldung bei meinem Konto",
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
        Intent.TEAM_MEMBER: "Ajouter ou retirer un membre de l'équipe",
        Intent.API_KEY: "Une clé API",
        Intent.ACCOUNT_ACCESS: "Me connecter à mon compte",
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
        Intent.TEAM_MEMBER: "Adicionar ou remover um membro da equipe",
        Intent.API_KEY: "Uma chave de API",
        Intent.ACCOUNT_ACCESS: "Entrar na minha conta",
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

#: Tier 2's question before an account change it was handed on an unsure reading.
CONFIRM: dict[str, str] = {
    "en": "Before I change anything on your account, can you confirm what you would like?",
    "es": "Antes de cambiar nada en su cuenta, ¿puede confirmar qué desea?",
    "de": "Bevor ich etwas an Ihrem Konto ändere: Können Sie bestätigen, was Sie möchten?",
    "fr": "Avant de modifier votre compte, pouvez-vous confirmer ce que vous souhaitez ?",
    "pt": "Antes de alterar algo na sua conta, pode confirmar o que deseja?",
}


def label(intent: Intent, language: str | None) -> str:
    """An intent in the customer's words: the language's label, English's, or the intent's name."""
    lang = language if language in LABELS else "en"
    return LABELS[lang].get(intent) or LABELS["en"].get(intent) or intent.value.replace("_", " ").capitalize()


def _numbered(lead: str, intents: Sequence[Intent], language: str | None) -> tuple[str, list[Choice]]:
    lang = language if language in QUESTION else "en"
    choices = [Choice(label=label(i, lang), value=i.value) for i in intents]
    choices.append(Choice(label=HUMAN_LABEL[lang], value=HUMAN_CHOICE))
    lines = "\n".join(f"{n}. {c.label}" for n, c in enumerate(choices, start=1))
    return f"{lead}\n{lines}", choices


def clarifying_question(intents: Sequence[Intent], language: str | None) -> tuple[str, list[Choice]]:
    """Which of these asks is it: the text and its choices in the customer's language (English when there
    is no template), the intents most likely first, then "Talk to a person"."""
    return _numbered(QUESTION[language if language in QUESTION else "en"], intents, language)


def confirming_question(intent: Intent, language: str | None) -> tuple[str, list[Choice]]:
    """Confirm one account change before it is made: the change, or a person."""
    return _numbered(CONFIRM[language if language in CONFIRM else "en"], [intent], language)
