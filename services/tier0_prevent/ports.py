"""What Tier 0 needs from the outside world, as Protocols (real adapters in adapters/, fakes in tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from schemas.messages import DiagnosisView
from services.tier0_prevent.domain import DeclineLike
from tierline.actions import ActionContext, Actions
from tierline.billing.policy import PolicyEngine
from tierline.ledger import LedgerResult


class Diagnostics(Protocol):
    """tierline/diagnostics_client.py: HttpDiagnostics / InProcessDiagnostics."""

    async def diagnose(self, customer_id: str) -> DiagnosisView: ...


class DeclineClassifier(Protocol):
    """tierline/billing/declines.classify_decline."""

    def __call__(self, code: str | None) -> DeclineLike: ...


class BillingActions(Protocol):
    """tierline/stripe_adapter.StripeActions: the Stripe effects Tier 0 may take.

    ``retry_invoice`` raises a ``CardDeclined``-like error (an exception with a ``code``) on a decline.
    """

    async def retry_invoice(self, invoice_id: str, key: str) -> Any: ...
    async def update_card_link(self, customer_id: str, return_url: str) -> Any: ...
    async def regenerate_invoice_link(self, invoice_id: str, key: str) -> Any: ...
    async def invoice_link(self, invoice_id: str) -> Any: ...
    async def get_customer(self, customer_id: str) -> dict[str, Any]: ...
    async def invoice_decline_code(self, invoice_id: str) -> str | None: ...


class MirrorSink(Protocol):
    """tierline/billing/mirror.MirrorStore: the version-checked mirror upsert."""

    async def apply_stripe_event(self, event_type: str, obj: dict[str, Any], created: int) -> Any: ...


class Tier0Actions(Actions, Protocol):
    """tierline.actions.ActionExecutor: every Tier 0 effect, policy-checked, ledgered once, audited,
    with the actor ``system``."""

    policy: PolicyEngine

    async def record_effect(
        self,
        ctx: ActionContext,
        name: str,
        target: str | None,
        effect: Callable[[], Awaitable[dict[str, Any]]],
        *,
        details: dict[str, Any] | None = None,
    ) -> LedgerResult: ...
