"""Billing-details changes in plain words (issue 20): the values read from free text, each checked.

A table of phrasings (billing email, company name, postal address, VAT / tax id; chat lines and a messy
email), the values that do not hold (a VAT number whose check digits fail, a half email address), the
question asked back, and the offline planner acting (or asking) on them.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas.vocab import EscalationReason, Intent
from tests.unit.test_planner import FakeBilling, ask, run
from tierline.billing.details import extract_details, question_for
from tierline.billing.vat import InvalidTaxId, checksum_ok, validate_tax_id

pytestmark = pytest.mark.unit

SIGNED_EMAIL = (
    "Hi team,\n\nFrom next month please send all invoices to ap@fernhill.co.uk instead of me.\n\n"
    "Kind regards,\nTom Baker\nFernhill Ltd | +44 20 7946 0018 | tom@fernhill.co.uk\n"
)

PHRASINGS: list[tuple[str, dict[str, str]]] = [
    # billing email
    ("send invoices to finance@acme.io from now on", {"billing_email": "finance@acme.io"}),
    ("change billing email from old@acme.io to billing@acme.io", {"billing_email": "billing@acme.io"}),
    ("Please use payables@stonebridge.org for invoices.", {"billing_email": "payables@stonebridge.org"}),
    ("our accounts payable mailbox changed to ap@quillfeather.com", {"billing_email": "ap@quillfeather.com"}),
    ("instead of jo@acme.io please email the invoices to books@acme.io", {"billing_email": "books@acme.io"}),
    (SIGNED_EMAIL, {"billing_email": "ap@fernhill.co.uk"}),
    # company name
    ("please put Acme GmbH on future invoices", {"company_name": "Acme GmbH"}),
    ("our company is now called Initech Solutions Ltd", {"company_name": "Initech Solutions Ltd"}),
    ("the invoices should say Umbrella Corp, not my name", {"company_name": "Umbrella Corp"}),
    ("Company name: Globex Corporation.", {"company_name": "Globex Corporation"}),
    ("change the company name to 'Blue Harbor Studio'", {"company_name": "Blue Harbor Studio"}),
    ("we rebranded to Kestrel Works", {"company_name": "Kestrel Works"}),
    (
        "make the invoices out to Meridian Health Partners LLC",
        {"company_name": "Meridian Health Partners LLC"},
    ),
    ("we are now trading as Fjord & Pine AS", {"company_name": "Fjord & Pine AS"}),
    ("new company name is Sable Systems SAS going forward", {"company_name": "Sable Systems SAS"}),
    ("Firmenname ist jetzt Lindwurm Software GmbH", {"company_name": "Lindwurm Software GmbH"}),
    # postal address
    (
        "our new address is Hauptstr. 5, 10115 Berlin",
        {"address_line1": "Hauptstr. 5", "postal_code": "10115", "city": "Berlin"},
    ),
    (
        "we moved, the new office is 221B Baker Street, London NW1 6XE",
        {"address_line1": "221B Baker Street", "city": "London", "postal_code": "NW1 6XE", "country": "GB"},
    ),
    (
        "Our address changed to 500 Market St, Suite 200, San Francisco, CA 94105",
        {
            "address_line1": "500 Market St",
            "address_line2": "Suite 200",
            "city": "San Francisco",
            "state": "CA",
            "postal_code": "94105",
            "country": "US",
        },
    ),
    (
        "Neue Adresse: Hauptstraße 12, 80331 München, Deutschland",
        {"address_line1": "Hauptstraße 12", "postal_code": "80331", "city": "München", "country": "DE"},
    ),
    (
        "please update the billing address to 12 Rue de la Paix, 75002 Paris, France",
        {"address_line1": "12 Rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
    ),
    (
        "we've moved to Keizersgracht 100, 1015 CX Amsterdam, Netherlands",
        {
            "address_line1": "Keizersgracht 100",
            "postal_code": "1015 CX",
            "city": "Amsterdam",
            "country": "NL",
        },
    ),
    # VAT / tax ids
    ("add our VAT number DE136695976", {"tax_id": "DE136695976"}),
    ("VAT: FR40303265045", {"tax_id": "FR40303265045"}),
    ("please add VAT ID ATU13585627 to our account", {"tax_id": "ATU13585627"}),
    ("our BTW nummer is NL004495445B01", {"tax_id": "NL004495445B01"}),
    ("here is our VAT id for the invoices: PT501964843", {"tax_id": "PT501964843"}),
    ("tax id: GB980780684", {"tax_id": "gb_vat:GB980780684"}),
    ("could you list IT00743110157 on future bills as our VAT number", {"tax_id": "IT00743110157"}),
    # several at once
    (
        "please put Acme GmbH, VAT DE136695976 on our invoices",
        {"company_name": "Acme GmbH", "tax_id": "DE136695976"},
    ),
    (
        "Company name: Globex Corporation. VAT: FR40303265045",
        {"company_name": "Globex Corporation", "tax_id": "FR40303265045"},
    ),
    (
        "send invoices to ap@acme.de and put Acme GmbH on them",
        {"billing_email": "ap@acme.de", "company_name": "Acme GmbH"},
    ),
]


@pytest.mark.parametrize(("text", "expected"), PHRASINGS, ids=[p[0][:50] for p in PHRASINGS])
def test_given_a_plain_words_change_when_extracted_then_the_values_are_read(
    text: str, expected: dict[str, str]
) -> None:
    asked = extract_details(text)

    assert asked.problems == ()
    assert asked.tool_fields() == expected


INVALID: list[tuple[str, str, str]] = [
    ("add our VAT number DE123456789", "tax_id", "check-digit"),
    ("please put Acme GmbH, VAT DE12345 on our invoices", "tax_id", "DE136695976"),
    ("our VAT id is NL123456789B01", "tax_id", "check-digit"),
    ("send invoices to finance@acme from now on", "billing_email", "name@company.com"),
    ("billing email should be finance@@acme.io", "billing_email", "name@company.com"),
    ("our new address is somewhere in Berlin", "address", "street and number"),
]


@pytest.mark.parametrize(("text", "field", "in_question"), INVALID)
def test_given_an_invalid_value_when_extracted_then_nothing_is_usable_and_a_question_says_why(
    text: str, field: str, in_question: str
) -> None:
    asked = extract_details(text)

    assert [p.field for p in asked.problems] == [field]
    assert in_question in question_for(asked)
    assert "Nothing has been changed" in question_for(asked)


@pytest.mark.parametrize(
    ("text", "asks_for"),
    [
        ("I need to change our billing address", "full new address"),
        ("add our VAT number please", "VAT / tax id"),
        ("can you change the email the invoices go to?", "email address invoices should go to"),
        ("update billing details", "what should change"),
    ],
)
def test_given_no_value_when_extracted_then_the_question_asks_for_it(text: str, asks_for: str) -> None:
    asked = extract_details(text)

    assert asked.empty
    assert asks_for in question_for(asked)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("DE136695976", True),
        ("DE123456789", False),
        ("ATU13585627", True),
        ("ATU12345678", False),
        ("BE0403019261", True),
        ("DK13585628", True),
        ("FI20774740", True),
        ("FR40303265045", True),
        ("FR12345678901", False),
        ("IT00743110157", True),
        ("NL004495445B01", True),
        ("PL8567346215", True),
        ("PT501964843", True),
        ("SE123456789701", True),
        ("GB980780684", True),
        ("GB123456789", False),
        ("LU15027442", True),
    ],
)
def test_given_a_vat_number_when_its_check_digits_are_checked_then_valid_ones_pass(
    value: str, ok: bool
) -> None:
    if ok:
        assert checksum_ok(validate_tax_id(value)) is True
    else:
        with pytest.raises(InvalidTaxId, match="check-digit"):
            validate_tax_id(value)


# --------------------------------------------------------------------------- the planner acting on them


async def test_given_acme_and_its_vat_in_plain_words_when_planning_then_both_are_updated() -> None:
    world = FakeBilling()

    result = await run(
        world, ask("please put Acme GmbH, VAT DE136695976 on our invoices", Intent.UPDATE_BILLING_DETAILS)
    )

    assert result.resolved
    assert world.effects == [
        ("update_billing_details", {"company_name": "Acme GmbH", "tax_id": "DE136695976"})
    ]
    assert "Acme GmbH" in result.final_answer


async def test_given_a_new_address_in_plain_words_when_planning_then_the_address_fields_are_sent() -> None:
    world = FakeBilling()

    result = await run(
        world, ask("our new address is Hauptstr. 5, 10115 Berlin", Intent.UPDATE_BILLING_DETAILS)
    )

    assert result.resolved
    expected: dict[str, Any] = {"address_line1": "Hauptstr. 5", "postal_code": "10115", "city": "Berlin"}
    assert world.effects == [("update_billing_details", expected)]


async def test_given_a_bad_vat_checksum_when_planning_then_a_question_and_no_update() -> None:
    world = FakeBilling()

    result = await run(
        world, ask("please put Acme GmbH, VAT DE123456789 on our invoices", Intent.UPDATE_BILLING_DETAILS)
    )

    assert result.resolved  # answered with a question, no person
    assert world.effects == []  # not even the valid company name: one change, once it all holds
    assert "DE123456789" in result.final_answer
    assert "check" in result.final_answer


async def test_given_a_customer_insisting_on_an_invalid_vat_when_planning_then_a_person_decides() -> None:
    world = FakeBilling()

    result = await run(
        world,
        ask("I'm sure, our VAT number is DE123456789, just change it", Intent.UPDATE_BILLING_DETAILS),
    )

    assert result.escalation is not None
    assert result.escalation.reason is EscalationReason.LOW_CONFIDENCE
    assert world.effects == []
