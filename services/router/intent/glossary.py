"""A billing glossary that carries Spanish, German, French and Portuguese texts into English.

The router's intent model reads English (its encoder is all-MiniLM-L6-v2). A text detected as one of
the glossary languages is rewritten term by term (phrases first, longest match wins) into the English
words the model knows: "mi tarjeta fue rechazada" -> "my card was declined". Words the glossary does
not know (names, numbers, e-mail addresses) are kept as they are. Offline and pure: the glossaries are
plain ``term=english`` lines in ``data/glossary/<language>.txt``; accent-free spellings are added.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from tierline.language import detect_language

GLOSSARY_DIR = Path(__file__).resolve().parent / "data" / "glossary"
LANGUAGES: tuple[str, ...] = ("es", "de", "fr", "pt")


# A term starts and ends at a word edge, never inside an e-mail address, a domain or a path.
_TERM_START = r"(?<![\w.@/])"
_TERM_END = r"(?!\w|[@/]|\.\w)"


class GlossaryError(ValueError):
    """A glossary file is malformed."""


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def glossary_paths() -> list[Path]:
    return [GLOSSARY_DIR / f"{language}.txt" for language in LANGUAGES]


def load_glossary(language: str) -> dict[str, str]:
    """``term -> english`` for ``language`` (terms lower case, with accent-free variants)."""
    path = GLOSSARY_DIR / f"{language}.txt"
    terms: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        term, sep, english = line.partition("=")
        if not sep or not term.strip():
            raise GlossaryError(f"{path}:{number}: expected 'term=english', got {raw!r}")
        terms[term.strip().lower()] = english.strip()
    for term, english in list(terms.items()):
        terms.setdefault(_strip_accents(term), english)
    return terms


@lru_cache(maxsize=8)
def _compiled(language: str) -> tuple[re.Pattern[str], dict[str, str]]:
    terms = load_glossary(language)
    alternatives = [
        re.escape(term) + ("" if term.endswith("'") else _TERM_END)
        for term in sorted(terms, key=lambda t: (-len(t), t))
    ]
    return re.compile(_TERM_START + "(?:" + "|".join(alternatives) + ")"), terms


def translate(text: str, language: str) -> str:
    """``text`` with every glossary term of ``language`` replaced by its English; unknown words kept."""
    if language not in LANGUAGES:
        return text
    pattern, terms = _compiled(language)
    lowered = text.lower().replace("’", "'")
    out = pattern.sub(lambda m: f" {terms[m.group(0)]} " if terms[m.group(0)] else " ", lowered)
    return " ".join(out.split())


def to_english(text: str) -> str:
    """``text`` carried into English when it is written in a glossary language, else unchanged."""
    language = detect_language(text).code
    return translate(text, language) if language in LANGUAGES else text


def glossary_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in glossary_paths():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
