"""The pass-through ceiling consumes exactly as the pipeline's hot path does (a fair "share of ceiling")."""

from __future__ import annotations

from typing import Any

from bench.passthrough import HOPS, build
from services.router.app import create_service
from tierline.settings import InfraSettings


def consumption(subscriber: Any) -> dict[str, Any]:
    """What decides how a subscriber fetches, batches and commits."""
    args = subscriber._connection_args
    return {
        "kind": type(subscriber).__name__,
        "max_records": getattr(subscriber, "max_records", None),
        "batch_timeout_ms": getattr(subscriber, "batch_timeout_ms", None),
        "ack_policy": subscriber.ack_policy,
        "fetch_max_wait_ms": args["fetch_max_wait_ms"],
        "auto_offset_reset": args["auto_offset_reset"],
        "enable_auto_commit": args["enable_auto_commit"],
    }


def test_given_the_passthrough_and_the_router_when_compared_then_they_consume_alike() -> None:
    subscribers = create_service(InfraSettings(http_port=1)).broker.subscribers
    (router,) = [s for s in subscribers if "contact.received.v1" in s.topic_names]
    hops = list(build("127.0.0.1:1").subscribers)
    assert len(hops) == len(HOPS)
    for hop in hops:
        assert consumption(hop) == consumption(router)
