"""Ports of the Tier 3 handoff: what the service needs from the outside, as Protocols."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas import Tier, derived_id
from schemas.messages import ActionRecord, EscalationOpenedPayload, EscalationOpenedV1
from schemas.vocab import EscalationReason
from tierline.billing.policy import ApprovalFacts


@dataclass(frozen=True)
class Case:
    case_id: str
    contact_id: str
    customer_id: str
    reason: str
    priority: int
    sla_due_at: datetime
    status: str
    assignee: str | None
    queue: str
    packet: dict[str, Any]
    source_message_id: str | None
    opened_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None
    resolution_note: str | None
    sla_alerted_at: datetime | None

    def cause(self) -> EscalationOpenedV1:
        """The escalation that opened the case, as the cause of what humans do on it (audit ids)."""
        payload = (
            EscalationOpenedPayload(reason=EscalationReason.ERROR, opened_by=Tier.TIER3)
            if self.reason == "dead_letter"
            else EscalationOpenedPayload.model_validate(
                {k: v for k, v in self.packet.items() if k in EscalationOpenedPayload.model_fields}
            )
        )
        return EscalationOpenedV1(
            message_id=(
                uuid.UUID(self.source_message_id)
                if self.source_message_id
                else derived_id("case", self.case_id)
            ),
            type=EscalationOpenedV1.TOPIC,
            contact_id=self.contact_id,
            customer_id=self.customer_id,
            payload=payload,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "contact_id": self.contact_id,
            "customer_id": self.customer_id,
            "reason": self.reason,
            "priority": self.priority,
            "sla_due_at": self.sla_due_at.isoformat(),
            "status": self.status,
            "assignee": self.assignee,
            "queue": self.queue,
            "opened_at": self.opened_at.isoformat(),
            "intent": self.packet.get("intent"),
            "plan": self.packet.get("plan"),
            "amount_usd": self.packet.get("amount_usd", 0.0),
        }


class HumanActionDenied(Exception):
    """The policy engine refused the human's action (even with the higher human limits)."""


class HumanActions(Protocol):
    """The policy-checked tools with a human as actor (wired to Tier 2's tools by the lead).

    Each call returns the ActionRecord of what happened (tier3, with an idempotency key derived from
    the contact, the action and the target) or raises HumanActionDenied.
    """

    async def refund(
        self, case: Case, *, agent_id: str, charge_id: str, amount_usd: float, note: str
    ) -> ActionRecord: ...

    async def retry_payment(
        self, case: Case, *, agent_id: str, invoice_id: str, note: str
    ) -> ActionRecord: ...

    async def send_update_card_link(self, case: Case, *, agent_id: str, note: str) -> ActionRecord: ...

    async def refund_approved(self, case: Case, approval: ApprovalFacts, *, note: str) -> ActionRecord:
        """The refund a lead approved: the policy sees the approval, the ledger key is the approval's
        (once per approval), the audit names the requester and the approver."""
        ...


class CaseStore(Protocol):
    async def insert(self, case: Case) -> bool: ...

    async def get(self, case_id: str) -> Case | None: ...

    async def list_queue(self, queues: list[str], statuses: list[str], limit: int = 200) -> list[Case]: ...

    async def claim(self, case_id: str, agent_id: str) -> bool: ...

    async def add_action(
        self, case_id: str, agent_id: str, kind: str, note: str, record: dict[str, Any] | None
    ) -> None: ...

    async def actions(self, case_id: str) -> list[dict[str, Any]]: ...

    async def resolve(self, case_id: str, agent_id: str, note: str) -> bool: ...
