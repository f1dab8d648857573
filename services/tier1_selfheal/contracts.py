"""The Health Meter API's HTTP contract (``api.py``): every JSON body in and out, as pydantic models.

Request bodies ignore keys they do not know (pages and dashboards send what they have); responses
forbid them, so a key the code starts returning without a model change fails the tests instead of
drifting from the generated OpenAPI document. Optional keys a response leaves out stay out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import Action
from schemas.vocab import HealthStatus, RootCause

REQUEST_ID_PATTERN = r"^[A-Za-z0-9_\-:.]{8,100}$"
Number = int | float


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- requests
class SessionStart(BaseModel):
    token: str = Field(default="", description="a customer session token (kept in an HttpOnly cookie)")


class MeterQuery(BaseModel):
    customer_id: str | None = Field(default=None, description="optional; must be the session's customer")


class FixRequest(BaseModel):
    action: Action = Field(description="a 1-click fix the meter offered (escalate: talk to a human)")
    params: dict[str, Any] | None = Field(default=None, description="the fix's parameters")
    customer_id: str | None = Field(default=None, description="optional; must be the session's customer")
    request_id: str | None = Field(
        default=None,
        pattern=REQUEST_ID_PATTERN,
        description="the same id twice is one request (or the Idempotency-Key header)",
    )
    conversation_id: str | None = Field(
        default=None, max_length=200, description="the chat it was clicked in"
    )
    label: str | None = Field(default=None, description="the button's words, shown in the conversation")
    text: str | None = Field(default=None, description="escalate: the customer's words")


class HumanRequest(BaseModel):
    text: str | None = Field(default=None, description="the customer's words for the person")
    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)
    customer_id: str | None = Field(default=None, description="optional; must be the session's customer")


class PayRequest(BaseModel):
    request_id: str | None = Field(default=None, pattern=REQUEST_ID_PATTERN)


# ----------------------------------------------------------------------------- responses
class SessionView(_Out):
    customer_id: str
    expires_at: int


class SignedOut(_Out):
    signed_out: bool


class InvoiceBrief(_Out):
    id: str | None
    status: str | None
    amount_due_usd: Number | None
    link_expired: bool | None
    decline_code: str | None


class CardBrief(_Out):
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


class PlanBrief(_Out):
    name: str | None
    tier: str | None
    monthly_usd: Number | None
    seats: int | None
    seat_limit: int | None


class FixOffer(_Out):
    action: Action
    label: str
    description: str
    primary: bool
    params: dict[str, Any]


class HealthMeterView(_Out):
    customer_id: str
    status: HealthStatus
    root_cause: RootCause
    explanation: str
    recommended_action: Action | None
    self_serve_eligible: bool
    invoice: InvoiceBrief | None
    card: CardBrief | None
    plan: PlanBrief | None
    missing_sources: list[str]
    fixes: list[FixOffer]


class FixAccepted(_Out):
    contact_id: str
    status_url: str
    duplicate: bool | None = Field(default=None, description="a 1-click fix: the same request id again")
    status: Literal["escalated"] | None = Field(default=None, description="escalate: a person has it")


class HumanAccepted(_Out):
    contact_id: str
    status: Literal["escalated"]
    status_url: str


class ActionLink(_Out):
    action: str
    url: str


class ActionTried(_Out):
    action: str
    status: str


class ContactStatus(_Out):
    """A request's honest status; keys that do not apply to its state are left out."""

    contact_id: str
    status: Literal["pending", "resolved", "escalated", "handed_to_tier2"]
    links: list[ActionLink] | None = None
    case_status: str | None = None
    escalation_reason: str | None = None
    sla_due_at: str | None = None
    title: str | None = None
    detail: str | None = None
    resolved_by: str | None = None
    summary: str | None = None
    actions: list[Any] | None = None
    recovered_usd: Number | None = None
    actions_tried: list[ActionTried] | None = None


class CaseMessage(_Out):
    kind: str | None
    text: str | None
    created_at: str | None


class CustomerCase(_Out):
    case_id: str
    contact_id: str
    state: str
    title: str
    detail: str
    opened_at: str
    sla_due_at: str | None
    conversation_id: str | None
    messages: list[CaseMessage]


class CustomerCases(_Out):
    cases: list[CustomerCase]


class InvoiceDue(_Out):
    invoice_id: str
    status: str
    amount_due_usd: Number
    currency: str


class PayAccepted(_Out):
    contact_id: str
    duplicate: bool


class PriceConfirmationView(_Out):
    """A higher price waiting for the customer's confirmation (``price_confirm.py``)."""

    confirmation_id: str
    plan: str
    seats: int | None
    old_price_usd: Number
    new_price_usd: Number
    status: str = Field(description="pending, confirmed or expired")
    expires_at: str
    result: dict[str, Any] | None
