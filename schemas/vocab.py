"""Closed vocabularies shared by every service (see shared/spec/scenarios.md and intents.md)."""

from __future__ import annotations

from enum import StrEnum


class Intent(StrEnum):
    PAYMENT_FAILED = "payment_failed"
    CARD_EXPIRING = "card_expiring"
    PAYMENT_PENDING = "payment_pending"
    UNRECOGNIZED_CHARGE = "unrecognized_charge"
    UNEXPECTED_CHARGE = "unexpected_charge"
    DUPLICATE_CHARGE = "duplicate_charge"
    REFUND_REQUEST = "refund_request"
    REFUND_STATUS = "refund_status"
    INVOICE_REQUEST = "invoice_request"
    UPDATE_BILLING_DETAILS = "update_billing_details"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    PLAN_CHANGE = "plan_change"
    PAYMENT_METHODS_QUESTION = "payment_methods_question"
    FRAUD_COMPROMISED = "fraud_compromised"
    HUMAN_AGENT = "human_agent"
    # The SaaS product's own asks (issue 23): teammates and API keys go to Tier 2's product tool,
    # sign-in / password / 2FA / account email go to a person (identity is never changed by a bot).
    TEAM_MEMBER = "team_member"
    API_KEY = "api_key"
    ACCOUNT_ACCESS = "account_access"
    OUT_OF_SCOPE = "out_of_scope"


class Action(StrEnum):
    RETRY_PAYMENT = "retry_payment"
    SEND_UPDATE_CARD_LINK = "send_update_card_link"
    REGENERATE_INVOICE_LINK = "regenerate_invoice_link"
    SEND_INVOICE = "send_invoice"
    REFUND = "refund"
    UPDATE_BILLING_DETAILS = "update_billing_details"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    CHANGE_PLAN = "change_plan"
    EXPLAIN_CHARGE = "explain_charge"
    ANSWER_FROM_KNOWLEDGE = "answer_from_knowledge"
    SEND_NUDGE = "send_nudge"
    ESCALATE = "escalate"
    #: an action in the SaaS product's own API, described in the product connector's YAML (issue 23);
    #: the ledger's target names which one (``invite_member:maria@acme.io``)
    PRODUCT_ACTION = "product_action"


class EscalationReason(StrEnum):
    CUSTOMER_ASKED = "customer_asked"
    FRAUD = "fraud"
    DISPUTE = "dispute"
    REFUND_OVER_POLICY = "refund_over_policy"
    POLICY_DENIED = "policy_denied"
    LOW_CONFIDENCE = "low_confidence"
    ERROR = "error"
    OUT_OF_SCOPE = "out_of_scope"
    ACCOUNT_ACCESS = "account_access"  # sign-in, password, 2FA, account email: a person verifies identity
    MONEY_PAUSED = "money_paused"  # automatic money actions are paused (`tierline pause money`, the breaker)


class Tier(StrEnum):
    TIER0 = "tier0"
    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"


class Channel(StrEnum):
    CHAT = "chat"
    EMAIL = "email"
    DASHBOARD = "dashboard"


class HealthStatus(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


class RootCause(StrEnum):
    HEALTHY = "healthy"
    CARD_DECLINED_INSUFFICIENT_FUNDS = "card_declined_insufficient_funds"
    CARD_DECLINED_SOFT = "card_declined_soft"
    CARD_DECLINED_HARD = "card_declined_hard"
    CARD_DECLINED_FRAUD = "card_declined_fraud"
    CARD_EXPIRED = "card_expired"
    CARD_EXPIRING = "card_expiring"
    INVOICE_LINK_EXPIRED = "invoice_link_expired"
    PAYMENT_PENDING = "payment_pending"
    USAGE_OVERAGE = "usage_overage"
    SEATS_OVER_PLAN = "seats_over_plan"
    DUPLICATE_CHARGE = "duplicate_charge"
    REFUND_PENDING = "refund_pending"
    REFUND_SUCCEEDED = "refund_succeeded"
    DISPUTE_OPEN = "dispute_open"
    SUBSCRIPTION_MISSING = "subscription_missing"
    SUBSCRIPTION_CANCELED = "subscription_canceled"
    NO_PAYMENT_METHOD = "no_payment_method"
    UNKNOWN = "unknown"


# Several asks in one message (the router's ``secondary_intents`` / ``secondary_actions``):
#: actions a tier may do for a further ask of the same message: they only send or explain;
SIDE_ASK_ACTIONS: frozenset[Action] = frozenset(
    {
        Action.SEND_INVOICE,
        Action.SEND_UPDATE_CARD_LINK,
        Action.REGENERATE_INVOICE_LINK,
        Action.EXPLAIN_CHARGE,
    }
)
#: further asks that move money or change the account are never done on the side: a person decides.
MONEY_ASKS: frozenset[Intent] = frozenset(
    {
        Intent.REFUND_REQUEST,
        Intent.DUPLICATE_CHARGE,
        Intent.CANCEL_SUBSCRIPTION,
        Intent.PLAN_CHANGE,
        Intent.UPDATE_BILLING_DETAILS,
    }
)
