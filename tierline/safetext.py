"""Text that any store accepts: bounded, valid UTF-8, no NUL (PostgreSQL's text and jsonb refuse it).

Poison messages carry whatever bytes a producer sent. Before such a value is copied into a dead-letter
record, a case packet or a log line, it goes through here, so that storing it can never fail again.
"""

from __future__ import annotations

import hashlib
from typing import Any

#: What replaces a NUL character (PostgreSQL cannot store U+0000 in text or jsonb).
NUL_REPLACEMENT = "\ufffd"


def safe_text(data: bytes | str | None, limit: int) -> tuple[str, bool]:
    """``data`` as text of at most ``limit`` characters: invalid UTF-8 replaced, NUL replaced.

    Returns the text and whether it was cut.
    """
    if data is None:
        return "", False
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes | bytearray) else str(data)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    return text.replace("\x00", NUL_REPLACEMENT), cut


def digest(data: bytes | str | None) -> str:
    """SHA-256 of the original bytes, so a bounded copy can still be matched to its original."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else (data or b"")
    return hashlib.sha256(raw).hexdigest()


def pg_safe(value: Any) -> Any:
    """A JSON-like value with every NUL in its strings (and keys) replaced, for jsonb and text columns."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, dict):
        return {pg_safe(k): pg_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [pg_safe(v) for v in value]
    return value
