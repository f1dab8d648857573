"""Training material for the router's intent model: mapped BANKING77 plus the project's SaaS examples.

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

REPO_ROOT = Path(__file__).resolve().parents[3]
SAAS_EXAMPLES_PATH = Path(__file__).resolve().parent / "data" / "saas_examples.csv"
SAAS_PREFIX = "saas:"
TEST_FRACTION = 0.20  # of the whole corpus: held out, only ever used for the final metrics
CALIBRATION_FRACTION = 0.10  # of the whole corpus: temperature and threshold, never for fitting weights


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

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class Splits:
    train: npt.NDArray[np.int64]
    calibration: npt.NDArray[np.int64]
    test: npt.NDArray[np.int64]


def load_mapping(banking77_dir: Path) -> dict[str, Intent]:
    path = banking77_dir / "mapping.csv"
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["banking77_category"]: Intent(row["intent"]) for row in csv.DictReader(fh)}


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


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_corpus(banking77_dir: Path, saas_path: Path = SAAS_EXAMPLES_PATH) -> Corpus:
    """Mapped BANKING77 training split followed by the SaaS examples, in file order."""
    mapping = load_mapping(banking77_dir)
    banking = _read_pairs(banking77_dir / "train.csv", "text", "category")
    unknown = sorted({category for _, category in banking} - mapping.keys())
    if unknown:
        raise DatasetError(f"categories without a mapping: {unknown}")
    saas = load_saas_examples(saas_path)
    fine_to_intent: dict[str, Intent] = dict(mapping)
    fine_to_intent.update({f"{SAAS_PREFIX}{intent.value}": intent for intent in Intent})
    texts = [text for text, _ in banking] + [text for text, _ in saas]
    fine = [category for _, category in banking] + [f"{SAAS_PREFIX}{intent.value}" for _, intent in saas]
    return Corpus(
        texts=texts,
        fine_labels=fine,
        intents=[fine_to_intent[label] for label in fine],
        is_saas=[False] * len(banking) + [True] * len(saas),
        data_hash=_hash_files([banking77_dir / "mapping.csv", banking77_dir / "train.csv", saas_path]),
        fine_to_intent=fine_to_intent,
    )


def split_corpus(corpus: Corpus, seed: int = 0) -> Splits:
    """Stratified (by fine label) train / calibration / test indices; deterministic for a seed."""
    index = np.arange(len(corpus), dtype=np.int64)
    labels = np.asarray(corpus.fine_labels)
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    calibration_share = CALIBRATION_FRACTION / (1.0 - TEST_FRACTION)
    train, calibration = train_test_split(
        rest, test_size=calibration_share, stratify=labels[rest], random_state=seed
    )
    return Splits(train=np.sort(train), calibration=np.sort(calibration), test=np.sort(test))
