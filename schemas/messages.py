"""One model per topic. Topic names follow ``<domain>.<entity>.<verb-past>.v<N>``.

Rules: v1 payloads only ever gain optional fields; a breaking change is a new ``.v2`` topic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Envelope
from schemas.vocab import Action, Channel, EscalationReason, HealthStatus, Intent, RootCause, Tier


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- shared parts
class Sender(Payload):
    """Who sent a contact: an authenticated session subject, or an unauthenticated email address."""

    kind: Literal["customer_session", "email", "agent", "system"] = "customer_session"
    subject: str | None = Field(default=None, description="customer id the session was signed for")
    email: str | None = None


class DiagnosisView(Payload):
    """The Billing Diagnosis as carried inside messages (see services/diagnostics)."""

    customer_id: str
    status: HealthStatus
    root_cause: RootCause
    explanation: str
    recommended_action: Action | None = None
    self_serve_eligible: bool = False
    evidence: dict[str, Any] = Field(default_factory=dict)
    missing_sources: list[str] = Field(default_factory=list)
    secondary_causes: list[RootCause] = Field(default_factory=list)
    computed_at: datetime | None = Field(
        default=None, description="when diagnostics computed it: a carried diagnosis is reused while fresh"
    )


class ActionRecord(Payload):
    """One action that was tried, with its result."""

    action: Action
    tier: Tier
    status: Literal["succeeded", "failed", "denied", "skipped"]
    idempotency_key: str
    detail: str = ""
    amount_usd: float = 0.0
    target: str | None = None


class PolicyDecisionRecord(Payload):
    action: Action
    verdict: Literal["allow", "deny", "needs_human"]
    reason: str = ""
    rule: str = ""


class Turn(Payload):
    role: Literal["customer", "assistant", "tool", "system", "agent"]
    text: str


class Choice(Payload):
    """One answer offered with a message to the customer (a button in chat, a numbered line in email)."""

    label: str = Field(max_length=200, description="what the customer sees, in their language")
    value: str = Field(
        max_length=200,
        description="what choosing it sends back: an intent value ('invoice_request'), an action value "
        "('send_update_card_link'), 'human' for a person, or free text",
    )


# --------------------------------------------------------------------------- topics
class ContactReceivedPayload(Payload):
    channel: Channel
    text: str = Field(max_length=20_000)
    sender: Sender = Field(default_factory=Sender)
    subject_line: str | None = None
    received_at: datetime | None = None
    conversation_id: str | None = Field(
        default=None,
        max_length=200,
        description="the conversation this message continues (chat session, email thread); none starts "
        "a new conversation whose id is the contact id",
    )
    choice: str | None = Field(
        default=None, max_length=200, description="the value of a Choice the customer clicked, if any"
    )
    attachments: list[dict[str, Any]] = Field(
        default_factory=list,
        description="files that came with the message, kept with the case, never parsed: "
        "filename, content_type, size_bytes, sha256, stored_as",
    )


class ContactReceivedV1(Envelope[ContactReceivedPayload]):
    TOPIC: ClassVar[str] = "contact.received.v1"


class ContactReading(Payload):
    """What the router read in the customer's text, carried to the tier that takes the contact."""

    flags: list[str] = Field(
        default_factory=list, description="guardrail findings on the text, e.g. 'prompt_injection'"
    )
    language: str | None = Field(
        default=None, description="ISO 639-1 code of the customer's language when detected, e.g. 'es'"
    )
    secondary_intents: list[Intent] = Field(
        default_factory=list,
        description="further asks in the same message, most urgent first (the router's reading)",
    )
    secondary_actions: list[Action] = Field(
        default_factory=list,
        description="safe actions for those asks (send_invoice, send_update_card_link, "
        "regenerate_invoice_link, explain_charge), done after the main one",
    )
    conversation_id: str | None = Field(default=None, description="the conversation the contact belongs to")
    history: list[Turn] = Field(
        default_factory=list, description="the conversation's earlier turns, oldest first (bounded)"
    )


class SelfhealRequestedPayload(ContactReading):
    action: Action
    params: dict[str, Any] = Field(default_factory=dict)
    source: Literal["dashboard", "router", "api"] = "dashboard"
    sender: Sender = Field(default_factory=Sender)
    intent: Intent | None = None
    text: str | None = None
    diagnosis: DiagnosisView | None = None
    tried: list[ActionRecord] = Field(default_factory=list)


class SelfhealRequestedV1(Envelope[SelfhealRequestedPayload]):
    TOPIC: ClassVar[str] = "tier1.selfheal.requested.v1"


class IntentCandidate(Payload):
    intent: Intent
    confidence: float


class AgentRequestedPayload(ContactReading):
    text: str
    channel: Channel = Channel.CHAT
    intent: Intent | None = None
    confidence: float = 0.0
    candidates: list[IntentCandidate] = Field(default_factory=list)
    diagnosis: DiagnosisView | None = None
    tried: list[ActionRecord] = Field(default_factory=list)
    handoff_reason: str = ""
    tier_path: list[Tier] = Field(default_factory=list)
    answers_question: bool = Field(
        default=False,
        description="the message answers a clarifying question already asked: the agent never asks a second",
    )


class AgentRequestedV1(Envelope[AgentRequestedPayload]):
    TOPIC: ClassVar[str] = "tier2.agent.requested.v1"


class StripeEventReceivedPayload(Payload):
    event_id: str
    event_type: str
    created: int
    livemode: bool = False
    api_version: str | None = None
    object: dict[str, Any] = Field(default_factory=dict, description="data.object as Stripe sent it")
    previous_attributes: dict[str, Any] | None = None


class StripeEventReceivedV1(Envelope[StripeEventReceivedPayload]):
    TOPIC: ClassVar[str] = "stripe.event.received.v1"


class EscalationOpenedPayload(Payload):
    reason: EscalationReason
    opened_by: Tier | Literal["router", "notifier"]
    intent: Intent | None = None
    text: str | None = None
    plan: str | None = None
    amount_usd: float = 0.0
    diagnosis: DiagnosisView | None = None
    transcript: list[Turn] = Field(default_factory=list)
    actions_tried: list[ActionRecord] = Field(default_factory=list)
    policy_decisions: list[PolicyDecisionRecord] = Field(default_factory=list)
    suggested_next_step: str = ""
    tier_path: list[Tier] = Field(default_factory=list)
    contact_started_at: datetime | None = None
    language: str | None = Field(
        default=None, description="ISO 639-1 code of the customer's language when detected, e.g. 'es'"
    )
    flags: list[str] = Field(
        default_factory=list, description="guardrail findings on the text, e.g. 'prompt_injection'"
    )
    conversation_id: str | None = Field(default=None, description="the conversation the contact belongs to")


class EscalationOpenedV1(Envelope[EscalationOpenedPayload]):
    TOPIC: ClassVar[str] = "tier3.escalation.opened.v1"


class CaseResolvedPayload(Payload):
    case_id: str
    agent_id: str
    resolution_note: str
    actions: list[ActionRecord] = Field(default_factory=list)
    refund_usd: float = 0.0
    knowledge_article_id: str | None = None


class CaseResolvedV1(Envelope[CaseResolvedPayload]):
    TOPIC: ClassVar[str] = "tier3.case.resolved.v1"


class OutcomeRecordedPayload(Payload):
    resolved_by: Tier
    tier_path: list[Tier]
    intent: Intent | None = None
    root_cause: RootCause | None = None
    actions: list[Action] = Field(default_factory=list)
    refund_usd: float = 0.0
    recovered_usd: float = 0.0
    escalation_reason: EscalationReason | None = None
    latency_ms: int = 0
    cost_usd: float = 0.0
    channel: Channel | None = None
    trigger: Literal["contact", "selfheal", "stripe_event"] = "contact"
    summary: str = ""
    variant: str | None = Field(
        default=None,
        max_length=200,
        description="the answer template variant the customer got, '<experiment>:<variant>' (A/B tests)",
    )


class OutcomeRecordedV1(Envelope[OutcomeRecordedPayload]):
    TOPIC: ClassVar[str] = "contact.outcome.recorded.v1"


TurnKind = Literal[
    "answer", "fix_confirmation", "clarifying_question", "handoff_status", "human_reply", "resolution"
]


class ConversationMessageSentPayload(Payload):
    """One message to the customer: a turn of their conversation, delivered on its channel."""

    conversation_id: str
    channel: Channel
    kind: TurnKind
    text: str = Field(max_length=20_000)
    author: str = Field(description="service or human id, e.g. 'tier2_agent' or 'agent:ana'")
    choices: list[Choice] = Field(default_factory=list)
    sla_due_at: datetime | None = Field(
        default=None, description="for a handoff: when a person will have answered at the latest"
    )
    language: str | None = None
    variant: str | None = Field(
        default=None,
        max_length=200,
        description="the answer template variant of this message, '<experiment>:<variant>' (A/B tests)",
    )


class ConversationMessageSentV1(Envelope[ConversationMessageSentPayload]):
    TOPIC: ClassVar[str] = "conversation.message.sent.v1"


class ConversationRatedPayload(Payload):
    """The customer rated an answer: CSAT 1-5 and/or "did this solve it?" (a later rating of the same
    contact completes or replaces an earlier one)."""

    conversation_id: str = Field(max_length=200)
    csat: int | None = Field(default=None, ge=1, le=5)
    solved: bool | None = None
    channel: Channel | None = None


class ConversationRatedV1(Envelope[ConversationRatedPayload]):
    TOPIC: ClassVar[str] = "conversation.rated.v1"


class AuditEventPayload(Payload):
    actor: str = Field(description="service or human id, e.g. 'tier2_agent' or 'agent:ana'")
    action: str
    target: str | None = None
    decision: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str | None = Field(default=None, description="hash of the previous record (chain)")
    hash: str | None = None


class AuditEventRecordedV1(Envelope[AuditEventPayload]):
    TOPIC: ClassVar[str] = "audit.event.recorded.v1"


class NotificationRequestedPayload(Payload):
    channel: Literal["email"] = "email"
    to: str
    template: str
    subject: str
    body: str
    dedupe_key: str
    link: str | None = None


class NotificationRequestedV1(Envelope[NotificationRequestedPayload]):
    TOPIC: ClassVar[str] = "notification.requested.v1"


class BillingChangeRecordedPayload(Payload):
    """A change to a customer's account went through (once per ledgered action): what changed, who changed
    it and when, the values before and after. The notifier turns it into the notifications configured for
    its kind (email to the customer, Slack to the support team); the audit timeline shows it."""

    change: Literal["billing_email", "company_details", "tax_id", "plan", "cancellation", "card"]
    action: Action
    actor: str = Field(description="who: '<tier>:<actor id>', e.g. 'tier1:customer' or 'tier3:ana'")
    actor_kind: Literal["system", "ai", "selfheal", "human"]
    changed_at: datetime
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    notify: list[str] = Field(
        default_factory=list, description="the customer's addresses to tell (old and new for an email change)"
    )
    idempotency_key: str = Field(description="the action ledger's key: one change, one event")


class BillingChangeRecordedV1(Envelope[BillingChangeRecordedPayload]):
    TOPIC: ClassVar[str] = "billing.change.recorded.v1"


class UsageEventPayload(Payload):
    event_id: str
    metric: str
    units: float = Field(ge=0)
    unit_price_usd: float = Field(default=0.0, ge=0)
    ts: datetime


class UsageEventRecordedV1(Envelope[UsageEventPayload]):
    TOPIC: ClassVar[str] = "usage.event.recorded.v1"


class KnowledgeArticlePayload(Payload):
    article_id: str
    title: str
    body_markdown: str
    tags: list[str] = Field(default_factory=list)
    source: str = "tier3"
    author: str | None = None


class KnowledgeArticlePublishedV1(Envelope[KnowledgeArticlePayload]):
    TOPIC: ClassVar[str] = "knowledge.article.published.v1"


class AlertPayload(Payload):
    kind: Literal["drift", "sla_breach", "spend_breaker"]
    subject: str
    observed: float
    expected: float
    threshold: float
    details: dict[str, Any] = Field(default_factory=dict)


class AlertRaisedV1(Envelope[AlertPayload]):
    TOPIC: ClassVar[str] = "ops.alert.raised.v1"


#: Why a message was dead-lettered (closed): bytes that are no JSON object, an envelope its model refuses,
#: an envelope version the consumer does not know, or a handler that kept failing on it.
DeadLetterKind = Literal["not_json", "invalid_message", "unknown_schema_version", "handler_error"]


class DeadLetterPayload(Payload):
    """A message a consumer could not process, with why. Never dropped."""

    original_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str = Field(
        description="original bytes, decoded as UTF-8 with replacement, NUL replaced, at most 16 KiB"
    )
    headers: dict[str, str] = Field(default_factory=dict)
    consumer: str
    error_type: str
    error: str
    attempts: int = 1
    error_kind: DeadLetterKind | None = Field(
        default=None, description="what went wrong, for grouping: one case per (topic, kind) burst"
    )
    value_bytes: int | None = Field(default=None, description="size of the original value in bytes")
    value_truncated: bool = Field(default=False, description="`value` is the first part of the original")
    value_sha256: str | None = Field(default=None, description="SHA-256 of the original value")


class DeadLetterRecordedV1(Envelope[DeadLetterPayload]):
    TOPIC: ClassVar[str] = "deadletter.message.recorded.v1"


ALL_MESSAGES: tuple[type[Envelope[Any]], ...] = (
    ContactReceivedV1,
    SelfhealRequestedV1,
    AgentRequestedV1,
    StripeEventReceivedV1,
    EscalationOpenedV1,
    CaseResolvedV1,
    OutcomeRecordedV1,
    AuditEventRecordedV1,
    NotificationRequestedV1,
    BillingChangeRecordedV1,
    UsageEventRecordedV1,
    KnowledgeArticlePublishedV1,
    AlertRaisedV1,
    DeadLetterRecordedV1,
    ConversationMessageSentV1,
    ConversationRatedV1,
)

TOPICS: dict[str, type[Envelope[Any]]] = {m.TOPIC: m for m in ALL_MESSAGES}
