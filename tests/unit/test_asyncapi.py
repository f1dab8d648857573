"""The committed AsyncAPI document is exactly what FastStream generates from the services now."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import TOPICS

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def generate() -> str:
    # a subprocess: building every service must not open chDB/Qdrant paths in the test process
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERLINE_", "OPENAI_"))}
    code = "from tierline.asyncapi import render; import sys; sys.stdout.write(render())"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return out.stdout


def test_given_services_when_asyncapi_generated_then_committed_document_is_current() -> None:
    committed = (ROOT / "asyncapi.json").read_text()
    assert generate() == committed, "asyncapi.json is stale: run `make asyncapi` and commit it"


def test_given_document_when_read_then_every_consumed_topic_is_a_schema_topic() -> None:
    doc = json.loads((ROOT / "asyncapi.json").read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses <= set(TOPICS)
    for topic in (
        "contact.received.v1",
        "tier1.selfheal.requested.v1",
        "tier2.agent.requested.v1",
        "stripe.event.received.v1",
        "tier3.escalation.opened.v1",
        "contact.outcome.recorded.v1",
        "audit.event.recorded.v1",
        "deadletter.message.recorded.v1",
    ):
        assert topic in addresses
