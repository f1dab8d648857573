"""Customer risk flags (``customers.risk_flags``, a JSON object of flag → details) every tier reads.

Tier 0 sets ``card_fraud`` when a payment fails with a stolen/lost/fraudulent decline; ``fraud`` is the
generic flag (set by an operator or an import). Either one is a fraud signal for routing and policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CARD_FRAUD = "card_fraud"
FRAUD = "fraud"
FRAUD_FLAGS: tuple[str, ...] = (CARD_FRAUD, FRAUD)


def fraud_flagged(flags: Mapping[str, Any] | None) -> bool:
    """True when any fraud flag is set (a flag whose details are explicitly false does not count)."""
    return any(flags.get(name) not in (None, False) for name in FRAUD_FLAGS) if flags else False
