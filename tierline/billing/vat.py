"""Tax-id (VAT / GST / ABN ...) validation per country, before anything reaches Stripe, over python-stdnum.

Pure: a value and an optional country hint in, a normalised :class:`TaxId` (with the Stripe tax-id type)
out, or :class:`InvalidTaxId` with a message a customer can act on. The rules are python-stdnum's (a
maintained library of each authority's formats and check digits): ``stdnum.eu.vat`` for the EU member
states (and XI, Northern Ireland), and the country's own module (``stdnum.get_cc_module``) for the rest
(GB VAT, CH UID/MWST, NO MVA, AU ABN, NZ IRD/GST, US EIN, CA BN, IN GSTIN, ...). A number whose check digits
do not add up is refused here, with "check-digit" in the message; Tier 1's form, the Health Meter's fix and
the agent's reading of free text (``tierline.billing.details``) all use this one module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, ValidationError

__all__ = [
    "EU_VAT",
    "SUPPORTED_COUNTRIES",
    "InvalidTaxId",
    "TaxId",
    "checksum_ok",
    "example_for",
    "validate_tax_id",
]


class InvalidTaxId(ValueError):
    """The tax id is not one its country issues (format, length or check digits; nothing is changed)."""


@dataclass(frozen=True)
class TaxId:
    country: str  # ISO 3166-1 alpha-2 (Greece is GR; its VAT prefix is EL)
    stripe_type: str  # eu_vat, gb_vat, ch_vat, no_vat, au_abn, ...
    value: str  # normalised, as Stripe expects it


@dataclass(frozen=True)
class _Rule:
    example: str  # a valid number, shown in error messages


#: EU VAT prefixes (EL for Greece, XI for Northern Ireland) with a valid example each.
EU_VAT: dict[str, _Rule] = {
    "AT": _Rule("ATU13585627"),
    "BE": _Rule("BE0428759497"),
    "BG": _Rule("BG175074752"),
    "CY": _Rule("CY10259033P"),
    "CZ": _Rule("CZ25123891"),
    "DE": _Rule("DE136695976"),
    "DK": _Rule("DK13585628"),
    "EE": _Rule("EE100594102"),
    "EL": _Rule("EL094259216"),
    "ES": _Rule("ESB64717838"),
    "FI": _Rule("FI20774740"),
    "FR": _Rule("FR23334175221"),
    "HR": _Rule("HR33392005961"),
    "HU": _Rule("HU12892312"),
    "IE": _Rule("IE6433435F"),
    "IT": _Rule("IT00743110157"),
    "LT": _Rule("LT119511515"),
    "LU": _Rule("LU15027442"),
    "LV": _Rule("LV40003521600"),
    "MT": _Rule("MT11679112"),
    "NL": _Rule("NL004495445B01"),
    "PL": _Rule("PL8567346215"),
    "PT": _Rule("PT501964843"),
    "RO": _Rule("RO18547290"),
    "SE": _Rule("SE123456789701"),
    "SI": _Rule("SI50223054"),
    "SK": _Rule("SK2022749619"),
    "XI": _Rule("XI980780684"),
}

#: Country code -> VAT prefix where they differ, and back.
_PREFIX_OF = {"GR": "EL"}
_COUNTRY_OF_PREFIX = {"EL": "GR", "XI": "GB"}


@dataclass(frozen=True)
class _National:
    stripe_type: str
    module: str  # the stdnum module kind for get_cc_module
    example: str


#: Tax ids outside the EU VAT system: the Stripe type, stdnum's module and a valid example.
NATIONAL: dict[str, _National] = {
    "GB": _National("gb_vat", "vat", "GB980780684"),
    "CH": _National("ch_vat", "vat", "CHE-107.787.577 MWST"),
    "NO": _National("no_vat", "mva", "923609016MVA"),
    "AU": _National("au_abn", "abn", "51824753556"),
    "NZ": _National("nz_gst", "ird", "49091850"),
    "US": _National("us_ein", "ein", "04-2103594"),
    "CA": _National("ca_bn", "bn", "123456782"),
    "IN": _National("in_gst", "gstin", "27AAPFU0939F1ZV"),
    "BR": _National("br_cnpj", "cnpj", "16.727.230/0001-97"),
    "MX": _National("mx_rfc", "rfc", "GODE561231GR8"),
    "IS": _National("is_vat", "vsk", "00621"),
    "TR": _National("tr_tin", "vkn", "4540536920"),
    "SG": _National("sg_uen", "uen", "00192200M"),
    "KR": _National("kr_brn", "brn", "134-86-72683"),
}

SUPPORTED_COUNTRIES: frozenset[str] = frozenset(
    {_COUNTRY_OF_PREFIX.get(p, p) for p in EU_VAT} | set(NATIONAL)
)
_EU_COUNTRIES = frozenset(_COUNTRY_OF_PREFIX.get(p, p) for p in EU_VAT if p != "XI")


def example_for(country: str) -> str:
    """A valid tax id of ``country`` (ISO code), for placeholders and messages."""
    country = country.upper()
    if country in NATIONAL:
        return NATIONAL[country].example
    return EU_VAT[_PREFIX_OF.get(country, country)].example


def _module(country: str) -> Any:
    module = get_cc_module(country.lower(), NATIONAL[country].module)
    if module is None:  # pragma: no cover - every entry of NATIONAL names an installed module
        raise InvalidTaxId(f"tax ids for country {country!r} are not supported")
    return module


def _compact(value: str) -> str:
    return re.sub(r"\s", "", value).upper()


def _refused(raw: str, country: str, example: str, exc: ValidationError) -> InvalidTaxId:
    if isinstance(exc, InvalidChecksum):
        return InvalidTaxId(
            f"{raw!r} doesn't pass the {country} check-digit test, so it looks mistyped "
            f"(a valid one looks like {example})"
        )
    return InvalidTaxId(f"{raw!r} is not a valid {country} tax id: expected the format {example}")


def _eu(prefix: str, body: str, raw: str) -> TaxId:
    country = _COUNTRY_OF_PREFIX.get(prefix, prefix)
    try:
        value = eu_vat.validate(f"{prefix}{body}")
    except ValidationError as exc:
        raise _refused(raw, country, EU_VAT[prefix].example, exc) from exc
    return TaxId(country, "eu_vat", value)


def _national(country: str, value: str, raw: str) -> TaxId:
    spec = NATIONAL[country]
    module = _module(country)
    candidate = value
    if country == "GB":
        candidate = value[2:] if value.startswith("GB") else value
    elif country == "CH":
        candidate = value if value.endswith(("MWST", "TVA", "IVA")) else f"{value}MWST"
    elif country == "NO":
        candidate = value[2:] if value.startswith("NO") else value
        candidate = candidate if candidate.endswith("MVA") else f"{candidate}MVA"
    try:
        compact: str = module.validate(candidate)
    except ValidationError as exc:
        raise _refused(raw, country, spec.example, exc) from exc
    if country == "GB":
        return TaxId("GB", spec.stripe_type, f"GB{compact}")
    if country == "CH":
        digits = re.sub(r"\D", "", compact)
        suffix = next((s for s in ("MWST", "TVA", "IVA") if compact.endswith(s)), "MWST")
        return TaxId("CH", spec.stripe_type, f"CHE-{digits[:3]}.{digits[3:6]}.{digits[6:9]} {suffix}")
    if country in ("US", "KR", "BR"):
        return TaxId(country, spec.stripe_type, str(module.format(compact)))
    return TaxId(country, spec.stripe_type, compact)


def validate_tax_id(raw: str, country: str | None = None) -> TaxId:
    """Validate ``raw`` for ``country`` (or the country its prefix names); returns it normalised.

    A prefixed EU/GB/CH/NO number is checked against its prefix's rules; a bare number needs the
    country. An explicit country that contradicts the prefix is rejected rather than guessed.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidTaxId("the tax id is empty")
    if len(raw) > 40:
        raise InvalidTaxId("the tax id is too long")
    value = _compact(raw)
    hint = country.strip().upper() if country else None
    if hint is not None and hint not in SUPPORTED_COUNTRIES:
        raise InvalidTaxId(f"tax ids for country {hint!r} are not supported; ask a person to add it")

    prefix = value[:2]
    if prefix in EU_VAT and not value.startswith("CHE"):
        pcountry = _COUNTRY_OF_PREFIX.get(prefix, prefix)
        if hint is not None and hint != pcountry and not (hint == "GB" and prefix == "XI"):
            raise InvalidTaxId(f"{raw!r} is a {pcountry} VAT number, but the country given is {hint}")
        return _eu(prefix, value[2:], raw)
    if prefix == "GB" and hint in (None, "GB"):
        return _national("GB", value, raw)
    if prefix == "GB":
        raise InvalidTaxId(f"{raw!r} is a GB VAT number, but the country given is {hint}")
    if value.startswith("CHE"):
        if hint not in (None, "CH"):
            raise InvalidTaxId(f"{raw!r} is a Swiss UID, but the country given is {hint}")
        return _national("CH", value, raw)
    if prefix == "NO" and re.fullmatch(r"NO\d{9}(?:MVA)?", value) and hint in (None, "NO"):
        hint = "NO"
    if hint is None:
        raise InvalidTaxId(
            f"{raw!r} has no country prefix: give the country (e.g. DE136695976 or country=AU)"
        )
    if hint in _EU_COUNTRIES:
        return _eu(_PREFIX_OF.get(hint, hint), value, raw)
    return _national(hint, value, raw)


def checksum_ok(tax_id: TaxId) -> bool:
    """Whether a tax id's check digits add up. Every :class:`TaxId` that :func:`validate_tax_id` returns
    passed them already; kept for callers holding a :class:`TaxId` built elsewhere."""
    try:
        validate_tax_id(tax_id.value, tax_id.country)
    except InvalidTaxId:
        return False
    return True
