"""Approvals of refunds over the agent's limit: a second person decides (pure: no I/O).

The agent holding a case asks (``pending``); a lead with the approver role, not the requester, approves
(``approved``: the refund runs once through the executor) or denies (``denied``). Each function here
returns what to do, or raises the typed error the console maps to its HTTP status.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from tierline.billing.policy import ApprovalFacts


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class ApprovalError(Exception):
    """Base of the approval errors (each maps to one HTTP status in the console)."""


class ApprovalNotFound(ApprovalError):
    pass


class ApprovalForbidden(ApprovalError):
    """Not an approver, the requester deciding their own request, or not a member of the case's queue."""


class ApprovalConflict(ApprovalError):
    """The approval was already decided the other way."""


@dataclass(frozen=True)
class Approval:
    approval_id: str
    case_id: str
    contact_id: str
    customer_id: str
    charge_id: str
    amount_usd: float
    note: str
    requested_by: str
    requested_at: datetime
    status: ApprovalStatus
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_note: str = ""
    result: dict[str, Any] | None = None

    def facts(self) -> ApprovalFacts:
        """The approval as a policy fact: only an approved one covers a refund."""
        if self.status is not ApprovalStatus.APPROVED or not self.decided_by:
            raise ApprovalConflict(f"approval {self.approval_id} is {self.status}")
        return ApprovalFacts(
            approval_id=self.approval_id,
            requested_by=f"agent:{self.requested_by}",
            approved_by=f"agent:{self.decided_by}",
            charge_id=self.charge_id,
            amount_usd=self.amount_usd,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "approval_id": self.approval_id,
            "case_id": self.case_id,
            "customer_id": self.customer_id,
            "action": "refund",
            "charge_id": self.charge_id,
            "amount_usd": self.amount_usd,
            "note": self.note,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at.isoformat(),
            "status": self.status.value,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decision_note": self.decision_note,
            "result": self.result,
        }


def new_approval_id() -> str:
    return f"apr_{uuid.uuid4().hex[:20]}"


def check_request(charge_id: str, amount_usd: float) -> tuple[str, float]:
    """A refund approval names a charge and a positive amount (in cents); the policy decides the rest."""
    charge = charge_id.strip()
    if not charge:
        raise ValueError("charge_id is required")
    amount = round(float(amount_usd), 2)
    if not amount > 0:
        raise ValueError("amount_usd must be positive")
    return charge, amount


def _check_decider(approval: Approval, agent_id: str, *, approver: bool) -> None:
    if not approver:
        raise ApprovalForbidden("deciding approvals needs the approver role")
    if agent_id == approval.requested_by:
        raise ApprovalForbidden("a second person decides: you asked for this approval")


Approve = Literal["approve", "run_again"]


def decide_approve(approval: Approval, agent_id: str, *, approver: bool) -> Approve:
    """``approve`` a pending request; ``run_again`` for one already approved (a second click, a retried
    request, a concurrent lead): the refund is asked again under the approval's key, and the ledger
    answers with the one refund. A denied request cannot be approved."""
    _check_decider(approval, agent_id, approver=approver)
    if approval.status is ApprovalStatus.PENDING:
        return "approve"
    if approval.status is ApprovalStatus.APPROVED:
        return "run_again"
    raise ApprovalConflict(f"approval {approval.approval_id} was denied by {approval.decided_by}")


def decide_deny(approval: Approval, agent_id: str, *, approver: bool) -> bool:
    """True to deny a pending request; False when it is already denied (nothing to do). An approved
    request cannot be denied any more (its refund ran)."""
    _check_decider(approval, agent_id, approver=approver)
    if approval.status is ApprovalStatus.PENDING:
        return True
    if approval.status is ApprovalStatus.DENIED:
        return False
    raise ApprovalConflict(f"approval {approval.approval_id} was approved by {approval.decided_by}")


def customer_message(approval: Approval, refunded_usd: float) -> tuple[str, str]:
    """Subject and body telling the customer about the approved refund."""
    return (
        "Your refund was approved",
        f"Good news: a refund of ${refunded_usd:.2f} for charge {approval.charge_id} was approved and is on "
        "its way. It usually reaches your card within 5-10 business days.",
    )
