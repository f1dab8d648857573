"""The capacity model for production: what one core gives each service, and the KEDA lag thresholds
in ``deploy/k8s`` derived from it (``tests/unit/test_capacity.py`` fails when a manifest disagrees).

KEDA's kafka scaler asks for ``ceil(total lag / lagThreshold)`` replicas, so at the threshold each
replica holds ``lagThreshold`` waiting messages and drains them in ``lagThreshold / rate`` seconds, where
``rate`` is the messages per second one replica handles (messages/s per core × the CPU the replica is
guaranteed). The threshold is the lag a replica drains within its topic's drain objective::

    lagThreshold = max(1, floor(rate_per_core × replica_cores × drain_objective_s))

The rates come from ``make bench``: ``bench.bench_pipeline`` counts the messages each scaling group
consumed (its committed offsets) during the sustained window and the service's CPU seconds over it,
net of what it burns idle (messages/s per core); ``bench.bench_tier0_burst`` does the same for Stripe
events.
After a bench run that moves a rate, update ``MEASURED`` and the manifests together: the bench prints
the thresholds the new rates give (``capacity.keda_lag_threshold.*``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Messages per second one core gives each service on its scaling topics (all of them together), from
#: one bench run (``TIERLINE_BENCH_QUICK=1 python -m bench.bench_pipeline`` and ``bench.bench_tier0_burst
#: --events 2000``, this 2-core machine shared with other work, 2026-12-03).
MEASURED: dict[str, float] = {
    "router": 112.0,
    "tier1_selfheal": 57.0,  # only 13 tier 1 requests in the demo's contact mix: a rough figure
    "tier2_agent": 64.0,
    "tier3_handoff": 111.0,
    "notifier": 426.0,
    "analytics_sink": 2118.0,
    "tier0_prevent": 117.0,  # Stripe events (bench.bench_tier0_burst, 2,000 events)
}

#: The services whose rate the pipeline bench measures (the rest come from their own benches).
SERVICES = ("router", "tier1_selfheal", "tier2_agent", "tier3_handoff", "notifier", "analytics_sink")

#: CPU a replica is guaranteed (its container's ``resources.requests.cpu`` in deploy/k8s), in cores.
REPLICA_CORES: dict[str, float] = {
    "router": 0.5,
    "tier0_prevent": 0.2,
    "tier1_selfheal": 0.2,
    "tier2_agent": 0.5,
    "tier3_handoff": 0.2,
    "notifier": 0.1,
    "analytics_sink": 0.1,
}


@dataclass(frozen=True)
class Trigger:
    """One KEDA kafka trigger: the lag of ``group`` on ``topic`` scales ``service``."""

    service: str
    group: str
    topic: str
    #: how long a backlog may take to drain, per replica (seconds)
    drain_objective_s: float


TRIGGERS: tuple[Trigger, ...] = (
    # a customer waits on these: the first answer must not queue for long
    Trigger("router", "tierline.router", "contact.received.v1", 5.0),
    Trigger("tier1_selfheal", "tierline.tier1_selfheal", "tier1.selfheal.requested.v1", 5.0),
    Trigger("tier2_agent", "tierline.tier2_agent", "tier2.agent.requested.v1", 10.0),
    Trigger("tier3_handoff", "tierline.tier3_handoff", "tier3.escalation.opened.v1", 30.0),
    Trigger("notifier", "tierline.notifier", "notification.requested.v1", 30.0),
    Trigger("notifier", "tierline.notifier.conversations", "conversation.message.sent.v1", 10.0),
    # dunning decisions: minutes matter, seconds do not
    Trigger("tier0_prevent", "tierline.tier0_prevent", "stripe.event.received.v1", 30.0),
    # analytics: a report a minute late is fine
    Trigger(
        "analytics_sink", "tierline.analytics_sink.analytics.outcomes", "contact.outcome.recorded.v1", 60.0
    ),
    Trigger("analytics_sink", "tierline.analytics_sink.analytics.audit", "audit.event.recorded.v1", 60.0),
    Trigger("analytics_sink", "tierline.analytics_sink.analytics.contacts", "contact.received.v1", 60.0),
    Trigger(
        "analytics_sink", "tierline.analytics_sink.analytics.messages", "conversation.message.sent.v1", 60.0
    ),
)


def service_groups(service: str) -> set[tuple[str, str]]:
    """The (group, topic) pairs whose lag scales ``service`` (its rate is measured over all of them)."""
    return {(t.group, t.topic) for t in TRIGGERS if t.service == service}


def lag_threshold(trigger: Trigger, rates: dict[str, float] | None = None) -> int:
    """The lagThreshold of one trigger from the measured rates (``MEASURED`` by default)."""
    rate = (rates or MEASURED)[trigger.service]
    return max(1, math.floor(rate * REPLICA_CORES[trigger.service] * trigger.drain_objective_s))


def lag_thresholds(rates: dict[str, float]) -> dict[str, int]:
    """``service/topic`` → lagThreshold for every trigger whose service has a rate in ``rates``."""
    return {
        f"{t.service}/{t.topic}": lag_threshold(t, {**MEASURED, **rates})
        for t in TRIGGERS
        if t.service in rates
    }


def replicas_for(service: str, messages_per_s: float, rates: dict[str, float] | None = None) -> int:
    """Replicas a sustained rate needs (each at its guaranteed CPU): the sizing an operator reads."""
    per_replica = (rates or MEASURED)[service] * REPLICA_CORES[service]
    return max(1, math.ceil(messages_per_s / per_replica))
