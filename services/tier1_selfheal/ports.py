"""What Tier 1 needs from outside, as Protocols (adapters implement them; unit tests use fakes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas.messages import DiagnosisView
from tierline.actions import Actions  # the shared, policy-checked billing actions port
from tierline.conversations import Conversation, StoredTurn

__all__ = [
    "Actions",
    "CardOnFile",
    "CardVault",
    "CardRejected",
    "CardSetup",
    "ChatStore",
    "Diagnostics",
    "InvoiceView",
    "RequestRecord",
    "RequestStore",
    "Tier1Error",
    "UnknownInvoice",
    "UnknownSetup",
]


class Tier1Error(Exception):
    """Base error of the Tier 1 service."""


class CardRejected(Tier1Error):
    """The card could not be saved (declined on attach, bad number or expiry)."""


class UnknownInvoice(Tier1Error, LookupError):
    """No such invoice (or it belongs to someone else)."""


class UnknownSetup(Tier1Error, LookupError):
    """No such card setup for this customer (another customer's, or never started)."""


class Diagnostics(Protocol):
    async def diagnose(self, customer_id: str) -> DiagnosisView:
        """The one Billing Diagnosis; raises a LookupError subclass for an unknown customer."""
        ...


@dataclass(frozen=True)
class CardOnFile:
    payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class CardSetup:
    """What the card page needs to let Stripe (or the emulator) collect a card: never the card itself.

    ``mode`` ``stripe``: Stripe.js Elements confirms the SetupIntent (``client_secret``) on js.stripe.com;
    ``emulator``: the page confirms it against the emulator's API (``api_base``) with the publishable key.
    """

    mode: str  # stripe | emulator
    setup_intent_id: str
    client_secret: str
    publishable_key: str
    api_base: str | None = None


@dataclass(frozen=True)
class InvoiceView:
    invoice_id: str
    customer_id: str
    status: str
    amount_due_usd: float
    currency: str


class CardVault(Protocol):
    """Letting Stripe collect a new card (a SetupIntent), and reading invoices for the pay page. Card
    numbers never pass through tierline: the browser hands them to Stripe, tierline gets a pm_ id."""

    async def start_card_setup(self, customer_id: str) -> CardSetup: ...

    async def collected_payment_method(self, customer_id: str, setup_intent_id: str) -> str:
        """The payment method a confirmed SetupIntent of this customer collected; CardRejected if it
        was not confirmed, UnknownSetup if it is not this customer's."""
        ...

    async def billing_profile(self, customer_id: str) -> dict[str, Any]:
        """The customer as Stripe holds it, with its tax ids (when the mirror has no row yet)."""
        ...

    async def open_invoices(self, customer_id: str) -> list[InvoiceView]: ...

    async def invoice(self, invoice_id: str) -> InvoiceView: ...


@dataclass(frozen=True)
class RequestRecord:
    contact_id: str
    customer_id: str
    action: str
    state: str  # received | resolved | handed_to_tier2 | escalated
    reason: str | None
    created_at: datetime
    updated_at: datetime


class RequestStore(Protocol):
    """Tier 1's own view of the requests it took (for the live status of a click)."""

    async def record(
        self, contact_id: str, customer_id: str, action: str, params: dict[str, Any]
    ) -> RequestRecord:
        """Insert once; an existing row (same contact) is returned unchanged."""
        ...

    async def set_state(self, contact_id: str, state: str, reason: str | None = None) -> None: ...

    async def get(self, contact_id: str) -> RequestRecord | None: ...


class ChatStore(Protocol):
    """The chat widget's view of conversations (``tierline.conversations`` underneath)."""

    async def get(self, conversation_id: str) -> Conversation | None: ...

    async def open(self, conversation_id: str, customer_id: str) -> Conversation:
        """Create the chat conversation on its first message; ConversationMismatch for another customer's."""
        ...

    async def turns(self, conversation_id: str, *, after_seq: int = 0) -> list[StoredTurn]: ...

    async def recent(self, customer_id: str, *, limit: int = 5) -> list[Conversation]:
        """The customer's chat conversations, most recently active first."""
        ...

    async def has_contact(self, conversation_id: str, contact_id: str) -> bool:
        """The contact belongs to the conversation (it was attached, or one of its turns names it)."""
        ...

    async def rate(
        self, conversation_id: str, contact_id: str, csat: int | None, solved: bool | None
    ) -> None:
        """Upsert the rating; a field left out keeps its earlier value."""
        ...
