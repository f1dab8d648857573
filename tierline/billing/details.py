"""Billing-details changes read from the customer's own words: the values, checked before anything acts.

"Please put Acme GmbH on future invoices", "send invoices to finance@acme.io from now on", "our new
address is Hauptstr. 5, 10115 Berlin", "add our VAT number DE136695976": :func:`extract_details` reads
the customer's new words (``tierline.textprep``: no quoted reply, signature or greeting) into a
:class:`DetailsAsked` with the billing email, company name, postal address and VAT / tax id found, each
validated (an email's shape; a tax id's format and check digits for its country, python-stdnum through
``tierline.billing.vat``). A value that does not hold is a :class:`Problem` with a question a customer
can answer; nothing found is :attr:`DetailsAsked.empty`. Pure, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tierline.billing.vat import InvalidTaxId, TaxId, validate_tax_id
from tierline.textprep import clean_lines

__all__ = ["Address", "DetailsAsked", "Problem", "extract_details", "question_for"]

# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True, slots=True)
class Address:
    line1: str
    city: str | None = None
    postal_code: str | None = None
    state: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    line2: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """A value the customer gave that cannot be used as it is, and what to ask them."""

    field: str  # billing_email | company_name | address | tax_id
    value: str
    question: str


@dataclass(frozen=True, slots=True)
class DetailsAsked:
    billing_email: str | None = None
    company_name: str | None = None
    address: Address | None = None
    tax_id: TaxId | None = None
    problems: tuple[Problem, ...] = ()
    mentioned: frozenset[str] = field(default_factory=frozenset)  # fields talked about, value or not

    @property
    def empty(self) -> bool:
        """No value and no problem: nothing the customer wants changed was found."""
        return not self.tool_fields() and not self.problems

    def tool_fields(self) -> dict[str, str]:
        """The values as the agent's ``update_billing_details`` tool takes them."""
        fields: dict[str, str] = {}
        if self.billing_email:
            fields["billing_email"] = self.billing_email
        if self.company_name:
            fields["company_name"] = self.company_name
        if self.address is not None:
            a = self.address
            for key, value in (
                ("address_line1", a.line1),
                ("address_line2", a.line2),
                ("city", a.city),
                ("postal_code", a.postal_code),
                ("state", a.state),
                ("country", a.country),
            ):
                if value:
                    fields[key] = value
        if self.tax_id is not None:
            tax = self.tax_id
            fields["tax_id"] = tax.value if tax.stripe_type == "eu_vat" else f"{tax.stripe_type}:{tax.value}"
        return fields


# --------------------------------------------------------------------------- email

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b")
_AT_TOKEN = re.compile(r"[^\s<>()\[\],;:\"']*@[^\s<>()\[\],;\"']*")
_OLD_EMAIL_BEFORE = re.compile(
    r"\b(?:from|instead\s+of|not|old|current|previous|replace|replacing|rather\s+than|no\s+longer)\s+"
    r"(?:(?:the|my|our)\s+)?(?:(?:old|current|billing)\s+)?(?:e-?mail\s+)?(?:address\s+)?$",
    re.IGNORECASE,
)
_EMAIL_TOPIC = re.compile(r"\be-?mail|\bsend\b|\binvoices?\b|\breceipts?\b|\bbilling\b|\bcontact\b", re.I)


def _emails(words: str) -> tuple[str | None, list[Problem], bool]:
    found = [(m.group(0).rstrip("."), m.start()) for m in _EMAIL.finditer(words)]
    new = [e for e, start in found if not _OLD_EMAIL_BEFORE.search(words[max(0, start - 40) : start])]
    email = new[0] if new else None
    problems: list[Problem] = []
    valid_spans = [(m.start(), m.end()) for m in _EMAIL.finditer(words)]
    for m in _AT_TOKEN.finditer(words):
        token = m.group(0).strip(".")
        if "@" not in token or len(token) < 3 or any(s <= m.start() < e for s, e in valid_spans):
            continue
        if token.startswith("@"):
            continue  # a handle ("@acme"), not an address
        problems.append(
            Problem(
                "billing_email",
                token,
                f"“{token}” doesn't look like a complete email address. Could you send it again in the "
                "form name@company.com?",
            )
        )
    mentioned = bool(found or problems or re.search(r"\b(?:billing\s+)?e-?mail\b", words, re.I))
    return (email if not problems else None), problems, mentioned


# --------------------------------------------------------------------------- tax id

_TAX_WORD = (
    r"(?:VAT|USt-?Id(?:Nr)?\.?|UID|IVA|TVA|NIF|CIF|NIPC|tax|GST|ABN|EIN|MwSt\.?|BTW|moms)"
    r"(?:\s*[-/]?\s*(?:id|identification|number|no\.?|nr\.?|#|reg(?:istration)?(?:\s+(?:number|no\.?))?"
    r"|code|numéro|número))*"
)
_TAX_AFTER_WORD = re.compile(
    rf"\b{_TAX_WORD}\s*(?:is|to|:|=|of|as|will\s+be|should\s+be|-)?\s*(?:now\s+)?"
    r"(?P<v>(?-i:(?:[A-Z]{2,3}[\s\-.]?)?\d(?:[\s.\-]?[\dA-Z]){3,18}))",
    re.IGNORECASE,
)
_PREFIXED_TAX = re.compile(
    r"\b(?P<v>(?:AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK|XI|GB)"
    r"U?[\dA-Z]{0,2}\d{6,11}(?:B\d{2})?|CHE[\s\-]?\d{3}\.?\d{3}\.?\d{3}(?:\s?(?:MWST|TVA|IVA))?)\b"
)
_TAX_MENTION = re.compile(rf"\b{_TAX_WORD}\b", re.IGNORECASE)


def _tax_id(words: str, country: str | None) -> tuple[TaxId | None, list[Problem], bool]:
    raw: str | None = None
    m = _TAX_AFTER_WORD.search(words)
    if m is not None:
        raw = re.split(r"\s+(?:and|und|et|y|e|for|on|please)\b", m.group("v"), maxsplit=1)[0]
        raw = raw.strip(" .-")
    else:
        p = _PREFIXED_TAX.search(words)
        raw = p.group("v") if p is not None else None
    mentioned = raw is not None or bool(_TAX_MENTION.search(words))
    if raw is None:
        return None, [], mentioned
    try:
        tax = validate_tax_id(raw, country)
    except InvalidTaxId as exc:  # format, length or check digits (python-stdnum's rules)
        question = f"{_sentence(str(exc))} Could you check the number and send it again?"
        return None, [Problem("tax_id", raw, question)], True
    return tax, [], True


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# --------------------------------------------------------------------------- company name

_NAME = r"(?P<name>[^\n,;:!?\"“”()]{2,100}?)"
_NAME_STOP = (
    r"(?=\s*(?:[,;:!?\n\"“”(]|\.(?:\s|$)|$)|\s+(?:and\s+(?!co\b|sons\b)|with\b|from\s+now|going\s+forward|"
    r"moving\s+forward|in\s+future|in\s+the\s+future|on\s+(?:all\s+|our\s+|the\s+|future\s+|new\s+|"
    r"upcoming\s+|any\s+)*(?:invoices?|receipts?|bills?)|instead\b|please\b|thanks?\b|thank\s+you|"
    r"as\s+(?:the\s+|our\s+)?(?:company|business|billing)|(?:VAT|tax)\b|now\b))"
)
_COMPANY_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        rf"\b(?:company|business|legal|firm|organi[sz]ation|billing|account)\s+name\s*(?:is\s+now|is|to|"
        rf"should\s+(?:now\s+)?be|will\s+be|=|:|->|→|changed\s+to|has\s+changed\s+to)\s*['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\bput\s+['‘]?{_NAME}['’]?(?:\s*,[^\n]{{0,60}}?)?\s+on\s+(?:all\s+|our\s+|the\s+|future\s+|new\s+|"
        r"upcoming\s+|any\s+|my\s+)*(?:invoices?|receipts?|bills?|them|those)\b",
        rf"\b(?:invoices?|receipts?|bills?)\s+(?:should|must|need\s+to|to|will)\s+(?:now\s+)?(?:say|read|show|"
        rf"be\s+(?:addressed|made\s+out|issued|billed)\s+to|carry|list|have)\s+['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\bmake\s+(?:the\s+|all\s+|our\s+|future\s+)*(?:invoices?|receipts?|bills?)\s+out\s+to\s+"
        rf"['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\b(?:address|make\s+out|issue|bill)\s+(?:the\s+|all\s+|our\s+|future\s+)*(?:invoices?|receipts?|"
        rf"bills?|it|them)\s+to\s+['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\b(?:our|the|my)\s+(?:company|business|firm|organi[sz]ation)\s+(?:is\s+now\s+called|is\s+now\s+named|"
        rf"is\s+called|was\s+renamed\s+to|has\s+been\s+renamed\s+(?:to|as)|changed\s+(?:its|our)\s+name\s+to|"
        rf"is\s+now)\s+['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\bwe(?:'ve|\s+have)?\s+(?:been\s+)?(?:renamed|rebranded|changed\s+our\s+name)\s+(?:ourselves\s+|"
        rf"the\s+company\s+)?(?:to|as)\s+['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\bwe(?:'re|\s+are)\s+now\s+(?:called\s+|named\s+|trading\s+as\s+)?['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\b(?:rename|change)\s+(?:the\s+|our\s+|my\s+)?(?:account|company|business|organi[sz]ation|"
        rf"customer)(?:\s+name)?\s+to\s+['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\bnew\s+(?:company|business|legal)\s+name\s*(?:is|:|=|-)?\s*['‘]?{_NAME}['’]?{_NAME_STOP}",
        rf"\b(?:Firmenname|Firma|nombre\s+de\s+(?:la\s+)?empresa|raison\s+sociale|nome\s+da\s+empresa)\s*"
        rf"(?:ist|es|est|é|:|=)?\s*(?:jetzt\s+|ahora\s+|maintenant\s+|agora\s+)?['‘]?{_NAME}['’]?{_NAME_STOP}",
    )
)
_COMPANY_TOPIC = re.compile(r"\b(?:company|business|legal)\s+name\b|\bput\b.*\bon\b.*\binvoices?\b", re.I)
_NOT_A_NAME = re.compile(
    r"^(?:it|this|that|them|me|us|my\s+name|our\s+name|the\s+(?:company|name|new\s+one)|something|"
    r"(?:a|the)\s+new\s+(?:name|one)|different|wrong|correct|changed|updated)$"
    r"|@|^(?:our|my|the|a|an)\s+(?:new\s+)?(?:address|email|vat|tax|invoice|office)\b",
    re.IGNORECASE,
)


def _company(words: str) -> tuple[str | None, list[Problem], bool]:
    for pattern in _COMPANY_PATTERNS:
        m = pattern.search(words)
        if m is None:
            continue
        name = m.group("name").strip(" '‘’.-")
        name = re.split(r"\s*,\s*", name, maxsplit=1)[0]
        if not name or _NOT_A_NAME.search(name) or not re.search(r"[^\W\d_]", name):
            continue
        if len(name) > 80:
            return None, [Problem("company_name", name, _NAME_QUESTION)], True
        return name, [], True
    return None, [], bool(_COMPANY_TOPIC.search(words))


_NAME_QUESTION = "What exact company name should appear on your invoices?"

# --------------------------------------------------------------------------- postal address

_COUNTRIES = {
    "germany": "DE",
    "deutschland": "DE",
    "france": "FR",
    "spain": "ES",
    "españa": "ES",
    "espana": "ES",
    "portugal": "PT",
    "netherlands": "NL",
    "the netherlands": "NL",
    "nederland": "NL",
    "holland": "NL",
    "belgium": "BE",
    "belgique": "BE",
    "austria": "AT",
    "österreich": "AT",
    "switzerland": "CH",
    "schweiz": "CH",
    "suisse": "CH",
    "italy": "IT",
    "italia": "IT",
    "ireland": "IE",
    "denmark": "DK",
    "sweden": "SE",
    "finland": "FI",
    "poland": "PL",
    "polska": "PL",
    "uk": "GB",
    "u.k.": "GB",
    "united kingdom": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "usa": "US",
    "u.s.a.": "US",
    "us": "US",
    "u.s.": "US",
    "united states": "US",
    "united states of america": "US",
    "canada": "CA",
    "australia": "AU",
    "new zealand": "NZ",
    "norway": "NO",
    "luxembourg": "LU",
    "brazil": "BR",
    "brasil": "BR",
    "mexico": "MX",
    "méxico": "MX",
}
_ADDRESS_LEAD = re.compile(
    r"\b(?:(?:our|my|the)\s+)?(?:new\s+)?(?:billing\s+|postal\s+|mailing\s+|office\s+|company\s+|business\s+|"
    r"registered\s+|invoice\s+)?(?:address|office)\s*(?:is\s+now|is|will\s+be|has\s+changed\s+to|changed\s+to|"
    r"should\s+be|:|=|->|→|to|now)\s*:?\s*"
    r"|\bwe(?:'ve|\s+have)?\s+(?:moved|relocated)\s+(?:our\s+(?:office|company|business)\s+)?to\s+"
    r"|\b(?:change|update|set)\s+(?:the\s+|our\s+|my\s+)?(?:billing\s+|postal\s+|invoice\s+|company\s+)?"
    r"address\s+(?:on\s+(?:the\s+|our\s+)?(?:invoices?|account)\s+)?to\s*:?\s*"
    r"|\b(?:neue\s+)?(?:Adresse|Anschrift)\s*(?:ist|lautet|:)\s*"
    r"|\b(?:nueva\s+)?dirección\s*(?:es|:)\s*|\b(?:nouvelle\s+)?adresse\s*(?:est|:)\s*"
    r"|\b(?:novo\s+|nova\s+)?endereço\s*(?:é|:)\s*",
    re.IGNORECASE,
)
_ADDRESS_END = re.compile(
    r"\n|;|!|\?|\.(?=\s+[A-Z][a-z]+\s+[a-z])|\.\s*$|\s+(?:and\s+(?:our|the|my|please|send|put|add|also)|"
    r"please|thanks?|thank\s+you|from\s+now|going\s+forward|with\s+(?:the\s+)?VAT|VAT\b|tax\s+id)\b",
    re.IGNORECASE,
)
_ADDRESS_TOPIC = re.compile(r"\baddress\b|\bmoved\b|\brelocat|\bAdresse\b|\bdirección\b|\bendereço\b", re.I)
_EU_POSTAL_CITY = re.compile(
    r"^(?:(?P<cc>[A-Z]{1,2})-)?(?P<postal>\d{4}\s?[A-Z]{2}(?=\s)|\d{4,5}|\d{4}-\d{3})\s+(?P<city>\D{2,60})$"
)
_CITY_EU_POSTAL = re.compile(r"^(?P<city>\D{2,60}?)\s+(?P<postal>\d{4,5})$")
_US_STATE_ZIP = re.compile(r"^(?:(?P<city>\D{2,60}?)\s+)?(?P<state>[A-Z]{2})\s+(?P<postal>\d{5}(?:-\d{4})?)$")
_UK_POSTCODE = re.compile(r"^(?:(?P<city>\D{2,60}?)\s+)?(?P<postal>[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})$", re.I)
_CA_POSTAL = re.compile(
    r"^(?:(?P<city>\D{2,60}?)\s+)?(?:(?P<state>[A-Z]{2})\s+)?(?P<postal>[A-Z]\d[A-Z]\s?\d[A-Z]\d)$"
)
_ADDRESS_QUESTION = (
    "Could you send the full new address — street and number, postal code, city and country — in one message?"
)


def _address(words: str, tax: TaxId | None) -> tuple[Address | None, list[Problem], bool]:
    lead = _ADDRESS_LEAD.search(words)
    mentioned = bool(_ADDRESS_TOPIC.search(words))
    if lead is None:
        return None, [], mentioned
    rest = words[lead.end() :]
    if _EMAIL.match(rest.strip()):
        return None, [], mentioned  # "send invoices to" an email: not a postal address
    end = _ADDRESS_END.search(rest)
    raw = rest[: end.start() if end else len(rest)].strip(" .,:")
    parts = [p.strip(" .") for p in re.split(r",|\n", raw) if p.strip(" .")]
    if not parts or not re.search(r"\d", raw):
        return None, [Problem("address", raw, _ADDRESS_QUESTION)] if raw else [], True
    country: str | None = None
    if parts and parts[-1].lower() in _COUNTRIES:
        country = _COUNTRIES[parts.pop().lower()]
    line1, city, postal, state, line2 = parts[0], None, None, None, None
    for part in parts[1:]:
        for pattern in (_US_STATE_ZIP, _UK_POSTCODE, _CA_POSTAL, _EU_POSTAL_CITY, _CITY_EU_POSTAL):
            m = pattern.match(part)
            if m is None:
                continue
            groups = m.groupdict()
            postal = groups.get("postal") or postal
            city = (groups.get("city") or city or "").strip() or city
            state = groups.get("state") or state
            if pattern is _US_STATE_ZIP and country is None:
                country = "US"
            elif pattern is _UK_POSTCODE and country is None:
                country = "GB"
            elif pattern is _CA_POSTAL and country is None:
                country = "CA"
            break
        else:
            if city is None and postal is None and line2 is None and re.search(r"\d", part):
                line2 = part  # "Suite 200", "Apt 4"
            elif city is None:
                city = part
            elif state is None and len(part) <= 30:
                state = part
    if country is None and tax is not None:
        country = tax.country
    if not re.search(r"\d", line1) and line2 is not None:
        line1, line2 = f"{line1} {line2}", None
    if city is None and postal is None:
        return None, [Problem("address", raw, _ADDRESS_QUESTION)], True
    return (
        Address(line1=line1, city=city, postal_code=postal, state=state, country=country, line2=line2),
        [],
        True,
    )


# --------------------------------------------------------------------------- the whole reading


def _words(text: str) -> str:
    return "\n".join(clean_lines(text)).strip()


def extract_details(text: str, *, country: str | None = None) -> DetailsAsked:
    """The billing details the customer's new words give, each checked. ``country``: the account's country,
    for a tax id written without its prefix."""
    words = _words(text)
    email, email_problems, email_said = _emails(words)
    tax, tax_problems, tax_said = _tax_id(words, country)
    address, address_problems, address_said = _address(words, tax)
    name, name_problems, name_said = _company(words)
    mentioned = {
        f
        for f, said in (
            ("billing_email", email_said),
            ("tax_id", tax_said),
            ("address", address_said),
            ("company_name", name_said),
        )
        if said
    }
    return DetailsAsked(
        billing_email=email,
        company_name=name,
        address=address,
        tax_id=tax,
        problems=(*email_problems, *tax_problems, *address_problems, *name_problems),
        mentioned=frozenset(mentioned),
    )


_ASK_FOR: dict[str, str] = {
    "billing_email": "the email address invoices should go to",
    "company_name": "the company name that should appear on your invoices",
    "address": "the full new address (street and number, postal code, city, country)",
    "tax_id": "the VAT / tax id with its country prefix (for example DE136695976)",
}


def question_for(asked: DetailsAsked) -> str:
    """The question back to the customer: what was wrong with a value, or which value to send."""
    if asked.problems:
        return " ".join(p.question for p in asked.problems) + " Nothing has been changed yet."
    wanted = [
        _ASK_FOR[f] for f in ("billing_email", "company_name", "address", "tax_id") if f in asked.mentioned
    ]
    if not wanted:
        wanted = ["what should change (billing email, company name, address or VAT id) and the new value"]
    listed = wanted[0] if len(wanted) == 1 else ", ".join(wanted[:-1]) + " and " + wanted[-1]
    return f"Happy to update your billing details. Could you send {listed}?"
