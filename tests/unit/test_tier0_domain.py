"""Tier 0 pure decisions and the webhook signature check (no broker, no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas import Action, RootCause
from services.tier0_prevent import domain
from services.tier0_prevent.domain import DeclineKind, RetryVerdict
from services.tier0_prevent.ingress import (
    MalformedEvent,
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    TimestampOutsideTolerance,
    parse_event,
    sign,
    verify_signature,
)
from tierline.billing.declines import classify_decline
from tierline_tools.world import build_event, sign_payload

pytestmark = pytest.mark.unit
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)
OFFSETS = [1.0, 3.0, 7.0, 14.0]


@pytest.mark.parametrize(
    ("code", "kind", "actions", "retries"),
    [
        ("insufficient_funds", DeclineKind.SOFT, [Action.SEND_NUDGE], 4),
        ("processing_error", DeclineKind.SOFT, [Action.SEND_NUDGE], 4),
        (None, DeclineKind.SOFT, [Action.SEND_NUDGE], 4),
        ("expired_card", DeclineKind.HARD, [Action.SEND_UPDATE_CARD_LINK], 0),
        ("incorrect_number", DeclineKind.HARD, [Action.SEND_UPDATE_CARD_LINK], 0),
        ("stolen_card", DeclineKind.FRAUD, [], 0),
        ("lost_card", DeclineKind.FRAUD, [], 0),
        ("fraudulent", DeclineKind.FRAUD, [], 0),
    ],
)
def test_given_decline_code_when_planning_then_soft_retries_hard_links_fraud_escalates(
    code, kind, actions, retries
):
    plan = domain.plan_failed_payment(
        classify_decline(code), now=NOW, offsets_days=OFFSETS, max_attempts=4, link_expired=False
    )
    assert (plan.kind, plan.actions, len(plan.retry_at)) == (kind, actions, retries)
    assert plan.escalate_fraud == plan.flag_risk == (kind is DeclineKind.FRAUD)


def test_given_do_not_honor_twice_when_planning_then_it_is_hard():
    first = domain.plan_failed_payment(
        classify_decline("do_not_honor", attempt_count=1),
        now=NOW,
        offsets_days=OFFSETS,
        max_attempts=4,
        link_expired=False,
    )
    second = domain.plan_failed_payment(
        classify_decline("do_not_honor", attempt_count=2),
        now=NOW,
        offsets_days=OFFSETS,
        max_attempts=4,
        link_expired=False,
    )
    assert (first.kind, second.kind) == (DeclineKind.SOFT, DeclineKind.HARD)


def test_given_max_attempts_when_scheduling_then_never_more_and_spaced_over_two_weeks():
    assert [t - NOW for t in domain.dunning_times(NOW, OFFSETS, 4)] == [
        timedelta(days=d) for d in (1, 3, 7, 14)
    ]
    assert len(domain.dunning_times(NOW, OFFSETS, 2)) == 2
    assert domain.dunning_times(NOW, OFFSETS, 0) == []


def test_given_expired_link_when_planning_soft_decline_then_link_is_regenerated_first():
    plan = domain.plan_failed_payment(
        classify_decline("insufficient_funds"),
        now=NOW,
        offsets_days=OFFSETS,
        max_attempts=4,
        link_expired=True,
    )
    assert plan.actions == [Action.REGENERATE_INVOICE_LINK, Action.SEND_NUDGE]
    assert plan.root_cause is RootCause.CARD_DECLINED_INSUFFICIENT_FUNDS


def test_given_retry_results_when_judging_then_verdicts_follow():
    soft, hard = classify_decline("insufficient_funds"), classify_decline("expired_card")
    assert domain.after_retry(paid=True, decline=None, attempts_left=0) is RetryVerdict.RECOVERED
    assert domain.after_retry(paid=False, decline=soft, attempts_left=2) is RetryVerdict.TRY_LATER
    assert domain.after_retry(paid=False, decline=soft, attempts_left=0) is RetryVerdict.EXHAUSTED
    assert domain.after_retry(paid=False, decline=hard, attempts_left=3) is RetryVerdict.HARD
    assert (
        domain.after_retry(paid=False, decline=None, attempts_left=3, payable=False)
        is RetryVerdict.NOT_PAYABLE
    )


def test_given_cards_when_checking_expiry_then_only_those_ending_within_the_window():
    assert domain.card_expiring(3, 2026, now=NOW)  # ends 31 March
    assert not domain.card_expiring(4, 2026, now=NOW)  # ends 30 April: 51 days away
    assert not domain.card_expiring(6, 2026, now=NOW)
    assert not domain.card_expiring(1, 2026, now=NOW)  # already expired: a decline's job, not a nudge
    assert domain.card_expiring(
        6, 2026, now=NOW, before=datetime(2026, 7, 2, tzinfo=UTC)
    )  # before the next charge


def test_given_invoice_objects_when_checking_links_then_expiry_comes_from_metadata_or_flag():
    past, future = (
        str(int((NOW - timedelta(days=1)).timestamp())),
        str(int((NOW + timedelta(days=1)).timestamp())),
    )
    assert domain.invoice_link_expired(
        {"object": "invoice", "status": "open", "metadata": {"tl_link_expires_at": past}}, NOW
    )
    assert not domain.invoice_link_expired(
        {"object": "invoice", "status": "open", "metadata": {"tl_link_expires_at": future}}, NOW
    )
    assert not domain.invoice_link_expired({"object": "invoice", "status": "paid", "link_expired": True}, NOW)


def test_given_event_objects_when_resolving_customer_and_decline_then_ids_are_found():
    assert domain.customer_of("invoice.payment_failed", {"customer": "cus_1"}) == "cus_1"
    assert domain.customer_of("customer.updated", {"object": "customer", "id": "cus_2"}) == "cus_2"
    assert (
        domain.customer_of("charge.dispute.created", {"charge": "ch_1", "metadata": {"tl_customer": "cus_3"}})
        == "cus_3"
    )
    assert domain.customer_of("charge.dispute.created", {"charge": "ch_1"}) is None
    # the world builder's metadata is the emulator's business: tierline reads Stripe's fields only
    assert domain.decline_code_of({"metadata": {"tl_decline_code": "stolen_card"}}) is None
    assert (
        domain.decline_code_of({"payment_intent": {"last_payment_error": {"decline_code": "lost_card"}}})
        == "lost_card"
    )
    assert (
        domain.decline_code_of(
            {
                "charge": {
                    "status": "failed",
                    "failure_code": "card_declined",
                    "outcome": {"reason": "insufficient_funds"},
                }
            }
        )
        == "insufficient_funds"
    )


# ------------------------------------------------------------------------------------ signatures
BODY = json.dumps(
    build_event("invoice.paid", {"id": "in_1", "object": "invoice", "customer": "cus_1"})
).encode()
T = 1_800_000_000


def test_given_stripe_signed_body_when_verifying_then_accepted_with_either_rotated_secret():
    for secret in ("whsec_old", "whsec_new"):
        assert (
            verify_signature(
                BODY, sign_payload(BODY, secret, T), ["whsec_old", "whsec_new"], tolerance_s=300, now=T + 10
            )
            == T
        )
    assert sign(BODY, "s", T) == sign_payload(BODY, "s", T).split("v1=")[1]


@pytest.mark.parametrize(
    ("header", "now", "error"),
    [
        (None, T, SignatureMissing),
        ("", T, SignatureMissing),
        ("v1=abc", T, SignatureMalformed),
        ("t=abc,v1=abc", T, SignatureMalformed),
        (f"t={T}", T, SignatureMalformed),
        (sign_payload(BODY, "whsec_other", T), T, SignatureMismatch),
        (sign_payload(BODY, "whsec_new", T), T + 301, TimestampOutsideTolerance),
        (sign_payload(BODY, "whsec_new", T), T - 301, TimestampOutsideTolerance),
    ],
)
def test_given_bad_signatures_when_verifying_then_typed_rejection(header, now, error):
    with pytest.raises(error):
        verify_signature(BODY, header, ["whsec_new"], tolerance_s=300, now=now)


def test_given_tampered_body_when_verifying_then_mismatch():
    with pytest.raises(SignatureMismatch):
        verify_signature(
            BODY + b" ", sign_payload(BODY, "whsec_new", T), ["whsec_new"], tolerance_s=300, now=T
        )


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b"[]",
        b'{"id": "x", "type": "a", "created": 1, "data": {"object": {}}}',
        b'{"id": "evt_1", "created": 1, "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "a", "created": "1", "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "a", "created": 1, "data": {}}',
    ],
)
def test_given_malformed_events_when_parsing_then_rejected(body):
    with pytest.raises(MalformedEvent):
        parse_event(body)


def test_given_valid_event_when_parsing_then_fields_are_kept():
    event = parse_event(BODY)
    assert (event.type, event.object["id"], event.livemode) == ("invoice.paid", "in_1", False)
