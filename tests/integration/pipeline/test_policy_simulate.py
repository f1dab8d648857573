"""`tierline policy simulate` on the real stack: contacts refunded automatically under the shipped policy,
decided again under a policy whose caps are lower than what was refunded, with nothing changing anywhere.

The contacts run through the real doors (broker, Postgres, chDB, Qdrant local, the Stripe emulator, every
service in-process: the package's pipeline). Before and after the simulation the test reads these customers'
ledger rows, recorded decisions, outcomes and cases and Stripe's refunds of their charges: the same
afterwards; and of the audit records appended between two readings of the audit topic's end offsets (the
pipeline keeps running), none is about them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from tierline.billing.policy import DEFAULT_POLICY_PATH
from tierline.policy_simulate import run_simulation
from tierline.stripe_adapter import StripeActions
from tierline_tools.scenarios.model import Scenario, ScenarioResult, check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

#: Texts written for this test: full refunds the shipped policy allows automatically (pro cap $100,
#: starter cap $50), and a half refund that stays under the lowered cap.
ROWS: list[dict[str, Any]] = [
    {
        "id": "sim-pro-full",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 2}]},
        "contact": {
            "channel": "chat",
            "text": "We stopped using the tool last week. Please refund my last payment.",
        },
        "expect": {"resolved_by": "tier2", "actions_include": ["refund"]},
    },
    {
        "id": "sim-pro-full-email",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 5}]},
        "contact": {
            "channel": "email",
            "text": "Hi,\n\nI signed up by accident and never used the account. Can I get my money back for "
            "the last charge?\n\nThanks,\nMorgan",
        },
        "expect": {"resolved_by": "tier2", "actions_include": ["refund"]},
    },
    {
        "id": "sim-starter-full",
        "world": {"customer": {"plan": "starter"}, "charges": [{"amount_usd": 19, "days_ago": 1}]},
        "contact": {
            "channel": "chat",
            "text": "Please refund the payment from yesterday, I meant to cancel.",
        },
        "expect": {"resolved_by": "tier2", "actions_include": ["refund"]},
    },
    {
        "id": "sim-pro-half",
        "world": {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 3}]},
        "contact": {
            "channel": "chat",
            "text": "Our team was away half the month; could you refund half of it?",
        },
        "expect": {"resolved_by": "tier2", "actions_include": ["refund"], "refund_usd_max": 24.5},
    },
]
LOWERED = "sim-pro-full", "sim-pro-full-email", "sim-starter-full"


@pytest.fixture(scope="module")
async def recorded(
    stack: Any, infra: Any, pg_pool: Any, pipeline: list[Any]
) -> dict[str, tuple[ScenarioResult, str]]:
    """The contacts run through the doors; each result with its customer."""
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    scenarios = [Scenario.model_validate(row) for row in ROWS]
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as runner:
        done = await run_all(runner, scenarios, concurrency=2)
    for scenario, result in zip(scenarios, done, strict=True):
        assert check(scenario, result) == [], result.model_dump()
    out: dict[str, tuple[ScenarioResult, str]] = {}
    for result in done:
        customer = await pg_pool.fetchval(
            "SELECT customer_id FROM outcomes WHERE contact_id=$1", result.contact_id
        )
        out[result.id] = (result, customer)
    return out


@pytest.fixture
def lowered_policy(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["version"] = 2
    raw["refund"]["automatic"]["cap_usd_by_plan"].update({"pro": 40.0, "starter": 15.0})
    path = tmp_path / "lowered.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


AUDIT = "audit.event.recorded.v1"


async def snapshot(infra: Any, pg_pool: Any, customers: list[str]) -> dict[str, Any]:
    """These customers' rows in every table the pipeline writes decisions and effects to, Stripe's refunds of
    their charges, and the audit topic's end offsets."""
    rows = {
        table: [
            dict(r)
            for r in await pg_pool.fetch(
                f"SELECT * FROM {table} WHERE customer_id = ANY($1) ORDER BY 1",  # noqa: S608 - fixed names
                customers,
            )
        ]
        for table in ("action_ledger", "policy_decisions", "outcomes", "cases")
    }
    charges = await pg_pool.fetch(
        "SELECT id FROM stripe_charges WHERE customer_id = ANY($1) ORDER BY id", customers
    )
    stripe = StripeActions(infra)
    refunds: dict[str, Any] = {}
    for row in charges:
        charge = await stripe.get_charge(row["id"])
        page = await stripe.call(
            lambda c=row["id"]: stripe.v1.refunds.list_async({"charge": c}), op="refund.list"
        )
        refunds[row["id"]] = (charge.get("amount_refunded"), sorted(r["id"] for r in page["data"]))
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(AUDIT, p) for p in sorted(consumer.partitions_for_topic(AUDIT) or [])]
        offsets = {tp.partition: off for tp, off in (await consumer.end_offsets(parts)).items()}
    finally:
        await consumer.stop()
    return {"rows": rows, "refunds": refunds, "audit_offsets": offsets}


async def audit_between(infra: Any, before: dict[int, int], after: dict[int, int]) -> list[dict[str, Any]]:
    """The audit records appended between two snapshots of the end offsets."""
    wanted = {
        TopicPartition(AUDIT, p): (before.get(p, 0), end)
        for p, end in after.items()
        if end > before.get(p, 0)
    }
    if not wanted:
        return []
    found: list[dict[str, Any]] = []
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(wanted))
        for tp, (start, _) in wanted.items():
            consumer.seek(tp, start)
        for _ in range(60):  # at most about a minute
            positions = {tp: await consumer.position(tp) for tp in wanted}
            if all(positions[tp] >= end for tp, (_, end) in wanted.items()):
                break
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                found.extend(json.loads(r.value) for r in records if r.offset < wanted[tp][1])
    finally:
        await consumer.stop()
    return found


async def assert_unchanged(infra: Any, pg_pool: Any, customers: list[str], before: dict[str, Any]) -> None:
    after = await snapshot(infra, pg_pool, customers)
    assert after["rows"] == before["rows"]
    assert after["refunds"] == before["refunds"]
    # the pipeline keeps running (timers, the sweeper): whatever it appended is not about these customers
    added = await audit_between(infra, before["audit_offsets"], after["audit_offsets"])
    # (tier 0's dunning may decide retries for other customers meanwhile; the simulator decides nothing)
    about = [r for r in added if r.get("customer_id") in customers]
    assert about == []


async def test_given_automatic_refunds_when_simulated_with_lower_caps_then_fewer_refunds_more_escalations(
    recorded: dict[str, tuple[ScenarioResult, str]], infra: Any, pg_pool: Any, lowered_policy: Path
) -> None:
    customers = [customer for _, customer in recorded.values()]
    before = await snapshot(infra, pg_pool, customers)
    assert before["audit_offsets"], "no audit partitions"
    assert sum(len(ids) for _, ids in before["refunds"].values()) == len(ROWS)
    assert len(before["rows"]["policy_decisions"]) >= len(ROWS)

    report = await run_simulation(infra.postgres_dsn, lowered_policy, "1d")

    changed = {c.contact_id: c for c in report.changed}
    for scenario_id in LOWERED:
        result, _ = recorded[scenario_id]
        contact = changed[result.contact_id]
        assert (contact.escalation_then, contact.escalation_now) == (None, "refund_over_policy")
        assert contact.cascaded
        (refund,) = [d for d in contact.decisions if d.action == "refund"]
        assert (refund.then_verdict, refund.now_verdict) == ("allow", "needs_human")
        assert refund.now_rule == "refund.automatic.cap_usd_by_plan"
    assert recorded["sim-pro-half"][0].contact_id not in changed
    # other contacts of the session may change as well: lower caps only ever remove refunds
    assert report.current.refunds - report.simulated.refunds >= len(LOWERED)
    assert report.current.refunds_usd - report.simulated.refunds_usd >= 49 + 49 + 19 - 0.001
    over_then = report.current.escalations.get("refund_over_policy", 0)
    assert report.simulated.escalations.get("refund_over_policy", 0) - over_then >= len(LOWERED)
    assert report.simulated.automated_rate < report.current.automated_rate
    assert report.new_policy_version == "2"

    await assert_unchanged(infra, pg_pool, customers, before)


async def cli(*command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_given_recorded_refunds_when_the_command_runs_then_one_json_document_and_nothing_changes(
    recorded: dict[str, tuple[ScenarioResult, str]],
    infra: Any,
    pg_pool: Any,
    lowered_policy: Path,
    tmp_path: Path,
) -> None:
    customers = [customer for _, customer in recorded.values()]
    before = await snapshot(infra, pg_pool, customers)
    env = {**os.environ, "TIERLINE_POSTGRES_DSN": infra.postgres_dsn, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tierline.cli", "policy", "simulate", "--policy", str(lowered_policy)]

    as_json = await cli(*command, "--since", "1d", "--json", cwd=tmp_path, env=env)
    as_text = await cli(*command, cwd=tmp_path, env=env)

    assert as_json[0] == 0, as_json[2]
    doc = json.loads(as_json[1])
    assert doc["difference"]["refunds"] <= -len(LOWERED)
    assert doc["difference"]["escalations"]["refund_over_policy"] >= len(LOWERED)
    changed = {c["contact_id"] for c in doc["changed"]}
    assert {recorded[s][0].contact_id for s in LOWERED} <= changed
    assert as_text[0] == 0, as_text[2]
    assert "escalations by reason" in as_text[1]
    assert recorded["sim-pro-full"][0].contact_id in as_text[1]
    await assert_unchanged(infra, pg_pool, customers, before)
