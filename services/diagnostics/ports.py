"""What diagnostics needs from the outside world, as Protocols (adapters implement them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from schemas.messages import DiagnosisView
from services.diagnostics.domain import UsageDay
from tierline.billing.records import BillingSnapshot

# The errors of the diagnosis (CustomerNotFound, SourceUnavailable) are the API's contract, shared with
# its callers: tierline/diagnostics_client.py.


class MirrorReader(Protocol):
    async def load(self, customer_id: str) -> tuple[BillingSnapshot, MirrorFreshness]: ...


class MirrorWriter(Protocol):
    async def upsert_object(self, obj: dict[str, Any], version_ms: int) -> None: ...


class MirrorFreshness(Protocol):
    known: bool
    synced_at: datetime | None


class StripeReader(Protocol):
    async def read_customer(self, customer_id: str) -> list[dict[str, Any]]:
        """Every object Stripe holds for the customer (customer first); CustomerNotFound if none."""
        ...


class UsageReader(Protocol):
    async def recent(self, customer_id: str, now: datetime) -> tuple[UsageDay, ...]:
        """Daily usage over the last USAGE_LOOKBACK_DAYS days; SourceUnavailable if unreadable."""
        ...


class AuditSink(Protocol):
    async def diagnosed(
        self, diagnosis: DiagnosisView, *, contact_id: str | None, cause: Any | None
    ) -> None: ...
