"""Agent sign-in tokens: JWT HS256 signed with the session secret; claims sub (agent id) and queues."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

AUDIENCE = "tierline-console"


class InvalidAgentToken(Exception):
    """Missing, expired, forged or malformed token (HTTP 401)."""


@dataclass(frozen=True)
class Agent:
    agent_id: str
    queues: frozenset[str]


def issue_agent_token(secret: str, agent_id: str, queues: list[str], ttl_s: int = 12 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": agent_id, "queues": sorted(set(queues)), "iat": now, "exp": now + ttl_s, "aud": AUDIENCE}
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_agent_token(secret: str, token: str) -> Agent:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, options={"require": ["sub", "exp"]}
        )
    except jwt.PyJWTError as exc:
        raise InvalidAgentToken(str(exc)) from exc
    queues = claims.get("queues")
    if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues) or not claims["sub"]:
        raise InvalidAgentToken("claims must carry sub and queues: [str]")
    return Agent(agent_id=str(claims["sub"]), queues=frozenset(queues))
