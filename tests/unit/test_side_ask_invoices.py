"""An invoice asked on the side of another ask (issue 20): "a refund, and the March invoice" sends the
March invoice, not the latest; no period named sends the latest; a period with none on record sends none."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tierline.billing.asks import side_ask_invoices

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
EVIDENCE: dict[str, Any] = {
    "charges": [
        {"id": "ch_nov", "invoice_id": "in_nov", "created_at": "2026-11-05T10:00:00Z", "amount_usd": 49},
        {"id": "ch_mar", "invoice_id": "in_mar", "created_at": "2026-03-05T10:00:00Z", "amount_usd": 49},
        {"id": "ch_feb", "invoice_id": "in_feb", "created_at": "2026-02-05T10:00:00Z", "amount_usd": 49},
    ]
}


def test_given_a_refund_ask_with_the_march_invoice_on_the_side_when_read_then_the_march_invoice() -> None:
    text = "I want a refund for the duplicate charge. Also, could you send me the March invoice?"

    assert side_ask_invoices(text, EVIDENCE, NOW) == ["in_mar"]


def test_given_an_email_naming_two_months_when_read_then_both_oldest_first() -> None:
    text = "Hi,\n\nplease cancel the extra seats, and send the invoices for February and March.\n\nBest,\nAna"

    assert side_ask_invoices(text, EVIDENCE, NOW) == ["in_feb", "in_mar"]


def test_given_no_period_named_when_read_then_the_latest() -> None:
    assert side_ask_invoices("refund me and send the invoice", EVIDENCE, NOW) == [None]


def test_given_a_period_with_no_invoice_on_record_when_read_then_none_is_sent() -> None:
    assert side_ask_invoices("a refund please, and the invoice for July", EVIDENCE, NOW) == []
