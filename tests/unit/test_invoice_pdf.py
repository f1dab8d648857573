"""Invoice documents (issue 21): the PDF tierline renders opens in a PDF reader and carries the customer's
billing details and VAT id, lines, amounts, tax, period, number and status; the signed links to invoices
and receipts open exactly the document they name, and a session only its own customer's."""

from __future__ import annotations

import io
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pypdf import PdfReader
from starlette.applications import Starlette
from starlette.testclient import TestClient

from services.tier1_selfheal.auth import CustomerKeys, issue_session_token
from services.tier1_selfheal.portal_invoices import InvoicesDeps, invoices_routes
from tierline.invoice_pdf import (
    BillingParty,
    InvoiceDetails,
    InvoiceLine,
    document_from_stripe,
    render_invoice_pdf,
)
from tierline.stripe_adapter import (
    INVOICE_DOCUMENT_PURPOSE,
    StripeNotFound,
    receipt_url,
    sign_link_token,
)
from tierline.tokens import KeySet

pytestmark = pytest.mark.unit

SECRET = "unit-test-link-secret-with-enough-length-for-hs256"  # noqa: S105 - test-only key
SESSIONS = KeySet.single("customer", "c1", "unit-test-customer-key-with-enough-length")
KEYS = CustomerKeys(sessions=SESSIONS, link_secret=SECRET)
DEC_1 = 1796083200  # 2026-12-01
JAN_1 = 1798761600  # 2027-01-01


def pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def stripe_invoice(invoice_id: str, customer_id: str, **extra: Any) -> dict[str, Any]:
    """An invoice as the emulator returns it (localstripe 1.15: ``tax`` and ``total_tax_amounts``)."""
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer_id,
        "customer_email": "fallback@example.test",
        "status": "paid",
        "currency": "eur",
        "created": DEC_1 + 3600,
        "metadata": {"tl_created": str(DEC_1)},
        "number": None,
        "period_start": JAN_1,  # the emulator's invoice-level period: the subscription's current one
        "period_end": JAN_1 + 31 * 86400,
        "lines": {
            "data": [
                {
                    "amount": 9900,
                    "currency": "eur",
                    "description": "Tierline Business",
                    "quantity": 3,
                    "period": {"start": DEC_1, "end": JAN_1},
                },
                {
                    "amount": -1000,
                    "description": "Credit",
                    "quantity": 1,
                    "period": {"start": DEC_1, "end": DEC_1},
                },
            ]
        },
        "subtotal": 8900,
        "tax": 1691,
        "total": 10591,
        "amount_due": 10591,
        "amount_paid": 10591,
        **extra,
    }


CUSTOMER = {
    "id": "cus_A",
    "name": "Acme Analytics GmbH",
    "email": "billing@acme.example",
    "address": {"line1": "Hauptstraße 5", "postal_code": "10115", "city": "Berlin", "country": "DE"},
    "tax_ids": {"data": []},
}
VAT = [{"type": "eu_vat", "value": "DE136695976"}]


# ----------------------------------------------------------------------------- the renderer
def test_given_invoice_with_billing_details_and_vat_when_rendered_then_pdf_reader_finds_them_all() -> None:
    # Given a paid invoice of a German company with a VAT id, two lines and tax
    doc = document_from_stripe(stripe_invoice("in_A1", "cus_A"), CUSTOMER, VAT)
    # When it is rendered
    data = render_invoice_pdf(doc)
    # Then it is a PDF a reader opens, and its text carries every detail the customer needs
    assert data.startswith(b"%PDF-")
    text = pdf_text(data)
    for expected in (
        "INVOICE",
        "Acme Analytics GmbH",
        "Hauptstraße 5",
        "10115 Berlin",
        "DE",
        "billing@acme.example",
        "VAT ID: DE136695976",
        "Invoice number: in_A1",  # the emulator gives no number: the id stands in
        "Status: Paid",
        "Tierline Business",
        "Credit",
        "Service period: 2026-12-01 to 2027-01-01",  # the lines' span, not the emulator's invoice period
        "Date of issue: 2026-12-01",  # the world's backdated creation
        "EUR 89.00",  # subtotal
        "EUR 16.91",  # tax
        "EUR 105.91",  # total
        "-EUR 10.00",  # the credit line
    ):
        assert expected in text, f"{expected!r} not in the PDF text:\n{text}"


def test_given_open_invoice_with_stripe_number_when_rendered_then_status_and_amount_due_show() -> None:
    invoice = stripe_invoice(
        "in_A2", "cus_A", status="open", number="ACME-0042", amount_paid=0, currency="usd"
    )
    text = pdf_text(render_invoice_pdf(document_from_stripe(invoice, CUSTOMER, [])))
    assert "Invoice number: ACME-0042" in text
    assert "Status: Open - payment due" in text
    assert "Amount due $105.91" in text.replace("\n", " ")
    assert "VAT" not in text  # no tax id on file, none invented


def test_given_real_stripe_tax_fields_when_mapped_then_tax_is_the_sum_of_total_taxes() -> None:
    invoice = stripe_invoice("in_A3", "cus_A", tax=None, total_taxes=[{"amount": 700}, {"amount": 91}])
    assert document_from_stripe(invoice, CUSTOMER, VAT).tax_cents == 791


def test_given_tax_ids_in_customer_object_when_none_listed_separately_then_they_are_used() -> None:
    customer = {**CUSTOMER, "tax_ids": {"data": [{"type": "gb_vat", "value": "GB980780684"}]}}
    doc = document_from_stripe(stripe_invoice("in_A4", "cus_A"), customer)
    assert doc.bill_to.tax_ids == (("gb_vat", "GB980780684"),)
    assert "VAT ID: GB980780684" in pdf_text(render_invoice_pdf(doc))


def test_given_many_lines_and_non_latin_name_when_rendered_then_pages_break_and_text_stays_readable() -> None:
    lines = tuple(InvoiceLine(f"Seat {i} for a teammate", 1, 900) for i in range(80))
    doc = InvoiceDetails(
        invoice_id="in_many",
        number="N-1",
        status="paid",
        currency="usd",
        created=DEC_1,
        period_start=None,
        period_end=None,
        customer_id="cus_B",
        bill_to=BillingParty("Łukasz Café 株式会社", None),
        lines=lines,
        subtotal_cents=72000,
        tax_cents=0,
        total_cents=72000,
        amount_paid_cents=72000,
        amount_due_cents=0,
    )
    reader = PdfReader(io.BytesIO(render_invoice_pdf(doc)))
    assert len(reader.pages) >= 2
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "Seat 79 for a teammate" in text
    assert "Łukasz Café 株式会社" in text  # drawn as written (the packaged Unicode fonts)


# ----------------------------------------------------------------------------- who opens what
class FakeStripe:
    """Two customers, one invoice and one payment each (the shapes StripeActions returns)."""

    emulated = True

    def __init__(self) -> None:
        self.invoices = {
            "in_A": stripe_invoice("in_A", "cus_A"),
            "in_B": stripe_invoice("in_B", "cus_B"),
        }
        self.customers = {"cus_A": CUSTOMER, "cus_B": {**CUSTOMER, "id": "cus_B", "name": "Bravo Ltd"}}
        self.charges = {
            "ch_A": {
                "id": "ch_A",
                "customer": "cus_A",
                "amount": 4900,
                "currency": "usd",
                "status": "succeeded",
            },
            "ch_B": {
                "id": "ch_B",
                "customer": "cus_B",
                "amount": 9900,
                "currency": "usd",
                "status": "succeeded",
            },
        }

    async def get_invoice(self, invoice_id: str) -> dict[str, Any]:
        if invoice_id not in self.invoices:
            raise StripeNotFound(invoice_id)
        return self.invoices[invoice_id]

    async def list_invoices(self, customer_id: str, limit: int = 100) -> list[dict[str, Any]]:
        return [i for i in self.invoices.values() if i["customer"] == customer_id]

    async def get_customer(self, customer_id: str) -> dict[str, Any]:
        return self.customers[customer_id]

    async def list_tax_ids(self, customer_id: str) -> list[dict[str, Any]]:
        return VAT if customer_id == "cus_A" else []

    async def get_charge(self, charge_id: str) -> dict[str, Any]:
        if charge_id not in self.charges:
            raise StripeNotFound(charge_id)
        return self.charges[charge_id]

    async def get_payment_method(self, pm_id: str) -> dict[str, Any]:
        return {}

    def stripe_documents(self, invoice: dict[str, Any]) -> tuple[str | None, str | None]:
        return None, None


@pytest.fixture
def client() -> TestClient:
    deps = InvoicesDeps(pool=None, broker=None, requests=None, secret=KEYS, stripe=FakeStripe())  # type: ignore[arg-type]
    return TestClient(Starlette(routes=invoices_routes(lambda: deps)))


def link(purpose: str, subject: str, ttl: int = 600) -> str:
    return sign_link_token(SECRET, purpose=purpose, subject=subject, expires_at=int(time.time()) + ttl)


def session(customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(SESSIONS, customer_id, 600)}"}


def test_given_invoice_link_when_followed_then_pdf_and_page_of_that_invoice_open(client: TestClient) -> None:
    token = link(INVOICE_DOCUMENT_PURPOSE, "in_A")
    pdf = client.get(f"/invoices/in_A.pdf?token={token}")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert "DE136695976" in pdf_text(pdf.content)
    page = client.get(f"/invoices/in_A?token={token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Acme Analytics GmbH" in page.text
    assert f"/invoices/in_A.pdf?token={token}" in page.text


@pytest.mark.parametrize("path", ["/invoices/in_B.pdf", "/invoices/in_B"])
def test_given_link_for_one_invoice_when_used_on_another_then_403(client: TestClient, path: str) -> None:
    for purpose in (INVOICE_DOCUMENT_PURPOSE, "pay_invoice"):
        assert client.get(f"{path}?token={link(purpose, 'in_A')}").status_code == 403


@pytest.mark.parametrize(
    "path", ["/invoices/in_B.pdf", "/invoices/in_B", "/v1/portal/invoices/in_B", "/receipts/ch_B"]
)
def test_given_session_of_customer_a_when_opening_b_documents_then_403(client: TestClient, path: str) -> None:
    assert client.get(path, headers=session("cus_A")).status_code == 403
    assert client.get(path, headers=session("cus_B")).status_code == 200


def test_given_session_when_resending_another_customers_invoice_then_403(client: TestClient) -> None:
    r = client.post(
        "/v1/portal/invoices/in_B/resend", headers=session("cus_A"), json={"request_id": "rq-12345678"}
    )
    assert r.status_code == 403


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not-a-jwt",
        link(INVOICE_DOCUMENT_PURPOSE, "in_A", ttl=-30),  # expired
        link("update_card", "cus_A"),  # a link for another door
        link("receipt", "in_A"),  # a receipt link is not an invoice link
        sign_link_token(
            "another-secret-another-secret-another-secret",
            purpose=INVOICE_DOCUMENT_PURPOSE,
            subject="in_A",
            expires_at=int(time.time()) + 600,
        ),  # fmt: skip
    ],
)
def test_given_no_or_bad_token_when_opening_invoice_then_401(client: TestClient, token: str | None) -> None:
    suffix = f"?token={token}" if token else ""
    assert client.get(f"/invoices/in_A.pdf{suffix}").status_code == 401
    assert client.get(f"/invoices/in_A{suffix}").status_code == 401


def test_given_emailed_receipt_link_when_followed_then_that_payment_only(client: TestClient) -> None:
    url = receipt_url("http://127.0.0.1:8101", SECRET, "ch_A")
    token = parse_qs(urlsplit(url).query)["token"][0]
    assert urlsplit(url).path == "/receipts/ch_A"
    page = client.get(f"/receipts/ch_A?token={token}")
    assert page.status_code == 200
    assert "$49.00" in page.text
    assert "Acme Analytics GmbH" in page.text
    assert client.get(f"/receipts/ch_B?token={token}").status_code == 403
    assert client.get(f"/receipts/ch_A?token={link(INVOICE_DOCUMENT_PURPOSE, 'ch_A')}").status_code == 401


def test_given_session_when_listing_then_only_own_invoices_with_document_links(client: TestClient) -> None:
    r = client.get("/v1/portal/invoices", headers=session("cus_A"))
    assert r.status_code == 200
    [invoice] = r.json()["invoices"]
    assert invoice["invoice_id"] == "in_A"
    assert (invoice["pdf_url"], invoice["hosted_url"]) == ("/invoices/in_A.pdf", "/invoices/in_A")
    assert (invoice["total"], invoice["tax"], invoice["status"]) == (105.91, 16.91, "paid")
    assert invoice["period"] == "2026-12-01 to 2027-01-01"
    assert client.get("/v1/portal/invoices").status_code == 401


# ----------------------------------------------------------------------------- the executor's ownership check
class MirrorPool:
    """The mirror's ``stripe_invoices`` owner lookup (empty: nothing mirrored yet)."""

    def __init__(self, owners: dict[str, str]) -> None:
        self.owners = owners

    async def fetchval(self, sql: str, invoice_id: str) -> str | None:
        assert "FROM stripe_invoices" in sql
        return self.owners.get(invoice_id)


@pytest.mark.parametrize(
    ("mirrored", "live", "invoice_id", "owned"),
    [
        ({}, True, "in_A", True),  # listed from Stripe, not mirrored yet: Stripe's record decides
        ({}, True, "in_B", False),  # another customer's, per Stripe
        ({}, True, "in_unknown", False),  # Stripe does not know it
        ({}, False, "in_A", False),  # without ``live`` only the mirror counts (retries keep to it)
        ({"in_A": "cus_A"}, False, "in_A", True),
        ({"in_A": "cus_B"}, True, "in_A", False),  # the mirror's owner stands when it has one
    ],
)
async def test_given_invoice_not_in_mirror_when_owner_checked_live_then_stripe_decides(
    mirrored: dict[str, str], live: bool, invoice_id: str, owned: bool
) -> None:
    from tierline.actions import ActionExecutor

    executor = ActionExecutor.__new__(ActionExecutor)  # the check reads only the pool and Stripe
    executor.pool = MirrorPool(mirrored)  # type: ignore[assignment]
    executor.stripe = FakeStripe()
    assert await executor._owns_invoice("cus_A", invoice_id, live=live) is owned
