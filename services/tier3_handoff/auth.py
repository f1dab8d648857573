"""Agent sign-in tokens: JWT HS256 under the agent token keys (``TIERLINE_AGENT_TOKEN_KEYS``).

Claims: ``sub`` (agent id), ``queues``, ``roles`` (e.g. ``approver``), ``aud = "tierline-console"``;
the header names the key (``kid``). The agent keys are not the customer keys (tierline/tokens.py), so a
customer's session token is refused by the console (401), and the other way round.

The console takes any :class:`AgentVerifier`. :class:`KeySetVerifier` checks tokens we mint
(`tierline token agent`); :class:`IdentityProviderVerifier` checks a company identity provider's JWTs
against its JWKS (tierline/jwks.py: RS256/ES256, ``iss``/``aud``/``exp``, keys cached and refreshed on
an unknown ``kid``) and maps its claims to the agent's name, queues and approver role
(``TIERLINE_TIER3_OIDC_*``); :func:`agent_verifier` accepts both, by the token's algorithm.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard

from tierline import tokens
from tierline.jwks import JwksTokenRefused, JwksVerifier, is_foreign_token
from tierline.tokens import AGENT_AUDIENCE as AUDIENCE
from tierline.tokens import APPROVER_ROLE, KeySet, TokenRefused

DEFAULT_TTL_S = 12 * 3600


class InvalidAgentToken(Exception):
    """Missing, expired, forged, malformed or foreign-key token (HTTP 401)."""


@dataclass(frozen=True)
class Agent:
    agent_id: str
    queues: frozenset[str]
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def approver(self) -> bool:
        return APPROVER_ROLE in self.roles


class AgentVerifier(Protocol):
    """Turns a bearer token into an :class:`Agent` or raises :class:`InvalidAgentToken`."""

    def verify(self, token: str) -> Agent: ...


@dataclass(frozen=True)
class KeySetVerifier:
    """Verifies tierline-minted agent tokens against the agent key set."""

    keys: KeySet

    def verify(self, token: str) -> Agent:
        return verify_agent_token(self.keys, token)


@dataclass(frozen=True)
class IdentityProviderVerifier:
    """An identity provider's JWTs: verified against its JWKS; claims mapped to an :class:`Agent`."""

    jwks: JwksVerifier
    agent_claim: str = "preferred_username"
    queues_claim: str = "tierline_queues"
    roles_claim: str = "groups"
    approver_group: str = "billing-approvers"

    def verify(self, token: str) -> Agent:
        try:
            claims = self.jwks.verify(token)
        except JwksTokenRefused as exc:
            raise InvalidAgentToken(str(exc)) from exc
        name = claims.get(self.agent_claim) or claims.get("sub")
        queues, groups = _names(claims.get(self.queues_claim)), _names(claims.get(self.roles_claim))
        if not isinstance(name, str) or not name.strip():
            raise InvalidAgentToken(f"token names no agent ({self.agent_claim!r} or sub)")
        if not queues:
            raise InvalidAgentToken(f"token grants no queue ({self.queues_claim!r})")
        roles = frozenset({APPROVER_ROLE}) if self.approver_group in groups else frozenset()
        return Agent(agent_id=name.strip(), queues=frozenset(queues), roles=roles)


def _names(value: object) -> list[str]:
    """A claim holding names: a list of strings, or one space/comma separated string (like ``scope``)."""
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return []


@dataclass(frozen=True)
class EitherVerifier:
    """tierline's own agent tokens (HS256) and, when configured, the identity provider's (RS256/ES256)."""

    own: AgentVerifier
    identity_provider: AgentVerifier | None = None

    def verify(self, token: str) -> Agent:
        if self.identity_provider is not None and is_foreign_token(token):
            return self.identity_provider.verify(token)
        return self.own.verify(token)


def agent_verifier(keys: KeySet, settings: object) -> AgentVerifier:
    """The console's verifier from the agent keys and ``TIERLINE_TIER3_OIDC_*`` (tier 3's settings)."""
    own = KeySetVerifier(keys)
    url = getattr(settings, "oidc_jwks_url", None)
    if not url:
        return own
    issuer, audience = getattr(settings, "oidc_issuer", None), getattr(settings, "oidc_audience", None)
    if not issuer or not audience:
        raise ValueError("TIERLINE_TIER3_OIDC_JWKS_URL needs TIERLINE_TIER3_OIDC_ISSUER and _AUDIENCE")
    jwks = JwksVerifier.for_url(
        url, issuer=issuer, audience=audience, leeway_s=float(getattr(settings, "oidc_leeway_s", 30.0))
    )
    return EitherVerifier(
        own,
        IdentityProviderVerifier(
            jwks,
            agent_claim=str(getattr(settings, "oidc_agent_claim", "preferred_username")),
            queues_claim=str(getattr(settings, "oidc_queues_claim", "tierline_queues")),
            roles_claim=str(getattr(settings, "oidc_roles_claim", "groups")),
            approver_group=str(getattr(settings, "oidc_approver_group", "billing-approvers")),
        ),
    )


def issue_agent_token(
    keys: KeySet,
    agent_id: str,
    queues: Iterable[str],
    ttl_s: int = DEFAULT_TTL_S,
    *,
    roles: Iterable[str] = (),
    now: int | None = None,
) -> str:
    """A signed agent token (what `tierline token agent` prints)."""
    return tokens.issue_agent_token(keys, agent_id, queues, ttl_s, roles=roles, now=now)


def _strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def verify_agent_token(keys: KeySet, token: str) -> Agent:
    try:
        claims = keys.decode(token, audience=AUDIENCE, options={"require": ["sub", "exp", "aud"]})
    except TokenRefused as exc:
        raise InvalidAgentToken(str(exc)) from exc
    queues, roles = claims.get("queues"), claims.get("roles", [])
    if not _strings(queues) or not _strings(roles) or not claims["sub"]:
        raise InvalidAgentToken("claims must carry sub, queues: [str] and roles: [str]")
    return Agent(agent_id=str(claims["sub"]), queues=frozenset(queues), roles=frozenset(roles))
