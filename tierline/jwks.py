"""Verify another issuer's JWTs against its JWKS URL (a product's sign-in, a company's identity provider).

Both doors use it: tier 1 accepts the SaaS product's own session JWTs (the claim that names the Stripe
customer id is a setting), and the tier 3 console accepts an identity provider's tokens (claims → agent
name, queues, approver role). tierline's own HS256 tokens (``tierline/tokens.py``) keep working beside it:
a door sends a token here only when its header names an asymmetric algorithm.

What is checked, and refused with :class:`JwksTokenRefused` (HTTP 401) otherwise:

- the header's ``alg`` is one of the allowed asymmetric algorithms (RS256, ES256): ``none`` and every HMAC
  algorithm are refused before any key is looked at (no algorithm confusion with a public key as secret);
- the header names a ``kid`` found in the key set; the key's type fits the algorithm (RSA for RS256, EC
  P-256 for ES256), and a key that pins its own ``alg`` must pin this one;
- the signature, ``exp`` (required), ``nbf``/``iat`` when present, ``iss`` and ``aud`` (required, exact),
  with a small clock skew (``leeway_s``, 30 s by default).

Keys are fetched from the JWKS URL and cached (``cache_s``); a ``kid`` the cache does not know triggers one
refresh (key rotation), at most once per ``min_refresh_s`` so that tokens with made-up kids cannot make
tierline hammer the provider. Fetches are synchronous with a short timeout: they happen on a key
rotation, not per request (call :meth:`JwksKeys.warm` at start).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import jwt
import structlog

log = structlog.get_logger(__name__)

ASYMMETRIC_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256")
_KEY_TYPE = {"RS256": "RSA", "ES256": "EC"}
MAX_JWKS_BYTES = 256 * 1024


class JwksTokenRefused(Exception):
    """Missing, malformed, expired, forged, foreign-issuer/audience or unknown-key token."""


class JwksUnavailable(JwksTokenRefused):
    """The key set could not be fetched (the token is refused; the door answers 401, never 500)."""


def header_algorithm(token: str) -> str | None:
    """The ``alg`` a token's header claims (unverified), or None for a token that is not a JWT."""
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        return None
    return alg if isinstance(alg, str) else None


def is_foreign_token(token: str) -> bool:
    """True for a token that is not one of tierline's own (HS256) tokens: it goes to a JWKS verifier,
    which refuses anything but the allowed asymmetric algorithms."""
    alg = header_algorithm(token)
    return alg is not None and alg != "HS256"


def _fetch_json(url: str, timeout_s: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - configured URL
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("JWKS document over 256 KiB")
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("JWKS document has no keys list")
    return data


@dataclass
class JwksKeys:
    """The keys of one JWKS URL, cached; refreshed when stale or on an unknown ``kid`` (rate-limited)."""

    url: str
    cache_s: float = 300.0
    min_refresh_s: float = 10.0
    timeout_s: float = 3.0
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict, repr=False)
    _fetched_at: float = field(default=float("-inf"), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    fetches: int = 0

    def _refresh(self, *, force: bool) -> None:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < self.min_refresh_s or (not force and age < self.cache_s):
                return
            self._fetched_at = time.monotonic()  # a failed fetch also waits min_refresh_s
            self.fetches += 1
            try:
                data = _fetch_json(self.url, self.timeout_s)
            except (OSError, ValueError) as exc:
                log.warning("jwks.fetch.failed", url=self.url, error=f"{type(exc).__name__}: {exc}"[:300])
                raise JwksUnavailable(f"identity keys unavailable: {type(exc).__name__}") from exc
            keys: dict[str, jwt.PyJWK] = {}
            for raw in data["keys"]:
                if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
                    continue
                if raw.get("use") not in (None, "sig"):
                    continue
                try:
                    keys[raw["kid"]] = jwt.PyJWK(raw)
                except (jwt.PyJWTError, ValueError, TypeError) as exc:  # an unsupported key is skipped
                    log.info("jwks.key.skipped", kid=raw.get("kid"), error=type(exc).__name__)
            self._keys = keys
            log.info("jwks.fetched", url=self.url, kids=sorted(keys))

    def warm(self) -> None:
        """Fetch once now (at service start), so the first sign-in does not wait for it."""
        try:
            self._refresh(force=True)
        except JwksUnavailable:
            pass  # logged; the next token with an unknown kid tries again

    def get(self, kid: str) -> jwt.PyJWK | None:
        if time.monotonic() - self._fetched_at >= self.cache_s:
            self._refresh(force=False)
        key = self._keys.get(kid)
        if key is None:
            self._refresh(force=True)
            key = self._keys.get(kid)
        return key

    @classmethod
    def shared(
        cls, url: str, *, cache_s: float = 300.0, min_refresh_s: float = 10.0, timeout_s: float = 3.0
    ) -> JwksKeys:
        """One cache per URL and process (every door of a service shares the fetched keys)."""
        ident = (url, cache_s, min_refresh_s, timeout_s)
        if ident not in _SHARED:
            _SHARED[ident] = cls(url, cache_s=cache_s, min_refresh_s=min_refresh_s, timeout_s=timeout_s)
        return _SHARED[ident]


_SHARED: dict[tuple[str, float, float, float], JwksKeys] = {}


@dataclass(frozen=True)
class JwksVerifier:
    """Verifies a token's signature and its ``iss``/``aud``/``exp`` against one issuer's key set."""

    keys: JwksKeys
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway_s: float = 30.0
    required: tuple[str, ...] = ("exp", "iss", "aud")

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ValueError("a JWKS verifier needs an issuer and an audience")
        bad = set(self.algorithms) - set(ASYMMETRIC_ALGORITHMS)
        if bad:
            raise ValueError(f"only {', '.join(ASYMMETRIC_ALGORITHMS)} are allowed, not {sorted(bad)}")

    @classmethod
    def for_url(
        cls, url: str, *, issuer: str, audience: str, leeway_s: float = 30.0, cache_s: float = 300.0
    ) -> JwksVerifier:
        return cls(JwksKeys.shared(url, cache_s=cache_s), issuer, audience, leeway_s=leeway_s)

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims, or :class:`JwksTokenRefused` with the reason."""
        if not token:
            raise JwksTokenRefused("no token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise JwksTokenRefused(f"invalid token: {exc}") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise JwksTokenRefused(f"algorithm {alg!r} is not accepted ({', '.join(self.algorithms)} only)")
        if not isinstance(kid, str) or not kid:
            raise JwksTokenRefused("token names no key (kid)")
        key = self.keys.get(kid)
        if key is None:
            raise JwksTokenRefused(f"token key {kid!r} is not in the issuer's key set")
        if key.key_type != _KEY_TYPE[alg] or key.algorithm_name != alg:
            raise JwksTokenRefused(f"key {kid!r} is not a {alg} key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": list(self.required)},
            )
        except jwt.ExpiredSignatureError as exc:
            raise JwksTokenRefused("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise JwksTokenRefused("token is for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise JwksTokenRefused("token is from another issuer") from exc
        except jwt.PyJWTError as exc:
            raise JwksTokenRefused(f"invalid token: {exc}") from exc
        return claims
