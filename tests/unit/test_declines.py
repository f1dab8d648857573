"""Decline taxonomy: every documented code is classified; unknown codes are never retried."""

from __future__ import annotations

import pytest

from tierline.billing.declines import DECLINE_CODES, Fixer, classify_decline

pytestmark = pytest.mark.unit

DOCUMENTED = """approve_with_id call_issuer card_not_supported card_velocity_exceeded
currency_not_supported do_not_honor do_not_try_again duplicate_transaction expired_card fraudulent
generic_decline incorrect_number incorrect_cvc incorrect_pin incorrect_zip insufficient_funds
invalid_account invalid_amount invalid_cvc invalid_expiry_month invalid_expiry_year invalid_number
invalid_pin issuer_not_available lost_card merchant_blacklist new_account_information_available
no_action_taken not_permitted offline_pin_required online_or_offline_pin_required pickup_card
pin_try_exceeded processing_error reenter_transaction restricted_card revocation_of_all_authorizations
revocation_of_authorization security_violation service_not_allowed stolen_card stop_payment_order
testmode_decline transaction_not_allowed try_again_later withdrawal_count_limit_exceeded
authentication_required card_declined""".split()


@pytest.mark.parametrize("code", DOCUMENTED)
def test_every_documented_code_is_known_with_a_customer_message(code: str) -> None:
    # Given a documented decline code / When classified
    info = classify_decline(code)
    # Then it is a known code with a message, and fraud is never retried
    assert info.known
    assert info.code == code
    assert info.customer_message
    assert not (info.fraud and info.retry_allowed)
    assert code in DECLINE_CODES


@pytest.mark.parametrize(
    "code",
    [
        "insufficient_funds",
        "processing_error",
        "try_again_later",
        "card_declined",
        "generic_decline",
        "issuer_not_available",
        "reenter_transaction",
    ],
)
def test_soft_declines_may_be_retried(code: str) -> None:
    info = classify_decline(code)
    assert info.soft
    assert info.retry_allowed
    assert not info.fraud


@pytest.mark.parametrize(
    "code",
    [
        "expired_card",
        "incorrect_number",
        "invalid_number",
        "incorrect_cvc",
        "card_not_supported",
        "invalid_account",
        "do_not_try_again",
    ],
)
def test_hard_declines_are_never_retried(code: str) -> None:
    info = classify_decline(code)
    assert info.hard
    assert not info.retry_allowed


@pytest.mark.parametrize(
    "code",
    [
        "stolen_card",
        "lost_card",
        "fraudulent",
        "pickup_card",
        "merchant_blacklist",
        "security_violation",
        "restricted_card",
    ],
)
def test_fraud_declines_are_flagged_and_fixed_by_the_bank(code: str) -> None:
    info = classify_decline(code)
    assert info.fraud
    assert info.hard
    assert not info.retry_allowed
    assert info.fixer is Fixer.BANK


def test_who_fixes_it() -> None:
    assert classify_decline("insufficient_funds").fixer is Fixer.CUSTOMER
    assert classify_decline("do_not_honor").fixer is Fixer.BANK
    assert classify_decline("processing_error").fixer is Fixer.MERCHANT


def test_do_not_honor_turns_hard_after_two_failures() -> None:
    assert classify_decline("do_not_honor", attempt_count=1).retry_allowed
    second = classify_decline("do_not_honor", attempt_count=2)
    assert second.hard
    assert not second.retry_allowed


@pytest.mark.parametrize("code", ["brand_new_code_2031", "INSUFFICIENT-FUNDS", "zzz"])
def test_unknown_codes_are_hard_for_customer_and_never_retried(code: str) -> None:
    info = classify_decline(code)
    assert not info.known
    assert info.hard
    assert not info.retry_allowed
    assert info.fixer is Fixer.CUSTOMER


def test_missing_code_means_plain_card_declined() -> None:
    assert classify_decline(None).code == "card_declined"
    assert classify_decline("  Insufficient_Funds ").code == "insufficient_funds"
