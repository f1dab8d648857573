"""The support figures and the learning loop of `tierline report` (issue 19), through the real doors of the
whole pipeline: customers write in the chat widget, get their answers, rate them in the widget, one says
"that didn't work"; the analytics service reads the conversation topics into ClickHouse and the report
shows first-response times, time to resolution, CSAT, first-contact resolution and the knowledge gaps.

The analytics store is shared with the other tests of the session: the report's totals are compared with
the ones before, and the per-contact figures are read for these contacts only.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.messages import AgentRequestedPayload, AgentRequestedV1, ConversationMessageSentV1
from schemas.vocab import Channel, Intent
from services.analytics.learning import contact_from_row, learning_report
from services.tier1_selfheal.auth import issue_session_token
from tests.helpers import read_topic, wait_rows
from tierline import conversations
from tierline.experiments import UPDATE_CARD_LINK_ANSWER, parse_experiments
from tierline.messaging import publish
from tierline.pipeline import start_contact
from tierline.service_auth import bearer_headers
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

PAID_LAST_MONTH = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 12}]}
ALICE_ASKS = "Can I get the invoice for last month's payment? Our accountant needs it for the audit."
BOB_ASKS = "Please send me the invoice for my payment last month, I need it for my expenses."
ALICE_AGAIN = "That didn't work, I still have no invoice for last month."


async def report(http: httpx.AsyncClient, infra: Any) -> dict[str, Any]:
    r = await http.get("/v1/analytics/report", headers=bearer_headers(infra.service_token.get_secret_value()))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def chat(http: httpx.AsyncClient, session: str, text: str, conversation_id: str | None = None) -> Any:
    body = {"text": text, **({"conversation_id": conversation_id} if conversation_id else {})}
    r = await http.post("/v1/chat/messages", json=body, headers={"Authorization": f"Bearer {session}"})
    assert r.status_code == 202, r.text
    return r.json()


async def answered(pg_pool: Any, contact_id: str) -> str:
    """The kind of the first message the customer got for this contact (waited for)."""
    rows = await wait_rows(
        pg_pool,
        "SELECT kind FROM conversation_turns WHERE contact_id=$1 AND role <> 'customer' ORDER BY seq",
        contact_id,
        timeout=120,
    )
    assert rows, f"nothing said for {contact_id}"
    return str(rows[0]["kind"])


@pytest.fixture(scope="module")
async def month(stack: Any, infra: Any, pipeline: list[Any], pg_pool: Any) -> dict[str, Any]:
    """Given two customers who asked for an invoice in the chat: Alice rated the answer 2 and "did not
    solve it" and wrote again in the same conversation; Bob rated his 5 and "solved"."""
    meter = f"http://127.0.0.1:{stack.service_ports['tier1_selfheal']}"
    analytics = f"http://127.0.0.1:{stack.service_ports['analytics_sink']}"
    async with httpx.AsyncClient(base_url=analytics, timeout=60) as a_http:
        before = await report(a_http, infra)
    keys = infra.customer_token_keyset()
    alice = await build_world(PAID_LAST_MONTH, StripeActions(infra), label="report-support-alice")
    bob = await build_world(PAID_LAST_MONTH, StripeActions(infra), label="report-support-bob")
    sessions = {w.customer_id: issue_session_token(keys, w.customer_id, 3600) for w in (alice, bob)}
    async with httpx.AsyncClient(base_url=meter, timeout=60) as http:
        a1, b1 = await asyncio.gather(
            chat(http, sessions[alice.customer_id], ALICE_ASKS),
            chat(http, sessions[bob.customer_id], BOB_ASKS),
        )
        kinds = {c["contact_id"]: await answered(pg_pool, c["contact_id"]) for c in (a1, b1)}
        for who, first, csat, solved in ((alice, a1, 2, False), (bob, b1, 5, True)):
            r = await http.post(
                "/v1/chat/ratings",
                json={
                    "conversation_id": first["conversation_id"],
                    "contact_id": first["contact_id"],
                    "csat": csat,
                },
                headers={"Authorization": f"Bearer {sessions[who.customer_id]}"},
            )
            assert r.status_code == 200, r.text
            r = await http.post(  # the second question of the widget completes the same rating
                "/v1/chat/ratings",
                json={
                    "conversation_id": first["conversation_id"],
                    "contact_id": first["contact_id"],
                    "solved": solved,
                },
                headers={"Authorization": f"Bearer {sessions[who.customer_id]}"},
            )
            assert r.status_code == 200, r.text
        a2 = await chat(http, sessions[alice.customer_id], ALICE_AGAIN, conversation_id=a1["conversation_id"])
        kinds[a2["contact_id"]] = await answered(pg_pool, a2["contact_id"])
    ours = [a1["contact_id"], b1["contact_id"], a2["contact_id"]]
    await wait_rows(
        pg_pool, "SELECT 1 FROM outcomes WHERE contact_id = ANY($1)", ours, min_count=3, timeout=120
    )

    # When the analytics service has read the topics and the report is asked for
    store = next(s for s in pipeline if s.name == "analytics_sink").state["analytics_store"]
    today = datetime.now(UTC).date()
    deadline = time.monotonic() + 90
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [
            r
            for r in await store.run(store.support_contacts, today - timedelta(days=1), today)
            if r["contact_id"] in ours
        ]
        rated = {r["contact_id"] for r in rows if int(r["csat_n"]) and int(r["solved_n"])}
        if len(rows) == 3 and all(r["answered"] and r["has_outcome"] for r in rows) and len(rated) == 2:
            break
        await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=analytics, timeout=60) as a_http:
        after = await report(a_http, infra)
    return {
        "before": before,
        "after": after,
        "rows": {r["contact_id"]: r for r in rows},
        "alice": a1,
        "alice_again": a2,
        "bob": b1,
        "kinds": kinds,
    }


def test_given_answers_and_ratings_when_reported_then_each_contact_has_its_first_response_and_rating(
    month: dict[str, Any],
) -> None:
    rows = month["rows"]
    alice, again, bob = (
        contact_from_row(rows[month[k]["contact_id"]]) for k in ("alice", "alice_again", "bob")
    )

    # Then the first message each contact got is there, with its kind, and the automated ones within 30 s
    for c in (alice, bob, again):
        assert c.first_kind == month["kinds"][c.contact_id]
        assert c.first_response_ms is not None
    assert alice.first_kind != "human_reply"
    assert alice.first_response_ms is not None
    assert alice.first_response_ms < 30_000
    # the two answers of the widget, given one after the other, make one rating
    assert (alice.csat, alice.solved) == (2, False)
    assert (bob.csat, bob.solved) == (5, True)
    # Alice wrote twice in one conversation; Bob once
    assert (alice.conversation_id, again.conversation_id) == (month["alice"]["conversation_id"],) * 2
    assert (alice.thread_messages, alice.first_in_thread, again.first_in_thread) == (2, True, False)
    assert bob.thread_messages == 1


def test_given_these_contacts_when_the_figures_are_computed_then_csat_fcr_and_the_gap_follow(
    month: dict[str, Any],
) -> None:
    section = learning_report(month["rows"].values())
    support = section["support"]

    assert support["csat"]["mean"] == 3.5
    assert support["csat"]["solved_share"] == 0.5
    assert support["conversations"] == 2
    # Bob's conversation ended on its first contact; Alice's did not (she wrote again, and said "no")
    assert support["first_contact_resolution"] == 0.5
    assert support["effort"]["customer_messages_per_conversation"] == 1.5
    # Alice's low rating makes her ask a knowledge gap, her words an example of it
    gaps = section["knowledge_gaps"]
    assert gaps
    alice_intent = contact_from_row(month["rows"][month["alice"]["contact_id"]]).intent or "(none)"
    gap = next(g for g in gaps if g["intent"] == alice_intent)
    assert gap["low_rated"] >= 1
    assert any("accountant" in e for e in gap["examples"])
    assert gap["suggested_article"]


def test_given_the_report_when_asked_over_http_then_its_support_figures_grew_by_these_contacts(
    month: dict[str, Any],
) -> None:
    before, after = month["before"]["support"], month["after"]["support"]

    assert after["first_response_ms"]["count"] >= before["first_response_ms"]["count"] + 3
    assert after["csat"]["ratings"] >= before["csat"]["ratings"] + 2
    assert after["csat"]["solved_answers"] >= before["csat"]["solved_answers"] + 2
    assert after["conversations"] >= before["conversations"] + 2
    assert after["first_response_ms"]["automated_p50"] > 0
    assert set(after["time_to_resolution"]) == {"tier0", "tier1", "tier2", "tier3"}
    resolved_after = sum(v["resolved"] for v in after["time_to_resolution"].values())
    resolved_before = sum(v["resolved"] for v in before["time_to_resolution"].values())
    assert resolved_after >= resolved_before + 2  # Alice's and Bob's first contacts at least
    # the gaps name an intent with example texts and the article to write
    gaps = month["after"]["knowledge_gaps"]
    assert gaps
    assert all(g["examples"] for g in gaps)
    assert all(g["suggested_article"] for g in gaps)


EXPIRED_CARD = {
    "customer": {"plan": "starter"},
    "card": "expired",
    "subscription": {"status": "past_due", "monthly_usd": 19},
    "failed_invoice": {"amount_usd": 19, "days_ago": 1, "decline_code": "expired_card"},
}


async def test_given_the_card_link_experiment_on_when_tier2_answers_then_the_variant_is_said_and_recorded(
    stack: Any, infra: Any, pipeline: list[Any], pg_pool: Any
) -> None:
    # Given the update-card-link answer running as an A/B experiment in tier 2 (TIERLINE_EXPERIMENTS), and a
    # customer with an expired card whose chat conversation reached tier 2
    tier2 = next(s for s in pipeline if s.name == "tier2_agent")
    deps = tier2.state["agent_deps"]
    world = await build_world(EXPIRED_CARD, StripeActions(infra), label="report-support-ab")
    customer_id = world.customer_id
    contact_id = f"c-ab-{uuid.uuid4().hex[:12]}"
    conversation_id = f"chat_{uuid.uuid4().hex}"
    await conversations.open_conversation(
        pg_pool, conversation_id=conversation_id, customer_id=customer_id, channel=Channel.CHAT
    )
    await start_contact(
        pg_pool, contact_id=contact_id, customer_id=customer_id, trigger="contact", channel="chat"
    )
    await conversations.attach_contact(pg_pool, contact_id=contact_id, conversation_id=conversation_id)
    request = AgentRequestedV1.build(
        AgentRequestedPayload(
            text="My card expired, please send me a link to put in the new one.",
            intent=Intent.CARD_EXPIRING,
            confidence=0.95,
            conversation_id=conversation_id,
        ),
        contact_id=contact_id,
        customer_id=customer_id,
    )
    name, text = UPDATE_CARD_LINK_ANSWER.variant_for(customer_id)
    deps.experiments = parse_experiments("update_card_link_answer")
    try:
        # When tier 2 takes the request from its topic
        await publish(tier2.broker, request)
        rows = await wait_rows(
            pg_pool, "SELECT message FROM outcomes WHERE contact_id=$1", contact_id, timeout=120
        )
        said = await wait_rows(
            pg_pool,
            "SELECT kind, text FROM conversation_turns WHERE contact_id=$1 AND role <> 'customer'",
            contact_id,
            timeout=60,
        )
    finally:
        deps.experiments = ()
    # Then the customer read their variant, and the outcome and the message sent carry its label
    assert rows, "no outcome"
    outcome = rows[0]["message"]
    outcome = json.loads(outcome) if isinstance(outcome, str) else outcome
    assert outcome["payload"]["resolved_by"] == "tier2"
    assert outcome["payload"]["variant"] == f"update_card_link_answer:{name}"
    assert [(t["kind"], t["text"]) for t in said] == [("answer", text)]
    sent = await read_topic(
        infra.kafka_bootstrap,
        ConversationMessageSentV1.TOPIC,
        lambda b: b.get("contact_id") == contact_id,
        timeout=30,
    )
    assert sent
    assert {m["payload"]["variant"] for m in sent} == {f"update_card_link_answer:{name}"}
