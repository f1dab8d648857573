"""Tax-id validation over python-stdnum (Given a value and a country, When validated, Then ...)."""

from __future__ import annotations

import pytest

from tierline.billing.vat import InvalidTaxId, validate_tax_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "country", "expected_country", "stripe_type", "value"),
    [
        ("DE136695976", None, "DE", "eu_vat", "DE136695976"),
        ("de 136 695 976", None, "DE", "eu_vat", "DE136695976"),
        ("136695976", "DE", "DE", "eu_vat", "DE136695976"),
        ("ATU13585627", None, "AT", "eu_vat", "ATU13585627"),
        ("FR40303265045", "FR", "FR", "eu_vat", "FR40303265045"),
        ("NL004495445B01", None, "NL", "eu_vat", "NL004495445B01"),
        ("EL094259216", None, "GR", "eu_vat", "EL094259216"),
        ("094259216", "GR", "GR", "eu_vat", "EL094259216"),
        ("IE6433435F", None, "IE", "eu_vat", "IE6433435F"),
        ("ESB64717838", None, "ES", "eu_vat", "ESB64717838"),
        ("SE123456789701", None, "SE", "eu_vat", "SE123456789701"),
        ("PL 856-734-62-15", None, "PL", "eu_vat", "PL8567346215"),
        ("GB980780684", None, "GB", "gb_vat", "GB980780684"),
        ("980 7806 84", "GB", "GB", "gb_vat", "GB980780684"),
        ("XI980780684", "GB", "GB", "eu_vat", "XI980780684"),
        ("CHE-107.787.577 MWST", None, "CH", "ch_vat", "CHE-107.787.577 MWST"),
        ("CHE107787577TVA", "CH", "CH", "ch_vat", "CHE-107.787.577 TVA"),
        ("923609016MVA", "NO", "NO", "no_vat", "923609016MVA"),
        ("NO923609016MVA", None, "NO", "no_vat", "923609016MVA"),
        ("51 824 753 556", "AU", "AU", "au_abn", "51824753556"),
        ("12-3456789", "US", "US", "us_ein", "12-3456789"),
        ("123456782", "CA", "CA", "ca_bn", "123456782"),
        ("49-091-850", "NZ", "NZ", "nz_gst", "49091850"),
        ("27AAPFU0939F1ZV", "IN", "IN", "in_gst", "27AAPFU0939F1ZV"),
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
        ("DE12345678", None, "DE136695976"),  # one digit short
        ("DE1234567890", None, "DE136695976"),  # one digit long
        ("DE123456789", None, "check-digit"),  # the right shape, the wrong check digit
        ("ATU1234567", None, "ATU13585627"),
        ("ATU12345678", None, "check-digit"),
        ("NL123456789A01", None, "NL004495445B01"),
        ("NL123456789B01", None, "check-digit"),
        ("FRIO123456789", None, "FR23334175221"),  # I and O are not used in French keys
        ("SE123456789702", None, "SE123456789701"),  # must end in 01
        ("GB12345678", None, "GB980780684"),
        ("GB123456789", None, "check-digit"),
        ("CHE-123.456.78", None, "CHE-107.787.577"),
        ("CHE-123.456.789 MWST", None, "check-digit"),
        ("51 824 753 557", "AU", "check-digit"),  # ABN checksum fails
        ("923609017MVA", "NO", "check-digit"),
        ("123456789", "CA", "check-digit"),
        ("123456789", None, "no country prefix"),
        ("DE136695976", "FR", "country given is FR"),
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
    from tierline.billing.vat import EU_VAT

    for prefix, rule in EU_VAT.items():
        assert validate_tax_id(rule.example).value == rule.example, prefix
