"""The router's offline intent model.

Features: the all-MiniLM-L6-v2 sentence embedding (``tierline.embeddings.embed`` in the ``ENCODER``
variant: int8, 128 tokens, four of six layers) next to a word 1-2-gram TF-IDF vector. Classifier:
multinomial logistic regression over *fine* labels (each BANKING77 category, plus one
``saas:<intent>`` label per intent for the project's own examples); fine probabilities are summed per
intent. Confidence is temperature-scaled on a calibration split, and the routing threshold is chosen
on that same split; each money-moving intent may get a stricter threshold of its own, chosen on that
split and on half of the written hard negatives read by a probe model fitted without them
(``intent_thresholds`` in meta.json; the router applies them). A third, held-out split is used only
for the reported metrics.

The artefact is plain files: ``weights.npz`` (float arrays), ``vocab.json`` and ``meta.json``
(labels, temperature, threshold, data hash, encoder variant, metrics). Nothing is pickled. An artefact
fitted on another encoder variant's vectors is refused at load time: retrain it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import structlog
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from scipy import sparse
from scipy.optimize import minimize_scalar

from schemas.vocab import Intent
from services.router.domain import MONEY_MOVING_INTENTS, routing_threshold
from services.router.intent.dataset import (
    MULTILINGUAL_HELDOUT_PATH,
    OOS_HELDOUT2_PATH,
    OOS_HELDOUT3_PATH,
    OOS_HELDOUT_PATH,
    PRODUCT_HELDOUT_PATH,
    REPO_ROOT,
    Corpus,
    DatasetError,
    Splits,
    default_banking77_dir,
    load_corpus,
    load_multilingual_examples,
    load_oos_heldout,
    load_saas_examples,
    split_corpus,
)
from services.router.intent.glossary import to_english
from tierline.embeddings import EncoderVariant, embed

log = structlog.get_logger(__name__)

FORMAT_VERSION = 1
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Training and inference embed with this variant; meta.json records its id and loading checks it.
# int8 roughly halves the encoder's time, but six int8 layers already run at the int8 peak of an AVX2
# core and stay short of 300 contacts/s; running layers 0, 1, 2 and 5 (skipping the middle two, which
# costs less than dropping the last ones) gets there at a small cost in held-out macro-F1.
ENCODER = EncoderVariant("int8", 128, layers=(0, 1, 2, 5))
RETRAIN_HINT = "run `tierline train-intents` to rebuild it"
NGRAM_RANGE = (1, 2)
MIN_DF = 2
C_REGULARISATION = 30.0
CLASS_BALANCE_POWER = 0.5  # sample weight = (balanced class weight) ** power
TARGET_PRECISION = 0.99  # accuracy of accepted (confidence >= threshold) predictions on the calibration split
THRESHOLD_BOUNDS = (0.30, 0.90)
# Money-moving intents get their own threshold, chosen on calibration material: the calibration split and
# the hard negatives a probe model fitted without them reads (``choose_intent_thresholds``). Out-of-scope
# texts from unseen domains reach these intents with the confidence of a real ask more often than the
# calibration split alone shows; an unsure reading goes to a clarifying question or Tier 2, never a refund.
MONEY_THRESHOLD_MARGIN = 0.02
MONEY_THRESHOLD_CAP = 0.97
MONEY_ERROR_COST = 4  # right readings a money-moving intent may give up to stop one wrong reading
TOP_K = 3
IN_SCOPE: tuple[Intent, ...] = tuple(intent for intent in Intent if intent is not Intent.OUT_OF_SCOPE)

FloatArray = npt.NDArray[np.float32]


class IntentModelError(RuntimeError):
    """Base error of the intent model."""


class IntentModelNotFound(IntentModelError):
    """No trained artefact at the given path."""


class IntentModelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    model_dir: Path | None = None


def default_model_path(settings: IntentModelSettings | None = None) -> Path:
    """``TIERLINE_MODEL_DIR`` if set, else ``<repo>/.tierline/models/intent``."""
    settings = settings or IntentModelSettings()
    return settings.model_dir or (REPO_ROOT / ".tierline" / "models" / "intent")


def default_cache_dir() -> Path:
    return REPO_ROOT / ".tierline" / "cache" / "embeddings"


class IntentPrediction(BaseModel):
    intent: Intent
    confidence: float = Field(ge=0.0, le=1.0)
    candidates: list[tuple[Intent, float]]  # top 3, best first


class EvaluationMetrics(BaseModel):
    n: int
    accuracy: float
    macro_f1_in_scope: float
    out_of_scope_recall: float
    per_intent_f1: dict[str, float]
    threshold: float
    coverage_at_threshold: float  # share of texts with confidence >= threshold
    accuracy_at_threshold: float  # accuracy among those
    saas_macro_f1_in_scope: float | None = None  # on the project's own examples in the split


class LanguageMetrics(BaseModel):
    """Per-language quality on ``multilingual_heldout.csv`` (texts written for it, never trained on)."""

    n: int
    accuracy: float
    accepted_accuracy: float  # share that is both right and confident enough to act on (>= threshold)


class OutOfScopeMetrics(BaseModel):
    """On ``oos_heldout.csv``: texts from other domains, written for measuring only."""

    n: int
    recall: float  # read as out_of_scope
    acted_in_scope: float  # read in scope with confidence >= threshold (a tier would act on it)
    acted_money: float  # ... on a money-moving intent (refund, cancel, plan change, billing details)


class ProductMetrics(BaseModel):
    """On ``product_heldout.csv``: product asks and their billing neighbours, written for measuring only."""

    n: int
    accuracy: float
    accepted_accuracy: float  # right and confident enough to act on
    per_intent_accuracy: dict[str, float]
    #: product asks (team_member, api_key, account_access) a tier would act on as a billing intent
    product_read_as_billing: float


class TrainReport(BaseModel):
    model_dir: Path
    seed: int
    data_hash: str
    n_train: int
    n_calibration: int
    n_test: int
    vocabulary_size: int
    temperature: float
    threshold: float
    train_seconds: float
    test: EvaluationMetrics
    calibration_ece_before: float
    calibration_ece_after: float
    languages: dict[str, LanguageMetrics] = Field(default_factory=dict)  # written held-out, never trained
    out_of_scope_heldout: OutOfScopeMetrics | None = None  # written held-out, never trained
    out_of_scope_heldout2: OutOfScopeMetrics | None = None  # a second one, from domains not trained on
    out_of_scope_heldout3: OutOfScopeMetrics | None = None  # a third, written before its negatives
    product_heldout: ProductMetrics | None = None  # the product intents and their billing boundary
    intent_thresholds: dict[str, float] = Field(default_factory=dict)  # money-moving intents' own thresholds
    #: on the test split, per money-moving intent: share of its texts read right and acted on, at the
    #: model's threshold and at the intent's own (what the stricter gate costs in automation)
    money_coverage: dict[str, tuple[float, float]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- embeddings


def _embed(texts: list[str]) -> FloatArray:
    """``tierline.embeddings.embed`` in ``ENCODER``, the variant the model is trained and served with."""
    return embed(texts, variant=ENCODER)


def _cache_path(texts: list[str], cache_dir: Path, variant: EncoderVariant) -> Path:
    """One file per (encoder variant, texts): vectors of another variant are never reused."""
    digest = hashlib.sha256(variant.id.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    return cache_dir / f"emb-{digest.hexdigest()[:24]}.npy"


def _embed_cached(texts: list[str], cache_dir: Path | None) -> FloatArray:
    if cache_dir is None:
        return _embed(texts)
    path = _cache_path(texts, cache_dir, ENCODER)
    if path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(texts):
            return np.asarray(cached, dtype=np.float32)
    vectors = _embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


# --------------------------------------------------------------------------- lexical features


class TfidfFeatures:
    """Sublinear word n-gram TF-IDF with a fixed vocabulary, rows L2-normalised (no fitted object kept).

    Terms come from scikit-learn's word analyzer (the one ``fit`` uses); the rows are assembled directly,
    which is much cheaper than ``CountVectorizer.transform`` for the one or few texts of a prediction.
    """

    def __init__(self, vocabulary: Sequence[str], idf: npt.NDArray[np.floating[Any]]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        if len(vocabulary) != len(idf):
            raise IntentModelError("vocabulary and idf differ in length")
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self._index = {term: i for i, term in enumerate(self.vocabulary)}
        self._analyze = CountVectorizer(ngram_range=NGRAM_RANGE, lowercase=True).build_analyzer()

    @classmethod
    def fit(cls, texts: Sequence[str]) -> TfidfFeatures:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(
            ngram_range=NGRAM_RANGE, min_df=MIN_DF, sublinear_tf=True, lowercase=True
        )
        vectorizer.fit(list(texts))
        return cls(list(vectorizer.get_feature_names_out()), vectorizer.idf_)

    def _counts(self, text: str) -> Counter[int]:
        """Vocabulary index -> occurrences of that term in ``text``."""
        index = self._index
        return Counter(i for i in map(index.get, self._analyze(text)) if i is not None)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        indptr, indices, counts = [0], [], []
        for text in texts:
            row = self._counts(text)
            for column in sorted(row):
                indices.append(column)
                counts.append(row[column])
            indptr.append(len(indices))
        columns = np.asarray(indices, dtype=np.int64)
        data = (1.0 + np.log(np.asarray(counts, dtype=np.float64))) * self.idf[columns]
        row_of = np.repeat(np.arange(len(texts)), np.diff(indptr))
        norms = np.sqrt(np.bincount(row_of, weights=data * data, minlength=len(texts)))
        norms[norms == 0.0] = 1.0
        data /= norms[row_of]
        shape = (len(texts), len(self.vocabulary))
        return sparse.csr_matrix((data, columns, np.asarray(indptr)), shape=shape)


# --------------------------------------------------------------------------- classifier


def _softmax(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return out


def _check_encoder_variant(path: Path, meta: dict[str, Any]) -> None:
    """Refuse an artefact whose weights were fitted on another encoder variant's vectors."""
    trained_with = meta.get("encoder_variant") or "an unrecorded encoder variant"
    if trained_with != ENCODER.id:
        raise IntentModelError(
            f"intent model at {path} was trained on {trained_with} embeddings, "
            f"but this build embeds with {ENCODER.id}; {RETRAIN_HINT}"
        )


class IntentClassifier:
    """Embedding + TF-IDF logistic regression over fine labels, summed per intent."""

    def __init__(
        self,
        *,
        fine_labels: Sequence[str],
        fine_intents: Sequence[Intent],
        w_embedding: npt.NDArray[np.floating[Any]],
        w_tfidf: npt.NDArray[np.floating[Any]],
        bias: npt.NDArray[np.floating[Any]],
        tfidf: TfidfFeatures,
        temperature: float = 1.0,
        threshold: float = 0.5,
        meta: dict[str, Any] | None = None,
        encoder_variant: str | None = None,
        intent_thresholds: Mapping[Intent, float] | None = None,
    ) -> None:
        self.fine_labels = list(fine_labels)
        self.intents: list[Intent] = list(Intent)
        self.w_embedding = np.asarray(w_embedding, dtype=np.float32)  # (dim, n_fine)
        self.w_tfidf = np.asarray(w_tfidf, dtype=np.float32)  # (vocab, n_fine)
        self.bias = np.asarray(bias, dtype=np.float32)  # (n_fine,)
        self.tfidf = tfidf
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        #: stricter thresholds of the money-moving intents (``routing_threshold`` applies them)
        self.intent_thresholds: dict[Intent, float] = dict(intent_thresholds or {})
        self.meta = dict(meta or {})
        self.encoder_variant = encoder_variant or ENCODER.id
        self._w_embedding64 = self.w_embedding.astype(np.float64)  # converted once, not per prediction
        self._w_tfidf64 = self.w_tfidf.astype(np.float64)
        aggregate = np.zeros((len(self.fine_labels), len(self.intents)), dtype=np.float64)
        for row, intent in enumerate(fine_intents):
            aggregate[row, self.intents.index(intent)] = 1.0
        self._aggregate = aggregate

    # ---- persistence

    @classmethod
    def load(cls, path: Path | None = None) -> IntentClassifier:
        path = path or default_model_path()
        meta_path, weights_path, vocab_path = path / "meta.json", path / "weights.npz", path / "vocab.json"
        if not (meta_path.is_file() and weights_path.is_file() and vocab_path.is_file()):
            raise IntentModelNotFound(f"no intent model at {path}; run `tierline train-intents` first")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            found = meta.get("format_version")
            raise IntentModelError(f"intent model at {path} has unsupported format {found!r}; {RETRAIN_HINT}")
        _check_encoder_variant(path, meta)
        with np.load(weights_path, allow_pickle=False) as weights:
            w_embedding, w_tfidf, bias, idf = (
                weights["w_embedding"],
                weights["w_tfidf"],
                weights["bias"],
                weights["idf"],
            )
        vocabulary = json.loads(vocab_path.read_text(encoding="utf-8"))
        classifier = cls(
            fine_labels=meta["fine_labels"],
            fine_intents=[Intent(v) for v in meta["fine_intents"]],
            w_embedding=w_embedding,
            w_tfidf=w_tfidf,
            bias=bias,
            tfidf=TfidfFeatures(vocabulary, idf),
            temperature=meta["temperature"],
            threshold=meta["threshold"],
            meta=meta,
            encoder_variant=meta["encoder_variant"],
            intent_thresholds={Intent(k): float(v) for k, v in meta.get("intent_thresholds", {}).items()},
        )
        log.info(
            "router.intent.model_loaded",
            path=str(path),
            threshold=classifier.threshold,
            intent_thresholds={k.value: v for k, v in classifier.intent_thresholds.items()},
            encoder=classifier.encoder_variant,
        )
        return classifier

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path / "weights.npz",
            w_embedding=self.w_embedding,
            w_tfidf=self.w_tfidf,
            bias=self.bias,
            idf=self.tfidf.idf,
        )
        (path / "vocab.json").write_text(json.dumps(self.tfidf.vocabulary), encoding="utf-8")
        meta = dict(self.meta)
        meta.update(
            format_version=FORMAT_VERSION,
            embedding_model=EMBEDDING_MODEL,
            encoder_variant=self.encoder_variant,
            intents=[i.value for i in self.intents],
            fine_labels=self.fine_labels,
            fine_intents=[self.intents[int(np.argmax(row))].value for row in self._aggregate],
            temperature=self.temperature,
            threshold=self.threshold,
            intent_thresholds={k.value: v for k, v in sorted(self.intent_thresholds.items())},
        )
        (path / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")

    # ---- inference

    def logits_from_embeddings(self, embeddings: FloatArray, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        lexical = self.tfidf.transform(texts)
        z = embeddings.astype(np.float64) @ self._w_embedding64
        z += np.asarray(lexical @ self._w_tfidf64)
        z += self.bias
        return z

    def intent_probabilities(
        self, logits: npt.NDArray[np.float64], temperature: float | None = None
    ) -> npt.NDArray[np.float64]:
        t = self.temperature if temperature is None else temperature
        out: npt.NDArray[np.float64] = _softmax(logits / t) @ self._aggregate
        return out

    def predict_proba(self, texts: list[str]) -> npt.NDArray[np.float64]:
        """(n, len(Intent)) calibrated probabilities, columns in ``Intent`` order."""
        if not texts:
            return np.zeros((0, len(self.intents)))
        texts = [to_english(text) for text in texts]  # es/de/fr/pt through the billing glossary
        return self.intent_probabilities(self.logits_from_embeddings(_embed(texts), texts))

    def predictions_from_proba(self, proba: npt.NDArray[np.float64]) -> list[IntentPrediction]:
        out: list[IntentPrediction] = []
        for row in proba:
            order = np.argsort(-row, kind="stable")[:TOP_K]
            candidates = [(self.intents[i], float(min(1.0, row[i]))) for i in order]
            out.append(
                IntentPrediction(intent=candidates[0][0], confidence=candidates[0][1], candidates=candidates)
            )
        return out

    def predict(self, texts: list[str]) -> list[IntentPrediction]:
        return self.predictions_from_proba(self.predict_proba(texts))

    def threshold_for(self, intent: Intent) -> float:
        """The confidence a reading of ``intent`` needs before a tier acts on it."""
        return routing_threshold(intent, self.threshold, self.intent_thresholds)


def acting_threshold(classifier: Any, intent: Intent) -> float:
    """``classifier.threshold_for(intent)``; a classifier without per-intent thresholds: its threshold."""
    own: Mapping[Intent, float] = getattr(classifier, "intent_thresholds", {})
    return routing_threshold(intent, float(classifier.threshold), own)


# --------------------------------------------------------------------------- evaluation


def _f1_per_intent(gold: Sequence[Intent], pred: Sequence[Intent]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    labels = [i.value for i in Intent]
    present = [lab for lab in labels if lab in {g.value for g in gold}]
    scores = f1_score(
        [g.value for g in gold], [p.value for p in pred], labels=present, average=None, zero_division=0
    )
    return {lab: float(s) for lab, s in zip(present, scores, strict=True)}


def metrics_from_predictions(
    gold: Sequence[Intent],
    predictions: Sequence[IntentPrediction],
    threshold: float,
    is_saas: Sequence[bool] | None = None,
) -> EvaluationMetrics:
    if len(gold) != len(predictions) or not gold:
        raise ValueError("gold and predictions must be non-empty and of equal length")
    pred = [p.intent for p in predictions]
    per_intent = _f1_per_intent(gold, pred)
    in_scope = [per_intent[i.value] for i in IN_SCOPE if i.value in per_intent]
    oos_gold = [k for k, g in enumerate(gold) if g is Intent.OUT_OF_SCOPE]
    oos_recall = (
        sum(pred[k] is Intent.OUT_OF_SCOPE for k in oos_gold) / len(oos_gold) if oos_gold else float("nan")
    )
    accepted = [k for k, p in enumerate(predictions) if p.confidence >= threshold]
    saas_f1: float | None = None
    if is_saas is not None and any(is_saas):
        idx = [k for k, s in enumerate(is_saas) if s]
        saas_scores = _f1_per_intent([gold[k] for k in idx], [pred[k] for k in idx])
        values = [saas_scores[i.value] for i in IN_SCOPE if i.value in saas_scores]
        saas_f1 = float(np.mean(values)) if values else None
    return EvaluationMetrics(
        n=len(gold),
        accuracy=float(np.mean([g is p for g, p in zip(gold, pred, strict=True)])),
        macro_f1_in_scope=float(np.mean(in_scope)) if in_scope else float("nan"),
        out_of_scope_recall=float(oos_recall),
        per_intent_f1=per_intent,
        threshold=threshold,
        coverage_at_threshold=len(accepted) / len(gold),
        accuracy_at_threshold=(
            float(np.mean([pred[k] is gold[k] for k in accepted])) if accepted else float("nan")
        ),
        saas_macro_f1_in_scope=saas_f1,
    )


def evaluate(
    classifier: IntentClassifier,
    texts: list[str],
    gold: Sequence[Intent],
    is_saas: Sequence[bool] | None = None,
) -> EvaluationMetrics:
    """Macro-F1 over in-scope intents, out_of_scope recall and per-intent F1 on ``texts``."""
    return metrics_from_predictions(gold, classifier.predict(texts), classifier.threshold, is_saas)


def evaluate_heldout(
    model_dir: Path | None = None, banking77_dir: Path | None = None, cache_dir: Path | None = None
) -> EvaluationMetrics:
    """Re-score the artefact on its own held-out split (rebuilt from the seed; data hash checked)."""
    classifier = IntentClassifier.load(model_dir)
    corpus = load_corpus(banking77_dir or default_banking77_dir())
    if corpus.data_hash != classifier.meta.get("data_hash"):
        raise IntentModelError(f"training data changed since this artefact was built; {RETRAIN_HINT}")
    splits = split_corpus(corpus, seed=int(classifier.meta["seed"]))
    texts = [corpus.texts[i] for i in splits.test]
    vectors = _embed_cached(texts, cache_dir)
    proba = classifier.intent_probabilities(classifier.logits_from_embeddings(vectors, texts))
    return metrics_from_predictions(
        [corpus.intents[i] for i in splits.test],
        classifier.predictions_from_proba(proba),
        classifier.threshold,
        [corpus.is_saas[i] for i in splits.test],
    )


def evaluate_languages(
    classifier: IntentClassifier, path: Path = MULTILINGUAL_HELDOUT_PATH
) -> dict[str, LanguageMetrics]:
    """Accuracy per language on the written multilingual held-out texts (empty if the file is absent)."""
    if not path.is_file():
        return {}
    rows = load_multilingual_examples(path)
    predictions = classifier.predict([text for text, _, _ in rows])
    by_language: dict[str, list[tuple[bool, bool]]] = {}
    for (_, gold, language), prediction in zip(rows, predictions, strict=True):
        right = prediction.intent is gold
        by_language.setdefault(language, []).append(
            (right, right and prediction.confidence >= acting_threshold(classifier, prediction.intent))
        )
    return {
        language: LanguageMetrics(
            n=len(marks),
            accuracy=round(sum(r for r, _ in marks) / len(marks), 4),
            accepted_accuracy=round(sum(a for _, a in marks) / len(marks), 4),
        )
        for language, marks in sorted(by_language.items())
    }


# Intents whose action moves money or changes the subscription (the "money-moving" set).
MONEY_MOVING: frozenset[Intent] = frozenset(
    {
        Intent.REFUND_REQUEST,
        Intent.DUPLICATE_CHARGE,
        Intent.CANCEL_SUBSCRIPTION,
        Intent.PLAN_CHANGE,
        Intent.UPDATE_BILLING_DETAILS,
    }
)


def evaluate_out_of_scope(
    classifier: IntentClassifier, path: Path = OOS_HELDOUT_PATH
) -> OutOfScopeMetrics | None:
    """OOS recall and how many OOS texts a tier would act on (at the intent's own threshold), on a
    written held-out set."""
    if not path.is_file():
        return None
    texts = load_oos_heldout(path)
    predictions = classifier.predict(texts)
    acted = [
        p
        for p in predictions
        if p.intent is not Intent.OUT_OF_SCOPE and p.confidence >= acting_threshold(classifier, p.intent)
    ]
    return OutOfScopeMetrics(
        n=len(texts),
        recall=round(sum(p.intent is Intent.OUT_OF_SCOPE for p in predictions) / len(texts), 4),
        acted_in_scope=round(len(acted) / len(texts), 4),
        acted_money=round(sum(p.intent in MONEY_MOVING for p in acted) / len(texts), 4),
    )


#: The SaaS product's own asks (issue 23): never a billing action.
PRODUCT_INTENTS: frozenset[Intent] = frozenset({Intent.TEAM_MEMBER, Intent.API_KEY, Intent.ACCOUNT_ACCESS})


def evaluate_product(
    classifier: IntentClassifier, path: Path = PRODUCT_HELDOUT_PATH
) -> ProductMetrics | None:
    """Accuracy on the written product held-out texts, per intent, and how many product asks a tier would
    act on as a billing intent (``None`` if the file is absent)."""
    if not path.is_file():
        return None
    rows = load_saas_examples(path)
    predictions = classifier.predict([text for text, _ in rows])
    right = [p.intent is gold for (_, gold), p in zip(rows, predictions, strict=True)]
    acted = [p.confidence >= acting_threshold(classifier, p.intent) for p in predictions]
    per_intent: dict[str, list[bool]] = {}
    for (_, gold), ok in zip(rows, right, strict=True):
        per_intent.setdefault(gold.value, []).append(ok)
    product = [
        (p, a) for (_, gold), p, a in zip(rows, predictions, acted, strict=True) if gold in PRODUCT_INTENTS
    ]
    stolen = sum(a and p.intent not in PRODUCT_INTENTS | {Intent.OUT_OF_SCOPE} for p, a in product)
    return ProductMetrics(
        n=len(rows),
        accuracy=round(sum(right) / len(rows), 4),
        accepted_accuracy=round(sum(r and a for r, a in zip(right, acted, strict=True)) / len(rows), 4),
        per_intent_accuracy={k: round(sum(v) / len(v), 4) for k, v in sorted(per_intent.items())},
        product_read_as_billing=round(stolen / len(product), 4) if product else 0.0,
    )


# --------------------------------------------------------------------------- training


def _fit_temperature(
    logits: npt.NDArray[np.float64], aggregate: npt.NDArray[np.float64], gold: list[int]
) -> float:
    rows = np.arange(len(gold))

    def nll(log_t: float) -> float:
        proba = _softmax(logits / np.exp(log_t)) @ aggregate
        return float(-np.mean(np.log(np.clip(proba[rows, gold], 1e-12, None))))

    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def expected_calibration_error(confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_]) -> float:
    bins = np.linspace(0.0, 1.0, 11)
    total = 0.0
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(total)


def choose_intent_thresholds(
    predicted: Sequence[Intent],
    confidence: Sequence[float],
    correct: Sequence[bool],
    threshold: float,
    intents: Iterable[Intent] = MONEY_MOVING_INTENTS,
) -> dict[Intent, float]:
    """Per money-moving intent, the threshold (two decimals, from ``threshold`` to ``MONEY_THRESHOLD_CAP``)
    that keeps the most right readings of it while costing ``MONEY_ERROR_COST`` right ones for each wrong
    one it lets through (a wrong reading counts ``MONEY_THRESHOLD_MARGIN`` more confident than it is);
    the lowest such. A single wrong reading at 0.99 does not push the threshold to the cap: no threshold
    under it would stop it. Only intents that need more than ``threshold`` are listed."""
    out: dict[Intent, float] = {}
    grid = np.round(np.arange(threshold, MONEY_THRESHOLD_CAP + 1e-9, 0.01), 2)
    for intent in intents:
        right = np.asarray(
            [c for p, c, ok in zip(predicted, confidence, correct, strict=True) if p is intent and ok]
        )
        wrong = np.asarray(
            [c for p, c, ok in zip(predicted, confidence, correct, strict=True) if p is intent and not ok]
        )
        if not wrong.size or not grid.size:
            continue
        utility = [
            int((right >= t).sum()) - MONEY_ERROR_COST * int((wrong + MONEY_THRESHOLD_MARGIN >= t).sum())
            for t in grid
        ]
        chosen = float(grid[int(np.argmax(utility))])  # argmax: the first (lowest) of equals
        if chosen > threshold:
            out[intent] = chosen
    return out


def choose_threshold(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], target: float = TARGET_PRECISION
) -> float:
    """Lowest threshold whose accepted predictions reach ``target`` accuracy (bounded)."""
    lo, hi = THRESHOLD_BOUNDS
    for t in np.round(np.arange(lo, hi + 1e-9, 0.01), 2):
        accepted = confidence >= t
        if accepted.any() and correct[accepted].mean() >= target:
            return float(t)
    return hi


def _fit_classifier(
    corpus: Corpus,
    rows: npt.NDArray[np.int64],
    embeddings: FloatArray,
    seed: int,
) -> IntentClassifier:
    """TF-IDF vocabulary and logistic regression fitted on ``rows`` only (not calibrated yet)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.utils.class_weight import compute_sample_weight

    tfidf = TfidfFeatures.fit([corpus.texts[i] for i in rows])
    lexical = tfidf.transform(corpus.texts)
    features = sparse.hstack([sparse.csr_matrix(embeddings.astype(np.float64)), lexical]).tocsr()
    fine = np.asarray(corpus.fine_labels)
    weights = compute_sample_weight("balanced", fine[rows]) ** CLASS_BALANCE_POWER
    lr = LogisticRegression(C=C_REGULARISATION, max_iter=5000, random_state=seed)
    lr.fit(features[rows], fine[rows], sample_weight=weights)
    dim = embeddings.shape[1]
    coef = np.asarray(lr.coef_, dtype=np.float64)
    classifier = IntentClassifier(
        fine_labels=[str(c) for c in lr.classes_],
        fine_intents=[corpus.fine_to_intent[str(c)] for c in lr.classes_],
        w_embedding=coef[:, :dim].T,
        w_tfidf=coef[:, dim:].T,
        bias=np.asarray(lr.intercept_),
        tfidf=tfidf,
    )
    return classifier


def _probe_readings(
    corpus: Corpus, splits: Splits, embeddings: FloatArray, seed: int
) -> tuple[list[Intent], list[float]]:
    """The probe hard negatives read by a model fitted without them (calibrated on the same split)."""
    if not len(splits.probe):
        return [], []
    rows = np.setdiff1d(splits.train, splits.probe)
    probe = _fit_classifier(corpus, rows, embeddings, seed)
    intent_index = {intent: k for k, intent in enumerate(probe.intents)}
    cal_texts = [corpus.texts[i] for i in splits.calibration]
    cal_logits = probe.logits_from_embeddings(embeddings[splits.calibration], cal_texts)
    cal_gold = [intent_index[corpus.intents[i]] for i in splits.calibration]
    probe.temperature = _fit_temperature(cal_logits, probe._aggregate, cal_gold)
    texts = [corpus.texts[i] for i in splits.probe]
    proba = probe.intent_probabilities(probe.logits_from_embeddings(embeddings[splits.probe], texts))
    predictions = probe.predictions_from_proba(proba)
    return [p.intent for p in predictions], [p.confidence for p in predictions]


def _money_coverage(
    classifier: IntentClassifier, gold: Sequence[Intent], predictions: Sequence[IntentPrediction]
) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for intent in sorted(MONEY_MOVING_INTENTS):
        own = [p for g, p in zip(gold, predictions, strict=True) if g is intent]
        if own:
            right = [p.confidence for p in own if p.intent is intent]
            at_model = sum(c >= classifier.threshold for c in right) / len(own)
            at_own = sum(c >= classifier.threshold_for(intent) for c in right) / len(own)
            out[intent.value] = (round(at_model, 4), round(at_own, 4))
    return out


def train(
    out_dir: Path, banking77_dir: Path | None = None, seed: int = 0, *, cache_dir: Path | None = None
) -> TrainReport:
    """Fit on the train split, calibrate on the calibration split, score on the held-out split.

    The money-moving intents' thresholds are set on the calibration split and on half of the hard
    negatives, read by a probe model fitted without that half (the final model is fitted on all of them).
    """
    started = time.perf_counter()
    corpus: Corpus = load_corpus(banking77_dir or default_banking77_dir())
    splits = split_corpus(corpus, seed=seed)
    embeddings = _embed_cached(corpus.texts, cache_dir)
    classifier = _fit_classifier(corpus, splits.train, embeddings, seed)
    tfidf = classifier.tfidf
    intent_index = {intent: k for k, intent in enumerate(classifier.intents)}

    def logits_for(index: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        return classifier.logits_from_embeddings(embeddings[index], [corpus.texts[i] for i in index])

    cal_logits = logits_for(splits.calibration)
    cal_gold = [intent_index[corpus.intents[i]] for i in splits.calibration]
    raw = classifier.intent_probabilities(cal_logits, temperature=1.0)
    classifier.temperature = _fit_temperature(cal_logits, classifier._aggregate, cal_gold)
    cal = classifier.intent_probabilities(cal_logits)
    cal_correct = cal.argmax(axis=1) == np.asarray(cal_gold)
    raw_correct = raw.argmax(axis=1) == np.asarray(cal_gold)
    classifier.threshold = choose_threshold(cal.max(axis=1), cal_correct)

    probe_intents, probe_confidence = _probe_readings(corpus, splits, embeddings, seed)
    classifier.intent_thresholds = choose_intent_thresholds(
        [classifier.intents[k] for k in cal.argmax(axis=1)] + probe_intents,
        [float(c) for c in cal.max(axis=1)] + probe_confidence,
        [bool(ok) for ok in cal_correct] + [p is Intent.OUT_OF_SCOPE for p in probe_intents],
        classifier.threshold,
    )

    test_proba = classifier.intent_probabilities(logits_for(splits.test))
    test_gold = [corpus.intents[i] for i in splits.test]
    test_predictions = classifier.predictions_from_proba(test_proba)
    test_metrics = metrics_from_predictions(
        test_gold,
        test_predictions,
        classifier.threshold,
        [corpus.is_saas[i] for i in splits.test],
    )
    elapsed = time.perf_counter() - started
    report = TrainReport(
        model_dir=out_dir,
        seed=seed,
        data_hash=corpus.data_hash,
        n_train=len(splits.train),
        n_calibration=len(splits.calibration),
        n_test=len(splits.test),
        vocabulary_size=len(tfidf.vocabulary),
        temperature=classifier.temperature,
        threshold=classifier.threshold,
        train_seconds=round(elapsed, 2),
        test=test_metrics,
        calibration_ece_before=expected_calibration_error(raw.max(axis=1), raw_correct),
        calibration_ece_after=expected_calibration_error(cal.max(axis=1), cal_correct),
        languages=evaluate_languages(classifier),
        out_of_scope_heldout=evaluate_out_of_scope(classifier),
        out_of_scope_heldout2=evaluate_out_of_scope(classifier, OOS_HELDOUT2_PATH),
        out_of_scope_heldout3=evaluate_out_of_scope(classifier, OOS_HELDOUT3_PATH),
        product_heldout=evaluate_product(classifier),
        intent_thresholds={k.value: v for k, v in sorted(classifier.intent_thresholds.items())},
        money_coverage=_money_coverage(classifier, test_gold, test_predictions),
    )
    classifier.meta = {
        "seed": seed,
        "data_hash": corpus.data_hash,
        "hyperparameters": {
            "C": C_REGULARISATION,
            "ngram_range": list(NGRAM_RANGE),
            "min_df": MIN_DF,
            "class_balance_power": CLASS_BALANCE_POWER,
            "target_precision": TARGET_PRECISION,
            "money_threshold_margin": MONEY_THRESHOLD_MARGIN,
            "money_threshold_cap": MONEY_THRESHOLD_CAP,
            "money_error_cost": MONEY_ERROR_COST,
        },
        "splits": {
            "train": report.n_train,
            "calibration": report.n_calibration,
            "test": report.n_test,
            "probe": len(splits.probe),
        },
        "metrics": test_metrics.model_dump(),
    }
    classifier.save(out_dir)
    (out_dir / "metrics.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    log.info(
        "router.intent.trained",
        model_dir=str(out_dir),
        macro_f1=round(test_metrics.macro_f1_in_scope, 4),
        oos_recall=round(test_metrics.out_of_scope_recall, 4),
        threshold=classifier.threshold,
        intent_thresholds=report.intent_thresholds,
        seconds=report.train_seconds,
    )
    return report


# --------------------------------------------------------------------------- CLI entry points


def classify_lines(
    lines: Iterable[str], classifier: IntentClassifier | None = None, batch_size: int = 64
) -> Iterator[dict[str, Any]]:
    """``{"intent", "confidence", "tier"}`` for each non-blank line, in input order.

    The tier comes from ``decide_route`` with neutral gates (known, authorised customer, no
    dispute/fraud/enterprise flags) and no diagnosis.
    """
    from services.router.domain import NEUTRAL_GATES, decide_route

    model = classifier or IntentClassifier.load()

    def flush(batch: list[str]) -> Iterator[dict[str, Any]]:
        for prediction in model.predict(batch):
            decision = decide_route(
                prediction.intent,
                prediction.confidence,
                NEUTRAL_GATES,
                None,
                None,
                acting_threshold(model, prediction.intent),
            )
            yield {
                "intent": prediction.intent.value,
                "confidence": round(prediction.confidence, 4),
                "tier": decision.tier.value,
            }

    batch: list[str] = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        batch.append(text)
        if len(batch) >= batch_size:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)


def train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tierline train-intents", description="Train the router's intent model."
    )
    parser.add_argument("--out", type=Path, default=None, help="artefact directory (default: model path)")
    parser.add_argument("--banking77", type=Path, default=None, help="BANKING77 directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cache", action="store_true", help="do not cache embeddings on disk")
    args = parser.parse_args(argv)
    try:
        report = train(
            args.out or default_model_path(),
            args.banking77,
            seed=args.seed,
            cache_dir=None if args.no_cache else default_cache_dir(),
        )
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.model_dump_json(indent=2))
    return 0


def classify_main(stdin: IO[str], stdout: IO[str]) -> int:
    try:
        classifier = IntentClassifier.load()
    except IntentModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for record in classify_lines(stdin, classifier):
        stdout.write(json.dumps(record) + "\n")
    stdout.flush()
    return 0


def classify_command(argv: list[str]) -> int:
    """`tierline classify`: one text a line on stdin, one JSON line on stdout (delegated by the CLI)."""
    argparse.ArgumentParser(
        prog="tierline classify", description="One text a line on stdin -> one JSON line on stdout."
    ).parse_args(argv)
    return classify_main(sys.stdin, sys.stdout)
