"""Agent sign-in tokens: JWT HS256 under the agent token keys (``TIERLINE_AGENT_TOKEN_KEYS``).

Claims: ``sub`` (agent id), ``queues``, ``roles`` (e.g. ``approver``), ``aud = "tierline-console"``;
the header names the key (``kid``). The agent keys are not the customer keys (tierline/tokens.py), so a
customer's session token is refused by the console (401), and the other way round.

The console takes any :class:`AgentVerifier`. :class:`KeySetVerifier` checks tokens we mint
(`tierline token agent`); a company with an identity provider would plug in an OIDC verifier here:
fetch the provider's JWKS (cached, refreshed on an unknown ``kid``), check ``iss``/``aud``/``exp``
with RS256/ES256, and map its group claims to queues and roles. Not built yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard

from tierline import tokens
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
