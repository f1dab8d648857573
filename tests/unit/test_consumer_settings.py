"""Every consumer's fetch wait suits how many partitions it holds (Tansu holds a multi-partition fetch)."""

from __future__ import annotations

import pytest

from services.analytics.sink import IDLE_FETCH_WAIT_MS
from tests.helpers import built_service
from tierline.messaging import ORDERED_DEFAULTS, SINGLE_PARTITION_FETCH_WAIT_MS
from tierline.settings import TOPIC_PARTITIONS
from tierline_tools.stack.manager import SERVICES


@pytest.mark.unit
@pytest.mark.parametrize("service", SERVICES)
def test_given_a_service_when_built_then_only_one_partition_consumers_wait_long(service: str) -> None:
    """Given a service, When built, Then a subscriber with the long fetch wait runs one consumer per
    partition, and a subscriber whose one consumer holds every partition keeps the short wait."""
    built = built_service(service)
    assert built.broker.subscribers, service
    for sub in built.broker.subscribers:
        wait = sub._connection_args.get("fetch_max_wait_ms")
        consumers = getattr(sub, "max_workers", 1)
        if consumers == TOPIC_PARTITIONS:
            assert wait == SINGLE_PARTITION_FETCH_WAIT_MS, (service, sub.topic_names)
        elif service == "analytics_sink" and type(sub).__name__ == "BatchSubscriber":
            # analysts read a second late anyway: a long poll keeps the idle sink cheap (make bench)
            assert wait == IDLE_FETCH_WAIT_MS, (service, sub.topic_names)
        else:
            assert consumers == 1, (service, sub.topic_names)
            assert wait == ORDERED_DEFAULTS["fetch_max_wait_ms"] < SINGLE_PARTITION_FETCH_WAIT_MS, (
                service,
                sub.topic_names,
            )
