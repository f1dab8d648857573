"""The shipped default policy, rule by rule, with both sides of every boundary (Given / When / Then)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas.vocab import Action, EscalationReason
from tierline.billing.policy import (
    DEFAULT_POLICY_PATH,
    Allow,
    ApprovalFacts,
    ChargeFacts,
    Deny,
    NeedsHuman,
    PolicyContext,
    PolicyEngine,
    PolicyError,
    to_record,
)

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
CUSTOMER = "cus_A"
FINANCIAL = [Action.REFUND, Action.RETRY_PAYMENT, Action.CHANGE_PLAN, Action.CANCEL_SUBSCRIPTION]


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_yaml()


def charge(
    amount: float = 49.0,
    *,
    age: timedelta = timedelta(days=2),
    customer_id: str = CUSTOMER,
    refunded: float = 0.0,
    status: str = "succeeded",
    charge_id: str = "ch_1",
) -> ChargeFacts:
    return ChargeFacts(
        id=charge_id,
        customer_id=customer_id,
        amount_usd=amount,
        created_at=NOW - age,
        refunded_usd=refunded,
        status=status,
    )


def ctx(**overrides: Any) -> PolicyContext:
    base: dict[str, Any] = {
        "actor": "ai",
        "customer_id": CUSTOMER,
        "plan": "pro",
        "dispute_open": False,
        "fraud_flag": False,
        "charge": charge(),
        "requested_amount_usd": None,
        "duplicate_of": None,
        "refunds_last_90d": 0,
        "decline_code": None,
        "failed_attempts": 0,
        "retry_attempts": 0,
        "actions_today": {},
        "now": NOW,
    }
    base.update(overrides)
    return PolicyContext(**base)


def refund_ctx(plan: str, amount: float, **overrides: Any) -> PolicyContext:
    return ctx(plan=plan, charge=charge(amount), requested_amount_usd=amount, **overrides)


def assert_needs_human(verdict: object, reason: EscalationReason, rule_part: str) -> None:
    assert isinstance(verdict, NeedsHuman), verdict
    assert verdict.reason is reason
    assert rule_part in verdict.rule
    assert verdict.detail


# --------------------------------------------------------------------------- loading
def test_given_shipped_file_when_loaded_then_version_is_1(engine: PolicyEngine) -> None:
    assert engine.version == "1"
    assert engine.refund_history_window_days == 90


def test_given_edited_yaml_when_loaded_then_engine_follows_the_data(tmp_path: Path) -> None:
    """Given the default file with the starter cap lowered to $20, a $30 refund is no longer automatic."""
    text = DEFAULT_POLICY_PATH.read_text()
    edited = tmp_path / "p.yaml"
    edited.write_text(text.replace("starter: 50.00", "starter: 20.00").replace("version: 1", "version: 2"))
    custom = PolicyEngine.from_yaml(edited)
    assert custom.version == "2"
    assert isinstance(custom.check(Action.REFUND, refund_ctx("starter", 30.0)), NeedsHuman)
    assert isinstance(PolicyEngine.from_yaml().check(Action.REFUND, refund_ctx("starter", 30.0)), Allow)


def test_given_malformed_yaml_when_loaded_then_policy_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nactors: {robot: automatic}\n")
    with pytest.raises(PolicyError):
        PolicyEngine.from_yaml(bad)
    with pytest.raises(PolicyError):
        PolicyEngine.from_yaml(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- refund caps per plan
@pytest.mark.parametrize(
    ("plan", "at_cap", "over_cap"),
    [("starter", 50.00, 50.01), ("pro", 100.00, 100.01), ("business", 250.00, 250.01)],
)
def test_given_plan_cap_when_refund_at_cap_then_allowed_and_one_cent_over_needs_human(
    engine: PolicyEngine, plan: str, at_cap: float, over_cap: float
) -> None:
    assert isinstance(engine.check(Action.REFUND, refund_ctx(plan, at_cap)), Allow)
    assert_needs_human(
        engine.check(Action.REFUND, refund_ctx(plan, over_cap)),
        EscalationReason.REFUND_OVER_POLICY,
        "cap_usd_by_plan",
    )


def test_given_float_noise_when_amount_is_50_point_00_then_still_within_starter_cap(
    engine: PolicyEngine,
) -> None:
    noisy = sum([0.1] * 500)  # 50.00000000000044 in binary floating point
    assert noisy != 50.0
    assert isinstance(engine.check(Action.REFUND, refund_ctx("starter", noisy)), Allow)
    assert isinstance(engine.check(Action.REFUND, refund_ctx("starter", 50.005)), NeedsHuman)


def test_given_enterprise_when_any_automatic_refund_then_needs_human(engine: PolicyEngine) -> None:
    assert_needs_human(
        engine.check(Action.REFUND, refund_ctx("enterprise", 1.0)),
        EscalationReason.REFUND_OVER_POLICY,
        "never_automatic",
    )


def test_given_unknown_plan_when_refund_then_needs_human(engine: PolicyEngine) -> None:
    assert isinstance(engine.check(Action.REFUND, refund_ctx("legacy_gold", 5.0)), NeedsHuman)
    assert isinstance(engine.check(Action.REFUND, ctx(plan=None, requested_amount_usd=5.0)), NeedsHuman)


def test_given_starter_annual_228_when_refund_requested_then_over_policy(engine: PolicyEngine) -> None:
    """The public scenario pub-t3-over-cap."""
    verdict = engine.check(Action.REFUND, refund_ctx("starter", 228.0))
    assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "cap")


def test_given_no_requested_amount_when_refund_then_remaining_refundable_is_checked(
    engine: PolicyEngine,
) -> None:
    within = ctx(plan="starter", charge=charge(80.0, refunded=40.0), requested_amount_usd=None)
    over = ctx(plan="starter", charge=charge(80.0, refunded=20.0), requested_amount_usd=None)
    assert isinstance(engine.check(Action.REFUND, within), Allow)
    assert isinstance(engine.check(Action.REFUND, over), NeedsHuman)


# --------------------------------------------------------------------------- charge checks
def test_given_no_charge_when_refund_then_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(charge=None, requested_amount_usd=10.0))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "charge_not_found"


def test_given_charge_of_another_customer_when_refund_then_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(
        Action.REFUND, ctx(charge=charge(10.0, customer_id="cus_B"), requested_amount_usd=10.0)
    )
    assert isinstance(verdict, Deny)
    assert verdict.reason == "charge_not_owned"


@pytest.mark.parametrize("status", ["failed", "pending", "refunded", "disputed"])
def test_given_charge_not_succeeded_when_refund_then_denied(engine: PolicyEngine, status: str) -> None:
    verdict = engine.check(Action.REFUND, ctx(charge=charge(10.0, status=status), requested_amount_usd=10.0))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "charge_not_succeeded"


def test_given_partly_refunded_charge_when_amount_exceeds_remaining_then_a_person_decides(
    engine: PolicyEngine,
) -> None:
    """The customer's words are a ceiling: more than the charge has left is not cut down to what is left."""
    partly = charge(49.0, refunded=20.0)
    exact = engine.check(Action.REFUND, ctx(charge=partly, requested_amount_usd=29.00))
    over = engine.check(Action.REFUND, ctx(charge=partly, requested_amount_usd=29.01))
    assert isinstance(exact, Allow)
    assert isinstance(over, NeedsHuman)
    assert over.reason is EscalationReason.REFUND_OVER_POLICY
    assert over.rule == "refund.automatic.refundable"


def test_given_amount_above_charge_when_the_ai_asks_then_refund_over_policy(engine: PolicyEngine) -> None:
    """Text asks $150 as compensation on a $49 charge: nothing automatic, a person decides."""
    verdict = engine.check(Action.REFUND, ctx(charge=charge(49.0), requested_amount_usd=150.0))
    assert isinstance(verdict, NeedsHuman)
    assert verdict.reason is EscalationReason.REFUND_OVER_POLICY


def test_given_amount_above_charge_when_a_human_refunds_then_denied(engine: PolicyEngine) -> None:
    """A human cannot refund more than the charge has left: impossible, not merely over policy."""
    verdict = engine.check(Action.REFUND, ctx(actor="human", charge=charge(49.0), requested_amount_usd=900.0))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "amount_exceeds_refundable"


def test_given_fully_refunded_charge_when_an_amount_is_asked_then_refund_over_policy(
    engine: PolicyEngine,
) -> None:
    verdict = engine.check(Action.REFUND, ctx(charge=charge(49.0, refunded=49.0), requested_amount_usd=10.0))
    assert isinstance(verdict, NeedsHuman)
    assert verdict.reason is EscalationReason.REFUND_OVER_POLICY


def test_given_fully_refunded_charge_when_refund_then_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(charge=charge(49.0, refunded=49.0)))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "charge_fully_refunded"


@pytest.mark.parametrize("amount", [0.0, -5.0])
def test_given_non_positive_amount_when_refund_then_denied(engine: PolicyEngine, amount: float) -> None:
    verdict = engine.check(Action.REFUND, ctx(requested_amount_usd=amount))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "amount_not_positive"


# --------------------------------------------------------------------------- charge age
@pytest.mark.parametrize(
    ("age", "allowed"),
    [
        (timedelta(days=30), True),
        (timedelta(days=30, hours=23, minutes=59), True),
        (timedelta(days=31), False),
        (timedelta(days=40), False),
    ],
)
def test_given_charge_age_when_automatic_refund_then_30_days_is_the_limit(
    engine: PolicyEngine, age: timedelta, allowed: bool
) -> None:
    verdict = engine.check(Action.REFUND, ctx(charge=charge(49.0, age=age), requested_amount_usd=49.0))
    if allowed:
        assert isinstance(verdict, Allow)
    else:
        assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "max_charge_age_days")


# --------------------------------------------------------------------------- one refund per 90 days
def test_given_one_refund_in_last_90_days_when_refund_then_needs_human(engine: PolicyEngine) -> None:
    assert isinstance(engine.check(Action.REFUND, ctx(refunds_last_90d=0)), Allow)
    assert_needs_human(
        engine.check(Action.REFUND, ctx(refunds_last_90d=1)),
        EscalationReason.REFUND_OVER_POLICY,
        "max_refunds_in_window",
    )


@pytest.mark.parametrize(("days_ago", "allowed"), [(89, False), (90, False), (91, True), (200, True)])
def test_given_last_refund_date_when_refund_then_90_day_window_applies(
    engine: PolicyEngine, days_ago: int, allowed: bool
) -> None:
    verdict = engine.check(Action.REFUND, ctx(last_refund_at=NOW - timedelta(days=days_ago)))
    assert isinstance(verdict, Allow) is allowed
    if not allowed:
        assert isinstance(verdict, NeedsHuman)


# --------------------------------------------------------------------------- verified duplicate
def _twins(gap: timedelta, **twin_overrides: Any) -> tuple[ChargeFacts, ChargeFacts]:
    first = charge(49.0, age=timedelta(days=1), charge_id="ch_dup")
    twin_args: dict[str, Any] = {"amount": 49.0, "age": timedelta(days=1) + gap, "charge_id": "ch_orig"}
    twin_args.update(twin_overrides)
    return first, charge(**twin_args)


@pytest.mark.parametrize(
    ("gap", "allowed"),
    [(timedelta(0), True), (timedelta(hours=48), True), (timedelta(hours=48, seconds=1), False)],
)
def test_given_recent_refund_when_verified_duplicate_within_48h_then_allowed(
    engine: PolicyEngine, gap: timedelta, allowed: bool
) -> None:
    dup, orig = _twins(gap)
    verdict = engine.check(
        Action.REFUND, ctx(charge=dup, duplicate_of=orig, refunds_last_90d=1, requested_amount_usd=49.0)
    )
    if allowed:
        assert verdict == Allow(rule="refund.automatic.verified_duplicate")
    else:
        assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "max_refunds_in_window")


@pytest.mark.parametrize(
    "twin_overrides",
    [
        {"amount": 48.99},
        {"customer_id": "cus_B"},
        {"charge_id": "ch_dup"},
        {"refunded": 49.0},
        {"status": "failed"},
    ],
    ids=["other-amount", "other-customer", "same-charge", "twin-already-refunded", "twin-failed"],
)
def test_given_unverified_twin_when_recent_refund_then_duplicate_rule_does_not_apply(
    engine: PolicyEngine, twin_overrides: dict[str, Any]
) -> None:
    dup, orig = _twins(timedelta(hours=1), **twin_overrides)
    verdict = engine.check(Action.REFUND, ctx(charge=dup, duplicate_of=orig, refunds_last_90d=1))
    assert isinstance(verdict, NeedsHuman)


def test_given_verified_duplicate_when_over_cap_then_still_needs_human(engine: PolicyEngine) -> None:
    dup = charge(120.0, charge_id="ch_dup")
    orig = charge(120.0, charge_id="ch_orig", age=timedelta(days=2, hours=5))
    verdict = engine.check(Action.REFUND, ctx(plan="pro", charge=dup, duplicate_of=orig))
    assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "cap_usd_by_plan")


def test_given_verified_duplicate_when_enterprise_then_still_needs_human(engine: PolicyEngine) -> None:
    dup, orig = _twins(timedelta(hours=1))
    verdict = engine.check(Action.REFUND, ctx(plan="enterprise", charge=dup, duplicate_of=orig))
    assert isinstance(verdict, NeedsHuman)


# --------------------------------------------------------------------------- dispute
@pytest.mark.parametrize("action", FINANCIAL)
def test_given_open_dispute_when_financial_action_then_needs_human_dispute(
    engine: PolicyEngine, action: Action
) -> None:
    verdict = engine.check(
        action, ctx(dispute_open=True, decline_code="insufficient_funds", failed_attempts=1)
    )
    assert_needs_human(verdict, EscalationReason.DISPUTE, "dispute")
    assert isinstance(engine.check(action, ctx(decline_code="insufficient_funds", failed_attempts=1)), Allow)


@pytest.mark.parametrize("action", [Action.ANSWER_FROM_KNOWLEDGE, Action.SEND_INVOICE, Action.ESCALATE])
def test_given_open_dispute_when_non_financial_action_then_allowed(
    engine: PolicyEngine, action: Action
) -> None:
    assert isinstance(engine.check(action, ctx(dispute_open=True)), Allow)


def test_given_open_dispute_when_human_refunds_then_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(actor="human", dispute_open=True, requested_amount_usd=10.0))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "dispute_open"


def test_given_open_dispute_when_human_changes_plan_then_allowed(engine: PolicyEngine) -> None:
    assert isinstance(engine.check(Action.CHANGE_PLAN, ctx(actor="human", dispute_open=True)), Allow)


# --------------------------------------------------------------------------- fraud
@pytest.mark.parametrize("action", [Action.REFUND, Action.RETRY_PAYMENT, Action.UPDATE_BILLING_DETAILS])
def test_given_fraud_flag_when_automatic_action_then_needs_human_fraud(
    engine: PolicyEngine, action: Action
) -> None:
    verdict = engine.check(action, ctx(fraud_flag=True, decline_code="insufficient_funds", failed_attempts=1))
    assert_needs_human(verdict, EscalationReason.FRAUD, "fraud")


@pytest.mark.parametrize("code", ["stolen_card", "lost_card", "fraudulent", "pickup_card"])
def test_given_fraud_decline_code_when_retry_or_refund_then_needs_human_fraud(
    engine: PolicyEngine, code: str
) -> None:
    for action in (Action.RETRY_PAYMENT, Action.REFUND):
        verdict = engine.check(action, ctx(decline_code=code, failed_attempts=1))
        assert_needs_human(verdict, EscalationReason.FRAUD, "fraud")


def test_given_fraud_flag_when_escalate_or_answer_then_allowed(engine: PolicyEngine) -> None:
    assert isinstance(engine.check(Action.ESCALATE, ctx(fraud_flag=True)), Allow)
    assert isinstance(engine.check(Action.ANSWER_FROM_KNOWLEDGE, ctx(fraud_flag=True)), Allow)


def test_given_dispute_and_fraud_when_refund_then_dispute_wins(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(fraud_flag=True, dispute_open=True))
    assert_needs_human(verdict, EscalationReason.DISPUTE, "dispute")


# --------------------------------------------------------------------------- retries
@pytest.mark.parametrize(
    "code",
    ["insufficient_funds", "processing_error", "try_again_later", "card_declined", "generic_decline", None],
)
def test_given_soft_decline_when_retry_then_allowed(engine: PolicyEngine, code: str | None) -> None:
    assert isinstance(engine.check(Action.RETRY_PAYMENT, ctx(decline_code=code, failed_attempts=1)), Allow)


@pytest.mark.parametrize("code", ["expired_card", "incorrect_number"])
def test_given_hard_decline_when_retry_then_denied_even_for_humans(engine: PolicyEngine, code: str) -> None:
    for actor in ("ai", "selfheal", "system", "human"):
        verdict = engine.check(Action.RETRY_PAYMENT, ctx(actor=actor, decline_code=code, failed_attempts=1))
        assert isinstance(verdict, Deny)
        assert verdict.reason == "hard_decline"


@pytest.mark.parametrize("code", ["stolen_card", "lost_card", "pickup_card"])
def test_given_fraud_hard_decline_when_human_retries_then_denied(engine: PolicyEngine, code: str) -> None:
    verdict = engine.check(Action.RETRY_PAYMENT, ctx(actor="human", decline_code=code, failed_attempts=1))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "hard_decline"


@pytest.mark.parametrize(("failures", "allowed"), [(1, True), (2, False), (3, False)])
def test_given_do_not_honor_when_retry_then_hard_after_two_failures(
    engine: PolicyEngine, failures: int, allowed: bool
) -> None:
    verdict = engine.check(Action.RETRY_PAYMENT, ctx(decline_code="do_not_honor", failed_attempts=failures))
    assert isinstance(verdict, Allow) is allowed
    assert engine.decline_class("do_not_honor", failures) == ("soft" if allowed else "hard")


def test_given_unknown_decline_code_when_retry_then_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.RETRY_PAYMENT, ctx(decline_code="some_new_code", failed_attempts=1))
    assert isinstance(verdict, Deny)
    assert verdict.reason == "unknown_decline_code"


@pytest.mark.parametrize(("actor", "budget"), [("ai", 3), ("selfheal", 3), ("human", 5)])
def test_given_retry_budget_when_exhausted_then_denied(engine: PolicyEngine, actor: str, budget: int) -> None:
    def attempt(n: int) -> object:
        return engine.check(
            Action.RETRY_PAYMENT, ctx(actor=actor, decline_code="insufficient_funds", retry_attempts=n)
        )

    assert isinstance(attempt(budget - 1), Allow)
    last = attempt(budget)
    assert isinstance(last, Deny)
    assert last.reason == "retry_budget_exhausted"


# --------------------------------------------------------------------------- daily rate limits
@pytest.mark.parametrize(
    ("action", "limit"),
    [
        (Action.RETRY_PAYMENT, 2),
        (Action.SEND_UPDATE_CARD_LINK, 3),
        (Action.REFUND, 1),
        (Action.SEND_NUDGE, 3),
    ],
)
def test_given_daily_limit_when_reached_then_denied(engine: PolicyEngine, action: Action, limit: int) -> None:
    def at(count: int) -> object:
        return engine.check(
            action, ctx(actions_today={action.value: count}, decline_code="insufficient_funds")
        )

    assert isinstance(at(limit - 1), Allow)
    verdict = at(limit)
    assert isinstance(verdict, Deny)
    assert verdict.reason == "rate_limited"


def test_given_other_actions_today_when_checking_then_only_same_action_counts(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.SEND_UPDATE_CARD_LINK, ctx(actions_today={"send_nudge": 99, "refund": 99}))
    assert isinstance(verdict, Allow)


def test_given_many_escalations_today_when_escalate_then_always_allowed(engine: PolicyEngine) -> None:
    many = ctx(actions_today={"escalate": 1000}, dispute_open=True, fraud_flag=True)
    assert engine.check(Action.ESCALATE, many) == Allow(rule="always_allowed")


def test_given_human_actor_when_above_automatic_daily_limit_then_human_limit_applies(
    engine: PolicyEngine,
) -> None:
    busy = {"send_update_card_link": 3}
    assert isinstance(engine.check(Action.SEND_UPDATE_CARD_LINK, ctx(actions_today=busy)), Deny)
    assert isinstance(
        engine.check(Action.SEND_UPDATE_CARD_LINK, ctx(actor="human", actions_today=busy)), Allow
    )


# --------------------------------------------------------------------------- human actor limits
@pytest.mark.parametrize(("amount", "allowed"), [(1000.00, True), (1000.01, False)])
def test_given_human_agent_with_a_leads_approval_when_refund_then_1000_limit(
    engine: PolicyEngine, amount: float, allowed: bool
) -> None:
    approval = ApprovalFacts(
        approval_id="apr_1",
        requested_by="agent:ana",
        approved_by="agent:lee",
        charge_id="ch_1",
        amount_usd=amount,
    )
    verdict = engine.check(
        Action.REFUND,
        ctx(
            actor="human",
            plan="starter",
            charge=charge(2000.0),
            requested_amount_usd=amount,
            refunds_last_90d=3,
            approval=approval,
        ),
    )
    if allowed:
        assert verdict == Allow(rule="refund.human.approved")
    else:
        assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "human.cap_usd")


def test_given_human_agent_when_enterprise_refund_then_lead_needed(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(actor="human", plan="enterprise", requested_amount_usd=5.0))
    assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "lead_required")


def test_given_human_agent_when_old_charge_then_180_day_limit(engine: PolicyEngine) -> None:
    def at(days: int) -> object:
        return engine.check(Action.REFUND, ctx(actor="human", charge=charge(49.0, age=timedelta(days=days))))

    assert isinstance(at(180), Allow)
    assert isinstance(at(181), NeedsHuman)


def test_given_human_agent_when_refund_exceeds_refundable_then_still_denied(engine: PolicyEngine) -> None:
    verdict = engine.check(Action.REFUND, ctx(actor="human", charge=charge(49.0), requested_amount_usd=50.0))
    assert isinstance(verdict, Deny)


def test_given_human_agent_when_fraud_flag_then_refund_within_limits_allowed(engine: PolicyEngine) -> None:
    assert isinstance(engine.check(Action.REFUND, ctx(actor="human", fraud_flag=True)), Allow)


# --------------------------------------------------------------------------- other actions and records
@pytest.mark.parametrize(
    "action",
    [
        Action.SEND_UPDATE_CARD_LINK,
        Action.REGENERATE_INVOICE_LINK,
        Action.SEND_INVOICE,
        Action.EXPLAIN_CHARGE,
    ],
)
def test_given_healthy_account_when_low_risk_action_then_allowed(
    engine: PolicyEngine, action: Action
) -> None:
    assert isinstance(engine.check(action, ctx()), Allow)


def test_given_verdicts_when_recorded_then_policy_decision_record_matches(engine: PolicyEngine) -> None:
    needs = engine.check(Action.REFUND, ctx(dispute_open=True))
    record = to_record(Action.REFUND, needs)
    assert (record.verdict, record.reason, record.rule) == (
        "needs_human",
        "dispute",
        "dispute.blocks_automatic",
    )
    allow = to_record(Action.SEND_INVOICE, engine.check(Action.SEND_INVOICE, ctx()))
    assert (allow.verdict, allow.reason) == ("allow", "")
    deny = to_record(Action.REFUND, engine.check(Action.REFUND, ctx(charge=None)))
    assert (deny.verdict, deny.reason) == ("deny", "charge_not_found")


def test_given_naive_timestamps_when_checked_then_taken_as_utc(engine: PolicyEngine) -> None:
    naive_now = NOW.replace(tzinfo=None)
    old = ChargeFacts(
        id="ch_n", customer_id=CUSTOMER, amount_usd=10.0, created_at=naive_now - timedelta(days=31)
    )
    verdict = engine.check(Action.REFUND, ctx(charge=old, now=naive_now))
    assert_needs_human(verdict, EscalationReason.REFUND_OVER_POLICY, "max_charge_age_days")
    fresh = ChargeFacts(
        id="ch_n", customer_id=CUSTOMER, amount_usd=10.0, created_at=naive_now - timedelta(days=1)
    )
    assert isinstance(engine.check(Action.REFUND, ctx(charge=fresh)), Allow)


def test_given_tier0_card_fraud_or_generic_fraud_flag_then_both_count_as_a_fraud_signal() -> None:
    from tierline.risk import fraud_flagged

    assert fraud_flagged({"card_fraud": {"decline_code": "stolen_card"}})
    assert fraud_flagged({"fraud": True})
    assert not fraud_flagged({"fraud": False})
    assert not fraud_flagged({"chargeback_watch": True})
    assert not fraud_flagged(None)
