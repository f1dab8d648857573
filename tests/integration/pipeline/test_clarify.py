"""Clarifying questions through the real doors (issue 19).

An ambiguous billing text gets one question with choices (a clarifying_question turn, published on
conversation.message.sent.v1) and no case; the contact's outcome is that answer, so the sweeper leaves it
alone while the customer is being asked. The customer's reply in the same conversation decides the rest:
a choice is routed as that intent (and resolved), "human" goes to a person at once, a second unclear
reply goes to a person as low_confidence.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import Channel
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from tests.helpers import read_topic
from tierline.messaging import publish
from tierline.sweeper import ContactSweeper, SweeperSettings
from tierline_tools.scenarios.model import Scenario
from tierline_tools.scenarios.runner import ScenarioRunner

pytestmark = pytest.mark.integration

PAID = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 3}]}
#: read under the threshold, between "a payment still pending" and "a charge I don't recognise"
AMBIGUOUS = "What is this about my payment?"
OFFERED = ["payment_pending", "unrecognized_charge", "human"]


def _in_any_billing_order(values: list[str]) -> bool:
    """The offered billing choices (most likely first: the model's ranking decides), then "human"."""
    return sorted(values[:-1]) == sorted(OFFERED[:-1]) and values[-1:] == OFFERED[-1:]


@pytest.fixture(scope="module")
async def runner(stack: Any, infra: Any, pipeline: list[Any]) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=90) as r:
        yield r


async def asked(runner: ScenarioRunner) -> tuple[str, str, dict[str, Any]]:
    """A new customer's ambiguous first message: (contact id = conversation id, customer id, outcome)."""
    scenario = Scenario.model_validate(
        {
            "id": f"clarify-{uuid.uuid4().hex[:8]}",
            "world": PAID,
            "contact": {"channel": "chat", "text": AMBIGUOUS},
        }
    )
    result = await runner.run(scenario)
    assert result.error is None, result.error
    assert result.contact_id is not None
    outcome = await runner.wait_outcome(result.contact_id)
    assert outcome is not None
    customer_id = await runner.db.fetchval(
        "SELECT customer_id FROM contacts WHERE contact_id=$1", result.contact_id
    )
    return result.contact_id, str(customer_id), outcome


async def reply(
    runner: ScenarioRunner, customer_id: str, conversation_id: str, text: str, choice: str | None = None
) -> tuple[str, dict[str, Any]]:
    msg = ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.CHAT,
            text=text,
            sender=Sender(kind="customer_session", subject=customer_id),
            conversation_id=conversation_id,
            choice=choice,
        ),
        contact_id=f"c-{uuid.uuid4()}",
        customer_id=customer_id,
    )
    await publish(runner.broker, msg)
    outcome = await runner.wait_outcome(msg.contact_id)
    assert outcome is not None, f"no outcome for the reply {msg.contact_id}"
    return msg.contact_id, outcome


async def test_given_an_ambiguous_billing_text_when_routed_then_one_question_with_choices_and_no_case(
    runner: ScenarioRunner, infra: Any
) -> None:
    contact_id, customer_id, outcome = await asked(runner)

    payload = outcome["payload"]
    assert payload["resolved_by"] == "tier2"
    assert payload["escalation_reason"] is None
    assert payload["actions"] == []
    assert payload["summary"].startswith("clarifying_question:")
    turns = await runner.db.fetch(
        "SELECT role, kind, author, choices FROM conversation_turns WHERE conversation_id=$1 ORDER BY seq",
        contact_id,
    )
    assert [(t["role"], t["kind"]) for t in turns] == [
        ("customer", "message"),
        ("assistant", "clarifying_question"),
    ]
    assert turns[1]["author"] == "router"
    choices = turns[1]["choices"]
    choices = choices if isinstance(choices, list) else json.loads(choices)
    assert _in_any_billing_order([c["value"] for c in choices])
    status = await runner.db.fetchval("SELECT status FROM conversations WHERE conversation_id=$1", contact_id)
    assert status == "waiting_customer"
    assert await runner.db.fetchval("SELECT count(*) FROM cases WHERE contact_id=$1", contact_id) == 0
    sent = await read_topic(
        infra.kafka_bootstrap, "conversation.message.sent.v1", lambda b: b.get("contact_id") == contact_id
    )
    assert {s["payload"]["kind"] for s in sent} == {"clarifying_question"}
    assert _in_any_billing_order([c["value"] for c in sent[0]["payload"]["choices"]])

    # the sweeper, however late it runs, does not hand a question's contact to a person
    sweeper = ContactSweeper(runner.db, runner.broker, SweeperSettings(bound_s=1.0), swept_by="test")
    overdue = await sweeper.open_contacts(datetime.now(UTC) + timedelta(hours=1))
    assert contact_id not in {c.contact_id for c in overdue}


async def test_given_a_question_when_the_customer_picks_an_intent_then_it_is_routed_as_that_and_resolved(
    runner: ScenarioRunner,
) -> None:
    conversation_id, customer_id, _ = await asked(runner)

    reply_id, outcome = await reply(
        runner, customer_id, conversation_id, "A charge I don't recognise", choice="unrecognized_charge"
    )

    payload = outcome["payload"]
    assert payload["resolved_by"] == "tier2"
    assert payload["intent"] == "unrecognized_charge"
    assert "explain_charge" in payload["actions"]
    row = await runner.db.fetchrow("SELECT intent, confidence FROM contacts WHERE contact_id=$1", reply_id)
    assert (row["intent"], row["confidence"]) == ("unrecognized_charge", 1.0)
    kinds = await runner.db.fetch(
        "SELECT kind FROM conversation_turns WHERE conversation_id=$1 AND role <> 'customer' ORDER BY seq",
        conversation_id,
    )
    assert [k["kind"] for k in kinds][0] == "clarifying_question"
    assert await runner.db.fetchval("SELECT count(*) FROM cases WHERE contact_id=$1", reply_id) == 0


async def test_given_a_question_when_the_customer_picks_human_then_a_person_takes_it_at_once(
    runner: ScenarioRunner,
) -> None:
    conversation_id, customer_id, _ = await asked(runner)

    _, outcome = await reply(runner, customer_id, conversation_id, "Talk to a person", choice="human")

    assert outcome["payload"]["resolved_by"] == "tier3"
    assert outcome["payload"]["escalation_reason"] == "customer_asked"


async def test_given_a_question_when_the_reply_is_still_unclear_then_a_person_takes_it_as_low_confidence(
    runner: ScenarioRunner,
) -> None:
    conversation_id, customer_id, _ = await asked(runner)

    _, outcome = await reply(runner, customer_id, conversation_id, "I still don't get it")

    assert outcome["payload"]["resolved_by"] == "tier3"
    assert outcome["payload"]["escalation_reason"] == "low_confidence"
    questions = await runner.db.fetchval(
        "SELECT count(*) FROM conversation_turns WHERE conversation_id=$1 AND kind='clarifying_question'",
        conversation_id,
    )
    assert questions == 1  # never a second question


async def test_given_stopped_answers_and_questions_in_the_audit_when_reported_then_counted_per_cause(
    infra: Any,
) -> None:
    """The report's figures read the audit table in ClickHouse: stopped answers per cause and outcome,
    and the clarifying questions asked (a database of this test's own)."""
    import clickhouse_connect

    from services.analytics.queries import build_report
    from services.analytics.store import AnalyticsStore

    store = AnalyticsStore(
        clickhouse_connect.get_client(dsn=infra.clickhouse_dsn), f"clarify_{uuid.uuid4().hex[:8]}"
    )
    store.ensure_schema()
    at = datetime(2026, 11, 5, 12, tzinfo=UTC)

    def row(offset: int, action: str, target: str, decision: str) -> list[Any]:
        return [
            0,
            offset,
            uuid.uuid4(),
            f"c{offset}",
            "cus_x",
            at,
            "tier2_agent",
            action,
            target,
            decision,
            "{}",
            "",
            "",
        ]

    store.insert_audit(
        [
            row(1, "answer.quality_stopped", "amount", "rewritten"),
            row(2, "answer.quality_stopped", "amount,promise", "to_person"),
            row(3, "answer.quality_stopped", "id", "to_person"),
            row(4, "clarify.asked", "", "asked"),
            row(5, "route", "tier2.agent.requested.v1", "tier2"),
        ]
    )

    report = await store.run(build_report, store, at.date(), at.date())

    assert report["answers_stopped"] == {
        "total": 3,
        "by_cause": {"amount": 2, "id": 1, "promise": 1},
        "by_outcome": {"rewritten": 1, "to_person": 2},
    }
    assert report["clarifying_questions"] == {"asked": 1}
