"""The multilingual training and held-out examples, and how they enter the intent corpus."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from schemas.vocab import Intent
from services.router.intent.dataset import (
    MULTILINGUAL_EXAMPLES_PATH,
    MULTILINGUAL_HELDOUT_PATH,
    DatasetError,
    default_banking77_dir,
    load_corpus,
    load_multilingual_examples,
    load_oos_examples,
    load_oos_heldout,
    load_saas_examples,
    split_corpus,
)
from services.router.intent.glossary import translate
from services.router.intent.model import IntentPrediction, evaluate_languages, evaluate_out_of_scope
from tierline.language import detect_language

pytestmark = pytest.mark.unit

BANKING77 = default_banking77_dir()
PUBLIC_SCENARIOS = BANKING77.parent / "scenarios" / "public.jsonl"
LANGUAGES = {"es", "de", "fr", "pt"}
needs_data = pytest.mark.skipif(not (BANKING77 / "train.csv").is_file(), reason="BANKING77 data not present")


def test_given_the_multilingual_examples_when_counted_then_every_intent_has_examples_in_every_language() -> (
    None
):
    rows = load_multilingual_examples()
    counts = Counter((language, intent) for _, intent, language in rows)
    assert {language for _, _, language in rows} == LANGUAGES
    for language in LANGUAGES:
        for intent in Intent:
            assert counts[(language, intent)] >= 8, (language, intent)


def test_given_the_held_out_file_when_compared_then_it_shares_no_text_with_any_training_file() -> None:
    heldout = load_multilingual_examples(MULTILINGUAL_HELDOUT_PATH)
    trained = {text.lower() for text, _, _ in load_multilingual_examples()}
    trained |= {text.lower() for text, _ in load_saas_examples()}
    assert {language for _, _, language in heldout} == LANGUAGES
    assert {intent for _, intent, _ in heldout} == set(Intent)
    assert trained.isdisjoint(text.lower() for text, _, _ in heldout)
    if PUBLIC_SCENARIOS.is_file():
        public = {
            json.loads(line)["contact"]["text"].lower()
            for line in PUBLIC_SCENARIOS.read_text().splitlines()
            if json.loads(line).get("contact")
        }
        assert public.isdisjoint(trained)


@pytest.mark.parametrize("path", [MULTILINGUAL_EXAMPLES_PATH, MULTILINGUAL_HELDOUT_PATH])
def test_given_the_written_examples_when_identified_then_each_reads_as_its_labelled_language(
    path: Path,
) -> None:
    rows = load_multilingual_examples(path)
    wrong = [(language, text) for text, _, language in rows if detect_language(text).code != language]
    assert not wrong


def test_given_a_row_without_a_language_code_when_loaded_then_a_dataset_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,intent,language\nmi tarjeta,payment_failed,spanish\n", encoding="utf-8")
    with pytest.raises(DatasetError):
        load_multilingual_examples(bad)
    bad.write_text("text,intent,language\nmi tarjeta,not_an_intent,es\n", encoding="utf-8")
    with pytest.raises(DatasetError):
        load_multilingual_examples(bad)


@needs_data
def test_given_the_corpus_when_loaded_then_multilingual_examples_arrive_in_english_with_saas_labels() -> None:
    corpus = load_corpus(BANKING77)
    rows = load_multilingual_examples()
    negatives = load_oos_examples()
    assert corpus.n_train_only == len(rows) + len(negatives)
    start = len(corpus) - corpus.n_train_only
    tail = range(start, start + len(rows))
    for k, (text, intent, language) in zip(tail, rows, strict=True):
        assert corpus.texts[k] == translate(text, language)
        assert corpus.fine_labels[k] == f"saas:{intent.value}"
        assert corpus.is_saas[k]
    assert corpus.data_hash != load_corpus(BANKING77, multilingual_path=None).data_hash


@needs_data
def test_given_multilingual_rows_when_split_then_they_train_only_and_the_other_splits_do_not_move() -> None:
    with_rows = load_corpus(BANKING77)
    without = load_corpus(BANKING77, multilingual_path=None, oos_path=None)
    a, b = split_corpus(with_rows, 0), split_corpus(without, 0)
    assert np.array_equal(a.test, b.test)
    assert np.array_equal(a.calibration, b.calibration)
    tail = set(range(len(without), len(with_rows)))
    assert tail <= set(a.train.tolist())
    assert len(a.train) == len(b.train) + len(tail)


def test_given_the_hard_negatives_when_read_then_many_domains_and_none_in_the_held_out_set() -> None:
    negatives = load_oos_examples()
    heldout = load_oos_heldout()
    domains = Counter(domain for _, domain in negatives)
    assert len(negatives) >= 250
    assert len(heldout) >= 140
    assert len(domains) >= 8
    assert min(domains.values()) >= 15
    trained = {text.lower() for text, _ in negatives} | {text.lower() for text, _ in load_saas_examples()}
    assert len({text.lower() for text, _ in negatives}) == len(negatives)
    assert trained.isdisjoint(text.lower() for text in heldout)


@needs_data
def test_given_the_corpus_when_loaded_then_hard_negatives_are_out_of_scope_under_their_domain() -> None:
    corpus = load_corpus(BANKING77)
    negatives = load_oos_examples()
    for k, (text, domain) in zip(range(len(corpus) - len(negatives), len(corpus)), negatives, strict=True):
        assert corpus.texts[k] == text
        assert corpus.fine_labels[k] == f"oos:{domain}"
        assert corpus.intents[k] is Intent.OUT_OF_SCOPE


class _Always:
    """A stand-in classifier: the same intent and confidence for every text."""

    def __init__(self, intent: Intent, confidence: float, threshold: float = 0.7) -> None:
        self.intent, self.confidence, self.threshold = intent, confidence, threshold

    def predict(self, texts: list[str]) -> list[IntentPrediction]:
        return [
            IntentPrediction(intent=self.intent, confidence=self.confidence, candidates=[(self.intent, 1.0)])
            for _ in texts
        ]


def test_given_a_classifier_when_scored_per_language_then_accuracy_and_confident_share_per_language() -> None:
    rows = load_multilingual_examples(MULTILINGUAL_HELDOUT_PATH)
    share = sum(intent is Intent.INVOICE_REQUEST for _, intent, language in rows if language == "es") / sum(
        language == "es" for _, _, language in rows
    )

    confident = evaluate_languages(_Always(Intent.INVOICE_REQUEST, 0.9))  # type: ignore[arg-type]
    unsure = evaluate_languages(_Always(Intent.INVOICE_REQUEST, 0.5))  # type: ignore[arg-type]

    assert set(confident) == LANGUAGES
    assert confident["es"].accuracy == pytest.approx(share, abs=1e-4)
    assert confident["es"].accepted_accuracy == pytest.approx(share, abs=1e-4)
    assert unsure["es"].accepted_accuracy == 0.0


@pytest.mark.parametrize(
    ("intent", "confidence", "recall", "acted", "money"),
    [
        (Intent.OUT_OF_SCOPE, 0.9, 1.0, 0.0, 0.0),
        (Intent.REFUND_REQUEST, 0.9, 0.0, 1.0, 1.0),
        (Intent.INVOICE_REQUEST, 0.9, 0.0, 1.0, 0.0),
        (Intent.REFUND_REQUEST, 0.5, 0.0, 0.0, 0.0),  # below the threshold: nobody acts on it
    ],
)
def test_given_a_classifier_when_scored_on_held_out_oos_then_recall_and_acted_shares(
    intent: Intent, confidence: float, recall: float, acted: float, money: float
) -> None:
    metrics = evaluate_out_of_scope(_Always(intent, confidence))  # type: ignore[arg-type]

    assert metrics is not None
    assert (metrics.recall, metrics.acted_in_scope, metrics.acted_money) == (recall, acted, money)
