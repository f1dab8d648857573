"""The default HumanActions adapter until the lead wires Tier 2's policy-checked tools.

It acts on nothing: every call returns a `skipped` record saying the tool is not wired, so the
console, the case log and the resolution message already carry the human's intent end to end.
"""

from __future__ import annotations

from schemas import Tier
from schemas.messages import ActionRecord
from schemas.vocab import Action
from services.tier3_handoff.ports import Case
from tierline.ledger import idempotency_key


class UnwiredHumanActions:
    """Seam: replace with an adapter over services.tier2_agent.tools (human actor, human limits)."""

    def _skipped(
        self, case: Case, action: Action, target: str | None, note: str, amount: float = 0.0
    ) -> ActionRecord:
        return ActionRecord(
            action=action,
            tier=Tier.TIER3,
            status="skipped",
            idempotency_key=idempotency_key(case.contact_id, action.value, target),
            detail=f"human tools not wired yet; note: {note}"[:500],
            amount_usd=amount,
            target=target,
        )

    async def refund(
        self, case: Case, *, agent_id: str, charge_id: str, amount_usd: float, note: str
    ) -> ActionRecord:
        return self._skipped(case, Action.REFUND, charge_id, note, amount_usd)

    async def retry_payment(self, case: Case, *, agent_id: str, invoice_id: str, note: str) -> ActionRecord:
        return self._skipped(case, Action.RETRY_PAYMENT, invoice_id, note)

    async def send_update_card_link(self, case: Case, *, agent_id: str, note: str) -> ActionRecord:
        return self._skipped(case, Action.SEND_UPDATE_CARD_LINK, case.customer_id, note)
