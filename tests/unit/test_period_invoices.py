"""The invoice for October (issue 20): the months a customer names, the documents of those months, and
Tier 1 / Tier 2 sending those (each of them for several months), never the latest instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas import HealthStatus, RootCause
from schemas.messages import DiagnosisView
from schemas.vocab import Intent
from services.tier1_selfheal import domain as tier1
from tests.unit.test_planner import NOW, FakeBilling, ask, run
from tierline.billing.asks import (
    BillingDocument,
    MonthsAsked,
    documents_for,
    documents_from_evidence,
    months_asked,
)

pytestmark = pytest.mark.unit

TODAY = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

MONTHS: list[tuple[str, list[tuple[int, int]], bool, int | None]] = [
    ("send me the invoice for October", [(2026, 10)], False, None),
    ("Can I get the invoice for last month's payment?", [(2026, 11)], True, None),
    ("Can I get this month's invoice?", [(2026, 12)], True, None),
    ("invoices for Q3 please", [(2026, 7), (2026, 8), (2026, 9)], False, None),
    ("third quarter 2025 invoices", [(2025, 7), (2025, 8), (2025, 9)], False, None),
    ("last quarter's invoices", [(2026, 7), (2026, 8), (2026, 9)], False, None),
    ("I need the October 2025 invoice", [(2025, 10)], False, None),
    ("the invoice from 3 October", [(2026, 10)], False, 3),
    ("the invoice dated October 3rd, 2025", [(2025, 10)], False, 3),
    ("invoice for Oct '25", [(2025, 10)], False, None),
    ("invoices for September and October", [(2026, 9), (2026, 10)], False, None),
    ("September and October 2025 invoices", [(2025, 9), (2025, 10)], False, None),
    ("invoices for November and December 2025", [(2025, 11), (2025, 12)], False, None),
    ("invoices from July to September", [(2026, 7), (2026, 8), (2026, 9)], False, None),
    ("invoices November to January", [(2025, 11), (2025, 12), (2026, 1)], False, None),
    ("send me invoice 2026-09", [(2026, 9)], False, None),
    ("invoice for 10/2026", [(2026, 10)], False, None),
    ("the May invoice", [(2026, 5)], False, None),
    ("invoice for December", [(2026, 12)], False, None),  # this month: not in the future
    ("Necesito la factura de octubre", [(2026, 10)], False, None),
    ("¿me envían la factura del mes pasado?", [(2026, 11)], True, None),
    ("Bitte die Rechnung für Oktober 2025", [(2025, 10)], False, None),
    ("Rechnung vom 3. Oktober", [(2026, 10)], False, 3),
    ("la facture du mois dernier", [(2026, 11)], True, None),
    ("pouvez-vous m'envoyer la facture de septembre", [(2026, 9)], False, None),
    ("a fatura de setembro, por favor", [(2026, 9)], False, None),
]


@pytest.mark.parametrize(("text", "months", "relative", "day"), MONTHS, ids=[m[0][:40] for m in MONTHS])
def test_given_a_period_in_words_when_read_then_those_months(
    text: str, months: list[tuple[int, int]], relative: bool, day: int | None
) -> None:
    asked = months_asked(text, TODAY)

    assert asked is not None
    assert list(asked.months) == months
    assert (asked.relative, asked.day) == (relative, day)


@pytest.mark.parametrize(
    "text",
    ["send me the invoice", "May I have my invoice?", "can you resend my latest receipt", "invoice please"],
)
def test_given_no_period_when_read_then_none(text: str) -> None:
    assert months_asked(text, TODAY) is None


def test_given_a_month_later_than_now_without_a_year_when_read_then_last_years() -> None:
    asked = months_asked("the invoice for December", TODAY.replace(month=11))

    assert asked is not None
    assert asked.months == ((2025, 12),)


# --------------------------------------------------------------------------- documents

EVIDENCE = {
    "charges": [
        {
            "id": "ch_4",
            "amount_usd": 49.0,
            "created_at": "2026-12-01T09:00:00+00:00",
            "status": "succeeded",
            "invoice_id": "in_dec",
        },
        {
            "id": "ch_3",
            "amount_usd": 49.0,
            "created_at": "2026-11-01T09:00:00+00:00",
            "status": "succeeded",
            "invoice_id": "in_nov",
        },
        {"id": "ch_x", "amount_usd": 20.0, "created_at": "2026-10-17T09:00:00+00:00", "status": "succeeded"},
        {
            "id": "ch_2",
            "amount_usd": 49.0,
            "created_at": "2026-10-03T09:00:00+00:00",
            "status": "succeeded",
            "invoice_id": "in_oct",
        },
        {
            "id": "ch_f",
            "amount_usd": 49.0,
            "created_at": "2026-09-02T09:00:00+00:00",
            "status": "failed",
            "invoice_id": "in_sep_failed_try",
        },
        {
            "id": "ch_1",
            "amount_usd": 49.0,
            "created_at": "2026-08-01T09:00:00+00:00",
            "status": "succeeded",
            "invoice_id": "in_aug",
        },
        {"id": "ch_0", "amount_usd": 49.0, "created_at": "2026-07-01T09:00:00+00:00", "status": "succeeded"},
    ],
}


def _ids(docs: tuple[BillingDocument, ...]) -> list[str]:
    return [d.id for d in docs]


def test_given_evidence_when_read_then_paid_charges_are_their_invoices_or_receipts_newest_first() -> None:
    docs = documents_from_evidence(EVIDENCE)

    assert [(d.id, d.kind) for d in docs] == [
        ("in_dec", "invoice"),
        ("in_nov", "invoice"),
        ("ch_x", "receipt"),
        ("in_oct", "invoice"),
        ("in_aug", "invoice"),
        ("ch_0", "receipt"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("send me the invoice for October", ["in_oct"]),  # the invoice, not the add-on receipt that month
        ("send me the invoices for Q3", ["ch_0", "in_aug"]),  # oldest first; September has none
        ("last month's invoice please", ["in_nov"]),
        ("the invoice from 17 October", ["ch_x"]),  # the day named picks that day's document
        ("invoice for September", []),  # only a failed payment: nothing to send
        ("invoice for October 2025", []),
    ],
)
def test_given_a_period_when_documents_are_picked_then_those_of_its_months(
    text: str, expected: list[str]
) -> None:
    asked = months_asked(text, TODAY)
    assert asked is not None

    assert _ids(documents_for(asked, documents_from_evidence(EVIDENCE), TODAY)) == expected


def test_given_last_month_loosely_when_none_that_month_then_the_latest_recent_one() -> None:
    docs = [BillingDocument("in_recent", datetime(2026, 12, 1, tzinfo=UTC))]
    loose = MonthsAsked(((2026, 11),), "last month (November 2026)", relative=True)
    strict = MonthsAsked(((2026, 11),), "November 2026")

    assert _ids(documents_for(loose, docs, TODAY)) == ["in_recent"]
    assert _ids(documents_for(strict, docs, TODAY)) == []


# --------------------------------------------------------------------------- Tier 1


def _diagnosis() -> DiagnosisView:
    return DiagnosisView(
        customer_id="cus_1",
        status=HealthStatus.GREEN,
        root_cause=RootCause.HEALTHY,
        explanation="all good",
        evidence=EVIDENCE,
    )


def test_given_a_tier1_invoice_request_naming_october_when_decided_then_octobers_invoice() -> None:
    found = tier1.period_invoices("send me the invoice for October", _diagnosis(), TODAY)

    assert found is not None
    assert _ids(found[1]) == ["in_oct"]


def test_given_a_tier1_invoice_request_naming_no_period_when_decided_then_none_the_latest_is_meant() -> None:
    assert tier1.period_invoices("send me my invoice", _diagnosis(), TODAY) is None


def test_given_a_tier1_request_for_a_month_without_invoice_when_decided_then_nothing_to_send() -> None:
    found = tier1.period_invoices("invoice for October 2025", _diagnosis(), TODAY)

    assert found is not None
    assert found[1] == ()
    assert found[0].label == "October 2025"


# --------------------------------------------------------------------------- Tier 2 (NOW: 10 March 2026)


def _world() -> FakeBilling:
    # 2 Mar, 2 Feb, 5 Jan 2026 and 5 Dec 2025; the first three have invoices
    world = FakeBilling(charges=[(49.0, 8), (49.0, 36), (49.0, 64), (49.0, 95)])
    for charge, invoice in zip(world.charges, ("in_mar", "in_feb", "in_jan"), strict=False):
        charge["invoice_id"] = invoice
    return world


async def test_given_a_request_for_februarys_invoice_when_planning_then_that_one_is_sent_not_the_latest() -> (
    None
):
    assert NOW.month == 3
    world = _world()

    result = await run(world, ask("send me the invoice for February please", Intent.INVOICE_REQUEST))

    assert result.resolved
    assert world.effects == [("send_invoice", {"invoice_id": "in_feb"})]
    assert "February 2026" in result.final_answer


async def test_given_a_quarter_when_planning_then_each_invoice_of_it_is_sent() -> None:
    world = _world()

    result = await run(world, ask("I need the invoices for Q1", Intent.INVOICE_REQUEST))

    assert result.resolved
    assert world.effects == [
        ("send_invoice", {"invoice_id": "in_jan"}),
        ("send_invoice", {"invoice_id": "in_feb"}),
        ("send_invoice", {"invoice_id": "in_mar"}),
    ]


async def test_given_a_month_without_an_invoice_when_planning_then_nothing_sent_and_the_list_offered() -> (
    None
):
    world = _world()

    result = await run(world, ask("send me the invoice for October", Intent.INVOICE_REQUEST))

    assert result.resolved  # an answer, no person
    assert world.effects == []
    assert "October 2025" in result.final_answer
    assert "in_feb" in result.final_answer
    assert "ch_003" in result.final_answer


async def test_given_no_period_when_planning_then_the_latest_invoice_as_before() -> None:
    world = _world()

    result = await run(world, ask("can you resend my invoice?", Intent.INVOICE_REQUEST))

    assert result.resolved
    assert world.effects == [("send_invoice", {"invoice_id": None})]
