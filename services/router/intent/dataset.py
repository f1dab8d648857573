"""Training material for the router's intent model: mapped BANKING77 plus the project's SaaS examples.

The project's examples come in English (``saas_examples.csv``) and in Spanish, German, French and
Portuguese (``multilingual_examples.csv``, written for tierline; same ``saas:<intent>`` labels). The
model reads English, so the multilingual examples enter the corpus carried into English by the billing
glossary (``services.router.intent.glossary``), exactly as live texts are at prediction time. A second
multilingual file, ``multilingual_heldout.csv``, is never trained on: it measures per-language accuracy.

Pure data loading and splitting (no model, no embeddings). Every example keeps a *fine* label — the
BANKING77 category, or ``saas:<intent>`` for the project's own examples — because the 58 banking
categories mapped to ``out_of_scope`` are far easier to separate one by one than as one lump; the
classifier is trained on fine labels and its probabilities are summed per intent.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import train_test_split

from schemas.vocab import Intent
from services.router.intent.glossary import glossary_paths, translate

REPO_ROOT = Path(__file__).resolve().parents[3]
SAAS_EXAMPLES_PATH = Path(__file__).resolve().parent / "data" / "saas_examples.csv"
MULTILINGUAL_EXAMPLES_PATH = Path(__file__).resolve().parent / "data" / "multilingual_examples.csv"
MULTILINGUAL_HELDOUT_PATH = Path(__file__).resolve().parent / "data" / "multilingual_heldout.csv"
OOS_EXAMPLES_PATH = Path(__file__).resolve().parent / "data" / "oos_examples.csv"
OOS_HELDOUT_PATH = Path(__file__).resolve().parent / "data" / "oos_heldout.csv"
# A second written out-of-scope set, from domains and phrasings the hard negatives do not use.
OOS_HELDOUT2_PATH = Path(__file__).resolve().parent / "data" / "oos_heldout2.csv"
# A third, written before the second round of hard negatives (issue 23), from domains no other file uses.
OOS_HELDOUT3_PATH = Path(__file__).resolve().parent / "data" / "oos_heldout3.csv"
# Product asks (team members, API keys, sign-in) and their billing neighbours, written for measuring only.
PRODUCT_HELDOUT_PATH = Path(__file__).resolve().parent / "data" / "product_heldout.csv"
SAAS_PREFIX = "saas:"
OOS_PREFIX = "oos:"
TEST_FRACTION = 0.20  # of the whole corpus: held out, only ever used for the final metrics
CALIBRATION_FRACTION = 0.10  # of the whole corpus: temperature and threshold, never for fitting weights
PROBE_EVERY = 2  # every 2nd hard negative of each domain is read by a probe model fitted without it


#: BANKING77 categories whose meaning a SaaS intent of ours covers although the shared mapping says
#: out_of_scope: a forgotten passcode is a sign-in ask (``account_access``, issue 23).
BANKING77_OVERRIDES: dict[str, Intent] = {"passcode_forgotten": Intent.ACCOUNT_ACCESS}


class DatasetError(ValueError):
    """The training material is missing or malformed."""


def default_banking77_dir() -> Path:
    """``<repo>/../shared/data/banking77`` when present, else the copy in ``<repo>/data/banking77``."""
    shared = REPO_ROOT.parent / "shared" / "data" / "banking77"
    return shared if (shared / "mapping.csv").exists() else REPO_ROOT / "data" / "banking77"


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    fine_labels: list[str]
    intents: list[Intent]
    is_saas: list[bool]
    data_hash: str
    fine_to_intent: dict[str, Intent] = field(default_factory=dict)
    n_train_only: int = 0  # the last rows (the multilingual examples) are always in the train split
    n_hard_negatives: int = 0  # the very last rows: the written out-of-scope hard negatives

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Splits:
    train: npt.NDArray[np.int64]
    calibration: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]
    #: Hard negatives (also in ``train``) that a probe model fitted without them reads, to set the
    #: money-moving intents' thresholds on out-of-scope texts the model has not seen.
    probe: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def load_mapping(banking77_dir: Path) -> dict[str, Intent]:
    path = banking77_dir / "mapping.csv"
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        mapping = {row["banking77_category"]: Intent(row["intent"]) for row in csv.DictReader(fh)}
    return mapping | {k: v for k, v in BANKING77_OVERRIDES.items() if k in mapping}


def _read_pairs(path: Path, text_col: str, label_col: str) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [(row[text_col].strip(), row[label_col].strip()) for row in csv.DictReader(fh)]
    return [(text, label) for text, label in rows if text]


def load_saas_examples(path: Path = SAAS_EXAMPLES_PATH) -> list[tuple[str, Intent]]:
    """The project's own SaaS-billing examples, ``(text, intent)``."""
    try:
        return [(text, Intent(label)) for text, label in _read_pairs(path, "text", "intent")]
    except ValueError as exc:
        raise DatasetError(f"{path}: {exc}") from exc


def load_multilingual_examples(path: Path = MULTILINGUAL_EXAMPLES_PATH) -> list[tuple[str, Intent, str]]:
    """Examples written in other languages, ``(text, intent, language)``; ``language`` is ISO 639-1."""
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        out = [
            (row["text"].strip(), Intent(row["intent"].strip()), row["language"].strip())
            for row in rows
            if row["text"].strip()
        ]
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: {exc}") from exc
    if any(len(language) != 2 for _, _, language in out):
        raise DatasetError(f"{path}: language must be a two-letter code")
    return out


def load_oos_examples(path: Path = OOS_EXAMPLES_PATH) -> list[tuple[str, str]]:
    """Out-of-scope texts written for tierline (hard negatives), ``(text, domain)``."""
    pairs = _read_pairs(path, "text", "domain")
    if any(not domain.isidentifier() for _, domain in pairs):
        raise DatasetError(f"{path}: domain must be a short identifier")
    return pairs


def load_oos_heldout(path: Path = OOS_HELDOUT_PATH) -> list[str]:
    """Out-of-scope texts written for measuring only (never trained on); ``oos_heldout2.csv`` too."""
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["text"].strip() for row in csv.DictReader(fh) if row["text"].strip()]


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(repr(sorted(BANKING77_OVERRIDES.items())).encode())
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_corpus(
    banking77_dir: Path,
    saas_path: Path = SAAS_EXAMPLES_PATH,
    multilingual_path: Path | None = MULTILINGUAL_EXAMPLES_PATH,
    oos_path: Path | None = OOS_EXAMPLES_PATH,
) -> Corpus:
    """Mapped BANKING77 training split, the SaaS examples, then (train-only) the multilingual examples
    and the out-of-scope hard negatives, each under its own ``oos:<domain>`` fine label."""
    mapping = load_mapping(banking77_dir)
    banking = _read_pairs(banking77_dir / "train.csv", "text", "category")
    unknown = sorted({category for _, category in banking} - mapping.keys())
    if unknown:
        raise DatasetError(f"categories without a mapping: {unknown}")
    saas = load_saas_examples(saas_path)
    hashed = [banking77_dir / "mapping.csv", banking77_dir / "train.csv", saas_path]
    n_multilingual = 0
    if multilingual_path is not None:
        # The model reads English: written examples go through the same glossary as live texts.
        multilingual = load_multilingual_examples(multilingual_path)
        saas += [(translate(text, language), intent) for text, intent, language in multilingual]
        n_multilingual = len(multilingual)
        hashed += [multilingual_path, *glossary_paths()]
    hard_negatives = load_oos_examples(oos_path) if oos_path is not None else []
    if oos_path is not None:
        hashed.append(oos_path)
    fine_to_intent: dict[str, Intent] = dict(mapping)
    fine_to_intent.update({f"{SAAS_PREFIX}{intent.value}": intent for intent in Intent})
    fine_to_intent.update({f"{OOS_PREFIX}{domain}": Intent.OUT_OF_SCOPE for _, domain in hard_negatives})
    texts = [text for text, _ in banking] + [text for text, _ in saas] + [text for text, _ in hard_negatives]
    fine = (
        [category for _, category in banking]
        + [f"{SAAS_PREFIX}{intent.value}" for _, intent in saas]
        + [f"{OOS_PREFIX}{domain}" for _, domain in hard_negatives]
    )
    return Corpus(
        texts=texts,
        fine_labels=fine,
        intents=[fine_to_intent[label] for label in fine],
        is_saas=[False] * len(banking) + [True] * (len(saas) + len(hard_negatives)),
        data_hash=_hash_files(hashed),
        fine_to_intent=fine_to_intent,
        n_train_only=n_multilingual + len(hard_negatives),
        n_hard_negatives=len(hard_negatives),
    )


def split_corpus(corpus: Corpus, seed: int = 0) -> Splits:
    """Stratified (by fine label) train / calibration / test indices; deterministic for a seed.

    The train-only rows (multilingual examples, measured on their own held-out file) join the train
    split, so the calibration and test splits are the same with or without them.
    """
    index = np.arange(len(corpus) - corpus.n_train_only, dtype=np.int64)
    labels = np.asarray(corpus.fine_labels[: len(index)])
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    calibration_share = CALIBRATION_FRACTION / (1.0 - TEST_FRACTION)
    train, calibration = train_test_split(
        rest, test_size=calibration_share, stratify=labels[rest], random_state=seed
    )
    train = np.concatenate([train, np.arange(len(index), len(corpus), dtype=np.int64)])
    return Splits(
        train=np.sort(train), calibration=np.sort(calibration), test=np.sort(test), probe=probe_rows(corpus)
    )


def probe_rows(corpus: Corpus) -> npt.NDArray[np.int64]:
    """Every ``PROBE_EVERY``-th hard negative of each domain (deterministic, every domain represented)."""
    start = len(corpus) - corpus.n_hard_negatives
    seen: dict[str, int] = {}
    rows: list[int] = []
    for k in range(start, len(corpus)):
        label = corpus.fine_labels[k]
        if seen.get(label, 0) % PROBE_EVERY == 0:
            rows.append(k)
        seen[label] = seen.get(label, 0) + 1
    return np.asarray(rows, dtype=np.int64)
