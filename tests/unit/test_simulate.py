"""Shadow evaluation of a policy change (tierline/billing/simulate.py): recorded decisions decided again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import yaml

from schemas import Envelope, Tier
from schemas.messages import PolicyDecisionRecord
from schemas.vocab import Action
from tierline.actions import ActionContext, ActionExecutor
from tierline.billing.policy import DEFAULT_POLICY_PATH, ChargeFacts, PolicyContext, PolicyEngine, PolicyRules
from tierline.billing.simulate import (
    RecordedContact,
    RecordedDecision,
    SimulateError,
    parse_since,
    render,
    simulate,
)
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def engine(**caps: float) -> PolicyEngine:
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["refund"]["automatic"]["cap_usd_by_plan"].update(caps)
    raw["version"] = 2 if caps else raw["version"]
    return PolicyEngine(PolicyRules.model_validate(raw))


def refund_context(customer: str, amount: float, plan: str = "pro", actor: str = "ai") -> PolicyContext:
    charge = ChargeFacts(
        id=f"ch_{customer}", customer_id=customer, amount_usd=amount, created_at=NOW - timedelta(days=3)
    )
    return PolicyContext(
        actor=actor,  # type: ignore[arg-type]
        customer_id=customer,
        plan=plan,
        charge=charge,
        requested_amount_usd=amount,
        now=NOW,
    )


def decision(
    customer: str,
    amount: float,
    *,
    verdict: str = "allow",
    reason: str = "",
    executed: str | None = "succeeded",
    plan: str = "pro",
    actor: str = "ai",
    contact: str | None = None,
) -> RecordedDecision:
    return RecordedDecision(
        key=f"k_{customer}_{actor}",
        contact_id=contact or f"ct_{customer}",
        customer_id=customer,
        action=Action.REFUND,
        target=f"ch_{customer}",
        actor=actor,
        amount_usd=amount,
        verdict=verdict,  # type: ignore[arg-type]
        reason=reason,
        rule="recorded",
        policy_version="1",
        executed=executed,
        decided_at=NOW,
        context=refund_context(customer, amount, plan, actor),
    )


def contact(customer: str, escalation: str | None = None) -> RecordedContact:
    return RecordedContact(
        contact_id=f"ct_{customer}",
        customer_id=customer,
        resolved_by="tier3" if escalation else "tier2",
        escalation_reason=escalation,
    )


# ------------------------------------------------------------------------------------------ --since
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("7", timedelta(days=7)),
    ],
)
def test_given_a_duration_when_parsed_then_it_is_that_long(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "-3d", "30 days", "d30", "1y"])
def test_given_no_duration_when_parsed_then_a_typed_error(text: str) -> None:
    with pytest.raises(SimulateError):
        parse_since(text)


# ------------------------------------------------------------------------------------------ the diff
def test_given_the_same_policy_when_simulated_then_nothing_changes() -> None:
    decisions = [decision("cus_a", 49.0), decision("cus_b", 19.0, plan="starter")]
    report = simulate(engine(), decisions, [contact("cus_a"), contact("cus_b")])

    assert report.changed == []
    assert report.decisions == 2
    assert report.decisions_changed == 0
    assert report.current == report.simulated
    assert (report.current.refunds, report.current.refunds_usd) == (2, 68.0)
    assert report.current.automated_rate == 1.0


def test_given_refunds_under_the_cap_when_the_cap_is_lowered_then_fewer_refunds_more_escalations() -> None:
    decisions = [
        decision("cus_a", 49.0),
        decision("cus_b", 19.0, plan="starter"),
        decision("cus_c", 35.0, plan="starter"),
    ]
    contacts = [contact("cus_a"), contact("cus_b"), contact("cus_c")]

    report = simulate(engine(pro=40, starter=20), decisions, contacts)

    assert (report.current.refunds, report.current.refunds_usd) == (3, 103.0)
    assert (report.simulated.refunds, report.simulated.refunds_usd) == (1, 19.0)
    assert report.current.escalations == {}
    assert report.simulated.escalations == {"refund_over_policy": 2}
    assert report.current.automated_rate == 1.0
    assert report.simulated.automated_rate == pytest.approx(1 / 3)
    assert [c.contact_id for c in report.changed] == ["ct_cus_a", "ct_cus_c"]
    changed = report.changed[0]
    assert changed.cascaded
    assert (changed.escalation_then, changed.escalation_now) == (None, "refund_over_policy")
    only = changed.decisions[0]
    assert (only.then_verdict, only.now_verdict, only.now_reason) == (
        "allow",
        "needs_human",
        "refund_over_policy",
    )
    assert only.now_rule == "refund.automatic.cap_usd_by_plan"
    assert report.new_policy_version == "2"
    assert report.current_policy_versions == ["1"]


def test_given_a_refund_escalated_over_the_cap_when_the_cap_is_raised_then_it_is_counted_and_automated() -> (
    None
):
    over = decision("cus_a", 120.0, verdict="needs_human", reason="refund_over_policy", executed="denied")
    report = simulate(engine(pro=150), [over], [contact("cus_a", "refund_over_policy")])

    assert (report.current.refunds, report.simulated.refunds) == (0, 1)
    assert report.simulated.refunds_usd == 120.0
    assert report.current.escalations == {"refund_over_policy": 1}
    assert report.simulated.escalations == {}
    assert (report.current.automated, report.simulated.automated) == (0, 1)
    assert report.changed[0].cascaded


def test_given_an_escalation_with_another_cause_when_a_refund_is_allowed_now_then_the_escalation_stays() -> (
    None
):
    # the customer asked for a person; the refund the AI was refused would be allowed now
    over = decision("cus_a", 120.0, verdict="needs_human", reason="refund_over_policy", executed="denied")
    report = simulate(engine(pro=150), [over], [contact("cus_a", "customer_asked")])

    assert report.simulated.escalations == {"customer_asked": 1}
    assert report.changed[0].escalation_now == "customer_asked"
    assert report.simulated.automated == 0


def test_given_a_refund_that_failed_in_stripe_when_still_allowed_then_it_is_counted_on_neither_side() -> None:
    failed = decision("cus_a", 49.0, executed="failed")
    report = simulate(engine(pro=60), [failed], [contact("cus_a")])

    assert (report.current.refunds, report.simulated.refunds) == (0, 0)
    assert report.changed == []


def test_given_a_human_refund_when_a_person_now_needs_a_lead_then_the_contact_stays_with_a_person() -> None:
    raw: dict[str, Any] = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["refund"]["human"]["cap_usd"] = 100
    strict = PolicyEngine(PolicyRules.model_validate(raw))
    by_agent = decision("cus_a", 150.0, actor="human")

    report = simulate(strict, [by_agent], [contact("cus_a", "refund_over_policy")])

    assert report.simulated.refunds == 0
    assert report.changed[0].escalation_now == "refund_over_policy"
    assert report.changed[0].decisions[0].now_rule == "refund.human.cap_usd"


def test_given_a_changed_report_when_rendered_and_dumped_then_both_show_the_difference() -> None:
    report = simulate(engine(pro=40), [decision("cus_a", 49.0)], [contact("cus_a")])

    doc = json.loads(json.dumps(report.to_json()))
    assert doc["difference"]["refunds"] == -1
    assert doc["difference"]["refunds_usd"] == -49.0
    assert doc["difference"]["escalations"] == {"refund_over_policy": 1}
    assert doc["difference"]["automated_rate"] == -1.0
    assert doc["changed"][0]["contact_id"] == "ct_cus_a"
    text = render(report)
    assert "refund_over_policy" in text
    assert "ct_cus_a (cus_a): escalation - -> refund_over_policy *" in text
    assert "not simulated" in text


# ------------------------------------------------------------------------------------------ the record
class RecordingPool:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    async def execute(self, sql: str, *args: Any) -> str:
        assert "INSERT INTO policy_decisions" in sql
        self.rows.append(args)
        return "INSERT 0 1"


async def test_given_a_policy_decision_when_recorded_then_its_facts_decide_the_same_again() -> None:
    pool = RecordingPool()
    executor = ActionExecutor(
        pool=pool,  # type: ignore[arg-type]
        broker=None,  # type: ignore[arg-type]
        settings=InfraSettings(stripe_api_base="http://127.0.0.1:1"),
        diagnostics=None,
        stripe=object(),
    )
    pctx = refund_context("cus_a", 49.0)
    verdict = executor.policy.check(Action.REFUND, pctx)
    ctx = ActionContext("ct_1", "cus_a", Tier.TIER2, "ai", "tier2_agent", Envelope.model_construct())
    record = PolicyDecisionRecord(action=Action.REFUND, verdict=verdict.kind, rule=verdict.rule)

    await executor._record_decision(ctx, "k1", Action.REFUND, "ch_cus_a", 49.0, record, pctx)

    (row,) = pool.rows
    assert row[:9] == ("k1", "ct_1", "cus_a", "refund", "ch_cus_a", "tier2", "ai", 49.0, "allow")
    stored = json.loads(json.dumps(row[12]))  # the jsonb codec is json.dumps
    assert PolicyContext.model_validate(stored) == pctx
    assert engine(pro=40).check(Action.REFUND, PolicyContext.model_validate(stored)).kind == "needs_human"
    assert Decimal(str(row[7])) == Decimal("49.0")


def test_given_a_refusal_the_tier_answered_when_a_later_refund_changes_then_the_refund_escalates() -> None:
    retry = RecordedDecision(
        key="k_retry",
        contact_id="ct_cus_a",
        customer_id="cus_a",
        action=Action.RETRY_PAYMENT,
        target="in_1",
        actor="ai",
        verdict="deny",
        reason="rate_limited",
        executed="denied",
        decided_at=NOW - timedelta(seconds=1),
        context=refund_context("cus_a", 49.0).model_copy(update={"actions_today": {"retry_payment": 2}}),
    )
    report = simulate(engine(pro=40), [retry, decision("cus_a", 49.0)], [contact("cus_a")])

    (changed,) = report.changed
    assert [d.action for d in changed.decisions] == ["refund"]
    assert changed.escalation_now == "refund_over_policy"
    assert report.simulated.escalations == {"refund_over_policy": 1}
