"""Invoice documents tierline renders itself: a real PDF (fpdf2) for every invoice on the embedded stack.

Real Stripe hands out its own ``invoice_pdf``; the emulator has none, so tier 1 serves
``/invoices/{id}.pdf`` rendered here. Pure code: :func:`document_from_stripe` turns the Stripe invoice,
customer and tax ids (plain dicts, as :class:`tierline.stripe_adapter.StripeActions` reads them) into an
:class:`InvoiceDetails`, and :func:`render_invoice_pdf` writes it. The document carries the customer's
billing details (company name, address, billing email) and tax ids, the lines, subtotal, tax, total,
amount paid and due, the service period, the invoice number and its status.

Fonts ship inside the package (``tierline/fonts``) and are embedded (subset) in each PDF, so names and
addresses in any script render as written ("Zoë Łukasiewicz", "株式会社") and extract as text: DejaVu Sans
(regular and bold; Bitstream Vera licence, DejaVu changes public domain) for Latin, Greek, Cyrillic and
more, and Droid Sans Fallback (Apache 2.0) for CJK, loaded only for a document that needs it (it is large).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF

SELLER = "tierline"
FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVuSans"
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FALLBACK_FONT = "DroidSansFallback"
FALLBACK_FILE = "DroidSansFallback.ttf"
CURRENCY_SIGNS = {"usd": "$", "eur": "EUR ", "gbp": "GBP "}
STATUS_LABELS = {
    "paid": "Paid",
    "open": "Open - payment due",
    "void": "Void",
    "uncollectible": "Uncollectible",
    "draft": "Draft",
}


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    quantity: int
    amount_cents: int
    period_start: int | None = None
    period_end: int | None = None


@dataclass(frozen=True)
class BillingParty:
    """Who the invoice is made out to, as Stripe holds it (billing details form / executor)."""

    name: str | None
    email: str | None
    address: dict[str, str] = field(default_factory=dict)
    tax_ids: tuple[tuple[str, str], ...] = ()  # (type, value), e.g. ("eu_vat", "DE136695976")

    def address_lines(self) -> list[str]:
        a = self.address
        city = " ".join(x for x in (a.get("postal_code"), a.get("city")) if x)
        lines = [a.get("line1"), a.get("line2"), city, a.get("state"), a.get("country")]
        return [str(x) for x in lines if x]


@dataclass(frozen=True)
class InvoiceDetails:
    invoice_id: str
    number: str
    status: str
    currency: str
    created: int
    period_start: int | None
    period_end: int | None
    customer_id: str
    bill_to: BillingParty
    lines: tuple[InvoiceLine, ...]
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    amount_paid_cents: int
    amount_due_cents: int
    seller: str = SELLER

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status.capitalize())

    def as_json(self) -> dict[str, Any]:
        """What the portal's list and the hosted page show (amounts in major units)."""
        return {
            "invoice_id": self.invoice_id,
            "number": self.number,
            "status": self.status,
            "status_label": self.status_label,
            "currency": self.currency,
            "created": iso_day(self.created),
            "period_start": iso_day(self.period_start),
            "period_end": iso_day(self.period_end),
            "period": period_label(self.period_start, self.period_end),
            "subtotal": self.subtotal_cents / 100,
            "tax": self.tax_cents / 100,
            "total": self.total_cents / 100,
            "amount_paid": self.amount_paid_cents / 100,
            "amount_due": self.amount_due_cents / 100,
            "bill_to": {
                "name": self.bill_to.name,
                "email": self.bill_to.email,
                "address": self.bill_to.address_lines(),
                "tax_ids": [{"type": t, "value": v} for t, v in self.bill_to.tax_ids],
            },
            "lines": [
                {
                    "description": line.description,
                    "quantity": line.quantity,
                    "amount": line.amount_cents / 100,
                    "period": period_label(line.period_start, line.period_end),
                }
                for line in self.lines
            ],
        }


# ----------------------------------------------------------------------------- formatting
def iso_day(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).date().isoformat() if ts else None


def period_label(start: int | None, end: int | None) -> str:
    if not start and not end:
        return ""
    if start and end and start != end:
        return f"{iso_day(start)} to {iso_day(end)}"
    return iso_day(start or end) or ""


def money(cents: int, currency: str) -> str:
    sign = "-" if cents < 0 else ""
    prefix = CURRENCY_SIGNS.get(currency.lower(), f"{currency.upper()} ")
    return f"{sign}{prefix}{abs(cents) / 100:,.2f}"


@functools.cache
def main_font_chars() -> frozenset[int]:
    """The code points both DejaVu Sans faces draw (read once from the fonts' cmaps)."""
    from fontTools.ttLib import TTFont

    covered: frozenset[int] | None = None
    for name in FONT_FILES.values():
        font = TTFont(FONT_DIR / name, lazy=True)
        try:
            chars = frozenset(font.getBestCmap())
        finally:
            font.close()
        covered = chars if covered is None else covered & chars
    return covered or frozenset()


def needs_fallback(text: str) -> bool:
    """True when the text has a character DejaVu Sans cannot draw (CJK, for one)."""
    covered = main_font_chars()
    return any(ord(ch) not in covered for ch in text if not ch.isspace())


# ----------------------------------------------------------------------------- from Stripe objects
def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def effective_created(invoice: dict[str, Any]) -> int:
    """When the invoice was issued: the world builder's ``tl_created`` (a backdated emulator object),
    else Stripe's ``created``."""
    return _int((invoice.get("metadata") or {}).get("tl_created")) or _int(invoice.get("created"))


def _tax_cents(invoice: dict[str, Any]) -> int:
    if invoice.get("tax") is not None:
        return _int(invoice.get("tax"))
    amounts = invoice.get("total_tax_amounts") or invoice.get("total_taxes") or []
    return sum(_int(a.get("amount")) for a in amounts if isinstance(a, dict))


def document_from_stripe(
    invoice: dict[str, Any], customer: dict[str, Any], tax_ids: list[dict[str, Any]] | None = None
) -> InvoiceDetails:
    """The document of a Stripe invoice, billed to the customer as Stripe holds them now."""
    raw_lines = ((invoice.get("lines") or {}).get("data")) or []
    lines = tuple(
        InvoiceLine(
            description=str(line.get("description") or (line.get("plan") or {}).get("name") or "Item"),
            quantity=_int(line.get("quantity")) or 1,
            amount_cents=_int(line.get("amount")),
            period_start=_int((line.get("period") or {}).get("start")) or None,
            period_end=_int((line.get("period") or {}).get("end")) or None,
        )
        for line in raw_lines
        if isinstance(line, dict)
    )
    # the service period: the subscription lines' span (Stripe's invoice-level period is the one before)
    spans = [(ln.period_start, ln.period_end) for ln in lines if ln.period_start and ln.period_end]
    spans = [s for s in spans if s[0] != s[1]] or spans
    start = min(s[0] for s in spans) if spans else _int(invoice.get("period_start")) or None
    end = max(s[1] for s in spans) if spans else _int(invoice.get("period_end")) or None
    subtotal = _int(invoice.get("subtotal")) if invoice.get("subtotal") is not None else None
    if subtotal is None:
        subtotal = sum(ln.amount_cents for ln in lines)
    tax = _tax_cents(invoice)
    total = _int(invoice.get("total")) if invoice.get("total") is not None else subtotal + tax
    address = {k: str(v) for k, v in (customer.get("address") or {}).items() if v}
    ids = tax_ids if tax_ids is not None else ((customer.get("tax_ids") or {}).get("data") or [])
    return InvoiceDetails(
        invoice_id=str(invoice["id"]),
        number=str(invoice.get("number") or invoice["id"]),
        status=str(invoice.get("status") or "open"),
        currency=str(invoice.get("currency") or "usd"),
        created=effective_created(invoice),
        period_start=start,
        period_end=end,
        customer_id=str(customer.get("id") or ""),
        bill_to=BillingParty(
            name=customer.get("name") or None,
            email=customer.get("email") or invoice.get("customer_email") or None,
            address=address,
            tax_ids=tuple(
                (str(t.get("type") or ""), str(t.get("value") or ""))
                for t in ids
                if isinstance(t, dict) and t.get("value")
            ),
        ),
        lines=lines,
        subtotal_cents=subtotal,
        tax_cents=tax,
        total_cents=total,
        amount_paid_cents=_int(invoice.get("amount_paid")),
        amount_due_cents=_int(invoice.get("amount_due")),
    )


# ----------------------------------------------------------------------------- the PDF
def render_invoice_pdf(doc: InvoiceDetails) -> bytes:
    """A one-or-more-page A4 PDF of the invoice."""
    pdf = FPDF(format="A4")
    for style, name in FONT_FILES.items():
        pdf.add_font(FONT, style, str(FONT_DIR / name))
    if needs_fallback(json.dumps(doc.as_json(), ensure_ascii=False) + doc.seller):
        pdf.add_font(FALLBACK_FONT, "", str(FONT_DIR / FALLBACK_FILE))
        pdf.set_fallback_fonts([FALLBACK_FONT], exact_match=False)
    pdf.set_title(f"Invoice {doc.number}")
    pdf.set_author(doc.seller)
    pdf.set_creator("tierline")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    width = pdf.epw

    def text(line: str, size: float = 10, style: str = "", h: float = 5.5) -> None:
        pdf.set_font(FONT, style, size)
        pdf.cell(width, h, line, new_x="LMARGIN", new_y="NEXT")

    pdf.set_font(FONT, "B", 20)
    pdf.cell(width / 2, 10, "INVOICE")
    pdf.set_font(FONT, "B", 12)
    pdf.cell(width / 2, 10, doc.seller, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    text(f"Invoice number: {doc.number}")
    text(f"Invoice id: {doc.invoice_id}")
    text(f"Status: {doc.status_label}", style="B")
    text(f"Date of issue: {iso_day(doc.created) or '-'}")
    if doc.period_start or doc.period_end:
        text(f"Service period: {period_label(doc.period_start, doc.period_end)}")
    pdf.ln(4)

    text("Bill to", size=11, style="B")
    party = doc.bill_to
    for line in [party.name or doc.customer_id, *party.address_lines()]:
        text(line)
    if party.email:
        text(f"Billing email: {party.email}")
    for kind, value in party.tax_ids:
        text(f"{tax_id_label(kind)}: {value}")
    pdf.ln(4)

    # lines
    cols = (width * 0.55, width * 0.1, width * 0.35)
    pdf.set_font(FONT, "B", 10)
    pdf.set_fill_color(235, 238, 242)
    for label, w, align in zip(("Description", "Qty", "Amount"), cols, ("L", "R", "R"), strict=True):
        pdf.cell(w, 7, label, border="B", align=align, fill=True)
    pdf.ln(7)
    pdf.set_font(FONT, "", 10)
    for item in doc.lines:
        period = period_label(item.period_start, item.period_end)
        desc = item.description + (f" ({period})" if period and item.period_start != item.period_end else "")
        y = pdf.get_y()
        pdf.multi_cell(cols[0], 6, desc, new_x="RIGHT", new_y="TOP")
        height = max(6.0, pdf.get_y() - y) if pdf.get_y() > y else 6.0
        pdf.set_xy(pdf.l_margin + cols[0], y)
        pdf.cell(cols[1], 6, str(item.quantity), align="R")
        pdf.cell(cols[2], 6, money(item.amount_cents, doc.currency), align="R")
        pdf.set_xy(pdf.l_margin, y + height)
    if not doc.lines:
        text("(no line items)")
    pdf.ln(3)

    def total_row(label: str, cents: int, bold: bool = False) -> None:
        pdf.set_font(FONT, "B" if bold else "", 10)
        pdf.cell(cols[0] + cols[1], 6, label, align="R")
        pdf.cell(cols[2], 6, money(cents, doc.currency), align="R", new_x="LMARGIN", new_y="NEXT")

    total_row("Subtotal", doc.subtotal_cents)
    total_row("Tax", doc.tax_cents)
    total_row("Total", doc.total_cents, bold=True)
    total_row("Amount paid", doc.amount_paid_cents)
    total_row("Amount due", doc.amount_due_cents, bold=True)
    pdf.ln(6)
    text(f"Currency: {doc.currency.upper()}", size=8)
    text(f"Customer id: {doc.customer_id}", size=8)
    return bytes(pdf.output())


TAX_ID_LABELS = {"eu_vat": "VAT ID", "gb_vat": "VAT ID", "ch_vat": "VAT ID", "no_vat": "VAT ID"}


def tax_id_label(kind: str) -> str:
    return TAX_ID_LABELS.get(kind, f"Tax ID ({kind})" if kind else "Tax ID")
