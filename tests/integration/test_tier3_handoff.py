"""Tier 3 handoff on the real stack: Given escalations on the broker, When agents use the console, Then ..."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas import Tier
from schemas.messages import (
    ActionRecord,
    DeadLetterPayload,
    DeadLetterRecordedV1,
    DiagnosisView,
    EscalationOpenedPayload,
    EscalationOpenedV1,
    PolicyDecisionRecord,
    Turn,
)
from schemas.vocab import Action, EscalationReason, HealthStatus, Intent, RootCause
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier3_handoff.app import create_service
from services.tier3_handoff.auth import issue_agent_token
from services.tier3_handoff.settings import Tier3Settings
from tierline.actions import ActionContext, ActionExecutor
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import encode, headers_for, publish
from tierline.stripe_adapter import StripeActions
from tierline.tokens import KeySet
from tierline_tools.world import build_world

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
async def stripe_actions(infra: Any) -> StripeActions:
    return StripeActions(infra)


@pytest.fixture(scope="module")
async def tier3(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    settings = infra.model_copy(update={"http_port": free_port()})
    service = create_service(
        settings, Tier3Settings(sla_check_interval_s=0.5), diagnostics=diagnostics, name="tier3_handoff"
    )
    await service.start()
    service.state["diagnostics"] = diagnostics
    await asyncio.sleep(0)  # let the consumers join
    yield service
    await service.stop()


def token(infra: Any, agent: str, queues: list[str]) -> str:
    return issue_agent_token(infra.agent_token_keyset(), agent, queues)


def escalation(
    unique: str,
    *,
    reason: EscalationReason = EscalationReason.REFUND_OVER_POLICY,
    plan: str = "pro",
    amount: float = 120.0,
    suffix: str = "",
    customer_id: str | None = None,
    charge_id: str = "ch_2",
) -> EscalationOpenedV1:
    contact = f"c-{unique}{suffix}"
    customer = customer_id or f"cus_{unique}"
    return EscalationOpenedV1.build(
        EscalationOpenedPayload(
            reason=reason,
            opened_by=Tier.TIER2,
            intent=Intent.REFUND_REQUEST,
            text="I want my money back",
            plan=plan,
            amount_usd=amount,
            diagnosis=DiagnosisView(
                customer_id=customer,
                status=HealthStatus.AMBER,
                root_cause=RootCause.DUPLICATE_CHARGE,
                explanation="Charged twice on 3 May",
            ),
            transcript=[
                Turn(role="customer", text="I was charged twice"),
                Turn(role="assistant", text="Checking"),
            ],
            actions_tried=[
                ActionRecord(
                    action=Action.REFUND,
                    tier=Tier.TIER2,
                    status="succeeded",
                    idempotency_key="k1",
                    amount_usd=20.0,
                    target="ch_1",
                ),
                ActionRecord(
                    action=Action.REFUND,
                    tier=Tier.TIER2,
                    status="denied",
                    idempotency_key="k2",
                    amount_usd=100.0,
                    target=charge_id,
                ),
                ActionRecord(
                    action=Action.SEND_INVOICE, tier=Tier.TIER2, status="succeeded", idempotency_key="k3"
                ),
            ],
            policy_decisions=[
                PolicyDecisionRecord(action=Action.REFUND, verdict="needs_human", rule="refund_cap")
            ],
            suggested_next_step="Refund the remaining $100 if the duplicate is confirmed",
            tier_path=[Tier.TIER1, Tier.TIER2],
        ),
        contact_id=contact,
        customer_id=customer,
    )


async def wait_for(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.25)


async def collect(
    infra: Any,
    topic: str,
    match: Callable[[dict[str, Any]], bool],
    *,
    expect: int,
    settle: float = 3.0,
    within: float = 30.0,
) -> list[dict[str, Any]]:
    """Read a topic from the start with a fresh group; return matching messages after `settle` s quiet."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"t-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    quiet_until: float | None = None
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if _matches(match, r.value):
                        found.append(json.loads(r.value))
            if len(found) >= expect and quiet_until is None:
                quiet_until = loop.time() + settle
            if quiet_until is not None and loop.time() >= quiet_until:
                break
    finally:
        await consumer.stop()
    return found


def _matches(match: Callable[[dict[str, Any]], bool], value: bytes) -> bool:
    """A topic may carry other tests' messages, malformed ones included: those never match."""
    try:
        return bool(match(json.loads(value)))
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


async def refunded_cents(infra: Any, charge_id: str) -> int:
    return int((await StripeActions(infra).get_charge(charge_id))["amount_refunded"] or 0)


async def case_for(pg_pool: Any, contact_id: str) -> Any:
    return await pg_pool.fetchrow("SELECT * FROM cases WHERE contact_id=$1", contact_id)


# --------------------------------------------------------------------------- lifecycle
async def test_given_escalation_when_agent_claims_acts_and_resolves_then_case_outcome_and_resolution_flow(
    tier3, infra, pg_pool, unique, stripe_actions
):
    world = await build_world(
        {"charges": [{"amount_usd": 150.0, "days_ago": 3}]}, stripe_actions, label=f"t3-life-{unique}"
    )
    charge = world.charge_ids[0]
    msg = escalation(unique, customer_id=world.customer_id, charge_id=charge)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    assert row["status"] == "open"
    assert row["queue"] == "billing"
    assert row["priority"] == 2
    outcome = await wait_for(
        lambda: pg_pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", msg.contact_id)
    )
    p = outcome["payload"]
    assert p["resolved_by"] == "tier3"
    assert p["tier_path"] == ["tier1", "tier2", "tier3"]
    assert p["actions"] == ["refund", "send_invoice", "escalate"]
    assert p["refund_usd"] == 20.0
    assert p["escalation_reason"] == "refund_over_policy"
    assert p["root_cause"] == "duplicate_charge"
    assert p["intent"] == "refund_request"
    assert p["cost_usd"] == pytest.approx(8.30)

    base = f"http://127.0.0.1:{tier3.http_port}"
    auth = {"Authorization": f"Bearer {token(infra, f'ana-{unique}', ['billing'])}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as http:
        listed = (await http.get("/v1/cases")).json()["cases"]
        assert row["case_id"] in [c["case_id"] for c in listed]
        keys = [(c["priority"], c["sla_due_at"]) for c in listed]
        assert keys == sorted(keys)
        detail = (await http.get(f"/v1/cases/{row['case_id']}")).json()
        assert detail["packet"]["diagnosis"]["root_cause"] == "duplicate_charge"
        assert len(detail["packet"]["transcript"]) == 2
        assert len(detail["packet"]["actions_tried"]) == 3
        assert detail["packet"]["suggested_next_step"].startswith("Refund")
        assert (
            await http.post(f"/v1/cases/{row['case_id']}/resolve", json={"resolution_note": "x"})
        ).status_code == 409
        assert (await http.post(f"/v1/cases/{row['case_id']}/claim")).status_code == 200
        acted = await http.post(
            f"/v1/cases/{row['case_id']}/actions",
            json={"action": "refund", "charge_id": charge, "amount_usd": 90, "note": "duplicate confirmed"},
        )
        assert acted.status_code == 200, acted.text
        assert acted.json()["record"]["tier"] == "tier3"
        assert acted.json()["record"]["status"] == "succeeded"
        # $90 is within the agent's own limit (the pro automatic cap): Stripe really refunded it
        assert await refunded_cents(infra, charge) == 9000
        resolved = await http.post(
            f"/v1/cases/{row['case_id']}/resolve", json={"resolution_note": "Duplicate confirmed, refunded"}
        )
        assert resolved.status_code == 200
    final = await case_for(pg_pool, msg.contact_id)
    assert final["status"] == "resolved"
    assert final["resolution_note"] == "Duplicate confirmed, refunded"
    assert final["assignee"] == f"ana-{unique}"
    assert final["resolved_at"] is not None
    found = await collect(
        infra, "tier3.case.resolved.v1", lambda b: b["contact_id"] == msg.contact_id, expect=1
    )
    assert len(found) == 1
    assert found[0]["payload"]["agent_id"] == f"ana-{unique}"
    assert found[0]["payload"]["actions"][0]["action"] == "refund"


async def test_given_claimed_cases_when_agents_act_then_human_limits_apply_once_through_the_shared_tools(
    tier3, infra, pg_pool, unique, stripe_actions
):
    """Human actions go through the same policy engine and ledger as the AI's, with the human limits."""
    big = await build_world(
        {"charges": [{"amount_usd": 400.0, "days_ago": 5}, {"amount_usd": 1500.0, "days_ago": 2}]},
        stripe_actions,
        label=f"t3-hum-{unique}",
    )
    ent = await build_world(
        {"customer": {"plan": "enterprise"}, "charges": [{"amount_usd": 90.0, "days_ago": 1}]},
        stripe_actions,
        label=f"t3-ent-{unique}",
    )
    small, large = big.charge_ids
    msg = escalation(unique, suffix="-h", customer_id=big.customer_id, charge_id=small)
    ent_msg = escalation(unique, suffix="-e", plan="enterprise", customer_id=ent.customer_id)
    # The AI was denied this refund for this contact first (over its $100 pro cap): a ledger row under
    # the contact's own key that must not shadow the human's action.
    executor = ActionExecutor(
        pool=pg_pool, broker=tier3.broker, settings=infra, diagnostics=tier3.state["diagnostics"]
    )
    ai = await executor.refund(
        ActionContext(msg.contact_id, big.customer_id, Tier.TIER2, "ai", "agent", msg),
        small,
        300.0,
        "duplicate",
    )
    assert ai.status == "needs_human"
    for m in (msg, ent_msg):
        await publish(tier3.broker, m)
    rows = [await wait_for(lambda m=m: case_for(pg_pool, m.contact_id)) for m in (msg, ent_msg)]
    base = f"http://127.0.0.1:{tier3.http_port}"
    auth = {"Authorization": f"Bearer {token(infra, f'hu-{unique}', ['billing', 'enterprise'])}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as http:
        for row in rows:
            assert (await http.post(f"/v1/cases/{row['case_id']}/claim")).status_code == 200
        case_id = rows[0]["case_id"]

        async def refund(charge: str, amount: float, case: str = case_id) -> httpx.Response:
            return await http.post(
                f"/v1/cases/{case}/actions",
                json={"action": "refund", "charge_id": charge, "amount_usd": amount, "note": "checked"},
            )

        first = await refund(small, 90.0)  # the AI was refused $300; the agent refunds within its limit
        assert first.status_code == 200, first.text
        assert first.json()["record"]["status"] == "succeeded"
        again = await refund(small, 90.0)  # a double click: the ledger answers, Stripe is not called
        assert again.status_code == 200
        assert again.json()["record"]["idempotency_key"] == first.json()["record"]["idempotency_key"]
        assert await refunded_cents(infra, small) == 9000

        alone = await refund(large, 300.0)  # over the pro automatic cap: a second person approves it
        assert alone.status_code == 422
        assert "refund.human.needs_approval" in alone.json()["detail"]

        over = await refund(large, 1200.0)  # above the human cap ($1,000): a team lead's call
        assert over.status_code == 422
        assert "refund.human.cap_usd" in over.json()["detail"]
        assert await refunded_cents(infra, large) == 0

        lead = await refund(ent.charge_ids[0], 50.0, rows[1]["case_id"])  # enterprise: lead only
        assert lead.status_code == 422
        assert "lead_required" in lead.json()["detail"]
        assert await refunded_cents(infra, ent.charge_ids[0]) == 0

        foreign = await refund(ent.charge_ids[0], 10.0)  # another customer's charge on this case
        assert foreign.status_code in (200, 422)
        assert foreign.status_code == 422 or foreign.json()["record"]["status"] != "succeeded"
        assert await refunded_cents(infra, ent.charge_ids[0]) == 0

    ledger = await pg_pool.fetch(
        "SELECT actor, tier, status, target FROM action_ledger WHERE contact_id=$1 AND action='refund'",
        msg.contact_id,
    )
    assert [(r["tier"], r["target"]) for r in ledger if r["actor"] == "ai"] == [("tier2", small)]
    human = [(r["tier"], r["target"], r["status"]) for r in ledger if r["actor"] == "human"]
    assert ("tier3", small, "succeeded") in human
    assert ("tier3", large, "denied") in human
    assert [h for h in human if h[2] == "succeeded"] == [("tier3", small, "succeeded")]
    audits = await collect(
        infra,
        "audit.event.recorded.v1",
        lambda b: b["contact_id"] == msg.contact_id and b["payload"]["action"] == "refund",
        expect=1,
    )
    assert {a["payload"]["actor"] for a in audits} == {f"tier3:agent:hu-{unique}"}


async def test_given_same_escalation_delivered_three_times_when_consumed_then_one_case_and_one_outcome(
    tier3, infra, pg_pool, unique
):
    msg = escalation(unique, reason=EscalationReason.DISPUTE, plan="enterprise", amount=1500)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(3):  # byte-identical redeliveries (same message id)
            await producer.send_and_wait(
                msg.TOPIC,
                encode(msg),
                key=msg.key(),
                headers=[(k, v.encode()) for k, v in headers_for(msg).items()],
            )
        other = msg.model_copy(update={"message_id": uuid.uuid4()})  # a second escalation of the same contact
        await producer.send_and_wait(msg.TOPIC, encode(other), key=msg.key())
    finally:
        await producer.stop()
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    assert row["queue"] == "risk"
    assert row["priority"] == 1
    outcomes = await collect(
        infra, "contact.outcome.recorded.v1", lambda b: b["contact_id"] == msg.contact_id, expect=4
    )
    assert await pg_pool.fetchval("SELECT count(*) FROM cases WHERE contact_id=$1", msg.contact_id) == 1
    assert await pg_pool.fetchval("SELECT count(*) FROM outcomes WHERE contact_id=$1", msg.contact_id) == 1
    assert len({o["message_id"] for o in outcomes}) == 1  # republished, never a second outcome


# --------------------------------------------------------------------------- authz
async def test_given_agents_when_reading_other_queue_or_with_bad_tokens_then_403_and_401(
    tier3, infra, pg_pool, unique
):
    msg = escalation(unique, reason=EscalationReason.FRAUD)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    assert row["queue"] == "risk"
    base = f"http://127.0.0.1:{tier3.http_port}"
    billing = {"Authorization": f"Bearer {token(infra, 'bob', ['billing'])}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get(f"/v1/cases/{row['case_id']}", headers=billing)).status_code == 403
        assert (await http.post(f"/v1/cases/{row['case_id']}/claim", headers=billing)).status_code == 403
        assert (await http.get("/v1/cases?queue=risk", headers=billing)).status_code == 403
        listed = (await http.get("/v1/cases", headers=billing)).json()["cases"]
        assert row["case_id"] not in [c["case_id"] for c in listed]
        assert (await http.get("/v1/cases")).status_code == 401
        foreign = KeySet.single(
            "agent", infra.agent_token_keyset().current.kid, "not-the-key-but-long-enough-0123456789"
        )
        forged = issue_agent_token(foreign, "eve", ["risk"])
        assert (await http.get("/v1/cases", headers={"Authorization": f"Bearer {forged}"})).status_code == 401
        expired = issue_agent_token(infra.agent_token_keyset(), "eve", ["risk"], ttl_s=-60)
        assert (
            await http.get("/v1/cases", headers={"Authorization": f"Bearer {expired}"})
        ).status_code == 401
        assert (await http.get("/v1/cases", headers={"Authorization": "Bearer garbage"})).status_code == 401


async def test_given_case_claimed_by_one_agent_when_another_claims_then_409(tier3, infra, pg_pool, unique):
    msg = escalation(unique)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    base = f"http://127.0.0.1:{tier3.http_port}"
    ana = {"Authorization": f"Bearer {token(infra, 'ana', ['billing'])}"}
    cy = {"Authorization": f"Bearer {token(infra, 'cy', ['billing'])}"}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        first, second = await asyncio.gather(
            http.post(f"/v1/cases/{row['case_id']}/claim", headers=ana),
            http.post(f"/v1/cases/{row['case_id']}/claim", headers=cy),
        )
        assert sorted([first.status_code, second.status_code]) == [200, 409]
        winner, loser = (ana, cy) if first.status_code == 200 else (cy, ana)
        assert (await http.post(f"/v1/cases/{row['case_id']}/claim", headers=winner)).status_code == 200
        assert (
            await http.post(
                f"/v1/cases/{row['case_id']}/actions", headers=loser, json={"action": "note", "note": "mine"}
            )
        ).status_code == 409


# --------------------------------------------------------------------------- SLA
async def test_given_case_past_sla_when_sweeps_run_then_one_alert_and_one_notification(
    tier3, infra, pg_pool, unique
):
    msg = escalation(unique)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    await pg_pool.execute(
        "UPDATE cases SET sla_due_at = now() - interval '1 hour' WHERE case_id=$1", row["case_id"]
    )
    await wait_for(
        lambda: pg_pool.fetchval("SELECT sla_alerted_at FROM cases WHERE case_id=$1", row["case_id"])
    )
    again = await tier3.state["handoff"].sweep_sla(datetime.now(UTC) + timedelta(minutes=1))
    assert row["case_id"] not in again
    alerts = await collect(
        infra,
        "ops.alert.raised.v1",
        lambda b: b.get("payload", {}).get("subject") == row["case_id"],
        expect=1,
    )
    notes = await collect(
        infra,
        "notification.requested.v1",
        lambda b: b.get("payload", {}).get("dedupe_key") == f"sla_breach:{row['case_id']}",
        expect=1,
    )
    assert len(alerts) == 1
    assert alerts[0]["payload"]["kind"] == "sla_breach"
    assert alerts[0]["payload"]["observed"] >= 59
    assert len(notes) == 1
    assert notes[0]["payload"]["template"] == "sla_breach"


# --------------------------------------------------------------------------- knowledge capture
async def test_given_claimed_case_when_resolved_with_publish_article_then_knowledge_article_message(
    tier3, infra, pg_pool, unique
):
    msg = escalation(unique)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    base = f"http://127.0.0.1:{tier3.http_port}"
    auth = {"Authorization": f"Bearer {token(infra, 'kim', ['billing'])}"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=10) as http:
        await http.post(f"/v1/cases/{row['case_id']}/claim")
        bad = await http.post(
            f"/v1/cases/{row['case_id']}/resolve", json={"resolution_note": "done", "publish_article": True}
        )
        assert bad.status_code == 400
        res = await http.post(
            f"/v1/cases/{row['case_id']}/resolve",
            json={
                "resolution_note": "Refunded the duplicate",
                "publish_article": True,
                "title": f"Duplicate charge after plan change {unique}",
                "body": "Refund the second charge.",
                "tags": ["duplicate_charge"],
            },
        )
        assert res.status_code == 200
        article_id = res.json()["knowledge_article_id"]
    articles = await collect(
        infra,
        "knowledge.article.published.v1",
        lambda b: b.get("payload", {}).get("article_id") == article_id,
        expect=1,
    )
    assert len(articles) == 1
    assert articles[0]["payload"]["title"].endswith(unique)
    assert articles[0]["payload"]["source"] == "tier3"
    assert articles[0]["payload"]["author"] == "kim"


# --------------------------------------------------------------------------- dead letters
async def test_given_dead_letter_when_recorded_then_ops_case_and_contact_outcome(
    tier3, infra, pg_pool, unique
):
    dl = DeadLetterRecordedV1.build(
        DeadLetterPayload(
            original_topic="contact.received.v1",
            partition=1,
            offset=7,
            key=f"cus_{unique}",
            value="{bad",
            headers={"contact-id": f"c-{unique}"},
            consumer="router",
            # a burst of its own (dead letters group into one case per topic and error kind)
            error_type=f"TestError{unique}",
            error="validation failed",
        ),
        contact_id=f"c-{unique}",
        customer_id=f"cus_{unique}",
    )
    await publish(tier3.broker, dl)
    row = await wait_for(
        lambda: pg_pool.fetchrow("SELECT * FROM cases WHERE contact_id=$1", f"deadletter:{dl.message_id}")
    )
    assert row["queue"] == "ops"
    assert row["packet"]["original_contact_id"] == f"c-{unique}"
    outcome = await wait_for(
        lambda: pg_pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", f"c-{unique}")
    )
    assert outcome["payload"]["resolved_by"] == "tier3"
    assert outcome["payload"]["escalation_reason"] == "error"


def _dead_letter(unique: str, offset: int, *, value: str = "{bad", kind: str = "invalid_message") -> Any:
    return DeadLetterRecordedV1.build(
        DeadLetterPayload(
            original_topic=f"test.burst.{unique}.v1",
            partition=0,
            offset=offset,
            key=f"cus_{unique}",
            value=value,
            consumer="router",
            error_type="ValidationError",
            error="validation failed",
            error_kind=kind,  # type: ignore[arg-type]
        ),
        contact_id=f"test.burst.{unique}.v1:0:{offset}",
        customer_id=f"cus_{unique}",
    )


async def test_given_a_burst_of_dead_letters_when_recorded_then_one_case_per_topic_and_kind_with_a_count(
    tier3, infra, pg_pool, unique
):
    """Given 12 dead letters of one topic (10 of one error kind, one of them redelivered, 2 of another)
    and one whose value holds a NUL byte, When they are recorded, Then there are two cases, counting 11
    and 2, and the NUL byte is stored safely."""
    same = [_dead_letter(unique, i, value="bad\x00" if i == 0 else "{bad") for i in range(11)]
    other = [_dead_letter(unique, 100 + i, kind="not_json") for i in range(2)]
    for msg in [*same, same[3], *other]:
        await publish(tier3.broker, msg)
    topic = f"test.burst.{unique}.v1"

    async def rows_once_the_last_is_counted() -> list[Any] | None:
        # one key, so one partition, so in order: the last two were the not_json ones
        rows = await pg_pool.fetch(
            "SELECT packet FROM cases WHERE reason='dead_letter' AND packet->>'burst_key' LIKE $1",
            f"{topic}|%",
        )
        done = any(r["packet"]["burst_key"].endswith("not_json") and r["packet"]["count"] == 2 for r in rows)
        return rows if done else None

    rows = await wait_for(rows_once_the_last_is_counted)
    counts = {r["packet"]["burst_key"]: r["packet"]["count"] for r in rows}
    assert counts == {f"{topic}|invalid_message": 11, f"{topic}|not_json": 2}
    first = next(r["packet"] for r in rows if r["packet"]["burst_key"].endswith("invalid_message"))
    assert "\x00" not in first["dead_letter"]["value"]
    assert len(first["samples"]) == 10


# --------------------------------------------------------------------------- approvals (a second person)
def approver_token(infra: Any, agent: str, queues: list[str]) -> str:
    return issue_agent_token(infra.agent_token_keyset(), agent, queues, roles=["approver"])


async def test_given_a_refund_over_the_agents_limit_when_a_lead_approves_then_it_runs_once_with_both_names(
    tier3, infra, pg_pool, unique, stripe_actions
):
    world = await build_world(
        {"charges": [{"amount_usd": 1000.0, "days_ago": 4}]}, stripe_actions, label=f"t3-apr-{unique}"
    )
    charge = world.charge_ids[0]
    msg = escalation(unique, suffix="-apr", customer_id=world.customer_id, charge_id=charge, amount=300.0)
    await publish(tier3.broker, msg)
    row = await wait_for(lambda: case_for(pg_pool, msg.contact_id))
    case_id = row["case_id"]
    base = f"http://127.0.0.1:{tier3.http_port}"
    ana, bob = f"ana-{unique}", f"bob-{unique}"
    lee, max_ = f"lee-{unique}", f"max-{unique}"

    def client(tok: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {tok}"}, timeout=60)

    async with (
        client(token(infra, ana, ["billing"])) as agent,
        client(approver_token(infra, ana, ["billing"])) as agent_as_lead,
        client(token(infra, bob, ["billing"])) as other_agent,
        client(approver_token(infra, lee, ["billing"])) as lead,
        client(approver_token(infra, max_, ["billing"])) as second_lead,
    ):
        assert (await agent.post(f"/v1/cases/{case_id}/claim")).status_code == 200
        alone = await agent.post(
            f"/v1/cases/{case_id}/actions",
            json={"action": "refund", "charge_id": charge, "amount_usd": 300, "note": "goodwill"},
        )
        assert alone.status_code == 422
        assert "refund.human.needs_approval" in alone.json()["detail"]

        asked = await agent.post(
            f"/v1/cases/{case_id}/approvals",
            json={"charge_id": charge, "amount_usd": 300, "note": "goodwill"},
        )
        assert asked.status_code == 200, asked.text
        approval_id = asked.json()["approval_id"]
        assert asked.json()["status"] == "pending"
        again = await agent.post(
            f"/v1/cases/{case_id}/approvals",
            json={"charge_id": charge, "amount_usd": 300, "note": "goodwill"},
        )
        assert again.json()["approval_id"] == approval_id  # a double click asks once

        assert (await agent.get("/v1/approvals")).status_code == 403
        assert (await other_agent.post(f"/v1/approvals/{approval_id}/approve", json={})).status_code == 403
        own = await agent_as_lead.post(f"/v1/approvals/{approval_id}/approve", json={})
        assert own.status_code == 403
        assert "second person" in own.json()["detail"]
        assert await refunded_cents(infra, charge) == 0

        waiting = (await lead.get("/v1/approvals")).json()["approvals"]
        assert approval_id in [a["approval_id"] for a in waiting]

        # two leads and a double click at once: one refund
        clicks = await asyncio.gather(
            lead.post(f"/v1/approvals/{approval_id}/approve", json={"note": "ok"}),
            lead.post(f"/v1/approvals/{approval_id}/approve", json={"note": "ok"}),
            second_lead.post(f"/v1/approvals/{approval_id}/approve", json={}),
        )
        assert [c.status_code for c in clicks] == [200, 200, 200], [c.text for c in clicks]
        assert {c.json()["record"]["idempotency_key"] for c in clicks} == {
            clicks[0].json()["record"]["idempotency_key"]
        }
        assert {c.json()["record"]["status"] for c in clicks} == {"succeeded"}
        later = await lead.post(f"/v1/approvals/{approval_id}/approve", json={})  # a retried request
        assert later.status_code == 200
        assert await refunded_cents(infra, charge) == 30000

        # a second request, denied: recorded and shown, and nothing refunded
        other = await agent.post(
            f"/v1/cases/{case_id}/approvals", json={"charge_id": charge, "amount_usd": 200, "note": "more"}
        )
        other_id = other.json()["approval_id"]
        denied = await lead.post(
            f"/v1/approvals/{other_id}/deny", json={"note": "one goodwill refund is enough"}
        )
        assert denied.status_code == 200
        assert denied.json()["status"] == "denied"
        assert (await second_lead.post(f"/v1/approvals/{other_id}/approve", json={})).status_code == 409
        assert await refunded_cents(infra, charge) == 30000

        detail = (await agent.get(f"/v1/cases/{case_id}")).json()
    by_id = {a["approval_id"]: a for a in detail["approvals"]}
    assert by_id[approval_id]["status"] == "approved"
    assert by_id[approval_id]["requested_by"] == ana
    assert by_id[approval_id]["decided_by"] in (lee, max_)
    assert by_id[approval_id]["result"]["status"] == "succeeded"
    assert (by_id[other_id]["status"], by_id[other_id]["decided_by"]) == ("denied", lee)
    kinds = [a["kind"] for a in detail["human_actions"]]
    refunds = [a for a in detail["human_actions"] if a["kind"] == "refund"]
    # the agent's refused attempt alone, then the approved refund, recorded once
    approver = by_id[approval_id]["decided_by"]
    assert [(a["agent_id"], a["record"]["status"]) for a in refunds] == [
        (ana, "denied"),
        (approver, "succeeded"),
    ]
    assert kinds.count("approval_requested") == 2
    assert kinds.count("approval_denied") == 1

    ledger = await pg_pool.fetch(
        """SELECT status, amount_usd FROM action_ledger
           WHERE contact_id=$1 AND action='refund' AND status='succeeded'""",
        msg.contact_id,
    )
    assert [(r["status"], float(r["amount_usd"])) for r in ledger] == [("succeeded", 300.0)]
    audits = await collect(
        infra,
        "audit.event.recorded.v1",
        lambda b: (
            b["contact_id"] == msg.contact_id
            and b["payload"]["action"] == "refund"
            and b["payload"]["decision"] == "succeeded"
        ),
        expect=1,
    )
    details = {
        (a["payload"]["details"]["requested_by"], a["payload"]["details"]["approved_by"]) for a in audits
    }
    assert details == {(f"agent:{ana}", f"agent:{approver}")}
    told = await collect(
        infra,
        "notification.requested.v1",
        lambda b: b["contact_id"] == msg.contact_id and b["payload"]["template"] == "refund_approved",
        expect=1,
    )
    assert len({t["message_id"] for t in told}) == 1
    assert "$300.00" in told[0]["payload"]["body"]
