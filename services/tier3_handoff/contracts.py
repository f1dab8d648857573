"""The console's HTTP contract: every JSON body in and out, as pydantic models (the OpenAPI reads them).

Request bodies ignore keys they do not know (the console page sends what it has); responses forbid
them, so a key the code starts returning without a model change fails the tests instead of drifting
from the published document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.messages import ActionRecord


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- requests
class CaseListQuery(BaseModel):
    queue: str | None = Field(default=None, description="one of your queues (default: all of them)")
    status: str = Field(default="open,claimed", description="comma-separated case statuses")


class ActOnCase(BaseModel):
    """A human action on a held case; the keys besides ``action`` and ``note`` are its parameters
    (``refund``: ``charge_id``, ``amount_usd``; ``retry_payment``: ``invoice_id``)."""

    model_config = ConfigDict(extra="allow")

    action: str = Field(
        default="note", description="note, refund, retry_payment or send_update_card_link (else 400)"
    )
    note: str = ""


class ResolveCase(BaseModel):
    resolution_note: str | None = Field(default=None, description="required (or its older name, note)")
    note: str | None = None
    publish_article: bool = Field(default=False, description="publish a knowledge article (title, body)")
    title: str | None = None
    body: str | None = None
    tags: list[str] = Field(default_factory=list)
    customer_message: str | None = Field(default=None, description="told to the customer, in the thread")


class RequestRefundApproval(BaseModel):
    charge_id: str = ""
    amount_usd: float = 0.0
    note: str = ""


class DecisionNote(BaseModel):
    note: str = ""


class ReplyToCustomer(BaseModel):
    text: str = Field(description="the reply to the customer")
    reply_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_\-:.]{8,100}$",
        description="chosen per draft: the same id twice is one reply",
    )


# ----------------------------------------------------------------------------- responses
class AgentView(_Out):
    agent_id: str
    queues: list[str]
    roles: list[str]


class CaseSummary(_Out):
    case_id: str
    contact_id: str
    customer_id: str
    reason: str
    priority: int
    sla_due_at: str
    status: str
    assignee: str | None
    queue: str
    opened_at: str
    intent: str | None
    plan: str | None
    amount_usd: float


class CaseRow(CaseSummary):
    headline: str


class CaseList(_Out):
    cases: list[CaseRow]


class ApprovalView(_Out):
    approval_id: str
    case_id: str
    customer_id: str
    action: Literal["refund"]
    charge_id: str
    amount_usd: float
    note: str
    requested_by: str
    requested_at: str
    status: Literal["pending", "approved", "denied"]
    decided_by: str | None
    decided_at: str | None
    decision_note: str
    result: dict[str, Any] | None


class ApprovalDecided(ApprovalView):
    record: ActionRecord


class ApprovalList(_Out):
    approvals: list[ApprovalView]


class ThreadTurn(_Out):
    seq: int
    role: str
    kind: str
    author: str | None
    text: str
    contact_id: str | None
    created_at: str


class Thread(_Out):
    conversation_id: str
    channel: str
    status: str
    turns: list[ThreadTurn]


class AccountChange(_Out):
    change: str
    action: str
    who: str | None
    who_kind: str | None
    when: str
    before: dict[str, Any]
    after: dict[str, Any]


class CaseDetail(CaseSummary):
    packet: dict[str, Any]
    resolution_note: str | None
    human_actions: list[dict[str, Any]]
    conversation: Thread | None
    draft_reply: str
    approvals: list[ApprovalView]
    account_history: list[AccountChange]


class ActResult(_Out):
    kind: str
    note: str
    decision: str
    record: ActionRecord | None


class CaseResolved(_Out):
    case_id: str
    status: Literal["resolved"]
    message_id: str
    knowledge_article_id: str | None


class ReplySent(_Out):
    status: str
    reply_id: str
    message_id: str
    conversation_id: str
    channel: str
    case_id: str
    text: str
