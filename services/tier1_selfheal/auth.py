"""Customer sessions: JWT HS256 signed with the product's session secret.

A session token's claims are ``sub`` (the customer id), ``exp`` and ``purpose = "customer_session"``
(tokens without a purpose are read as sessions). Tokens minted for other doors — the Tier 3 console
(``aud``), the signed update-card / pay-invoice links (``purpose``) — are never accepted as a session:
each door accepts exactly the purposes it names.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
SESSION_PURPOSE = "customer_session"
UPDATE_CARD_PURPOSE = "update_card"
PAY_INVOICE_PURPOSE = "pay_invoice"
COOKIE_NAME = "tierline_session"
DEFAULT_TTL_S = 12 * 3600


class InvalidSession(Exception):
    """Missing, expired, forged, malformed or wrong-purpose token (HTTP 401)."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str  # a customer id (sessions, update-card links) or an invoice id (pay links)
    purpose: str
    expires_at: int
    raw: Mapping[str, Any]


def issue_session_token(
    secret: str, customer_id: str, ttl_s: int = DEFAULT_TTL_S, *, now: int | None = None
) -> str:
    """A signed customer session (what the product's sign-in hands the dashboard)."""
    if not customer_id:
        raise ValueError("customer_id is required")
    issued = int(time.time()) if now is None else now
    claims = {
        "sub": customer_id,
        "purpose": SESSION_PURPOSE,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(
    secret: str, token: str | None, *, purposes: Iterable[str] = (SESSION_PURPOSE,)
) -> TokenClaims:
    """Check signature, expiry and purpose; returns the claims or raises :class:`InvalidSession`."""
    if not token:
        raise InvalidSession("no token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"], "verify_aud": False}
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidSession("token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidSession(f"invalid token: {exc}") from exc
    if "aud" in claims:
        raise InvalidSession("token is for another audience")
    purpose = str(claims.get("purpose") or SESSION_PURPOSE)
    allowed = set(purposes)
    if purpose not in allowed:
        raise InvalidSession(f"token is for {purpose!r}, not {' or '.join(sorted(allowed))}")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidSession("token has no subject")
    return TokenClaims(subject=subject, purpose=purpose, expires_at=int(claims["exp"]), raw=claims)


def token_from(
    headers: Mapping[str, str], cookies: Mapping[str, str], query: Mapping[str, str] | None = None
) -> str | None:
    """The bearer token of a request: Authorization header first, then the session cookie, then ?token=."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    if cookies.get(COOKIE_NAME):
        return cookies[COOKIE_NAME]
    if query is not None and query.get("token"):
        return query["token"]
    return None
