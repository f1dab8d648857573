"""Product asks through the running pipeline (issue 23): Tier 2 takes a team_member / api_key request from
its topic (as the router hands it on), the offline planner runs the product connector's action through the
executor against the reference product, and the customer's answer, the outcome and the product's state
follow; the same request delivered again changes nothing more."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from schemas.messages import AgentRequestedPayload, AgentRequestedV1, EscalationOpenedV1
from schemas.vocab import Intent
from tests.helpers import read_topic, wait_rows
from tests.product_service import product_client, seed_account, started_product
from tierline.messaging import publish

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def product(infra: Any) -> AsyncIterator[Any]:
    """On the address the pipeline's executors were given (``TIERLINE_PRODUCT_API_URL``)."""
    async with started_product(infra, port=urlsplit(infra.product_api_url).port) as svc:
        yield svc


async def ask(tier2: Any, pg_pool: Any, customer_id: str, text: str, intent: Intent) -> dict[str, Any]:
    contact_id = f"c-prod-{uuid.uuid4().hex[:12]}"
    request = AgentRequestedV1.build(
        AgentRequestedPayload(text=text, intent=intent, confidence=0.95),
        contact_id=contact_id,
        customer_id=customer_id,
    )
    await publish(tier2.broker, request)
    await publish(tier2.broker, request)  # a redelivery: same id
    rows = await wait_rows(
        pg_pool, "SELECT message FROM outcomes WHERE contact_id=$1", contact_id, timeout=120
    )
    assert rows, f"no outcome for {contact_id}"
    outcome = rows[0]["message"]
    return json.loads(outcome) if isinstance(outcome, str) else outcome  # type: ignore[no-any-return]


async def test_given_chat_asks_through_tier2_when_handled_then_the_product_changes_once(
    pipeline: list[Any], product: Any, pg_pool: Any, unique: str
) -> None:
    tier2 = next(s for s in pipeline if s.name == "tier2_agent")
    async with product_client(product) as api:
        customer_id = await seed_account(api, pg_pool, unique)
        key = (await api.post(f"/v1/accounts/{customer_id}/keys", json={"name": "prod"})).json()
        # When the owner's two asks reach tier 2 (each delivered twice)
        added = await ask(
            tier2,
            pg_pool,
            customer_id,
            "please add maria@acme.io to our workspace as admin",
            Intent.TEAM_MEMBER,
        )
        rotated = await ask(
            tier2, pg_pool, customer_id, f"our key sk_live_…{key['last4']} leaked, rotate it", Intent.API_KEY
        )
        # Then both resolved by tier 2 with the product action, the product changed once each
        assert added["payload"]["resolved_by"] == "tier2"
        assert "product_action" in added["payload"]["actions"]
        assert rotated["payload"]["resolved_by"] == "tier2"
        members = (await api.get(f"/v1/accounts/{customer_id}/members")).json()["members"]
        assert [(m["role"], m["status"]) for m in members if m["email"] == "maria@acme.io"] == [
            ("admin", "invited")
        ]
        keys = (await api.get(f"/v1/accounts/{customer_id}/keys")).json()["keys"]
        assert [k["active"] for k in keys] == [False, True]
        assert (await api.post("/v1/keys/verify", json={"secret": key["secret"]})).json() == {"valid": False}
    ledger = await pg_pool.fetch(
        "SELECT target, status FROM action_ledger WHERE customer_id=$1 AND action='product_action'",
        customer_id,
    )
    assert sorted((r["target"], r["status"]) for r in ledger) == [
        ("invite_member:maria@acme.io", "succeeded"),
        (f"rotate_api_key:{key['last4']}", "succeeded"),
    ]


async def test_given_the_product_refusing_when_asked_in_chat_then_a_person_has_it_and_nothing_half_done(
    pipeline: list[Any], product: Any, pg_pool: Any, infra: Any, unique: str
) -> None:
    tier2 = next(s for s in pipeline if s.name == "tier2_agent")
    async with product_client(product) as api:
        customer_id = await seed_account(api, pg_pool, unique)
        # When the owner asks to rotate a key the account does not have (the product answers 404)
        outcome = await ask(
            tier2, pg_pool, customer_id, "our key sk_live_…zzzz leaked, rotate it", Intent.API_KEY
        )
        assert (await api.get(f"/v1/accounts/{customer_id}/keys")).json()["keys"] == []
    # Then a person has it (error), nothing half-done: one failed ledger row, no key created
    assert outcome["payload"]["resolved_by"] == "tier3"
    assert outcome["payload"]["escalation_reason"] == "error"
    rows = await pg_pool.fetch(
        "SELECT status FROM action_ledger WHERE customer_id=$1 AND action='product_action'", customer_id
    )
    assert [r["status"] for r in rows] == ["failed"]
    opened = await read_topic(
        infra.kafka_bootstrap,
        EscalationOpenedV1.TOPIC,
        lambda m: m.get("contact_id") == outcome["contact_id"],
        timeout=60,
    )
    assert opened
    transcript = " ".join(t["text"] for t in opened[0]["payload"]["transcript"])
    assert "rotate_api_key failed in the product" in transcript  # the person sees what failed, and why
