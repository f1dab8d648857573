"""Tier 3 and analytics decisions, without a broker: Given inputs, When deciding, Then values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas import Tier
from schemas.messages import ActionRecord, DiagnosisView, EscalationOpenedPayload
from schemas.vocab import Action, EscalationReason, HealthStatus, Intent, RootCause
from services.analytics.domain import (
    GENESIS,
    ChainRow,
    DriftThresholds,
    audit_record,
    canonical_json,
    chain_hash,
    detect_drift,
    verify_chain,
)
from services.tier3_handoff import domain
from services.tier3_handoff.auth import InvalidAgentToken, issue_agent_token, verify_agent_token
from tierline.tokens import KeySet

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SECRET = "unit-test-secret-that-is-long-enough-for-hs256"  # noqa: S105 - test key


# --------------------------------------------------------------------------- triage
@pytest.mark.parametrize(
    ("reason", "plan", "amount", "age_h", "priority", "queue"),
    [
        (EscalationReason.FRAUD, "starter", 0, 0, 1, "risk"),
        (EscalationReason.DISPUTE, "enterprise", 5000, 48, 1, "risk"),
        (EscalationReason.CUSTOMER_ASKED, "starter", 10, 0, 3, "billing"),
        (EscalationReason.CUSTOMER_ASKED, "enterprise", 10, 0, 2, "enterprise"),
        (EscalationReason.CUSTOMER_ASKED, "pro", 250, 0, 2, "billing"),
        (EscalationReason.CUSTOMER_ASKED, "pro", 1500, 0, 1, "billing"),
        (EscalationReason.OUT_OF_SCOPE, None, 0, 0, 4, "billing"),
        (EscalationReason.OUT_OF_SCOPE, None, 0, 30, 3, "billing"),
    ],
)
def test_given_escalation_facts_when_triaged_then_priority_queue_and_sla_follow_the_table(
    reason, plan, amount, age_h, priority, queue
):
    t = domain.triage(
        reason.value, plan=plan, amount_usd=amount, contact_started_at=NOW - timedelta(hours=age_h), now=NOW
    )
    assert (t.priority, t.queue.value) == (priority, queue)
    assert t.sla_due_at == NOW + domain.SLA_BY_PRIORITY[priority]


def test_given_same_contact_when_deriving_case_id_then_it_is_stable_and_distinct_per_contact():
    assert domain.case_id_for("c1") == domain.case_id_for("c1") != domain.case_id_for("c2")


def test_given_packet_with_tried_actions_when_handing_off_then_outcome_counts_only_successes():
    packet = EscalationOpenedPayload(
        reason=EscalationReason.REFUND_OVER_POLICY,
        opened_by=Tier.TIER2,
        intent=Intent.REFUND_REQUEST,
        diagnosis=DiagnosisView(
            customer_id="c", status=HealthStatus.AMBER, root_cause=RootCause.DUPLICATE_CHARGE, explanation="x"
        ),
        actions_tried=[
            ActionRecord(
                action=Action.REFUND, tier=Tier.TIER2, status="succeeded", idempotency_key="a", amount_usd=5
            ),
            ActionRecord(
                action=Action.REFUND, tier=Tier.TIER2, status="failed", idempotency_key="b", amount_usd=50
            ),
            ActionRecord(action=Action.RETRY_PAYMENT, tier=Tier.TIER1, status="denied", idempotency_key="c"),
        ],
        tier_path=[Tier.TIER1, Tier.TIER2],
    )
    out = domain.handoff_outcome(packet)
    assert out.resolved_by is Tier.TIER3
    assert out.tier_path == [Tier.TIER1, Tier.TIER2, Tier.TIER3]
    assert out.actions == [Action.REFUND, Action.ESCALATE]
    assert out.refund_usd == 5
    assert out.root_cause is RootCause.DUPLICATE_CHARGE
    assert out.escalation_reason is EscalationReason.REFUND_OVER_POLICY


# --------------------------------------------------------------------------- transitions
def view(status: str, assignee: str | None = None, queue: str = "billing") -> domain.CaseView:
    return domain.CaseView("case_1", queue, domain.CaseStatus(status), assignee)


def test_given_case_states_when_claiming_then_open_claims_holder_noop_others_conflict():
    qs = frozenset({"billing"})
    assert domain.decide_claim(view("open"), "ana", qs) is True
    assert domain.decide_claim(view("claimed", "ana"), "ana", qs) is False
    with pytest.raises(domain.CaseConflict):
        domain.decide_claim(view("claimed", "bob"), "ana", qs)
    with pytest.raises(domain.CaseConflict):
        domain.decide_claim(view("resolved", "ana"), "ana", qs)
    with pytest.raises(domain.CaseForbidden):
        domain.decide_claim(view("open", queue="risk"), "ana", qs)


def test_given_unclaimed_or_foreign_case_when_acting_then_conflict():
    qs = frozenset({"billing"})
    domain.require_holder(view("claimed", "ana"), "ana", qs)
    for v in (view("open"), view("claimed", "bob")):
        with pytest.raises(domain.CaseConflict):
            domain.require_holder(v, "ana", qs)


def test_given_sla_states_when_checking_then_only_unannounced_unresolved_past_due_breach():
    due = NOW - timedelta(minutes=30)
    b = domain.sla_breach(
        case_id="c", status="open", sla_due_at=due, opened_at=due - timedelta(hours=1), alerted=False, now=NOW
    )
    assert b is not None
    assert b.overdue_minutes == 30
    assert b.sla_minutes == 60
    assert (
        domain.sla_breach(case_id="c", status="open", sla_due_at=due, opened_at=due, alerted=True, now=NOW)
        is None
    )
    assert (
        domain.sla_breach(
            case_id="c", status="resolved", sla_due_at=due, opened_at=due, alerted=False, now=NOW
        )
        is None
    )
    assert (
        domain.sla_breach(
            case_id="c",
            status="claimed",
            sla_due_at=NOW + timedelta(minutes=1),
            opened_at=due,
            alerted=False,
            now=NOW,
        )
        is None
    )


# --------------------------------------------------------------------------- tokens
def test_given_tokens_when_verifying_then_good_passes_and_forged_expired_malformed_fail():
    keys = KeySet.single("agent", "a1", SECRET)
    agent = verify_agent_token(keys, issue_agent_token(keys, "ana", ["risk", "billing"]))
    assert agent.agent_id == "ana"
    assert agent.queues == {"risk", "billing"}
    assert agent.roles == frozenset()
    for bad in (
        issue_agent_token(KeySet.single("agent", "a1", SECRET + "x"), "ana", ["risk"]),
        issue_agent_token(keys, "ana", ["risk"], ttl_s=-5),
        "not.a.jwt",
    ):
        with pytest.raises(InvalidAgentToken):
            verify_agent_token(keys, bad)


# --------------------------------------------------------------------------- audit chain
def chain(n: int, partition: int = 0) -> list[ChainRow]:
    rows, prev = [], GENESIS
    for i in range(n):
        record = canonical_json(
            audit_record({"message_id": f"m{i}", "payload": {"action": "x", "hash": "ignored", "n": i}})
        )
        h = chain_hash(prev, record)
        rows.append(ChainRow(partition, i, f"m{i}", record, prev, h))
        prev = h
    return rows


def test_given_intact_chain_when_verifying_then_ok_and_chain_fields_are_not_hashed():
    assert verify_chain(chain(4) + chain(3, partition=1)) == (7, None)
    assert '"hash"' not in chain(1)[0].record


def test_given_altered_or_removed_record_when_verifying_then_first_broken_link_is_reported():
    rows = chain(5)
    altered = (
        rows[:2]
        + [ChainRow(0, 2, "m2", rows[2].record.replace('"n":2', '"n":9'), rows[2].prev_hash, rows[2].hash)]
        + rows[3:]
    )
    checked, broken = verify_chain(altered)
    assert checked == 2
    assert broken is not None
    assert (broken.offset, broken.message_id) == (2, "m2")
    checked, broken = verify_chain(rows[:1] + rows[2:])
    assert broken is not None
    assert broken.offset == 2
    assert "prev_hash" in broken.problem


# --------------------------------------------------------------------------- drift
def test_given_flat_shares_when_checking_drift_then_nothing_and_given_spike_then_finding():
    trailing = {"payment_failed": 140, "invoice_request": 140}
    assert detect_drift("intent", {"payment_failed": 10, "invoice_request": 11}, trailing) == []
    findings = detect_drift("intent", {"payment_failed": 40, "invoice_request": 5}, trailing)
    assert [f.key for f in findings] == ["invoice_request", "payment_failed"] or [
        f.key for f in findings
    ] == ["payment_failed", "invoice_request"]
    pf = next(f for f in findings if f.key == "payment_failed")
    assert pf.expected_share == 0.5
    assert pf.observed_share == pytest.approx(0.8889, abs=1e-4)


def test_given_too_few_contacts_when_checking_drift_then_no_alert():
    assert detect_drift("intent", {"payment_failed": 5}, {"invoice_request": 200}, DriftThresholds()) == []
