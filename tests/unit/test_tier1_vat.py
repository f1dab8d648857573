"""Tax-id format validation per country (Given a value and a country, When validated, Then ...)."""

from __future__ import annotations

import pytest

from services.tier1_selfheal.vat import InvalidTaxId, validate_tax_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "country", "expected_country", "stripe_type", "value"),
    [
        ("DE123456789", None, "DE", "eu_vat", "DE123456789"),
        ("de 123 456 789", None, "DE", "eu_vat", "DE123456789"),
        ("123456789", "DE", "DE", "eu_vat", "DE123456789"),
        ("ATU12345678", None, "AT", "eu_vat", "ATU12345678"),
        ("FR40303265045", "FR", "FR", "eu_vat", "FR40303265045"),
        ("NL123456789B01", None, "NL", "eu_vat", "NL123456789B01"),
        ("EL123456789", None, "GR", "eu_vat", "EL123456789"),
        ("123456789", "GR", "GR", "eu_vat", "EL123456789"),
        ("IE1234567WA", None, "IE", "eu_vat", "IE1234567WA"),
        ("ESX1234567Z", None, "ES", "eu_vat", "ESX1234567Z"),
        ("SE556677889901", None, "SE", "eu_vat", "SE556677889901"),
        ("GB123456789", None, "GB", "gb_vat", "GB123456789"),
        ("123456789012", "GB", "GB", "gb_vat", "GB123456789012"),
        ("XI123456789", "GB", "GB", "eu_vat", "XI123456789"),
        ("CHE-123.456.789 MWST", None, "CH", "ch_vat", "CHE-123.456.789 MWST"),
        ("CHE123456789TVA", "CH", "CH", "ch_vat", "CHE-123.456.789 TVA"),
        ("923609016MVA", "NO", "NO", "no_vat", "923609016MVA"),
        ("NO923609016MVA", None, "NO", "no_vat", "923609016MVA"),
        ("51 824 753 556", "AU", "AU", "au_abn", "51824753556"),
        ("12-3456789", "US", "US", "us_ein", "12-3456789"),
    ],
)
def test_given_well_formed_tax_id_when_validated_then_normalised_with_stripe_type(
    raw: str, country: str | None, expected_country: str, stripe_type: str, value: str
) -> None:
    tax = validate_tax_id(raw, country)
    assert (tax.country, tax.stripe_type, tax.value) == (expected_country, stripe_type, value)


@pytest.mark.parametrize(
    ("raw", "country", "message"),
    [
        ("DE12345678", None, "DE123456789"),  # one digit short
        ("DE1234567890", None, "DE123456789"),  # one digit long
        ("ATU1234567", None, "ATU12345678"),
        ("NL123456789A01", None, "NL123456789B01"),
        ("FRIO123456789", None, "FRAB123456789"),  # I and O are not used in French keys
        ("SE123456789702", None, "SE123456789701"),  # must end in 01
        ("GB12345678", None, "GB123456789"),
        ("CHE-123.456.78", None, "CHE-123.456.789"),
        ("51 824 753 557", "AU", "checksum"),  # ABN checksum fails
        ("923609017MVA", "NO", "check digit"),
        ("123456789", None, "no country prefix"),
        ("DE123456789", "FR", "country given is FR"),
        ("12345", "ZZ", "not supported"),
        ("", "DE", "empty"),
    ],
)
def test_given_malformed_tax_id_when_validated_then_clear_error(
    raw: str, country: str | None, message: str
) -> None:
    with pytest.raises(InvalidTaxId) as err:
        validate_tax_id(raw, country)
    assert message in str(err.value)


def test_given_every_eu_prefix_when_example_validated_then_each_example_passes() -> None:
    from services.tier1_selfheal.vat import EU_VAT

    for prefix, rule in EU_VAT.items():
        assert validate_tax_id(rule.example).value == rule.example, prefix
