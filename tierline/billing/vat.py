"""Tax-id (VAT / GST / ABN ...) format validation per country, before anything reaches Stripe.

Pure: a value and an optional country hint in, a normalised :class:`TaxId` (with the Stripe tax-id
type) out, or :class:`InvalidTaxId` with a message a customer can act on. Formats follow each
authority's published shape; AU ABN and NO organisation numbers also carry a check digit, verified here.
:func:`checksum_ok` checks the check digits of the EU and UK VAT numbers that have a published
algorithm (AT, BE, DE, DK, FI, FR, GB, IT, LU, NL, PL, PT, SE); Tier 1's form validation stays
format-only, the agent's reading of free text (``tierline.billing.details``) also asks for it.
(Moved from ``services/tier1_selfheal/vat.py`` so that the billing core can use it.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


class InvalidTaxId(ValueError):
    """The tax id does not have the shape its country requires (nothing is changed)."""


@dataclass(frozen=True)
class TaxId:
    country: str  # ISO 3166-1 alpha-2 (Greece is GR; its VAT prefix is EL)
    stripe_type: str  # eu_vat, gb_vat, ch_vat, no_vat, au_abn, ...
    value: str  # normalised, as Stripe expects it


@dataclass(frozen=True)
class _Rule:
    pattern: str
    example: str


#: EU VAT numbers: the body after the two-letter prefix (EL for Greece, XI for Northern Ireland).
EU_VAT: dict[str, _Rule] = {
    "AT": _Rule(r"U\d{8}", "ATU12345678"),
    "BE": _Rule(r"[01]\d{9}", "BE0123456789"),
    "BG": _Rule(r"\d{9,10}", "BG123456789"),
    "CY": _Rule(r"\d{8}[A-Z]", "CY12345678X"),
    "CZ": _Rule(r"\d{8,10}", "CZ12345678"),
    "DE": _Rule(r"\d{9}", "DE123456789"),
    "DK": _Rule(r"\d{8}", "DK12345678"),
    "EE": _Rule(r"\d{9}", "EE123456789"),
    "EL": _Rule(r"\d{9}", "EL123456789"),
    "ES": _Rule(r"[A-Z0-9]\d{7}[A-Z0-9]", "ESA1234567Z"),
    "FI": _Rule(r"\d{8}", "FI12345678"),
    "FR": _Rule(r"[A-HJ-NP-Z0-9]{2}\d{9}", "FRAB123456789"),
    "HR": _Rule(r"\d{11}", "HR12345678901"),
    "HU": _Rule(r"\d{8}", "HU12345678"),
    "IE": _Rule(r"\d{7}[A-WY][A-I]?|\d[A-Z+*]\d{5}[A-WY]", "IE1234567WA"),
    "IT": _Rule(r"\d{11}", "IT12345678901"),
    "LT": _Rule(r"\d{9}|\d{12}", "LT123456789"),
    "LU": _Rule(r"\d{8}", "LU12345678"),
    "LV": _Rule(r"\d{11}", "LV12345678901"),
    "MT": _Rule(r"\d{8}", "MT12345678"),
    "NL": _Rule(r"\d{9}B\d{2}", "NL123456789B01"),
    "PL": _Rule(r"\d{10}", "PL1234567890"),
    "PT": _Rule(r"\d{9}", "PT123456789"),
    "RO": _Rule(r"[1-9]\d{1,9}", "RO1234567890"),
    "SE": _Rule(r"\d{10}01", "SE123456789701"),
    "SI": _Rule(r"[1-9]\d{7}", "SI12345678"),
    "SK": _Rule(r"[1-9]\d{9}", "SK1234567890"),
    "XI": _Rule(r"\d{9}|\d{12}|GD[0-4]\d{2}|HA[5-9]\d{2}", "XI123456789"),
}

#: Country code -> VAT prefix where they differ.
_PREFIX_OF = {"GR": "EL"}
_COUNTRY_OF_PREFIX = {"EL": "GR", "XI": "GB"}

GB_VAT = _Rule(r"\d{9}|\d{12}|GD[0-4]\d{2}|HA[5-9]\d{2}", "GB123456789")
CH_VAT = _Rule(r"CHE-?\d{3}\.?\d{3}\.?\d{3}(?:MWST|TVA|IVA)?", "CHE-123.456.789 MWST")
NO_VAT = _Rule(r"(?:NO)?\d{9}(?:MVA)?", "123456789MVA")
AU_ABN = _Rule(r"\d{11}", "51824753556")
NZ_GST = _Rule(r"\d{8,9}", "123456789")
US_EIN = _Rule(r"\d{2}-?\d{7}", "12-3456789")
CA_BN = _Rule(r"\d{9}", "123456789")

SUPPORTED_COUNTRIES: frozenset[str] = frozenset(
    {_COUNTRY_OF_PREFIX.get(p, p) for p in EU_VAT} | {"GB", "CH", "NO", "AU", "NZ", "US", "CA"}
)


def _compact(value: str) -> str:
    return re.sub(r"[\s]", "", value).upper()


def _bad(country: str, rule: _Rule, raw: str) -> InvalidTaxId:
    return InvalidTaxId(f"{raw!r} is not a valid {country} tax id: expected the format {rule.example}")


def _abn_ok(digits: str) -> bool:
    weights = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    nums = [int(d) for d in digits]
    nums[0] -= 1
    return sum(w * n for w, n in zip(weights, nums, strict=True)) % 89 == 0


def _no_orgnr_ok(digits: str) -> bool:
    weights = (3, 2, 7, 6, 5, 4, 3, 2)
    rest = sum(w * int(d) for w, d in zip(weights, digits[:8], strict=True)) % 11
    check = 0 if rest == 0 else 11 - rest
    return check != 10 and check == int(digits[8])


def _eu(prefix: str, body: str, raw: str) -> TaxId:
    rule = EU_VAT[prefix]
    if not re.fullmatch(rule.pattern, body):
        raise _bad(_COUNTRY_OF_PREFIX.get(prefix, prefix), rule, raw)
    return TaxId(_COUNTRY_OF_PREFIX.get(prefix, prefix), "eu_vat", f"{prefix}{body}")


def validate_tax_id(raw: str, country: str | None = None) -> TaxId:
    """Validate ``raw`` for ``country`` (or the country its prefix names); returns it normalised.

    A prefixed EU/GB/CH/NO number is checked against its prefix's format; a bare number needs the
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
    if prefix in EU_VAT and not value[:3] == "CHE":
        pcountry = _COUNTRY_OF_PREFIX.get(prefix, prefix)
        if hint is not None and hint != pcountry and not (hint == "GB" and prefix == "XI"):
            raise InvalidTaxId(f"{raw!r} is a {pcountry} VAT number, but the country given is {hint}")
        return _eu(prefix, value[2:], raw)
    if prefix == "GB":
        if hint not in (None, "GB"):
            raise InvalidTaxId(f"{raw!r} is a GB VAT number, but the country given is {hint}")
        if not re.fullmatch(GB_VAT.pattern, value[2:]):
            raise _bad("GB", GB_VAT, raw)
        return TaxId("GB", "gb_vat", value)
    if value.startswith("CHE"):
        if hint not in (None, "CH"):
            raise InvalidTaxId(f"{raw!r} is a Swiss UID, but the country given is {hint}")
        return _ch(raw)
    if prefix == "NO" and re.fullmatch(NO_VAT.pattern, value) and hint in (None, "NO"):
        hint = "NO"
    if hint is None:
        raise InvalidTaxId(
            f"{raw!r} has no country prefix: give the country (e.g. DE123456789 or country=AU)"
        )
    if hint in SUPPORTED_COUNTRIES - {"GB", "CH", "NO", "AU", "NZ", "US", "CA"}:
        return _eu(_PREFIX_OF.get(hint, hint), value, raw)
    if hint == "GB":
        if not re.fullmatch(GB_VAT.pattern, value):
            raise _bad("GB", GB_VAT, raw)
        return TaxId("GB", "gb_vat", f"GB{value}")
    if hint == "CH":
        return _ch(raw)
    if hint == "NO":
        if not re.fullmatch(NO_VAT.pattern, value):
            raise _bad("NO", NO_VAT, raw)
        digits = re.sub(r"\D", "", value)
        if not _no_orgnr_ok(digits):
            raise InvalidTaxId(f"{raw!r} is not a valid NO organisation number (check digit)")
        return TaxId("NO", "no_vat", f"{digits}MVA")
    if hint == "AU":
        digits = re.sub(r"\s", "", value)
        if not re.fullmatch(AU_ABN.pattern, digits):
            raise _bad("AU", AU_ABN, raw)
        if not _abn_ok(digits):
            raise InvalidTaxId(f"{raw!r} is not a valid Australian ABN (checksum)")
        return TaxId("AU", "au_abn", digits)
    if hint == "NZ":
        digits = value.replace("-", "")
        if not re.fullmatch(NZ_GST.pattern, digits):
            raise _bad("NZ", NZ_GST, raw)
        return TaxId("NZ", "nz_gst", digits)
    if hint == "US":
        if not re.fullmatch(US_EIN.pattern, value):
            raise _bad("US", US_EIN, raw)
        digits = value.replace("-", "")
        return TaxId("US", "us_ein", f"{digits[:2]}-{digits[2:]}")
    if hint == "CA":
        if not re.fullmatch(CA_BN.pattern, value):
            raise _bad("CA", CA_BN, raw)
        return TaxId("CA", "ca_bn", value)
    raise InvalidTaxId(f"tax ids for country {hint!r} are not supported")  # pragma: no cover


def _ch(raw: str) -> TaxId:
    value = _compact(raw)
    if not re.fullmatch(CH_VAT.pattern, value):
        raise _bad("CH", CH_VAT, raw)
    digits = re.sub(r"\D", "", value)
    suffix = next((s for s in ("MWST", "TVA", "IVA") if value.endswith(s)), "MWST")
    return TaxId("CH", "ch_vat", f"CHE-{digits[:3]}.{digits[3:6]}.{digits[6:9]} {suffix}")


# --------------------------------------------------------------------------- check digits


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _weighted(digits: str, weights: tuple[int, ...]) -> int:
    return sum(w * int(d) for w, d in zip(weights, digits, strict=False))


def _de_ok(n: str) -> bool:  # ISO 7064 MOD 11,10
    product = 10
    for char in n[:8]:
        total = (int(char) + product) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10 == int(n[8])


def _at_ok(n: str) -> bool:  # U + 8 digits
    d = [int(c) for c in n[1:]]
    total = d[0] + d[2] + d[4] + d[6] + sum(x * 2 // 10 + x * 2 % 10 for x in (d[1], d[3], d[5]))
    return (10 - (total + 4) % 10) % 10 == d[7]


def _fi_ok(n: str) -> bool:
    rest = _weighted(n, (7, 9, 10, 5, 8, 4, 2)) % 11
    return rest != 1 and (0 if rest == 0 else 11 - rest) == int(n[7])


def _fr_ok(n: str) -> bool:
    key, siren = n[:2], n[2:]
    if not key.isdigit():
        return True  # the newer alphanumeric keys have no simple public check
    return int(key) == (12 + 3 * (int(siren) % 97)) % 97


def _nl_ok(n: str) -> bool:
    digits = n[:9]
    rest = _weighted(digits, (9, 8, 7, 6, 5, 4, 3, 2)) % 11
    if rest == int(digits[8]):
        return True
    # sole proprietors since 2020: ISO 7064 MOD 97-10 over "NL" + number (N=23, L=21)
    return int("2321" + n.replace("B", "11")) % 97 == 1


def _pl_ok(n: str) -> bool:
    rest = _weighted(n, (6, 5, 7, 2, 3, 4, 5, 6, 7)) % 11
    return rest != 10 and rest == int(n[9])


def _pt_ok(n: str) -> bool:
    rest = _weighted(n, (9, 8, 7, 6, 5, 4, 3, 2)) % 11
    return (0 if rest < 2 else 11 - rest) == int(n[8])


def _gb_ok(n: str) -> bool:
    if not n[:9].isdigit():
        return True  # government departments / health authorities: GD / HA numbers
    total = _weighted(n, (8, 7, 6, 5, 4, 3, 2)) + int(n[7:9])
    return total % 97 == 0 or (total + 55) % 97 == 0


_CHECKS: dict[str, Callable[[str], bool]] = {
    "AT": _at_ok,
    "BE": lambda n: 97 - int(n[:8]) % 97 == int(n[8:10]),
    "DE": _de_ok,
    "DK": lambda n: _weighted(n, (2, 7, 6, 5, 4, 3, 2, 1)) % 11 == 0,
    "FI": _fi_ok,
    "FR": _fr_ok,
    "GB": _gb_ok,
    "IT": _luhn_ok,
    "LU": lambda n: int(n[:6]) % 89 == int(n[6:8]),
    "NL": _nl_ok,
    "PL": _pl_ok,
    "PT": _pt_ok,
    "SE": lambda n: _luhn_ok(n[:10]),
}


def checksum_ok(tax_id: TaxId) -> bool:
    """Whether the check digits of a validated (normalised) tax id add up; ``True`` where the country has
    no published algorithm checked here."""
    if tax_id.stripe_type not in ("eu_vat", "gb_vat"):
        return True
    prefix, body = tax_id.value[:2], tax_id.value[2:]
    check = _CHECKS.get("GB" if prefix == "XI" else prefix)
    return True if check is None else check(body)
