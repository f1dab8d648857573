"""One facts repository (tierline/billing/facts.py): the router's gates and the policy's context are both
derived from the same CustomerFacts with the same dispute and fraud rules, so they never disagree."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import Channel, HealthStatus, RootCause, Tier
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, DiagnosisView, Sender
from schemas.vocab import Action, Intent
from services.router.domain import decide_route
from services.router.handlers import RouterDeps, gates_from_facts, gather_gates
from tierline.actions import ActionContext, ActionExecutor
from tierline.billing.facts import (
    CLOSED_DISPUTE_STATUSES,
    CustomerFacts,
    DisputeFact,
    InMemoryFacts,
    PostgresFacts,
    facts_from_row,
    policy_context,
)
from tierline.billing.policy import PolicyEngine, RefundFact
from tierline.guardrails import INJECTION_FLAG
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC)
ENGINE = PolicyEngine.from_yaml()


def diagnosis(root: RootCause = RootCause.HEALTHY, **evidence: Any) -> DiagnosisView:
    return DiagnosisView(
        customer_id="cus_1",
        status=HealthStatus.GREEN if root is RootCause.HEALTHY else HealthStatus.RED,
        root_cause=root,
        explanation="",
        evidence={"plan": {"tier": "pro"}, **evidence},
    )


def contact(sender: Sender | None = None) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            text="please refund my last charge",
            channel=Channel.CHAT,
            sender=sender or Sender(kind="customer_session", subject="cus_1"),
        ),
        contact_id="ct_1",
        customer_id="cus_1",
    )


def both(facts: CustomerFacts, view: DiagnosisView) -> tuple[tuple[bool, bool], tuple[bool, bool]]:
    """(dispute, fraud) as the router's gates see them and as the policy's context sees them."""
    gates = gates_from_facts(contact(), facts, view)
    pctx = policy_context(ENGINE, facts, view, actor="ai", now=NOW)
    return (gates.dispute_open, gates.fraud_signal), (pctx.dispute_open, pctx.fraud_flag)


def test_given_a_mirror_dispute_and_a_risk_flag_only_when_derived_then_gates_and_policy_agree() -> None:
    facts = CustomerFacts(
        customer_id="cus_1",
        in_store=True,
        risk_flags={"fraud": {"by": "ops"}},
        disputes=(DisputeFact(id="dp_1", status="needs_response", charge_id="ch_1"),),
    )
    view = diagnosis()  # the diagnosis names neither: healthy, no disputes in its evidence

    gates, pctx = both(facts, view)

    assert gates == pctx == (True, True)
    # and the router acts on it: a money ask goes to a person for fraud (the fraud row comes first)
    decision = decide_route(
        Intent.REFUND_REQUEST, 0.95, gates_from_facts(contact(), facts, view), RootCause.HEALTHY, None, 0.5
    )
    assert decision.tier is Tier.TIER3
    assert ENGINE.check(Action.REFUND, policy_context(ENGINE, facts, view, actor="ai", now=NOW)).kind == (
        "needs_human"
    )


@pytest.mark.parametrize(
    "status",
    sorted(CLOSED_DISPUTE_STATUSES)
    + ["needs_response", "under_review", "warning_needs_response", "warning_under_review", "charge_refunded"],
)
def test_given_a_dispute_status_when_derived_then_gates_and_policy_read_it_the_same(status: str) -> None:
    facts = CustomerFacts(customer_id="cus_1", disputes=(DisputeFact(id="dp_1", status=status),))
    gates, pctx = both(facts, diagnosis())
    assert gates == pctx
    assert gates[0] is (status not in CLOSED_DISPUTE_STATUSES)


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (diagnosis(RootCause.DISPUTE_OPEN), (True, False)),
        (diagnosis(RootCause.CARD_DECLINED_FRAUD), (False, True)),
        (diagnosis(disputes=[{"id": "dp_1", "status": "under_review"}]), (True, False)),
        # a status the diagnosis does not list as open, yet not closed: the router used to miss it
        (diagnosis(disputes=[{"id": "dp_1", "status": "charge_refunded"}]), (True, False)),
        (diagnosis(disputes=[{"id": "dp_1", "status": "won"}]), (False, False)),
        (diagnosis(), (False, False)),
    ],
)
def test_given_a_signal_only_in_the_diagnosis_when_derived_then_both_see_it(
    view: DiagnosisView, expected: tuple[bool, bool]
) -> None:
    gates, pctx = both(CustomerFacts(customer_id="cus_1"), view)
    assert gates == pctx == expected


def test_given_a_fraud_flag_set_to_false_when_derived_then_it_is_no_signal() -> None:
    facts = CustomerFacts(customer_id="cus_1", risk_flags={"card_fraud": False})
    assert both(facts, diagnosis()) == ((False, False), (False, False))


def test_given_no_plan_in_the_diagnosis_when_derived_then_both_take_the_store_plan() -> None:
    facts = CustomerFacts(customer_id="cus_1", store_plan="enterprise")
    view = diagnosis().model_copy(update={"evidence": {}})
    gates = gates_from_facts(contact(), facts, view)
    assert gates.plan == "enterprise"
    assert gates.enterprise
    assert policy_context(ENGINE, facts, view, actor="ai", now=NOW).plan == "enterprise"


def test_given_an_email_only_in_the_mirror_when_an_email_arrives_then_the_sender_is_authorized() -> None:
    facts = CustomerFacts(customer_id="cus_1", in_mirror=True, mirror_email="Ann@Example.com")
    ok = gates_from_facts(contact(Sender(kind="email", email="ann@example.com")), facts, diagnosis())
    other = gates_from_facts(contact(Sender(kind="email", email="eve@example.com")), facts, diagnosis())
    assert ok.sender_authorized
    assert not other.sender_authorized


def test_given_one_row_of_the_query_when_read_then_every_fact_is_there() -> None:
    created = (NOW - timedelta(days=3)).isoformat()
    row = {
        "store": json.dumps({"email": None, "plan_tier": "pro", "risk_flags": {"card_fraud": {"code": "x"}}}),
        "mirror": {"email": "ann@example.com"},
        "disputes": [{"id": "dp_1", "status": "won", "charge_id": "ch_1"}],
        # the same refund in the mirror and the ledger, and one only in the ledger
        "mirror_refunds": [{"id": "re_1", "charge_id": "ch_1", "status": "succeeded", "created_at": created}],
        "ledger_refunds": json.dumps(
            [
                {"id": "re_1", "charge_id": "ch_1", "created_at": created},
                {"id": "re_2", "charge_id": "ch_2", "created_at": created},
            ]
        ),
        "repeat_contacts": 2,
        "actions_today": {"refund": 1},
        "retries": {"in_1": 2},
    }
    facts = facts_from_row("cus_1", row)

    assert facts.known
    assert facts.in_store
    assert facts.in_mirror
    assert facts.email == "ann@example.com"
    assert facts.store_plan == "pro"
    assert facts.disputes == (DisputeFact(id="dp_1", status="won", charge_id="ch_1"),)
    assert facts.repeat_contacts == 2
    assert facts.retry_attempts("in_1") == 2
    assert facts.retry_attempts("in_2") == facts.retry_attempts(None) == 0
    pctx = policy_context(ENGINE, facts, diagnosis(invoice={"id": "in_1"}), actor="ai", now=NOW)
    assert pctx.refunds_last_90d == 2  # re_1 once, re_2
    assert pctx.retry_attempts == 2
    assert pctx.actions_today == {"refund": 1}
    assert pctx.fraud_flag
    assert not pctx.dispute_open
    assert facts_from_row("cus_x", None) == CustomerFacts(customer_id="cus_x")


class OneRowPool:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.calls.append(args)
        return None


async def test_given_the_postgres_repository_when_loaded_then_one_statement_with_the_windows() -> None:
    pool = OneRowPool()
    facts = await PostgresFacts(pool).load(
        "cus_1", contact_id="ct_1", refund_window_days=90, repeat_window_days=7
    )
    assert pool.calls == [("cus_1", "ct_1", 90, 7)]
    assert not facts.known


async def test_given_the_executor_when_it_builds_a_policy_context_then_it_reads_the_repository_once() -> None:
    repo = InMemoryFacts(
        [
            CustomerFacts(
                customer_id="cus_1",
                disputes=(DisputeFact(id="dp_1", status="warning_needs_response"),),
                refunds=(RefundFact(id="re_1", charge_id="ch_9", created_at=NOW - timedelta(days=5)),),
                actions_today={"retry_payment": 1},
            )
        ]
    )
    executor = ActionExecutor(
        pool=None,  # type: ignore[arg-type]
        broker=None,  # type: ignore[arg-type]
        settings=InfraSettings(stripe_api_base="http://127.0.0.1:1"),
        diagnostics=None,
        stripe=object(),
        facts=repo,
    )
    ctx = ActionContext("ct_1", "cus_1", Tier.TIER2, "ai", "planner", None, flags=(INJECTION_FLAG,))  # type: ignore[arg-type]

    pctx = await executor.policy_context(ctx, diagnosis())

    assert repo.loads == ["cus_1"]
    assert pctx.dispute_open
    assert pctx.refunds_last_90d == 1
    assert pctx.actions_today == {"retry_payment": 1}
    assert pctx.plan == "pro"
    assert pctx.instruction_flag


async def test_given_the_router_when_it_gathers_gates_then_it_reads_the_same_repository() -> None:
    repo = InMemoryFacts([CustomerFacts(customer_id="cus_1", in_store=True, repeat_contacts=3)])
    deps = RouterDeps(pool=None, broker=None, classifier=None, diagnostics=None, inbox=None, facts=repo)  # type: ignore[arg-type]

    gates = await gather_gates(deps, contact(), diagnosis())

    assert repo.loads == ["cus_1"]
    assert gates.repeat_contacts_7d == 3
    assert gates.customer_found
    assert gates.sender_authorized
    assert not gates.dispute_open
    assert not gates.fraud_signal
