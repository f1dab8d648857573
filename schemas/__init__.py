"""tierline message schemas: one versioned envelope, one model per topic."""

from schemas.envelope import Envelope, derived_id, utcnow
from schemas.messages import *  # noqa: F403
from schemas.messages import ALL_MESSAGES, TOPICS
from schemas.vocab import Action, Channel, EscalationReason, HealthStatus, Intent, RootCause, Tier

__all__ = [
    "ALL_MESSAGES",
    "TOPICS",
    "Action",
    "Channel",
    "Envelope",
    "EscalationReason",
    "HealthStatus",
    "Intent",
    "RootCause",
    "Tier",
    "derived_id",
    "utcnow",
]
