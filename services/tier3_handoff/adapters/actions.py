"""Human actions on a case: the same policy-checked, ledgered tools as Tiers 1 and 2, with a human actor.

The shared executor (``tierline.actions.ActionExecutor``) applies the human limits of the policy
(``refund.human``: higher cap, lead-only plans, no refund or retry while a dispute is open), records
each effect once in the action ledger under the case's human key scope, and audits the decision and
the effect with ``tier3:agent:<id>`` as the actor.
"""

from __future__ import annotations

from schemas import Tier
from schemas.messages import ActionRecord
from services.tier3_handoff.ports import Case, HumanActionDenied
from tierline.actions import ActionContext, ActionOutcome, Actions
from tierline.billing.policy import ApprovalFacts


class PolicyCheckedHumanActions:
    """HumanActions over the shared :class:`tierline.actions.Actions` port."""

    def __init__(self, actions: Actions) -> None:
        self.actions = actions

    @staticmethod
    def _ctx(case: Case, agent_id: str, approval: ApprovalFacts | None = None) -> ActionContext:
        return ActionContext(
            contact_id=case.contact_id,
            customer_id=case.customer_id,
            tier=Tier.TIER3,
            actor="human",
            actor_id=f"agent:{agent_id}",
            cause=case.cause(),
            approval=approval,
        )

    @staticmethod
    def _record(outcome: ActionOutcome) -> ActionRecord:
        if outcome.status in ("denied", "needs_human"):
            rule = outcome.policy.rule if outcome.policy is not None else None
            raise HumanActionDenied(
                f"{outcome.action.value}: {outcome.detail or 'denied by policy'}"
                + (f" (rule {rule})" if rule else "")
            )
        return outcome.record(Tier.TIER3)

    async def refund(
        self, case: Case, *, agent_id: str, charge_id: str, amount_usd: float, note: str
    ) -> ActionRecord:
        outcome = await self.actions.refund(
            self._ctx(case, agent_id), charge_id, amount_usd, reason=note or "requested_by_customer"
        )
        return self._record(outcome)

    async def refund_approved(self, case: Case, approval: ApprovalFacts, *, note: str) -> ActionRecord:
        """Run by the approver's click; the requester is the actor, the approver is in the audit details."""
        requester = approval.requested_by.removeprefix("agent:")
        outcome = await self.actions.refund(
            self._ctx(case, requester, approval),
            approval.charge_id,
            approval.amount_usd,
            reason=note or "requested_by_customer",
        )
        return self._record(outcome)

    async def retry_payment(self, case: Case, *, agent_id: str, invoice_id: str, note: str) -> ActionRecord:
        return self._record(await self.actions.retry_payment(self._ctx(case, agent_id), invoice_id))

    async def send_update_card_link(self, case: Case, *, agent_id: str, note: str) -> ActionRecord:
        return self._record(await self.actions.send_update_card_link(self._ctx(case, agent_id)))
