"""The Stripe decline-code taxonomy: who can fix a decline, and whether a retry is allowed.

Every code in Stripe's decline-codes reference is mapped to a :class:`DeclineInfo`. A code that is not
in the table (a new code, a typo, an emulator quirk) is treated as hard-for-customer and never retried
blindly: the customer is asked to use another card.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Fixer(StrEnum):
    CUSTOMER = "customer"
    BANK = "bank"
    MERCHANT = "merchant"


@dataclass(frozen=True, slots=True)
class DeclineInfo:
    code: str
    soft: bool
    fixer: Fixer
    retry_allowed: bool
    fraud: bool
    customer_message: str
    known: bool = True

    @property
    def hard(self) -> bool:
        return not self.soft


_CONTACT_BANK = "Your bank declined the payment. Please contact your card issuer, or use a different card."
_OTHER_CARD = "Your card can't be used for this payment. Please use a different card."
_TRY_AGAIN = "The payment could not be processed right now. We'll retry it shortly; no action is needed."
_CHECK_DETAILS = "Some card details look incorrect. Please check them and try again, or use a different card."
_FRAUD_MESSAGE = "Your card was declined. Please contact your card issuer, or use a different card."


def _i(code: str, soft: bool, fixer: Fixer, retry: bool, message: str, fraud: bool = False) -> DeclineInfo:
    return DeclineInfo(code, soft, fixer, retry, fraud, message)


C, B, M = Fixer.CUSTOMER, Fixer.BANK, Fixer.MERCHANT

#: code -> classification. soft = the same card may succeed later; retry_allowed = an automatic retry
#: of the same card is permitted by policy (never for fraud, never for details the customer must fix).
DECLINE_CODES: dict[str, DeclineInfo] = {
    d.code: d
    for d in (
        _i("approve_with_id", True, B, True, "The payment couldn't be authorised. We'll retry it shortly."),
        _i(
            "authentication_required",
            False,
            C,
            False,
            "Your bank needs you to confirm this payment. Please complete the authentication, "
            "or use another card.",
        ),
        _i("call_issuer", False, B, False, _CONTACT_BANK),
        _i(
            "card_declined",
            True,
            B,
            True,
            "Your card was declined. We'll retry once; if it fails again, please use a different card.",
        ),
        _i(
            "card_not_supported",
            False,
            C,
            False,
            "Your card doesn't support this type of purchase. " + _OTHER_CARD,
        ),
        _i(
            "card_velocity_exceeded",
            True,
            C,
            True,
            "You've exceeded your card's balance or credit limit. "
            "Please contact your bank, or use another card.",
        ),
        _i(
            "currency_not_supported",
            False,
            C,
            False,
            "Your card doesn't support this currency. " + _OTHER_CARD,
        ),
        _i("do_not_honor", True, B, True, _CONTACT_BANK),
        _i("do_not_try_again", False, B, False, _CONTACT_BANK),
        _i(
            "duplicate_transaction",
            False,
            M,
            False,
            "An identical payment was made very recently, so this one was blocked. "
            "Please check your statement.",
        ),
        _i("expired_card", False, C, False, "Your card has expired. Please update your card details."),
        _i("fraudulent", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("generic_decline", True, B, True, _CONTACT_BANK),
        _i(
            "incorrect_number",
            False,
            C,
            False,
            "The card number is incorrect. Please update your card details.",
        ),
        _i(
            "incorrect_cvc", False, C, False, "The security code (CVC) is incorrect. Please update your card."
        ),
        _i(
            "incorrect_pin",
            False,
            C,
            False,
            "The PIN entered is incorrect. Please try again with the right PIN.",
        ),
        _i(
            "incorrect_zip",
            False,
            C,
            False,
            "The postal code is incorrect. Please update your billing address.",
        ),
        _i(
            "insufficient_funds",
            True,
            C,
            True,
            "Your card has insufficient funds. "
            "Please top it up or use a different card; we'll retry the payment.",
        ),
        _i("invalid_account", False, C, False, "The card or its account is invalid. " + _OTHER_CARD),
        _i(
            "invalid_amount",
            False,
            M,
            False,
            "The payment amount was rejected by your bank. Our billing team will look into it.",
        ),
        _i("invalid_cvc", False, C, False, "The security code (CVC) is invalid. Please update your card."),
        _i("invalid_expiry_month", False, C, False, "The expiry month is invalid. Please update your card."),
        _i("invalid_expiry_year", False, C, False, "The expiry year is invalid. Please update your card."),
        _i("invalid_number", False, C, False, "The card number is invalid. Please update your card details."),
        _i("invalid_pin", False, C, False, "The PIN is invalid. Please try again with the right PIN."),
        _i("issuer_not_available", True, B, True, _TRY_AGAIN),
        _i("lost_card", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("merchant_blacklist", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i(
            "new_account_information_available",
            False,
            C,
            False,
            "Your card details have changed. Please update your card with the new details.",
        ),
        _i("no_action_taken", False, B, False, _CONTACT_BANK),
        _i("not_permitted", False, B, False, "This payment isn't permitted by your bank. " + _OTHER_CARD),
        _i("offline_pin_required", False, C, False, "Your card requires a PIN. Please use a different card."),
        _i(
            "online_or_offline_pin_required",
            False,
            C,
            False,
            "Your card requires a PIN. Please use a different card.",
        ),
        _i("pickup_card", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("pin_try_exceeded", False, C, False, "Too many PIN attempts. Please use a different card."),
        _i("processing_error", True, M, True, _TRY_AGAIN),
        _i("reenter_transaction", True, B, True, _TRY_AGAIN),
        _i("restricted_card", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i(
            "revocation_of_all_authorizations",
            False,
            C,
            False,
            "You've asked your bank to stop all payments to us. "
            "Please contact your bank, or use another card.",
        ),
        _i(
            "revocation_of_authorization",
            False,
            C,
            False,
            "You've asked your bank to stop this payment. Please contact your bank, or use another card.",
        ),
        _i("security_violation", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("service_not_allowed", False, B, False, _CONTACT_BANK),
        _i("stolen_card", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i(
            "stop_payment_order",
            False,
            C,
            False,
            "A stop-payment order is on this card. Please contact your bank, or use another card.",
        ),
        _i("testmode_decline", False, C, False, "A test card was used. Please use a real card."),
        _i("transaction_not_allowed", False, B, False, _CONTACT_BANK),
        _i("try_again_later", True, B, True, _TRY_AGAIN),
        _i(
            "withdrawal_count_limit_exceeded",
            True,
            C,
            True,
            "You've exceeded your card's balance or credit limit. "
            "Please contact your bank, or use another card.",
        ),
        # Stripe's decline list also names these issuer/network codes.
        _i(
            "card_not_activated",
            False,
            C,
            False,
            "Your card isn't activated yet. Please activate it or use another card.",
        ),
        _i(
            "invalid_transaction",
            False,
            M,
            False,
            "The payment was rejected as invalid. Our billing team will look into it.",
        ),
        _i(
            "mobile_device_authentication_required",
            False,
            C,
            False,
            "Your bank needs you to confirm this payment on your device. Please try again and approve it.",
        ),
        _i("highest_risk_level", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("do_not_try_again_fraud", False, B, False, _FRAUD_MESSAGE, fraud=True),
        _i("card_not_yet_valid", False, C, False, "Your card isn't valid yet. Please use a different card."),
    )
}

#: After this many failed attempts a bank-side ``do_not_honor`` is treated as hard (never retried again).
DO_NOT_HONOR_MAX_ATTEMPTS = 2


def classify_decline(code: str | None, *, attempt_count: int = 1) -> DeclineInfo:
    """Classify an issuer decline code. ``None``/empty means a plain ``card_declined``.

    Unknown codes are hard-for-customer and never retried blindly.
    """
    normalized = (code or "card_declined").strip().lower()
    info = DECLINE_CODES.get(normalized)
    if info is None:
        return DeclineInfo(
            code=normalized,
            soft=False,
            fixer=Fixer.CUSTOMER,
            retry_allowed=False,
            fraud=False,
            customer_message="Your card was declined. Please use a different card or contact your bank.",
            known=False,
        )
    if normalized == "do_not_honor" and attempt_count >= DO_NOT_HONOR_MAX_ATTEMPTS:
        return DeclineInfo(normalized, False, info.fixer, False, False, info.customer_message)
    return info
