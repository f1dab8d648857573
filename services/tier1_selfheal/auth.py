"""Customer sessions: JWT HS256 signed with the customer token keys (``TIERLINE_CUSTOMER_TOKEN_KEYS``).

A session token's header names its key (``kid``); its claims are ``sub`` (the customer id), ``exp`` and
``purpose = "customer_session"`` (tokens without a purpose are read as sessions). The customer keys are
not the agent keys (tierline/tokens.py), so an agent's console token never opens a customer's door.
When ``TIERLINE_TIER1_JWKS_URL`` is set, the product's own JWTs (RS256/ES256, verified against its JWKS
by tierline/jwks.py: issuer, audience, expiry) are sessions too, for the customer their configured claim
names; tierline's own session tokens keep working beside them.
The signed update-card / pay-invoice links (``purpose``) are signed with the session secret by
tierline/stripe_adapter.py and carry no ``kid``; each door accepts exactly the purposes it names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from tierline.jwks import JwksTokenRefused, JwksVerifier, is_foreign_token
from tierline.tokens import ALGORITHM, SESSION_PURPOSE, KeySet, TokenRefused, issue_customer_token

if TYPE_CHECKING:
    from tierline.settings import InfraSettings

UPDATE_CARD_PURPOSE = "update_card"
PAY_INVOICE_PURPOSE = "pay_invoice"
COOKIE_NAME = "tierline_session"
DEFAULT_TTL_S = 12 * 3600

#: The headers of every portal page: never cached or framed, scripts and styles from the page itself.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
}


class InvalidSession(Exception):
    """Missing, expired, forged, malformed or wrong-purpose token (HTTP 401)."""


@dataclass(frozen=True)
class TokenClaims:
    subject: str  # a customer id (sessions, update-card links) or an invoice id (pay links)
    purpose: str
    expires_at: int
    raw: Mapping[str, Any]


_CUSTOMER_ID = re.compile(r"cus_[A-Za-z0-9_]{1,100}")


@dataclass(frozen=True)
class ProductTokens:
    """The product's own sign-in tokens: verified against its JWKS; ``customer_claim`` names the customer."""

    verifier: JwksVerifier
    customer_claim: str = "stripe_customer_id"

    def verify(self, token: str) -> TokenClaims:
        try:
            claims = self.verifier.verify(token)
        except JwksTokenRefused as exc:
            raise InvalidSession(str(exc)) from exc
        customer = claims.get(self.customer_claim)
        if not isinstance(customer, str) or not _CUSTOMER_ID.fullmatch(customer):
            raise InvalidSession(f"token carries no customer id in {self.customer_claim!r}")
        return TokenClaims(
            subject=customer, purpose=SESSION_PURPOSE, expires_at=int(claims["exp"]), raw=claims
        )

    @classmethod
    def from_settings(cls, settings: object) -> ProductTokens | None:
        """From ``TIERLINE_TIER1_JWKS_*`` (tier 1's settings); None when no JWKS URL is configured."""
        url = getattr(settings, "tier1_jwks_url", None)
        if not url:
            return None
        issuer = getattr(settings, "tier1_jwks_issuer", None)
        audience = getattr(settings, "tier1_jwks_audience", None)
        if not issuer or not audience:
            raise ValueError("TIERLINE_TIER1_JWKS_URL needs TIERLINE_TIER1_JWKS_ISSUER and _AUDIENCE")
        verifier = JwksVerifier.for_url(
            url,
            issuer=issuer,
            audience=audience,
            leeway_s=float(getattr(settings, "tier1_jwks_leeway_s", 30)),
        )
        return cls(verifier, str(getattr(settings, "tier1_jwks_customer_claim", "stripe_customer_id")))


@dataclass(frozen=True)
class CustomerKeys:
    """What the customer doors verify with: session keys (by kid), the link secret (no kid) and, when
    configured, the product's own tokens (JWKS)."""

    sessions: KeySet
    link_secret: str
    product: ProductTokens | None = None

    def __repr__(self) -> str:
        return f"CustomerKeys(sessions={self.sessions!r}, product={self.product is not None})"

    @classmethod
    def from_settings(cls, settings: InfraSettings) -> CustomerKeys:
        return cls(
            settings.customer_token_keyset(),
            settings.session_secret.get_secret_value(),
            ProductTokens.from_settings(settings),
        )


def issue_session_token(
    keys: KeySet, customer_id: str, ttl_s: int = DEFAULT_TTL_S, *, now: int | None = None
) -> str:
    """A signed customer session (what the product's sign-in, or `tierline token customer`, hands out)."""
    return issue_customer_token(keys, customer_id, ttl_s, now=now)


def _decode(keys: CustomerKeys, token: str) -> dict[str, Any]:
    options: dict[str, Any] = {"require": ["sub", "exp"], "verify_aud": False}
    try:
        has_kid = "kid" in jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidSession(f"invalid token: {exc}") from exc
    if has_kid:  # a session, under the customer keys
        try:
            claims = keys.sessions.decode(token, options=options)
        except TokenRefused as exc:
            raise InvalidSession(str(exc)) from exc
        if str(claims.get("purpose") or SESSION_PURPOSE) != SESSION_PURPOSE:
            raise InvalidSession("a customer session key signed a non-session token")
        return claims
    try:  # a signed link, under the link secret
        link: dict[str, Any] = jwt.decode(
            token,
            keys.link_secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidSession("token expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidSession(f"invalid token: {exc}") from exc
    if str(link.get("purpose") or SESSION_PURPOSE) == SESSION_PURPOSE:
        raise InvalidSession("a session token must name its key (kid)")
    return link


def verify_token(
    keys: CustomerKeys, token: str | None, *, purposes: Iterable[str] = (SESSION_PURPOSE,)
) -> TokenClaims:
    """Check key, signature, expiry and purpose; returns the claims or raises :class:`InvalidSession`."""
    if not token:
        raise InvalidSession("no token")
    if keys.product is not None and is_foreign_token(token):  # the product's own sign-in (JWKS)
        if SESSION_PURPOSE not in set(purposes):
            raise InvalidSession("a product sign-in token is a session, not a link")
        return keys.product.verify(token)
    claims = _decode(keys, token)
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
