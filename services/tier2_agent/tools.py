"""The agent's tools: one strict argument model per tool, their OpenAI schema, and a dispatcher.

The models are the single source of truth: the ``tools=[...]`` JSON schema the LLM sees is
generated from them, and every call the LLM (or the planner) proposes is validated by them before
it reaches :class:`~services.tier2_agent.ports.AgentTools`. ``dispatch`` never raises: an unknown
tool, malformed JSON, invalid arguments or a tool that raised all come back as a failed
:class:`ToolResult` whose ``error`` the model can read and correct.
"""

from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.messages import Choice, Turn
from schemas.vocab import Action, EscalationReason
from services.tier2_agent.ports import (
    ActionTaken,
    AgentResult,
    AgentTools,
    Escalation,
    Question,
    RefundReason,
    ToolResult,
)
from tierline.billing.asks import ChargeRef, ceiling_refusal, cents, parse_ask, resolve_refund

log = structlog.get_logger(__name__)

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]{2,254}$"
MAX_REFUND_USD = 100_000.0
PlanName = Literal["starter", "pro", "business", "enterprise"]


class ToolArgs(BaseModel):
    """Base of every tool's arguments: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, str_strip_whitespace=True)


class GetBillingDiagnosisArgs(ToolArgs):
    """Fetch the customer's current Billing Diagnosis (payment/invoice state, plan, usage, evidence)."""


class SearchKnowledgeArgs(ToolArgs):
    """Search the billing knowledge base; answer only from the returned articles and cite their ids."""

    query: str = Field(min_length=2, max_length=500, description="what to look up, in plain words")


class RetryPaymentArgs(ToolArgs):
    """Retry paying an open invoice with the card on file (soft declines only; the policy checks)."""

    invoice_id: str = Field(pattern=_ID_PATTERN, description="invoice id from the diagnosis evidence")


class SendUpdateCardLinkArgs(ToolArgs):
    """Email the customer a secure link to update their card (hard declines, expired/expiring cards)."""


class RegenerateInvoiceLinkArgs(ToolArgs):
    """Create a fresh hosted payment link for an open invoice whose link expired, and send it."""

    invoice_id: str = Field(pattern=_ID_PATTERN, description="invoice id from the diagnosis evidence")


class SendInvoiceArgs(ToolArgs):
    """Email an invoice / receipt. Without invoice_id the latest invoice is sent. When the customer names a
    period (a month, a quarter, "last month"), send each invoice of that period, one call each: the
    evidence charges' invoice_id (a charge id for a payment without an invoice); none in that period: say
    so and list the ones there are, never send another."""

    invoice_id: str | None = Field(default=None, pattern=_ID_PATTERN)


class RefundArgs(ToolArgs):
    """Propose a refund of a charge from the diagnosis evidence. The customer's words are a ceiling: when
    they name an amount, a fraction or a charge, refund exactly that (never more, never a smaller amount
    instead, never another charge); otherwise the charge's refundable amount. A credit, coupon, downgrade,
    multi-month refund or another person's account is not a refund: escalate. The policy engine decides."""

    charge_id: str = Field(pattern=_ID_PATTERN, description="charge id from the diagnosis evidence")
    amount_usd: float = Field(gt=0, le=MAX_REFUND_USD, allow_inf_nan=False, description="USD, 2 decimals")
    reason: RefundReason

    @field_validator("amount_usd")
    @classmethod
    def _whole_cents(cls, value: float) -> float:
        cents = round(value * 100)
        if abs(cents - value * 100) > 1e-6:
            raise ValueError("amount_usd must have at most 2 decimals")
        return cents / 100


class UpdateBillingDetailsArgs(ToolArgs):
    """Update billing contact details. Pass only the fields the customer asked to change."""

    billing_email: str | None = Field(
        default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
    )
    company_name: str | None = Field(default=None, min_length=1, max_length=200)
    address_line1: str | None = Field(default=None, min_length=1, max_length=200)
    address_line2: str | None = Field(default=None, min_length=1, max_length=200)
    city: str | None = Field(default=None, min_length=1, max_length=100)
    postal_code: str | None = Field(default=None, min_length=1, max_length=20)
    state: str | None = Field(default=None, min_length=1, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    tax_id: str | None = Field(
        default=None,
        pattern=r"^(?:[a-z]{2}_[a-z]{2,4}:)?[A-Za-z0-9\-\. ]{4,30}$",
        description="e.g. DE136695976",
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> UpdateBillingDetailsArgs:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one field to update")
        return self


class CancelSubscriptionArgs(ToolArgs):
    """Cancel the subscription, by default at the end of the paid period."""

    at_period_end: bool = True


class ChangePlanArgs(ToolArgs):
    """Change plan and/or seat count (the customer's explicit request only)."""

    plan: PlanName
    seats: int | None = Field(default=None, ge=1, le=10_000)


class ExplainChargeArgs(ToolArgs):
    """Get an evidence-backed, plain-language explanation of a charge (latest if no id)."""

    charge_id: str | None = Field(default=None, pattern=_ID_PATTERN)


class ProductActionArgs(ToolArgs):
    """Run one action in the SaaS product itself (teammates, API keys), as the product connector describes
    it: invite_member, remove_member, change_member_role, transfer_ownership (email, role), create_api_key
    (name, scopes), rotate_api_key, revoke_api_key (key: its last four characters). Name an email address
    as [EMAIL] (the first in the customer's message) or [EMAIL:2]; never write an address yourself."""

    action: str = Field(pattern=r"^[a-z][a-z0-9_]{2,60}$")
    params: dict[str, Any] = Field(default_factory=dict)


class EscalateArgs(ToolArgs):
    """Hand the contact to a human with a reason and a short note for them. Ends the conversation."""

    reason: EscalationReason
    note: str = Field(min_length=1, max_length=2000, description="what a human needs to know next")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    args_model: type[ToolArgs]
    action: Action | None  # the vocabulary action this tool records as (None: read-only lookup)
    financial: bool = False


TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("get_billing_diagnosis", GetBillingDiagnosisArgs, None),
        ToolSpec("search_knowledge", SearchKnowledgeArgs, Action.ANSWER_FROM_KNOWLEDGE),
        ToolSpec("retry_payment", RetryPaymentArgs, Action.RETRY_PAYMENT, financial=True),
        ToolSpec("send_update_card_link", SendUpdateCardLinkArgs, Action.SEND_UPDATE_CARD_LINK),
        ToolSpec("regenerate_invoice_link", RegenerateInvoiceLinkArgs, Action.REGENERATE_INVOICE_LINK),
        ToolSpec("send_invoice", SendInvoiceArgs, Action.SEND_INVOICE),
        ToolSpec("refund", RefundArgs, Action.REFUND, financial=True),
        ToolSpec("update_billing_details", UpdateBillingDetailsArgs, Action.UPDATE_BILLING_DETAILS),
        ToolSpec("cancel_subscription", CancelSubscriptionArgs, Action.CANCEL_SUBSCRIPTION, financial=True),
        ToolSpec("change_plan", ChangePlanArgs, Action.CHANGE_PLAN, financial=True),
        ToolSpec("explain_charge", ExplainChargeArgs, Action.EXPLAIN_CHARGE),
        ToolSpec("product_action", ProductActionArgs, Action.PRODUCT_ACTION),
        ToolSpec("escalate", EscalateArgs, Action.ESCALATE),
    )
}


# --------------------------------------------------------------------------- OpenAI schema


def _clean_schema(node: Any, defs: dict[str, Any], *, is_properties: bool = False) -> Any:
    """Inline ``$ref``s and drop pydantic's ``title``s: plain JSON Schema every endpoint accepts."""
    if isinstance(node, list):
        return [_clean_schema(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _clean_schema(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$defs" or (key == "title" and not is_properties):
            continue
        out[key] = _clean_schema(value, defs, is_properties=(key == "properties" and not is_properties))
    return out


def parameters_schema(model: type[ToolArgs]) -> dict[str, Any]:
    raw = model.model_json_schema()
    schema: dict[str, Any] = _clean_schema(raw, deepcopy(raw.get("$defs", {})))
    schema.pop("description", None)  # it is the function's description
    schema.setdefault("properties", {})
    schema["additionalProperties"] = False
    return schema


def openai_tools() -> list[dict[str, Any]]:
    """The ``tools=[...]`` argument for Chat Completions, generated from the argument models."""
    return [
        {
            "type": "function",
            "function": {
                "name": spec.name,
                "description": " ".join((spec.args_model.__doc__ or spec.name).split()),
                "parameters": parameters_schema(spec.args_model),
            },
        }
        for spec in TOOL_SPECS.values()
    ]


# --------------------------------------------------------------------------- parse + dispatch


class ToolCallInvalid(Exception):
    """A proposed tool call that cannot be executed: unknown tool, bad JSON or bad arguments."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True, slots=True)
class ParsedCall:
    name: str
    args: ToolArgs

    def args_dict(self) -> dict[str, Any]:
        return self.args.model_dump(mode="json", exclude_none=True)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid_arguments: " + "; ".join(parts)


def parse_call(name: str, arguments_json: str | None) -> ParsedCall:
    """Validate one proposed call. Raises :class:`ToolCallInvalid` with a message for the model."""
    spec = TOOL_SPECS.get(name)
    if spec is None:
        raise ToolCallInvalid(f"unknown_tool: {name!r}; available: {', '.join(TOOL_SPECS)}")
    text = (arguments_json or "").strip() or "{}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallInvalid(f"invalid_json: {exc.msg} at position {exc.pos}; send a JSON object") from None
    if not isinstance(raw, dict):
        raise ToolCallInvalid("invalid_json: arguments must be a JSON object")
    try:
        args = spec.args_model.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        raise ToolCallInvalid(_validation_message(exc)) from None
    return ParsedCall(name=name, args=args)


async def invoke(tools: AgentTools, call: ParsedCall) -> ToolResult:
    """Run a validated call on the tools. Exceptions become a failed result (never raised)."""
    kwargs = call.args.model_dump(exclude_none=True)
    try:
        result = await getattr(tools, call.name)(**kwargs)
    except Exception as exc:  # a tool must never crash the agent: it becomes a failed result
        log.warning("tier2.tool.raised", tool=call.name, error_type=type(exc).__name__)
        return ToolResult.failure(f"tool_exception: {type(exc).__name__}")
    if not isinstance(result, ToolResult):
        log.warning("tier2.tool.bad_return", tool=call.name, returned=type(result).__name__)
        return ToolResult.failure("tool_error: tool returned no ToolResult")
    return result


def _created_at(raw: Any) -> datetime | None:
    try:
        created = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def evidence_charges(evidence: dict[str, Any]) -> list[ChargeRef]:
    """Settled charge records of a diagnosis' evidence, newest first, as the billing core reads them."""
    refs: list[ChargeRef] = []
    for raw in evidence.get("charges") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        if raw.get("status") not in (None, "succeeded", "paid"):
            continue
        try:
            amount = cents(str(raw.get("amount_usd") or 0))
            refunded = cents(str(raw.get("refunded_usd") or 0))
        except ArithmeticError:
            continue
        created = _created_at(raw["created_at"]) if raw.get("created_at") else None
        refs.append(ChargeRef(raw["id"], amount, max(amount - refunded, cents(0)), created))
    if all(r.created_at is not None for r in refs):  # else: the evidence's own order (newest first)
        refs.sort(key=lambda r: r.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return refs


async def refund_ceiling(tools: AgentTools, text: str, args: RefundArgs) -> ToolResult | None:
    """A refund the customer's words do not allow (more than asked, a smaller amount instead, another
    charge, or a request that is no refund at all), refused before it reaches the tools; else ``None``."""
    diagnosis = await tools.get_billing_diagnosis()
    evidence = diagnosis.data.get("evidence") if diagnosis.ok else None
    charges = evidence_charges(evidence if isinstance(evidence, dict) else {})
    plan = resolve_refund(parse_ask(text), charges, datetime.now(UTC), default_charge_id=args.charge_id)
    refused = ceiling_refusal(plan, args.charge_id, args.amount_usd)
    if refused is None:
        return None
    log.info("tier2.refund.beyond_ask", reason=refused.reason.value, charge_id=args.charge_id)
    return ToolResult(
        ok=False,
        error=f"refund_not_asked: {refused.detail}",
        verdict="needs_human" if refused.reason is EscalationReason.REFUND_OVER_POLICY else "deny",
        escalation_reason=refused.reason,
    )


async def dispatch(tools: AgentTools, name: str, arguments_json: str) -> ToolResult:
    """Validate and run one call by name with JSON arguments, as an LLM proposes it. Never raises."""
    try:
        call = parse_call(name, arguments_json)
    except ToolCallInvalid as exc:
        return ToolResult.failure(exc.error)
    return await invoke(tools, call)


# --------------------------------------------------------------------------- outcome helpers


def performed_actions(result: AgentResult) -> list[Action]:
    """The vocabulary actions that actually happened (for outcomes and scenario reports).

    Reads are not actions; ``search_knowledge`` counts as ``answer_from_knowledge`` only when the
    final answer cited an article; refused or failed calls are not counted.
    """
    actions: list[Action] = []
    for taken in result.performed():
        spec = TOOL_SPECS.get(taken.tool)
        if spec is None or spec.action is None:
            continue
        if spec.action is Action.ANSWER_FROM_KNOWLEDGE and not result.citations:
            continue
        if spec.action not in actions:
            actions.append(spec.action)
    return actions


def refunded_usd(result: AgentResult) -> float:
    """Total of the refunds that were executed (ok results only)."""
    total = sum(float(a.args.get("amount_usd", 0.0)) for a in result.performed() if a.tool == "refund")
    return round(total, 2)


# --------------------------------------------------------------------------- run recording


_HANDOFF_MESSAGE: dict[EscalationReason, str] = {
    EscalationReason.CUSTOMER_ASKED: "Of course. I've passed your conversation to our billing team; "
    "they can see everything so far and will reply here.",
    EscalationReason.OUT_OF_SCOPE: "That isn't something billing support can help with, so I've passed your "
    "message to our general support team.",
    EscalationReason.FRAUD: "Thank you for telling us. I've sent this to our billing security team at once; "
    "a person will contact you shortly. Please don't share card numbers in this chat.",
}
_DEFAULT_HANDOFF = (
    "I've passed your request to a member of our billing team with the details of your account and what "
    "we've checked so far; they will reply here."
)

_NEXT_STEP: dict[EscalationReason, str] = {
    EscalationReason.CUSTOMER_ASKED: "Reply to the customer; they asked for a person.",
    EscalationReason.FRAUD: "Treat as possible fraud: verify identity, block the card, no retry or refund.",
    EscalationReason.DISPUTE: "A dispute is open: handle through the dispute process, no financial action.",
    EscalationReason.REFUND_OVER_POLICY: "Review the proposed refund against policy and approve or decline.",
    EscalationReason.POLICY_DENIED: "Review the action the policy refused and decide manually.",
    EscalationReason.LOW_CONFIDENCE: "Read the message and the diagnosis; the agent could not act safely.",
    EscalationReason.ERROR: "The automated agent failed; retry the diagnosis and answer the customer.",
    EscalationReason.OUT_OF_SCOPE: "Route to general support; not a billing question.",
    EscalationReason.MONEY_PAUSED: (
        "Automatic money actions are paused by operators: decide the refund or retry yourself."
    ),
}


def handoff_message(reason: EscalationReason) -> str:
    return _HANDOFF_MESSAGE.get(reason, _DEFAULT_HANDOFF)


def default_refusal_reason(tool: str, result: ToolResult) -> EscalationReason:
    """The escalation reason for a policy refusal, when the tools did not name one."""
    if result.escalation_reason is not None:
        return result.escalation_reason
    if tool == "refund" and result.verdict == "needs_human":
        return EscalationReason.REFUND_OVER_POLICY
    return EscalationReason.POLICY_DENIED


def _brief(value: Any, limit: int = 600) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunRecorder:
    """Collects the calls, the transcript and the verdict of one agent run, and builds its result.

    Shared by the LLM loop and the offline planner so both produce the same shape of outcome, and
    every escalation, whoever decides it, goes through ``AgentTools.escalate`` exactly once.
    """

    def __init__(self, request_text: str, engine: Literal["llm", "planner"]) -> None:
        self.engine = engine
        self.request_text = request_text
        self.actions: list[ActionTaken] = []
        self.transcript: list[Turn] = [Turn(role="customer", text=request_text)]
        self.citations: list[str] = []
        self.flags: list[str] = []
        self.steps = 0
        self.tokens = 0

    def say(self, role: Literal["assistant", "tool", "system"], text: str) -> None:
        self.transcript.append(Turn(role=role, text=text))

    def record(self, tool: str, args: dict[str, Any], result: ToolResult) -> None:
        self.actions.append(ActionTaken(tool=tool, args=args, result=result))
        self.say("assistant", f"call {tool}({_brief(args, 300)})")
        status = "ok" if result.ok else f"failed: {result.error or result.verdict or 'unknown'}"
        self.say("tool", f"{tool} {status} {_brief(result.data, 400) if result.data else ''}".rstrip())

    def flag(self, name: str) -> None:
        if name not in self.flags:
            self.flags.append(name)

    async def invoke(self, tools: AgentTools, call: ParsedCall) -> ToolResult:
        """Run a validated call; a refund beyond what the customer's words ask is refused first."""
        if isinstance(call.args, RefundArgs):
            refused = await refund_ceiling(tools, self.request_text, call.args)
            if refused is not None:
                return refused
        return await invoke(tools, call)

    def cite(self, article_id: str) -> None:
        if article_id and article_id not in self.citations:
            self.citations.append(article_id)

    async def call(self, tools: AgentTools, name: str, **kwargs: Any) -> ToolResult:
        """Validate (same strict models the LLM faces), run and record one call. Never raises."""
        try:
            call = parse_call(name, json.dumps(kwargs, default=str))
        except ToolCallInvalid as exc:
            result = ToolResult.failure(exc.error)
            self.record(name, kwargs, result)
            return result
        result = await invoke(tools, call)
        if self.engine == "planner":
            self.steps += 1
        self.record(name, call.args_dict(), result)
        return result

    def resolved(self, final_answer: str) -> AgentResult:
        self.say("assistant", final_answer)
        return self._result(resolved=True, final_answer=final_answer, escalation=None)

    def ask(self, text: str, choices: list[Choice]) -> AgentResult:
        """Ask the customer one clarifying question (with choices) instead of acting on an unsure reading."""
        self.say("assistant", text)
        log.info("tier2.agent.asked", engine=self.engine, choices=[c.value for c in choices])
        return self._result(
            resolved=True, final_answer=text, escalation=None, question=Question(choices=choices)
        )

    async def escalate(
        self,
        tools: AgentTools,
        reason: EscalationReason,
        note: str,
        *,
        already_called: ToolResult | None = None,
    ) -> AgentResult:
        """Hand the contact to a human: call ``tools.escalate`` (unless the model just did)."""
        note = _brief(note, 2000) or reason.value
        if already_called is None:
            result = await self.call(tools, "escalate", reason=reason.value, note=note)
        else:
            result = already_called
        if not result.ok:
            self.flag("escalate_tool_failed")
            log.error("tier2.escalate.tool_failed", reason=reason.value, error=result.error)
        log.info("tier2.agent.escalated", engine=self.engine, reason=reason.value, steps=self.steps)
        answer = handoff_message(reason)
        self.say("assistant", answer)
        escalation = Escalation(reason=reason, note=note, suggested_next_step=_NEXT_STEP.get(reason, ""))
        return self._result(resolved=False, final_answer=answer, escalation=escalation)

    def _result(
        self,
        *,
        resolved: bool,
        final_answer: str,
        escalation: Escalation | None,
        question: Question | None = None,
    ) -> AgentResult:
        return AgentResult(
            resolved=resolved,
            final_answer=final_answer,
            actions=list(self.actions),
            transcript=list(self.transcript),
            escalation=escalation,
            steps=self.steps,
            tokens=self.tokens,
            citations=list(self.citations),
            flags=list(self.flags),
            engine=self.engine,
            question=question,
        )
