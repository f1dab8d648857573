"""Ports of the Tier 2 agent: the tool interface it acts through, and the values it exchanges.

The agent (LLM loop or offline planner) never touches Stripe, the policy engine or the knowledge
store directly. It proposes calls on :class:`AgentTools`; the concrete implementation checks each
call against the policy engine, records it with an idempotency key and only then performs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.messages import ActionRecord, AgentRequestedPayload, Choice, IntentCandidate, Turn
from schemas.vocab import Channel, EscalationReason, Intent

RefundReason = Literal["duplicate", "requested_by_customer"]
"""Why a refund is proposed (Stripe's reasons; ``fraudulent`` is for humans only)."""

PolicyVerdict = Literal["allow", "deny", "needs_human"]

InjectionDetector = Callable[[str], object | None]
"""Returns a finding (anything truthy) when the text tries to instruct the system, else ``None``."""


class ToolResult(BaseModel):
    """What one tool call returned.

    ``ok``        the action was performed (or the read succeeded).
    ``data``      the facts the agent may use (ids, amounts, links, explanation, knowledge hits).
    ``error``     short machine-readable reason when ``ok`` is false (never secrets or card data).
    ``terminal``  this call concludes the contact: ``escalate`` always, and an effect tool that
                  resolved the customer's problem (retry succeeded, link sent, refund issued...).
    ``verdict``   the policy engine's verdict when the call was policy-checked (``None`` for reads).
    ``escalation_reason``  when the policy refused (``deny``/``needs_human``): the reason a human
                  gets the case with (``refund_over_policy``, ``policy_denied``, ``dispute``, ``fraud``).
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    terminal: bool = False
    verdict: PolicyVerdict | None = None
    escalation_reason: EscalationReason | None = None

    @property
    def policy_refused(self) -> bool:
        return self.verdict in ("deny", "needs_human")

    @classmethod
    def failure(cls, error: str, **data: Any) -> ToolResult:
        return cls(ok=False, error=error, data=data)


@runtime_checkable
class AgentTools(Protocol):
    """Everything the agent can do. One coroutine per tool; each returns a :class:`ToolResult`.

    Implementations must be scoped to one contact and one customer (they hold the customer id,
    the contact id for idempotency keys, and the policy context); arguments never name a customer.
    They should return ``ToolResult(ok=False, error=...)`` rather than raise; the dispatcher and
    the agents still turn an exception into a failed result.
    """

    async def get_billing_diagnosis(self) -> ToolResult:
        """Fresh Billing Diagnosis; ``data`` is a ``DiagnosisView`` dump (root_cause, evidence...)."""
        ...

    async def search_knowledge(self, query: str) -> ToolResult:
        """``data["hits"]``: ``[{"article_id", "title", "text", "score", "url"?}]``, best first."""
        ...

    async def retry_payment(self, invoice_id: str) -> ToolResult: ...

    async def send_update_card_link(self) -> ToolResult: ...

    async def regenerate_invoice_link(self, invoice_id: str) -> ToolResult: ...

    async def send_invoice(self, invoice_id: str | None = None) -> ToolResult: ...

    async def refund(self, charge_id: str, amount_usd: float, reason: RefundReason) -> ToolResult: ...

    async def update_billing_details(self, **fields: str) -> ToolResult: ...

    async def cancel_subscription(self, at_period_end: bool = True) -> ToolResult: ...

    async def change_plan(self, plan: str, seats: int | None = None) -> ToolResult: ...

    async def explain_charge(self, charge_id: str | None = None) -> ToolResult:
        """``data["explanation"]``: plain-language, evidence-backed explanation of the charge."""
        ...

    async def escalate(self, reason: EscalationReason, note: str) -> ToolResult: ...


# --------------------------------------------------------------------------- request / result


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentRequest(_Model):
    """One Tier 2 contact as the agent sees it. ``text`` is already redacted by the guardrails."""

    text: str
    intent: Intent | None = None
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    candidates: list[IntentCandidate] = Field(default_factory=list)
    diagnosis: dict[str, Any] | None = None
    tried: list[ActionRecord] = Field(default_factory=list)
    channel: Channel = Channel.CHAT
    handoff_reason: str = ""
    flags: list[str] = Field(default_factory=list, description="guardrail flags, e.g. 'prompt_injection'")
    language: str | None = None  # the customer's language (ISO 639-1) when the router detected it
    history: list[Turn] = Field(
        default_factory=list, description="the conversation's earlier turns, oldest first (bounded)"
    )
    answers_question: bool = Field(
        default=False, description="the message answers a question already asked: never ask a second"
    )

    @classmethod
    def from_payload(
        cls,
        payload: AgentRequestedPayload,
        *,
        redacted_text: str | None = None,
        flags: list[str] | None = None,
    ) -> AgentRequest:
        return cls(
            text=payload.text if redacted_text is None else redacted_text,
            intent=payload.intent,
            confidence=payload.confidence,
            candidates=list(payload.candidates),
            diagnosis=payload.diagnosis.model_dump(mode="json") if payload.diagnosis else None,
            tried=list(payload.tried),
            channel=payload.channel,
            handoff_reason=payload.handoff_reason,
            flags=list(payload.flags if flags is None else flags),
            language=payload.language,
            history=list(payload.history),
            answers_question=payload.answers_question,
        )


class ActionTaken(_Model):
    """One tool call the agent made: the tool name, the validated arguments and what came back."""

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: ToolResult


class Escalation(_Model):
    reason: EscalationReason
    note: str
    suggested_next_step: str = ""


class Question(_Model):
    """A clarifying question the agent asks instead of acting or handing on: the contact's outcome is the
    question (an automated reply); the customer's answer comes back through the router as a new contact."""

    choices: list[Choice] = Field(min_length=2)


class AgentResult(_Model):
    """The agent's outcome. Exactly one of ``resolved`` and ``escalation`` holds (never a dead end).

    A ``question`` is a resolved outcome whose ``final_answer`` is the question's text."""

    resolved: bool
    final_answer: str
    actions: list[ActionTaken] = Field(default_factory=list)
    transcript: list[Turn] = Field(default_factory=list)
    escalation: Escalation | None = None
    steps: int = 0
    tokens: int = 0
    citations: list[str] = Field(default_factory=list, description="knowledge article ids the answer used")
    flags: list[str] = Field(default_factory=list, description="e.g. 'prompt_injection'")
    engine: Literal["llm", "planner"] = "planner"
    question: Question | None = None

    @model_validator(mode="after")
    def _exactly_one_terminal_outcome(self) -> AgentResult:
        if self.resolved == (self.escalation is not None):
            raise ValueError("an AgentResult is either resolved or escalated, never both or neither")
        if self.question is not None and (not self.resolved or self.performed()):
            raise ValueError("a question is asked instead of acting: no escalation, no effect done")
        return self

    def performed(self) -> list[ActionTaken]:
        """The calls whose effect happened (policy-allowed and ok)."""
        return [a for a in self.actions if a.result.ok]


class Agent(Protocol):
    """Both the LLM loop and the offline planner satisfy this."""

    async def run(self, request: AgentRequest, tools: AgentTools) -> AgentResult: ...
