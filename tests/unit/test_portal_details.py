"""The billing details form's checks (pure): one message per field, tax ids over python-stdnum."""

from __future__ import annotations

from typing import Any

import pytest

from services.tier1_selfheal.portal_cards import card_page_csp
from services.tier1_selfheal.portal_details import check_details

pytestmark = pytest.mark.unit


def test_given_a_complete_valid_form_when_checked_then_normalised_and_no_errors() -> None:
    change, errors = check_details(
        {
            "billing_email": " ap@acme.io ",
            "company_name": "Acme GmbH",
            "address": {"line1": "Hauptstr. 5", "city": "Berlin", "postal_code": "10115", "country": "de"},
            "tax_id": "136695976",  # bare: the address's country is the hint
        }
    )
    assert errors == {}
    assert change.email == "ap@acme.io"
    assert change.address is not None
    assert change.address["country"] == "DE"
    assert change.tax_id is not None
    assert (change.tax_id.stripe_type, change.tax_id.value) == ("eu_vat", "DE136695976")
    assert change.given == ("billing_email", "company_name", "address", "tax_id")


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"tax_id": "DE123456789"}, "tax_id", "check-digit"),
        ({"tax_id": "GB123456789"}, "tax_id", "check-digit"),
        ({"tax_id": "FRIO123456789"}, "tax_id", "FR23334175221"),
        ({"tax_id": "51 824 753 557", "tax_id_country": "AU"}, "tax_id", "check-digit"),
        ({"tax_id": "123456789"}, "tax_id", "country prefix"),
        ({"billing_email": "ap@acme"}, "billing_email", "not an email"),
        ({"company_name": "x" * 201}, "company_name", "at most 200"),
        ({"address": {"line1": "Main St 1", "country": "Germany"}}, "address.country", "two-letter"),
        ({"address": {"city": "Berlin", "country": "DE"}}, "address.line1", "street"),
        ({"address": {"line1": "Main St 1"}}, "address.country", "country"),
        ({"address": {"floor": "3"}}, "address", "unexpected"),
        ({}, "form", "Nothing to change"),
        ({"company_name": "   "}, "form", "Nothing to change"),
    ],
)
def test_given_a_bad_field_when_checked_then_that_field_says_why(
    body: dict[str, Any], field: str, words: str
) -> None:
    _, errors = check_details(body)
    assert field in errors
    assert words in errors[field]


def test_given_several_bad_fields_when_checked_then_each_has_its_message() -> None:
    _, errors = check_details({"billing_email": "nope", "tax_id": "DE123456789", "company_name": "Acme"})
    assert set(errors) == {"billing_email", "tax_id"}


def test_given_the_emulator_when_card_page_served_then_it_may_post_only_to_the_emulator() -> None:
    csp = card_page_csp("http://127.0.0.1:18420/")
    assert "connect-src 'self' http://127.0.0.1:18420;" in csp
    assert "js.stripe.com" not in csp
    assert "https://js.stripe.com" in card_page_csp(None)
