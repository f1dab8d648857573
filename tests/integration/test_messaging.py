"""publish() really lands a decodable envelope on its topic, keyed by customer, with headers."""

from __future__ import annotations

import pytest
from faststream.kafka import KafkaBroker

from schemas.messages import AlertPayload, AlertRaisedV1
from tests.helpers import read_topic
from tierline.messaging import publish

pytestmark = pytest.mark.integration


async def test_given_envelope_when_published_then_it_is_on_its_topic_with_key_and_headers(
    infra, unique
) -> None:
    broker = KafkaBroker(infra.kafka_bootstrap, logger=None)
    await broker.connect()
    msg = AlertRaisedV1.build(
        AlertPayload(kind="drift", subject=unique, observed=2, expected=1, threshold=0.5),
        contact_id=f"c-{unique}",
        customer_id=f"cus-{unique}",
    )
    try:
        await publish(broker, msg)
    finally:
        await broker.stop()
    found = await read_topic(
        infra.kafka_bootstrap, AlertRaisedV1.TOPIC, lambda b: b.get("payload", {}).get("subject") == unique
    )
    assert len(found) == 1
    assert AlertRaisedV1.model_validate(found[0]) == msg
