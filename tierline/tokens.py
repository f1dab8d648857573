"""Signing keys for tierline's bearer tokens: one key set per purpose, each key named by a ``kid``.

A key set is written ``kid:secret,kid:secret`` (``TIERLINE_CUSTOMER_TOKEN_KEYS``,
``TIERLINE_AGENT_TOKEN_KEYS``). The first key signs; every key in the set verifies, so a key is
rotated without downtime: put the new key first, keep the old one until the tokens it signed have
expired, then remove it (its tokens are refused from then on). A token's JWT header names its key
(``kid``); a token without a ``kid``, or naming a key that is not in the set, is refused.

When a key set is not configured, it is derived from ``TIERLINE_SESSION_SECRET`` with HKDF-SHA256
(RFC 5869) and the purpose as ``info``: the customer and agent keys are different keys (domain
separation), so a token of one kind never verifies as the other, even from one secret.

Other verifiers (OIDC with a JWKS endpoint) plug in where a door takes a verifier: see
``services.tier3_handoff.auth.AgentVerifier``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
CUSTOMER_PURPOSE = "customer"
AGENT_PURPOSE = "agent"
MIN_SECRET_LENGTH = 32
#: claims of the two kinds of token (the doors check them: services/*/auth.py)
SESSION_PURPOSE = "customer_session"
AGENT_AUDIENCE = "tierline-console"
APPROVER_ROLE = "approver"
KNOWN_ROLES = frozenset({APPROVER_ROLE})
_HKDF_SALT = b"tierline-token-keys-v1"


class TokenRefused(Exception):
    """Missing, malformed, expired, forged, or signed with a key that is not (or no longer) in the set."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes = b""

    def __repr__(self) -> str:  # never print the secret
        return f"SigningKey(kid={self.kid!r})"


def hkdf_sha256(root: bytes, info: bytes, length: int = 32, salt: bytes = _HKDF_SALT) -> bytes:
    """RFC 5869 HKDF (extract then expand) with SHA-256."""
    prk = hmac.new(salt, root, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True)
class KeySet:
    """Ordered signing keys for one purpose: ``keys[0]`` signs, all verify."""

    purpose: str
    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError(f"{self.purpose} token key set is empty")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise ValueError(f"{self.purpose} token key set names a kid twice: {kids}")

    def __repr__(self) -> str:
        return f"KeySet({self.purpose!r}, kids={list(self.kids)})"

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys)

    @classmethod
    def parse(cls, purpose: str, spec: str) -> KeySet:
        """``kid:secret,kid:secret`` (first signs). Secrets are at least 32 characters."""
        keys = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            kid, sep, secret = item.partition(":")
            kid, secret = kid.strip(), secret.strip()
            if not sep or not kid or not secret:
                raise ValueError(f"{purpose} token key {kid or '?'!r}: write each key as kid:secret")
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(f"{purpose} token key {kid!r}: secret shorter than {MIN_SECRET_LENGTH}")
            keys.append(SigningKey(kid, secret.encode()))
        return cls(purpose, tuple(keys))

    @classmethod
    def derived(cls, purpose: str, root_secret: str) -> KeySet:
        """One key for ``purpose`` derived from a root secret; its kid names the purpose and a key hash."""
        if not root_secret:
            raise ValueError("a root secret is required to derive token keys")
        key = hkdf_sha256(root_secret.encode(), f"tierline/{purpose}-token".encode())
        return cls(purpose, (SigningKey(f"{purpose}-{hashlib.sha256(key).hexdigest()[:8]}", key),))

    @classmethod
    def single(cls, purpose: str, kid: str, secret: str) -> KeySet:
        return cls.parse(purpose, f"{kid}:{secret}")

    def secrets(self) -> frozenset[bytes]:
        return frozenset(k.secret for k in self.keys)

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A JWT signed with the current key, its kid in the header."""
        key = self.current
        return jwt.encode(dict(claims), key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})

    def decode(self, token: str | None, **options: Any) -> dict[str, Any]:
        """Verify with the key the header names; ``options`` go to :func:`jwt.decode` (audience, ...)."""
        if not token:
            raise TokenRefused("no token")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"invalid token: {exc}") from exc
        if not isinstance(kid, str) or not kid:
            raise TokenRefused("token names no key (kid)")
        key = next((k for k in self.keys if k.kid == kid), None)
        if key is None:
            raise TokenRefused(f"token key {kid!r} is not a {self.purpose} token key (removed or foreign)")
        try:
            claims: dict[str, Any] = jwt.decode(token, key.secret, algorithms=[ALGORITHM], **options)
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("token expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"invalid token: {exc}") from exc
        return claims


def issue_customer_token(keys: KeySet, customer_id: str, ttl_s: int, *, now: int | None = None) -> str:
    """A customer session token (the Health Meter's door checks it)."""
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
    return keys.sign(claims)


def issue_agent_token(
    keys: KeySet,
    agent_id: str,
    queues: Iterable[str],
    ttl_s: int,
    *,
    roles: Iterable[str] = (),
    now: int | None = None,
) -> str:
    """An agent token for the Tier 3 console: its queues and roles (``approver``)."""
    queue_list, role_list = sorted(set(queues)), sorted(set(roles))
    if not agent_id:
        raise ValueError("agent_id is required")
    if not queue_list or not all(q.strip() for q in queue_list):
        raise ValueError("an agent token needs at least one queue")
    unknown = set(role_list) - KNOWN_ROLES
    if unknown:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    issued = int(time.time()) if now is None else now
    claims = {
        "sub": agent_id,
        "queues": queue_list,
        "roles": role_list,
        "iat": issued,
        "exp": issued + ttl_s,
        "aud": AGENT_AUDIENCE,
    }
    return keys.sign(claims)
