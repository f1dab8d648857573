"""The concrete AgentTools: each tool is the shared policy-checked, ledgered action (actor ``ai``)."""

from __future__ import annotations

from typing import Any

from schemas import Action, EscalationReason
from services.tier2_agent.ports import ToolResult
from services.tier2_agent.product_tools import fill_email_slots
from tierline.actions import ActionContext, ActionOutcome, Actions

#: Effects that resolve the contact when they succeed.
RESOLVING = {
    Action.RETRY_PAYMENT,
    Action.SEND_UPDATE_CARD_LINK,
    Action.REGENERATE_INVOICE_LINK,
    Action.SEND_INVOICE,
    Action.REFUND,
    Action.UPDATE_BILLING_DETAILS,
    Action.CANCEL_SUBSCRIPTION,
    Action.CHANGE_PLAN,
    Action.PRODUCT_ACTION,
}


def to_tool_result(outcome: ActionOutcome) -> ToolResult:
    verdict = None
    if outcome.policy is not None:
        verdict = outcome.policy.verdict
    if outcome.status == "needs_human":
        verdict = "needs_human"
    elif outcome.status == "denied":
        verdict = "deny"
    data = dict(outcome.data)
    data.setdefault("customer_message", outcome.detail)
    data["status"] = outcome.status
    if outcome.amount_usd:
        data["amount_usd"] = outcome.amount_usd
    return ToolResult(
        ok=outcome.ok,
        data=data,
        error=None if outcome.ok else (outcome.detail or outcome.status),
        terminal=outcome.ok and outcome.action in RESOLVING,
        verdict=verdict,  # type: ignore[arg-type]
        escalation_reason=outcome.escalation_reason,
    )


class ExecutorTools:
    """AgentTools for one contact and one customer: arguments never name a customer."""

    def __init__(self, actions: Actions, ctx: ActionContext, diagnostics: Any, knowledge: Any | None) -> None:
        self.actions = actions
        self.ctx = ctx
        self.diagnostics = diagnostics
        self.knowledge = knowledge
        self.escalations: list[tuple[EscalationReason, str]] = []

    async def get_billing_diagnosis(self) -> ToolResult:
        try:
            reader = getattr(self.actions, "diagnosis", None)
            diagnosis = (
                await reader(self.ctx)
                if reader is not None
                else await self.diagnostics.diagnose(self.ctx.customer_id)
            )
        except LookupError as exc:
            return ToolResult.failure(f"customer not found: {exc}")
        return ToolResult(ok=True, data=diagnosis.model_dump(mode="json"))

    async def search_knowledge(self, query: str) -> ToolResult:
        if self.knowledge is None:
            return ToolResult.failure("knowledge store unavailable")
        passages = await self.knowledge.asearch(query, limit=4)
        hits = [
            {"article_id": p.article_id, "title": p.title, "text": p.text, "score": round(p.score, 4)}
            for p in passages
        ]
        return ToolResult(ok=True, data={"hits": hits})

    async def retry_payment(self, invoice_id: str) -> ToolResult:
        return to_tool_result(await self.actions.retry_payment(self.ctx, invoice_id))

    async def send_update_card_link(self) -> ToolResult:
        return to_tool_result(await self.actions.send_update_card_link(self.ctx))

    async def regenerate_invoice_link(self, invoice_id: str) -> ToolResult:
        return to_tool_result(await self.actions.regenerate_invoice_link(self.ctx, invoice_id))

    async def send_invoice(self, invoice_id: str | None = None) -> ToolResult:
        return to_tool_result(await self.actions.send_invoice(self.ctx, invoice_id))

    async def refund(self, charge_id: str, amount_usd: float, reason: str) -> ToolResult:
        return to_tool_result(await self.actions.refund(self.ctx, charge_id, amount_usd, reason))

    async def update_billing_details(self, **fields: str) -> ToolResult:
        address = {
            k: v
            for k, v in fields.items()
            if k in ("address_line1", "address_line2", "city", "postal_code", "state", "country")
        }
        address = {k.replace("address_", ""): v for k, v in address.items()}
        outcome = await self.actions.update_billing_details(
            self.ctx,
            email=fields.get("billing_email"),
            name=fields.get("company_name"),
            address=address or None,
            tax_id=fields.get("tax_id"),
        )
        return to_tool_result(outcome)

    async def cancel_subscription(self, at_period_end: bool = True) -> ToolResult:
        return to_tool_result(await self.actions.cancel_subscription(self.ctx, at_period_end))

    async def change_plan(self, plan: str, seats: int | None = None) -> ToolResult:
        return to_tool_result(await self.actions.change_plan(self.ctx, plan, seats))

    async def explain_charge(self, charge_id: str | None = None) -> ToolResult:
        outcome = await self.actions.explain_charge(self.ctx, charge_id)
        result = to_tool_result(outcome)
        return result.model_copy(update={"terminal": False})

    async def product_action(self, action: str, params: dict[str, Any]) -> ToolResult:
        """A product connector action; ``[EMAIL]`` slots are filled from the customer's own message."""
        original = str(getattr(self.ctx.cause.payload, "text", "") or "")
        filled = fill_email_slots(params, original)
        return to_tool_result(await self.actions.product_action(self.ctx, action, filled))

    async def escalate(self, reason: EscalationReason, note: str) -> ToolResult:
        self.escalations.append((reason, note))
        return ToolResult(ok=True, data={"reason": reason.value, "note": note}, terminal=True)
