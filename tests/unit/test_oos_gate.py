"""Out-of-scope texts never reach money (issue 20): the money-moving intents' own thresholds, chosen on
calibration material at training time, stored in meta.json and applied by the router; the hard negatives
and the two written held-out out-of-scope sets."""

from __future__ import annotations

import csv
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from schemas.vocab import Action, EscalationReason, Intent, Tier
from services.router.domain import (
    MONEY_MOVING_INTENTS,
    NEUTRAL_GATES,
    MessageReading,
    decide_route,
    reading_threshold,
    routing_threshold,
)
from services.router.handlers import RouterDeps, acting_threshold
from services.router.intent.dataset import (
    OOS_HELDOUT2_PATH,
    default_banking77_dir,
    load_corpus,
    load_oos_examples,
    load_oos_heldout,
    load_saas_examples,
    split_corpus,
)
from services.router.intent.model import (
    MONEY_THRESHOLD_CAP,
    IntentClassifier,
    IntentModelSettings,
    IntentPrediction,
    TfidfFeatures,
    choose_intent_thresholds,
    default_cache_dir,
    default_model_path,
    evaluate_out_of_scope,
    train,
)
from services.router.intent.model import acting_threshold as model_threshold

pytestmark = pytest.mark.unit

BANKING77 = default_banking77_dir()
needs_data = pytest.mark.skipif(not (BANKING77 / "train.csv").is_file(), reason="BANKING77 data not present")
I = Intent  # noqa: E741 - table shorthand
MONEY_ACTIONS = {Action.REFUND, Action.RETRY_PAYMENT, Action.CANCEL_SUBSCRIPTION, Action.CHANGE_PLAN}
MONEY_ACTIONS |= {Action.UPDATE_BILLING_DETAILS}


# --------------------------------------------------------------------------- choosing the thresholds


def test_given_wrong_readings_under_the_right_ones_when_choosing_then_the_threshold_rises_above_them() -> (
    None
):
    # out-of-scope texts read as a refund at 0.80-0.86, real refunds at 0.95 and more
    predicted = [I.REFUND_REQUEST] * 8
    confidence = [0.80, 0.83, 0.86, 0.95, 0.97, 0.99, 0.99, 1.0]
    correct = [False, False, False, True, True, True, True, True]

    chosen = choose_intent_thresholds(predicted, confidence, correct, threshold=0.78)

    assert chosen == {I.REFUND_REQUEST: 0.89}  # above 0.86 plus the margin, under every right reading


def test_given_one_wrong_reading_above_the_right_ones_when_choosing_then_no_threshold_chases_it() -> None:
    predicted = [I.CANCEL_SUBSCRIPTION] * 7
    confidence = [0.99, 0.85, 0.88, 0.9, 0.92, 0.95, 0.96]
    correct = [False, True, True, True, True, True, True]

    chosen = choose_intent_thresholds(predicted, confidence, correct, threshold=0.78)

    assert chosen == {}  # stopping the 0.99 one would cost every real cancellation
    assert MONEY_THRESHOLD_CAP < 1.0


def test_given_only_right_readings_or_other_intents_when_choosing_then_nothing_is_listed() -> None:
    predicted = [I.PLAN_CHANGE, I.PLAN_CHANGE, I.INVOICE_REQUEST]
    chosen = choose_intent_thresholds(predicted, [0.8, 0.9, 0.85], [True, True, False], threshold=0.78)

    assert chosen == {}  # invoice_request is not money-moving; plan_change has no wrong reading


# --------------------------------------------------------------------------- applying them


def test_given_an_intent_threshold_when_routing_then_the_stricter_of_the_two_applies() -> None:
    own = {I.CANCEL_SUBSCRIPTION: 0.93}

    assert routing_threshold(I.CANCEL_SUBSCRIPTION, 0.78, own) == 0.93
    assert routing_threshold(I.INVOICE_REQUEST, 0.78, own) == 0.78
    assert routing_threshold(I.CANCEL_SUBSCRIPTION, 0.95, own) == 0.95


def test_given_an_unsure_money_reading_when_routed_at_its_own_threshold_then_tier2_and_never_an_action() -> (
    None
):
    # "delete my data under GDPR" read as a cancellation at 0.80: over the model's 0.78, under cancel's 0.93
    threshold = routing_threshold(I.CANCEL_SUBSCRIPTION, 0.78, {I.CANCEL_SUBSCRIPTION: 0.93})

    gated = decide_route(I.CANCEL_SUBSCRIPTION, 0.80, NEUTRAL_GATES, None, None, threshold)
    before = decide_route(I.CANCEL_SUBSCRIPTION, 0.80, NEUTRAL_GATES, None, None, 0.78)

    assert before.selfheal_action is Action.CANCEL_SUBSCRIPTION  # what the model's threshold alone did
    assert gated.tier is Tier.TIER2
    assert gated.reason == "low_confidence"
    assert gated.selfheal_action is None
    assert gated.escalation_reason is not EscalationReason.OUT_OF_SCOPE


@pytest.mark.parametrize("reason", ["vague_with_red_diagnosis", "question_context", "choice"])
def test_given_a_reading_vouched_for_by_the_diagnosis_or_the_question_when_routed_then_the_models_threshold(
    reason: str,
) -> None:
    own = {I.PAYMENT_FAILED: 0.91}
    assert reading_threshold(I.PAYMENT_FAILED, reason, 0.78, own) == 0.78
    assert reading_threshold(I.PAYMENT_FAILED, "whole_text", 0.78, own) == 0.91


class _Classifier:
    """A stand-in classifier: the same reading for every text, optionally with per-intent thresholds."""

    def __init__(
        self,
        intent: Intent,
        confidence: float,
        threshold: float = 0.7,
        own: dict[Intent, float] | None = None,
    ) -> None:
        self.intent, self.confidence, self.threshold = intent, confidence, threshold
        if own is not None:
            self.intent_thresholds = own

    def predict(self, texts: list[str]) -> list[IntentPrediction]:
        return [
            IntentPrediction(intent=self.intent, confidence=self.confidence, candidates=[(self.intent, 1.0)])
            for _ in texts
        ]


def _deps(classifier: Any) -> RouterDeps:
    return RouterDeps(pool=None, broker=None, classifier=classifier, diagnostics=None, inbox=None)  # type: ignore[arg-type]


def test_given_the_router_when_it_picks_the_threshold_then_the_per_intent_one_for_model_readings() -> None:
    deps = _deps(_Classifier(I.REFUND_REQUEST, 0.9, threshold=0.78, own={I.REFUND_REQUEST: 0.94}))
    reading = MessageReading(intent=I.REFUND_REQUEST, confidence=0.9)
    vouched = MessageReading(intent=I.REFUND_REQUEST, confidence=0.9, reason="question_context")

    assert acting_threshold(deps, reading) == 0.94
    assert acting_threshold(deps, vouched) == 0.78
    assert acting_threshold(_deps(_Classifier(I.REFUND_REQUEST, 0.9, threshold=0.78)), reading) == 0.78


def test_given_per_intent_thresholds_when_scoring_held_out_oos_then_a_gated_reading_is_not_acted_on() -> None:
    plain = evaluate_out_of_scope(_Classifier(I.REFUND_REQUEST, 0.9))  # type: ignore[arg-type]
    gated = evaluate_out_of_scope(_Classifier(I.REFUND_REQUEST, 0.9, own={I.REFUND_REQUEST: 0.95}))  # type: ignore[arg-type]

    assert plain is not None
    assert gated is not None
    assert (plain.acted_money, gated.acted_money) == (1.0, 0.0)
    assert gated.recall == 0.0  # still not read as out of scope: the gate does not change the reading


def _tiny(own: dict[Intent, float] | None = None) -> IntentClassifier:
    return IntentClassifier(
        fine_labels=["refund", "other"],
        fine_intents=[I.REFUND_REQUEST, I.OUT_OF_SCOPE],
        w_embedding=np.zeros((384, 2)),
        w_tfidf=np.ones((2, 2)),
        bias=np.zeros(2),
        tfidf=TfidfFeatures(["refund", "invoice"], np.array([1.0, 2.0])),
        threshold=0.78,
        intent_thresholds=own,
    )


def test_given_per_intent_thresholds_when_saved_and_loaded_then_meta_json_carries_them(
    tmp_path: Path,
) -> None:
    _tiny({I.REFUND_REQUEST: 0.92}).save(tmp_path)

    assert json.loads((tmp_path / "meta.json").read_text())["intent_thresholds"] == {"refund_request": 0.92}
    loaded = IntentClassifier.load(tmp_path)
    assert loaded.intent_thresholds == {I.REFUND_REQUEST: 0.92}
    assert loaded.threshold_for(I.REFUND_REQUEST) == 0.92
    assert loaded.threshold_for(I.INVOICE_REQUEST) == 0.78


def test_given_an_artefact_from_before_the_gate_when_loaded_then_the_models_threshold_everywhere(
    tmp_path: Path,
) -> None:
    _tiny().save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["intent_thresholds"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))

    loaded = IntentClassifier.load(tmp_path)

    assert loaded.intent_thresholds == {}
    assert all(loaded.threshold_for(intent) == 0.78 for intent in MONEY_MOVING_INTENTS)


def test_given_the_money_moving_set_when_read_then_refund_cancel_plan_details_duplicate_and_retry() -> None:
    assert {
        I.REFUND_REQUEST,
        I.DUPLICATE_CHARGE,
        I.CANCEL_SUBSCRIPTION,
        I.PLAN_CHANGE,
        I.UPDATE_BILLING_DETAILS,
        I.PAYMENT_FAILED,
    } == MONEY_MOVING_INTENTS


# --------------------------------------------------------------------------- the written data


def _heldout2_domains() -> Counter[str]:
    with OOS_HELDOUT2_PATH.open(newline="", encoding="utf-8") as fh:
        return Counter(row["domain"] for row in csv.DictReader(fh))


def test_given_the_hard_negatives_when_counted_then_the_issues_domains_are_covered() -> None:
    domains = Counter(domain for _, domain in load_oos_examples())
    wanted = {"privacy", "tax", "retail", "travel", "banking", "insurance", "telecom", "car", "assistant"}
    assert wanted | {"smalltalk", "product"} <= set(domains)
    assert all(domains[d] >= 15 for d in wanted)
    texts = {text.lower() for text, _ in load_oos_examples()}
    assert "need a w-9" not in texts  # the issue's misreads stay checks, never training text
    assert "delete my data under gdpr" not in texts


def test_given_the_second_held_out_set_when_read_then_100_plus_texts_from_domains_never_trained_on() -> None:
    heldout2 = load_oos_heldout(OOS_HELDOUT2_PATH)
    trained = {text.lower() for text, _ in load_oos_examples()} | {
        text.lower() for text, _ in load_saas_examples()
    }
    first = {text.lower() for text in load_oos_heldout()}

    assert len(heldout2) >= 100
    assert len({t.lower() for t in heldout2}) == len(heldout2)
    assert trained.isdisjoint(t.lower() for t in heldout2)
    assert first.isdisjoint(t.lower() for t in heldout2)
    domains = _heldout2_domains()
    assert len(domains) >= 10
    assert set(domains).isdisjoint(domain for _, domain in load_oos_examples())


@needs_data
def test_given_the_corpus_when_split_then_the_probe_half_of_every_domain_is_hard_negatives_in_train() -> None:
    corpus = load_corpus(BANKING77)
    splits = split_corpus(corpus, 0)
    negatives = load_oos_examples()
    start = len(corpus) - len(negatives)

    probe = splits.probe.tolist()
    assert probe
    assert all(k >= start for k in probe)
    assert set(probe) <= set(splits.train.tolist())
    per_domain = Counter(corpus.fine_labels[k] for k in probe)
    totals = Counter(f"oos:{domain}" for _, domain in negatives)
    assert set(per_domain) == set(totals)
    assert all(per_domain[d] == (totals[d] + 1) // 2 for d in totals)
    assert np.array_equal(splits.probe, split_corpus(corpus, 0).probe)


# --------------------------------------------------------------------------- the trained model (embeds)


@pytest.fixture(scope="module")
def trained() -> IntentClassifier:
    """The artefact at the model path when it matches the data (``TIERLINE_MODEL_DIR``), else one run."""
    if not (BANKING77 / "train.csv").is_file():
        pytest.skip("BANKING77 data not present")
    path = default_model_path(IntentModelSettings())
    meta_path = path / "meta.json"
    current = load_corpus(BANKING77).data_hash
    if meta_path.is_file() and json.loads(meta_path.read_text())["data_hash"] == current:
        return IntentClassifier.load(path)
    out = Path(tempfile.mkdtemp(prefix="oos-gate-model-"))
    train(out, BANKING77, seed=0, cache_dir=default_cache_dir())
    return IntentClassifier.load(out)


@pytest.mark.integration
def test_given_the_trained_model_when_read_then_money_moving_intents_carry_calibrated_thresholds(
    trained: IntentClassifier,
) -> None:
    assert trained.intent_thresholds
    assert set(trained.intent_thresholds) <= MONEY_MOVING_INTENTS
    assert all(trained.threshold < t <= MONEY_THRESHOLD_CAP for t in trained.intent_thresholds.values())


@pytest.mark.integration
def test_given_the_first_written_oos_set_when_routed_then_recall_holds_and_none_reaches_money(
    trained: IntentClassifier,
) -> None:
    """The issue's targets: OOS recall >= 0.95 and at most 1 in 200 OOS texts on a money-moving route."""
    texts = load_oos_heldout()
    metrics = evaluate_out_of_scope(trained)
    assert metrics is not None
    assert metrics.recall >= 0.95
    assert metrics.acted_money <= 0.005
    for text, prediction in zip(texts, trained.predict(texts), strict=True):
        decision = decide_route(
            prediction.intent,
            prediction.confidence,
            NEUTRAL_GATES,
            None,
            None,
            model_threshold(trained, prediction.intent),
        )
        assert decision.selfheal_action not in MONEY_ACTIONS, (text, prediction.intent, prediction.confidence)


@pytest.mark.integration
def test_given_the_second_written_oos_set_from_untrained_domains_when_scored_then_far_fewer_reach_money(
    trained: IntentClassifier,
) -> None:
    """Domains never trained on (health, school, pets, legal, events, ...): 7.9% reached a money-moving
    intent before the hard negatives and the gate (recall 0.71); measured after: 2.4%, recall 0.87."""
    metrics = evaluate_out_of_scope(trained, OOS_HELDOUT2_PATH)
    assert metrics is not None
    assert metrics.recall >= 0.85
    assert metrics.acted_money <= 0.03
