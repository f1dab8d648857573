"""Language identification, the billing glossary and the answers in the customer's language.

Pure, offline pieces: no model, no network. The sentences below were written for these tests and are in
no data file (checked in ``test_dataset_multilingual.py``).
"""

from __future__ import annotations

import csv

import pytest

from services.router.intent.dataset import SAAS_EXAMPLES_PATH
from services.router.intent.glossary import LANGUAGES, load_glossary, to_english, translate
from tierline.language import ANSWERS, SUPPORTED, detect_language, localized_answer

pytestmark = pytest.mark.unit

FRESH: list[tuple[str, str]] = [
    ("en", "Hi team, our renewal failed last night, can you help?"),
    ("en", "Please send the March receipt to accounting"),
    ("en", "Why did the price go up?"),
    ("en", "Cancel it."),
    ("en", "Hola! Quick one: where do I find my invoices?"),
    ("en", "Danke! That fixed it"),
    ("en", "Carlos Mendes, Rua Augusta 12, Lisboa"),
    ("en", "refund pls"),
    ("es", "Buenas tardes, no me deja pagar con la tarjeta nueva"),
    ("es", "¿Me podrían mandar las facturas de enero y febrero?"),
    ("es", "Quisiera saber por qué me han cobrado 120 euros"),
    ("es", "Necesito dar de baja el servicio cuanto antes"),
    ("es", "el cobro de la renovación no pasó"),
    ("de", "Guten Tag, warum wurde meine Kreditkarte belastet?"),
    ("de", "Ich hätte gerne eine Kopie der Rechnung vom Januar"),
    ("de", "Bitte das Abo zum nächsten Monat beenden"),
    ("de", "Die Zahlung ist leider nicht durchgegangen"),
    ("de", "Können Sie mir helfen? Ich finde meine Rechnungen nicht"),
    ("fr", "Bonjour, ma carte ne fonctionne plus pour le paiement"),
    ("fr", "Je n'ai pas reçu ma facture de janvier"),
    ("fr", "Pourquoi ai-je payé deux fois ce mois-ci ?"),
    ("fr", "Merci de résilier notre abonnement"),
    ("fr", "Est-ce que je peux changer de carte bancaire ?"),
    ("pt", "Bom dia, meu cartão não está passando"),
    ("pt", "Vocês podem mandar a nota fiscal de janeiro?"),
    ("pt", "Por que a cobrança veio tão alta?"),
    ("pt", "Quero cancelar o plano ainda hoje"),
    ("pt", "Não consigo pagar a fatura pelo site"),
    ("ja", "請求書を送ってください"),
    ("zh", "我的信用卡被拒绝了"),
    ("ko", "카드 결제가 거절되었습니다"),
    ("ru", "Пожалуйста, пришлите счёт за прошлый месяц"),
    ("uk", "Будь ласка, надішліть рахунок"),
    ("ar", "تم رفض بطاقتي"),
    ("el", "Η κάρτα μου απορρίφθηκε"),
    ("pl", "Dzień dobry, proszę o fakturę za ostatni miesiąc"),
    ("it", "Buongiorno, vorrei annullare il mio abbonamento"),
    ("nl", "Kunt u mij de factuur van vorige maand sturen?"),
    ("tr", "Faturamı gönderebilir misiniz lütfen?"),
    ("sv", "Hej, jag vill säga upp min prenumeration"),
]


# --------------------------------------------------------------------------- identification


@pytest.mark.parametrize(("expected", "text"), FRESH)
def test_given_a_short_text_when_identified_then_its_language_is_named(expected: str, text: str) -> None:
    guess = detect_language(text)
    assert guess.code == expected, guess.scores
    assert guess.supported is (expected in SUPPORTED)


@pytest.mark.parametrize("text", ["", "   ", "12345", "?!", "ok", "INV-2026-0042", "jane@example.com"])
def test_given_no_evidence_when_identified_then_english_is_assumed(text: str) -> None:
    assert detect_language(text).code == "en"


def test_given_the_english_training_examples_when_identified_then_almost_all_read_as_english() -> None:
    with SAAS_EXAMPLES_PATH.open(newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    not_english = [t for t in texts if detect_language(t).code != "en"]
    # One example is itself Spanish ("hablar con un agente humano por favor"); nothing else may be sent
    # to a person for its language.
    assert len(not_english) <= 1, not_english
    assert all(detect_language(t).supported for t in not_english)


def test_given_unsupported_languages_when_identified_then_they_carry_a_readable_name() -> None:
    assert detect_language("請求書を送ってください").name == "Japanese"
    assert detect_language("Dzień dobry, proszę o fakturę za ostatni miesiąc").name == "Polish"
    assert not detect_language("請求書を送ってください").supported


# --------------------------------------------------------------------------- glossary


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("es", "Mi tarjeta fue rechazada", "my card was declined"),
        ("es", "¿me envían la factura del mes pasado?", "¿ send me the invoice of the last month ?"),
        ("de", "Meine Karte wurde abgelehnt", "my card was declined"),
        ("de", "Bitte schicken Sie mir die Rechnung", "please send you me the invoice"),
        ("fr", "Ma carte a été refusée", "my card was declined"),
        ("fr", "l'abonnement", "the subscription"),
        ("pt", "Meu cartão foi recusado", "my card was declined"),
        ("pt", "Quero cancelar a assinatura", "I want cancel the subscription"),
    ],
)
def test_given_a_glossary_language_when_translated_then_billing_terms_become_english(
    language: str, text: str, expected: str
) -> None:
    assert translate(text, language) == expected


def test_given_text_without_accents_when_translated_then_the_glossary_still_matches() -> None:
    assert translate("el pago fallo, no se como pagar", "es").startswith("the payment failed")
    assert translate("meu cartao foi recusado", "pt") == "my card was declined"


def test_given_unknown_words_and_values_when_translated_then_they_are_kept() -> None:
    assert "finance@acme.es" in translate("cambien el correo de facturación a finance@acme.es", "es")
    assert "inv-0042" in translate("la factura INV-0042 por favor", "es")


def test_given_english_or_unsupported_text_when_carried_to_english_then_it_is_unchanged() -> None:
    assert to_english("My card was declined") == "My card was declined"
    assert to_english("請求書を送ってください") == "請求書を送ってください"
    assert translate("Mi tarjeta", "it") == "Mi tarjeta"


@pytest.mark.parametrize("language", LANGUAGES)
def test_given_each_glossary_when_loaded_then_terms_are_lower_case_and_map_to_english(language: str) -> None:
    terms = load_glossary(language)
    assert len(terms) >= 200
    assert all(term == term.lower() for term in terms)
    assert all(detect_language(english).code == "en" for english in terms.values() if len(english) > 12)


# --------------------------------------------------------------------------- answers


@pytest.mark.parametrize("key", sorted(ANSWERS))
@pytest.mark.parametrize("language", ["es", "de", "fr", "pt"])
def test_given_a_common_outcome_when_answered_then_the_sentence_is_in_the_customers_language(
    key: str, language: str
) -> None:
    text = localized_answer(key, language, amount="$49.00")
    assert text is not None
    assert "{" not in text
    assert detect_language(text).code == language, text
    if "{amount}" in ANSWERS[key][language]:
        assert "$49.00" in text


@pytest.mark.parametrize("language", [None, "en", "ja", "pl"])
def test_given_english_or_an_unsupported_language_when_answered_then_none_so_english_is_kept(
    language: str | None,
) -> None:
    assert localized_answer("invoice_sent", language) is None


def test_given_an_unknown_amount_when_answered_then_the_optional_amount_is_dropped_or_english_kept() -> None:
    assert localized_answer("payment_retried", "es") == (
        "Hemos vuelto a intentar el pago pendiente y se ha completado. ¡Gracias!"
    )
    assert localized_answer("refund_done", "de") is None  # the amount is the point of that sentence
    assert localized_answer("no_such_key", "es") is None
