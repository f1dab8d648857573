"""Tier 0 under the policy: how many retries dunning plans and runs, and what a refusal means for the
schedule, decided by the real policy engine (shipped YAML, or one with another retry budget) and Tier 0's
pure decisions; the executor's outcomes are built by hand (no broker, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import Action, EscalationReason, RootCause, Tier
from schemas.messages import PolicyDecisionRecord
from services.tier0_prevent import domain
from services.tier0_prevent.adapters.postgres import ClaimedAttempt
from services.tier0_prevent.domain import DeclineKind, RetryVerdict
from services.tier0_prevent.dunning import DunningAttemptError, DunningWorker
from services.tier0_prevent.handlers import EffectInterrupted, Tier0Deps, reached, settled, why_not
from services.tier0_prevent.settings import Tier0Settings
from tierline.actions import ActionContext, ActionExecutor, ActionOutcome
from tierline.billing.policy import DEFAULT_POLICY_PATH, Allow, Deny, PolicyContext, PolicyEngine
from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def policy(tmp_path: Path, automatic_attempts: int) -> PolicyEngine:
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["retry"]["max_attempts"]["automatic"] = automatic_attempts
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return PolicyEngine.from_yaml(path)


def system_budget(engine: PolicyEngine) -> int:
    return engine.rules.retry.max_attempts[engine.rules.actors["system"]]


@dataclass(frozen=True)
class Decline:
    code: str | None
    soft: bool = True
    retry_allowed: bool = True
    fraud: bool = False


def plan(engine: PolicyEngine, code: str, attempt_count: int = 1) -> domain.FailedPaymentPlan:
    return domain.plan_failed_payment(
        Decline(code),
        now=NOW,
        offsets_days=Tier0Settings().dunning_offsets_days,
        max_attempts=domain.retry_budget(system_budget(engine), Tier0Settings().dunning_max_attempts),
        link_expired=False,
        policy_retryable=engine.decline_class(code, attempt_count) == "soft",
    )


def facts(engine: PolicyEngine, *, code: str, tried: int) -> PolicyContext:
    """What the executor reads for a scheduled retry: the invoice facts Tier 0 builds, the ledger's count."""
    invoice = domain.dunning_invoice_facts(
        "in_1", 4900, mirrored={"attempt_count": 1}, last_decline=code, tried=tried
    )
    return PolicyContext(
        actor="system",
        customer_id="cus_1",
        decline_code=invoice["decline_code"],
        failed_attempts=invoice["attempt_count"],
        retry_attempts=tried,
        now=NOW,
    )


# ------------------------------------------------------------------------------------------ the schedule
def test_given_the_shipped_policy_when_soft_decline_planned_then_three_retries_not_the_configured_four() -> (
    None
):
    engine = PolicyEngine.from_yaml()
    planned = plan(engine, "insufficient_funds")
    assert planned.kind is DeclineKind.SOFT
    assert Tier0Settings().dunning_max_attempts == 4
    assert [(t - NOW).days for t in planned.retry_at] == [1, 3, 7]


def test_given_a_policy_of_two_automatic_retries_when_a_soft_decline_is_planned_then_two_retries(
    tmp_path: Path,
) -> None:
    planned = plan(policy(tmp_path, 2), "insufficient_funds")
    assert [(t - NOW).days for t in planned.retry_at] == [1, 3]
    assert planned.notify is Action.SEND_NUDGE


@pytest.mark.parametrize("code", ["some_new_issuer_code", "do_not_honor"])
def test_given_a_code_the_policy_never_retries_when_planned_then_update_card_link_and_no_schedule(
    code: str,
) -> None:
    # the taxonomy calls it soft, the policy does not (unknown code; do_not_honor after two failures)
    planned = plan(PolicyEngine.from_yaml(), code, attempt_count=2)
    assert planned.kind is DeclineKind.HARD
    assert planned.retry_at == []
    assert planned.notify is Action.SEND_UPDATE_CARD_LINK


def test_given_a_policy_of_no_automatic_retries_when_planned_then_the_card_link_at_once(
    tmp_path: Path,
) -> None:
    planned = plan(policy(tmp_path, 0), "insufficient_funds")
    assert (planned.kind, planned.retry_at, planned.notify) == (
        DeclineKind.HARD,
        [],
        Action.SEND_UPDATE_CARD_LINK,
    )


def test_given_retries_already_made_when_budget_computed_then_they_count() -> None:
    assert domain.retry_budget(3, 4) == 3
    assert domain.retry_budget(3, 4, already_tried=2) == 1
    assert domain.retry_budget(2, 4, already_tried=5) == 0
    assert domain.retry_budget(5, 2) == 2


# ------------------------------------------------------------------------------------------ each attempt
def test_given_a_policy_of_two_when_the_third_attempt_is_checked_then_refused_and_dunning_is_exhausted(
    tmp_path: Path,
) -> None:
    two, shipped = policy(tmp_path, 2), PolicyEngine.from_yaml()
    verdict = two.check(Action.RETRY_PAYMENT, facts(two, code="insufficient_funds", tried=2))
    assert verdict == Deny(reason="retry_budget_exhausted", rule="retry.max_attempts.automatic")
    assert (
        domain.after_refusal(reason=verdict.reason, needs_human=False, attempts_left=1)
        is RetryVerdict.EXHAUSTED
    )
    # the same attempt under the shipped policy runs
    assert isinstance(
        shipped.check(Action.RETRY_PAYMENT, facts(shipped, code="insufficient_funds", tried=2)), Allow
    )


def test_given_do_not_honor_twice_when_the_next_attempt_is_checked_then_hard_decline_gets_the_card_link() -> (
    None
):
    engine = PolicyEngine.from_yaml()
    verdict = engine.check(Action.RETRY_PAYMENT, facts(engine, code="do_not_honor", tried=1))
    assert verdict == Deny(reason="hard_decline", rule="retry.hard_after_failures")
    assert (
        domain.after_refusal(reason=verdict.reason, needs_human=False, attempts_left=2) is RetryVerdict.HARD
    )


@pytest.mark.parametrize(
    ("reason", "needs_human", "left", "expected"),
    [
        ("rate_limited", False, 1, RetryVerdict.TRY_LATER),  # only today's attempt is skipped
        ("rate_limited", False, 0, RetryVerdict.EXHAUSTED),
        ("retry_budget_exhausted", False, 2, RetryVerdict.EXHAUSTED),
        ("hard_decline", False, 2, RetryVerdict.HARD),
        ("unknown_decline_code", False, 2, RetryVerdict.HARD),
        ("dispute", True, 2, RetryVerdict.NEEDS_HUMAN),
    ],
)
def test_given_a_refused_attempt_when_judged_then_the_schedule_follows_the_policy(
    reason: str, needs_human: bool, left: int, expected: RetryVerdict
) -> None:
    assert domain.after_refusal(reason=reason, needs_human=needs_human, attempts_left=left) is expected


# ------------------------------------------------------------------------------------- the worker's reading
class Classify:
    def __call__(self, code: str | None) -> Decline:
        hard = code in ("expired_card", "stolen_card")
        return Decline(code, soft=not hard, retry_allowed=not hard)


def worker() -> DunningWorker:
    deps = Tier0Deps(
        pool=None,  # type: ignore[arg-type]
        broker=None,  # type: ignore[arg-type]
        settings=Tier0Settings(),
        diagnostics=None,  # type: ignore[arg-type]
        classify=Classify(),
        billing=None,  # type: ignore[arg-type]
        actions=None,  # type: ignore[arg-type]
        return_url="http://x",
    )
    return DunningWorker(deps, "w-1")


CLAIM = ClaimedAttempt("in_1", 2, "cus_1", "stripe:evt_1", 4900, 3, {}, attempts_left=1)


def outcome(status: Any, **kw: Any) -> ActionOutcome:
    return ActionOutcome(Action.RETRY_PAYMENT, status, target="in_1", **kw)


@pytest.mark.parametrize(
    ("result", "expected", "code"),
    [
        (outcome("succeeded", data={"status": "paid"}), RetryVerdict.RECOVERED, None),
        (
            outcome("failed", data={"decline_code": "insufficient_funds"}),
            RetryVerdict.TRY_LATER,
            "insufficient_funds",
        ),
        (outcome("failed", data={"decline_code": "expired_card"}), RetryVerdict.HARD, "expired_card"),
        (outcome("failed", data={"not_payable": True}), RetryVerdict.NOT_PAYABLE, None),
        (
            outcome(
                "denied",
                detail="retry_budget_exhausted",
                policy=PolicyDecisionRecord(
                    action=Action.RETRY_PAYMENT,
                    verdict="deny",
                    reason="retry_budget_exhausted",
                    rule="retry.max_attempts.automatic",
                ),
            ),
            RetryVerdict.EXHAUSTED,
            None,
        ),
        (
            outcome("needs_human", detail="an open dispute", escalation_reason=EscalationReason.DISPUTE),
            RetryVerdict.NEEDS_HUMAN,
            None,
        ),
    ],
)
def test_given_an_executor_outcome_when_the_worker_reads_it_then_the_schedule_verdict_follows(
    result: ActionOutcome, expected: RetryVerdict, code: str | None
) -> None:
    assert worker()._verdict(CLAIM, result) == (expected, code)


def test_given_an_error_neither_run_nor_refused_when_read_then_the_claim_is_left_to_its_lease() -> None:
    error = outcome("failed", detail="APIConnectionError", escalation_reason=EscalationReason.ERROR)
    with pytest.raises(DunningAttemptError):
        worker()._verdict(CLAIM, error)


# ------------------------------------------------------------------------------------------ the executor
class NoDiagnostics:
    def __init__(self) -> None:
        self.calls = 0

    async def diagnose(self, customer_id: str, **_: Any) -> Any:
        self.calls += 1
        raise AssertionError("tier 0 hands the executor its facts")


async def test_given_facts_in_the_context_when_the_executor_needs_a_diagnosis_then_no_computation() -> None:
    diagnostics = NoDiagnostics()
    executor = ActionExecutor(
        pool=None,  # type: ignore[arg-type]
        broker=None,  # type: ignore[arg-type]
        settings=InfraSettings(stripe_api_base="http://127.0.0.1:1"),
        diagnostics=diagnostics,
        stripe=object(),
    )
    invoice = domain.invoice_facts(
        "in_1", status="open", amount_due_cents=4900, decline_code="insufficient_funds", attempt_count=1
    )
    view = domain.facts_view(
        "cus_1",
        root_cause=RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS,
        invoice=invoice,
        disputes=[],
        plan_tier="pro",
        at=NOW,
    )
    ctx = ActionContext("stripe:evt_1", "cus_1", Tier.TIER0, "system", "tier0_prevent", None, facts=view)  # type: ignore[arg-type]
    assert await executor.diagnosis(ctx) is view
    assert diagnostics.calls == 0
    assert view.evidence["invoice"]["amount_due_usd"] == 49.0
    assert view.evidence["plan"] == {"tier": "pro"}


def test_given_an_unexpected_error_when_tier0_effect_settled_then_event_is_retried_not_escalated() -> None:
    error = ActionOutcome(
        Action.SEND_NUDGE, "failed", "ConnectError", target="in_1", escalation_reason=EscalationReason.ERROR
    )
    with pytest.raises(EffectInterrupted):
        settled(error)
    refused = ActionOutcome(
        Action.SEND_NUDGE, "denied", "rate_limited", escalation_reason=EscalationReason.POLICY_DENIED
    )
    assert settled(refused) is refused
    assert why_not(refused) == (EscalationReason.POLICY_DENIED, "rate_limited")
    unreachable = ActionOutcome(Action.SEND_NUDGE, "succeeded", data={"sent_to": None})
    assert not reached(unreachable)
    assert why_not(unreachable) == (EscalationReason.ERROR, "no email address on file")
