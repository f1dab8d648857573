"""Humans reply (issue 19), through the real doors of the whole pipeline: a customer asks for a person on
the Billing Health Meter, the case reaches the Tier 3 console, the agent replies and resolves, and the
customer's pages say the truth at every step."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.tier1_selfheal.auth import issue_session_token
from services.tier3_handoff.auth import issue_agent_token
from tests.helpers import read_topic, wait_rows
from tierline.stripe_adapter import StripeActions
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration

SENT = "conversation.message.sent.v1"


@pytest.fixture(scope="module")
async def handed_over(stack: Any, infra: Any, pipeline: Any, pg_pool: Any) -> dict[str, Any]:
    """Given a pro customer who pressed "Talk to a human" on the Health Meter, and the case it opened."""
    world = await build_world({"customer": {"plan": "pro"}}, StripeActions(infra), label="console-reply")
    session = issue_session_token(infra.customer_token_keyset(), world.customer_id, 3600)
    meter = f"http://127.0.0.1:{stack.service_ports['tier1_selfheal']}"
    async with httpx.AsyncClient(base_url=meter, timeout=30) as http:
        r = await http.post(
            "/v1/health-meter/human",
            json={"text": "Why was I charged twice this month? Please have a person check."},
            headers={"Authorization": f"Bearer {session}"},
        )
    assert r.status_code == 202, r.text
    contact_id = r.json()["contact_id"]
    rows = await wait_rows(pg_pool, "SELECT * FROM cases WHERE contact_id=$1", contact_id, timeout=60)
    assert rows, f"no case opened for {contact_id}"
    return {
        "customer_id": world.customer_id,
        "contact_id": contact_id,
        "case": rows[0],
        "meter": meter,
        "session": session,
        "console": f"http://127.0.0.1:{stack.service_ports['tier3_handoff']}",
    }


def agent(infra: Any, name: str, queues: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_agent_token(infra.agent_token_keyset(), name, queues)}"}


async def turns_of(pg_pool: Any, contact_id: str, kind: str) -> list[Any]:
    return list(
        await pg_pool.fetch(
            """SELECT t.* FROM conversation_turns t JOIN contacts c ON c.conversation_id = t.conversation_id
               WHERE c.contact_id=$1 AND t.kind=$2 ORDER BY t.seq""",
            contact_id,
            kind,
        )
    )


async def meter_status(h: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    auth = {"Authorization": f"Bearer {h['session']}"}
    async with httpx.AsyncClient(base_url=h["meter"], headers=auth, timeout=30) as http:
        status = (await http.get(f"/v1/health-meter/contacts/{h['contact_id']}")).json()
        cases = (await http.get("/v1/health-meter/cases")).json()["cases"]
    return status, [c for c in cases if c["contact_id"] == h["contact_id"]]


async def test_given_an_open_case_when_the_customer_looks_then_the_meter_says_a_person_has_it_with_the_sla(
    handed_over: dict[str, Any],
) -> None:
    # When the customer's page asks for the request's status while the case is open
    status, cases = await meter_status(handed_over)
    # Then it is never "resolved": a person is looking at it, with the time they answer by
    assert status["status"] == "escalated", status
    assert status.get("resolved_by") is None
    assert "A person on our billing team is looking at this; expect an answer by" in status["detail"]
    assert status["sla_due_at"] == handed_over["case"]["sla_due_at"].isoformat()
    assert len(cases) == 1
    assert cases[0]["state"] == "with_human"
    assert "expect an answer by" in cases[0]["detail"]


async def test_given_the_reply_endpoint_when_called_wrongly_then_4xx_and_nothing_is_sent(
    handed_over: dict[str, Any], infra: Any, pg_pool: Any, unique: str
) -> None:
    case_id = handed_over["case"]["case_id"]
    url = f"/v1/cases/{case_id}/reply"
    good = {"text": "Hello, I am checking your charges now.", "reply_id": f"rp-bad-{unique}"}
    async with httpx.AsyncClient(base_url=handed_over["console"], timeout=30) as http:
        # no token / a bad token
        assert (await http.post(url, json=good)).status_code == 401
        assert (
            await http.post(url, json=good, headers={"Authorization": "Bearer not-a-token"})
        ).status_code == 401
        # an agent outside the case's queue
        outsider = agent(infra, f"rita-{unique}", ["risk"])
        r = await http.post(url, json=good, headers=outsider)
        assert r.status_code == 403, r.text
        # a member of the queue who has not claimed the case
        member = agent(infra, f"bo-{unique}", ["billing"])
        assert (await http.post(url, json=good, headers=member)).status_code == 409
        # an unknown case
        missing = await http.post("/v1/cases/case_00000000000000000000/reply", json=good, headers=member)
        assert missing.status_code == 404
    assert not await turns_of(pg_pool, handed_over["contact_id"], "human_reply")


async def test_given_a_claimed_case_when_the_agent_replies_and_resolves_then_the_customer_is_told_once(
    handed_over: dict[str, Any], infra: Any, pg_pool: Any, unique: str
) -> None:
    case_id = handed_over["case"]["case_id"]
    contact_id = handed_over["contact_id"]
    name = f"ana-{unique}"
    auth = agent(infra, name, ["billing", "enterprise"])
    reply_id = f"rp-{unique}"
    text = "Hello, I checked your account: there is one charge this month. Nothing was taken twice."
    async with httpx.AsyncClient(base_url=handed_over["console"], headers=auth, timeout=30) as http:
        # Given the agent sees the whole thread and a customer-facing draft, and claims the case
        detail = (await http.get(f"/v1/cases/{case_id}")).json()
        thread = detail["conversation"]
        assert thread["channel"] == "dashboard"
        assert [t["text"] for t in thread["turns"] if t["role"] == "customer"] == [
            "Why was I charged twice this month? Please have a person check."
        ]
        assert detail["draft_reply"].startswith("Hello,")
        assert detail["packet"]["suggested_next_step"] not in detail["draft_reply"]
        assert (await http.post(f"/v1/cases/{case_id}/claim")).status_code == 200
        # an empty reply and one too long are refused
        for bad in ("   ", "x" * 5001):
            r = await http.post(f"/v1/cases/{case_id}/reply", json={"text": bad, "reply_id": reply_id})
            assert r.status_code == 422, r.text
        assert (await http.post(f"/v1/cases/{case_id}/reply", json={"reply_id": reply_id})).status_code == 422
        # When the agent sends the reply (and the send is retried with the same reply id)
        first = await http.post(f"/v1/cases/{case_id}/reply", json={"text": text, "reply_id": reply_id})
        assert first.status_code == 200, first.text
        again = await http.post(f"/v1/cases/{case_id}/reply", json={"text": text, "reply_id": reply_id})
        assert again.json()["message_id"] == first.json()["message_id"]
        shown = (await http.get(f"/v1/cases/{case_id}")).json()

    # Then one human_reply turn, one case action, and the thread shows it
    replies = await turns_of(pg_pool, contact_id, "human_reply")
    assert [(r["text"], r["author"], r["role"]) for r in replies] == [(text, f"agent:{name}", "agent")]
    assert [a["kind"] for a in shown["human_actions"]].count("reply") == 1
    assert text in [t["text"] for t in shown["conversation"]["turns"]]
    assert shown["conversation"]["status"] == "with_human"
    # and one conversation.message.sent.v1 for it (a retry republishes the same id)
    sent = await read_topic(
        infra.kafka_bootstrap,
        SENT,
        lambda m: m.get("contact_id") == contact_id and m.get("payload", {}).get("kind") == "human_reply",
        timeout=30,
        settle=2,
    )
    assert {m["message_id"] for m in sent} == {first.json()["message_id"]}
    assert sent[0]["payload"]["text"] == text
    assert sent[0]["payload"]["author"] == f"agent:{name}"
    # and the customer's page shows the person's reply while the case stays with the person
    status, cases = await meter_status(handed_over)
    assert status["status"] == "escalated"
    assert [m["text"] for m in cases[0]["messages"] if m["kind"] == "human_reply"] == [text]

    # When the agent resolves the case, and the resolve is retried
    note = "Checked with the customer: a single charge this month, no duplicate."
    async with httpx.AsyncClient(base_url=handed_over["console"], headers=auth, timeout=30) as http:
        for _ in range(2):
            r = await http.post(f"/v1/cases/{case_id}/resolve", json={"resolution_note": note})
            assert r.status_code == 200, r.text
        # a resolved case takes no more replies
        late = await http.post(
            f"/v1/cases/{case_id}/reply", json={"text": "one more", "reply_id": f"rp-late-{unique}"}
        )
        assert late.status_code == 409

    # Then exactly one resolution turn tells the customer, and the conversation is resolved
    resolutions = await turns_of(pg_pool, contact_id, "resolution")
    assert len(resolutions) == 1
    assert note in resolutions[0]["text"]
    conv_status = await pg_pool.fetchval(
        "SELECT v.status FROM conversations v JOIN contacts c ON c.conversation_id = v.conversation_id "
        "WHERE c.contact_id=$1",
        contact_id,
    )
    assert conv_status == "resolved"
    sent = await read_topic(
        infra.kafka_bootstrap,
        SENT,
        lambda m: m.get("contact_id") == contact_id and m.get("payload", {}).get("kind") == "resolution",
        timeout=30,
        settle=2,
    )
    assert len({m["message_id"] for m in sent}) == 1
    # and the customer's page says it is resolved by the team, with the person's note
    status, cases = await meter_status(handed_over)
    assert status["status"] == "resolved"
    assert status["resolved_by"] == "tier3"
    assert note in status["summary"]
    assert cases[0]["state"] == "resolved"
    assert note in cases[0]["detail"]
