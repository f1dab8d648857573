"""The billing core's facts repository on the real Postgres: one statement over the subscription store,
the Stripe mirror, the ledger and the contacts; the router's gates and the executor's policy context read
it and see a customer the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import Channel, HealthStatus, RootCause, Tier
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, DiagnosisView, Sender
from services.router.handlers import RouterDeps, gather_gates
from tierline.actions import ActionContext, ActionExecutor
from tierline.billing.facts import PostgresFacts
from tierline.settings import InfraSettings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


async def given_customer(pool: Any, cid: str, *, risk: dict[str, Any], dispute_status: str | None) -> None:
    await pool.execute(
        "INSERT INTO customers (id, email, plan_tier, risk_flags) VALUES ($1, NULL, 'pro', $2)", cid, risk
    )
    await pool.execute(
        "INSERT INTO stripe_customers (id, email, version) VALUES ($1, $2, 1)", cid, f"{cid}@example.com"
    )
    if dispute_status is not None:
        await pool.execute(
            """INSERT INTO stripe_disputes
                 (id, charge_id, customer_id, amount_cents, status, created, version)
               VALUES ($1, $2, $3, 4900, $4, now(), 1)""",
            f"dp_{cid}",
            f"ch_{cid}",
            cid,
            dispute_status,
        )


def healthy(cid: str) -> DiagnosisView:
    """A diagnosis that names neither a dispute nor fraud (as one computed before the dispute arrived)."""
    return DiagnosisView(
        customer_id=cid,
        status=HealthStatus.GREEN,
        root_cause=RootCause.HEALTHY,
        explanation="",
        evidence={"plan": {"tier": "pro"}},
    )


def contact(cid: str, contact_id: str) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            text="refund me", channel=Channel.EMAIL, sender=Sender(kind="email", email=f"{cid}@example.com")
        ),
        contact_id=contact_id,
        customer_id=cid,
    )


def executor(pool: Any) -> ActionExecutor:
    return ActionExecutor(
        pool=pool,
        broker=None,  # type: ignore[arg-type]
        settings=InfraSettings(stripe_api_base="http://127.0.0.1:1"),
        diagnostics=None,
        stripe=object(),
    )


async def test_given_a_mirror_dispute_and_a_risk_flag_when_router_and_policy_read_facts_then_they_agree(
    pg_pool: Any, unique: str
) -> None:
    cid = f"cus_facts_{unique}"
    await given_customer(pg_pool, cid, risk={"fraud": {"by": "ops"}}, dispute_status="needs_response")
    deps = RouterDeps(pool=pg_pool, broker=None, classifier=None, diagnostics=None, inbox=None)  # type: ignore[arg-type]

    gates = await gather_gates(deps, contact(cid, f"ct_{unique}"), healthy(cid))
    ctx = ActionContext(f"ct_{unique}", cid, Tier.TIER2, "ai", "planner", None)  # type: ignore[arg-type]
    pctx = await executor(pg_pool).policy_context(ctx, healthy(cid))

    assert (gates.dispute_open, gates.fraud_signal) == (pctx.dispute_open, pctx.fraud_flag) == (True, True)
    assert gates.sender_authorized  # the email on file is Stripe's (the store has none)
    assert gates.plan == pctx.plan == "pro"


async def test_given_a_closed_dispute_and_no_flag_when_read_then_neither_sees_a_signal(
    pg_pool: Any, unique: str
) -> None:
    cid = f"cus_facts_{unique}"
    await given_customer(pg_pool, cid, risk={"card_fraud": False}, dispute_status="won")
    deps = RouterDeps(pool=pg_pool, broker=None, classifier=None, diagnostics=None, inbox=None)  # type: ignore[arg-type]

    gates = await gather_gates(deps, contact(cid, f"ct_{unique}"), healthy(cid))
    ctx = ActionContext(f"ct_{unique}", cid, Tier.TIER2, "ai", "planner", None)  # type: ignore[arg-type]
    pctx = await executor(pg_pool).policy_context(ctx, healthy(cid))

    assert (gates.dispute_open, gates.fraud_signal) == (pctx.dispute_open, pctx.fraud_flag) == (False, False)


async def test_given_refunds_ledger_and_contacts_when_loaded_then_one_read_has_every_fact(
    pg_pool: Any, unique: str
) -> None:
    cid = f"cus_facts_{unique}"
    await given_customer(pg_pool, cid, risk={}, dispute_status=None)
    for rid, days in ((f"re_a_{unique}", 5), (f"re_old_{unique}", 200)):
        await pg_pool.execute(
            """INSERT INTO stripe_refunds (id, charge_id, customer_id, amount_cents, status, created, version)
               VALUES ($1, 'ch_x', $2, 1000, 'succeeded', $3, 1)""",
            rid,
            cid,
            NOW - timedelta(days=days),
        )
    ledger = [
        # the mirrored refund again (tierline issued it), a refund not mirrored yet, two retries, a denial
        (f"k1_{unique}", "refund", "ch_x", "succeeded", {"refund": f"re_a_{unique}"}),
        (f"k2_{unique}", "refund", "ch_y", "succeeded", {"refund": f"re_b_{unique}"}),
        (f"k3_{unique}", "retry_payment", "in_1", "failed", {}),
        (f"k4_{unique}", "retry_payment", "in_1", "succeeded", {}),
        (f"k5_{unique}", "refund", "ch_z", "denied", {}),
    ]
    for key, action, target, status, result in ledger:
        await pg_pool.execute(
            """INSERT INTO action_ledger
                 (idempotency_key, contact_id, customer_id, action, target, tier, actor, status, result)
               VALUES ($1, $2, $3, $4, $5, 'tier2', 'ai', $6, $7)""",
            key,
            f"ct_{unique}",
            cid,
            action,
            target,
            status,
            result,
        )
    for n, days in enumerate((1, 3, 30)):
        await pg_pool.execute(
            """INSERT INTO contacts (contact_id, customer_id, trigger, started_at)
               VALUES ($1, $2, 'contact', $3)""",
            f"ct_{unique}_{n}",
            cid,
            NOW - timedelta(days=days),
        )

    facts = await PostgresFacts(pg_pool).load(cid, contact_id=f"ct_{unique}_0", refund_window_days=90)

    assert facts.in_store
    assert facts.in_mirror
    assert facts.email == f"{cid}@example.com"
    assert facts.store_plan == "pro"
    assert sorted(r.id for r in facts.refunds) == sorted(
        [f"re_a_{unique}", f"re_a_{unique}", f"re_b_{unique}"]
    )
    assert facts.repeat_contacts == 1  # the one 3 days ago: not this contact, not the one 30 days ago
    assert facts.retry_attempts("in_1") == 2
    assert facts.actions_today == {"refund": 2, "retry_payment": 1}
    ctx = ActionContext(f"ct_{unique}", cid, Tier.TIER2, "ai", "planner", None)  # type: ignore[arg-type]
    pctx = await executor(pg_pool).policy_context(ctx, healthy(cid))
    assert pctx.refunds_last_90d == 2  # re_a once (mirror and ledger), re_b; the 200-day-old one is out
    assert pctx.actions_today == {"refund": 2, "retry_payment": 1}


async def test_given_an_unknown_customer_when_loaded_then_no_facts(pg_pool: Any, unique: str) -> None:
    facts = await PostgresFacts(pg_pool).load(f"cus_nobody_{unique}")
    assert not facts.known
    assert facts.disputes == ()
    assert facts.refunds == ()
    assert facts.repeat_contacts == 0
