"""Invoice PDFs in any script (issue 21): names and addresses outside Latin-1 are drawn as written with the
Unicode fonts shipped inside the package, and read back as the same text (pypdf extraction)."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest
from pypdf import PdfReader

from tierline.invoice_pdf import (
    FONT_DIR,
    BillingParty,
    InvoiceDetails,
    InvoiceLine,
    render_invoice_pdf,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def invoice(name: str, address: dict[str, str], line: str = "Pro plan") -> InvoiceDetails:
    return InvoiceDetails(
        invoice_id="in_u",
        number="U-1",
        status="paid",
        currency="eur",
        created=1764547200,
        period_start=None,
        period_end=None,
        customer_id="cus_U",
        bill_to=BillingParty(name, "billing@example.test", address, (("eu_vat", "PL5260250274"),)),
        lines=(InvoiceLine(line, 1, 4900),),
        subtotal_cents=4900,
        tax_cents=0,
        total_cents=4900,
        amount_paid_cents=4900,
        amount_due_cents=0,
    )


def read(pdf: bytes) -> tuple[str, set[str]]:
    reader = PdfReader(io.BytesIO(pdf))
    text = "\n".join(p.extract_text() for p in reader.pages)
    fonts = {
        str(font.get_object()["/BaseFont"]).split("+")[-1]
        for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    }
    return text, fonts


def test_given_polish_german_and_cyrillic_details_when_rendered_then_they_read_back_as_written() -> None:
    doc = invoice(
        "Zoë Łukasiewicz",
        {"line1": "ul. Żółkiewskiego 7", "postal_code": "00-950", "city": "Łódź", "country": "PL"},
        line="Тариф Pro — Straße",
    )

    text, fonts = read(render_invoice_pdf(doc))

    for words in ("Zoë Łukasiewicz", "ul. Żółkiewskiego 7", "00-950 Łódź", "Тариф Pro — Straße"):
        assert words in text
    assert fonts == {"DejaVuSansBook", "DejaVuSansBold"}  # the big CJK font only when a document needs it


def test_given_a_japanese_company_when_rendered_then_the_cjk_fallback_draws_it() -> None:
    doc = invoice("株式会社テスト", {"line1": "東京都千代田区1-1", "city": "東京", "country": "JP"})

    text, fonts = read(render_invoice_pdf(doc))

    assert "株式会社テスト" in text
    assert "東京都千代田区1-1" in text
    assert any(f.startswith("DroidSansFallback") for f in fonts), fonts


def test_given_the_package_when_built_then_the_fonts_and_their_licences_ship_as_package_data() -> None:
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]

    assert "fonts/*" in package_data["tierline"]
    assert FONT_DIR == ROOT / "tierline" / "fonts"
    shipped = {p.name for p in FONT_DIR.iterdir()}
    assert {"DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DroidSansFallback.ttf"} <= shipped
    assert {"LICENSE-DejaVu.txt", "LICENSE-DroidSansFallback.txt"} <= shipped
