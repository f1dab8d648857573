"""The human-tool door: Given an escalation on the broker, When the confluent-kafka example runs,
Then it prints the case."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from schemas import Tier
from schemas.messages import EscalationOpenedPayload, EscalationOpenedV1
from schemas.vocab import EscalationReason
from tierline.messaging import encode, headers_for

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "confluent_consumer.py"


async def test_given_escalation_when_confluent_example_consumes_then_it_prints_the_case(
    infra: Any, unique: str
):
    msg = EscalationOpenedV1.build(
        EscalationOpenedPayload(
            reason=EscalationReason.FRAUD,
            opened_by=Tier.TIER2,
            suggested_next_step="Block the card and call the customer",
            tier_path=[Tier.TIER2],
        ),
        contact_id=f"cx-{unique}",
        customer_id=f"cus_{unique}",
    )
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            msg.TOPIC,
            encode(msg),
            key=msg.key(),
            headers=[(k, v.encode()) for k, v in headers_for(msg).items()],
        )
    finally:
        await producer.stop()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--bootstrap",
        infra.kafka_bootstrap,
        "--group",
        f"desk-{unique}",
        "--contact",
        msg.contact_id,
        "--max-messages",
        "1",
        "--timeout",
        "90",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    line = out.decode().strip()
    assert f"contact={msg.contact_id}" in line
    assert "reason=fraud" in line
    assert "Block the card" in line
