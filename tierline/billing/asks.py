"""What money action a customer asks for, read from their own words: the ceiling of any refund.

The customer's words set the ceiling, never the floor (``shared/spec/scenarios.md``, "Default policy"):
an amount, a fraction ("half", "50%"), a period or a charge they name bounds what may be refunded, and a
request for something else (a credit, a coupon, a downgrade, a multi-month refund, another person's
account) is never turned into a refund of the last charge.

Two pure steps, no I/O:

* :func:`parse_ask` reads a message (a chat line or a messy email: greetings, signatures, quoted replies
  are dropped, only the customer's new words count) into a :class:`MoneyAsk`;
* :func:`resolve_refund` turns an ask and the customer's verified charge records into either a
  :class:`RefundPlan` (which charge, how much; the policy engine still decides) or a :class:`HandOff`
  (a person decides, with the escalation reason).

Only a number with a currency marker is money (``$49``, ``49$``, ``USD 49``, ``49.00 dollars``, ``€40``,
``40 EUR``, ``£30``, ``forty dollars``): phone numbers, street addresses and order numbers never are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from schemas.vocab import EscalationReason
from tierline.textprep import clean_lines

AskKind = Literal[
    "refund", "credit", "coupon", "discount", "downgrade", "upgrade", "cancel", "multi_refund", "other"
]
PeriodKind = Literal["this_month", "last_month", "month"]

_CENT = Decimal("0.01")


def cents(value: Decimal | float | str) -> Decimal:
    """A money value rounded to whole cents (half up)."""
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str  # ISO 4217

    def __str__(self) -> str:
        return f"${self.amount:.2f}" if self.currency == "USD" else f"{self.amount:.2f} {self.currency}"


@dataclass(frozen=True, slots=True)
class Period:
    kind: PeriodKind
    month: int | None = None  # 1-12 for kind "month"


@dataclass(frozen=True, slots=True)
class MoneyAsk:
    """What the customer asked for. ``kind`` is the main ask; ``kinds`` every one found."""

    kind: AskKind
    kinds: frozenset[str]
    amounts: tuple[Money, ...] = ()  # amounts asked for (the ceiling)
    charge_amounts: tuple[Money, ...] = ()  # amounts that name a charge ("the $40 add-on", "I paid $49")
    fraction: Decimal | None = None
    period: Period | None = None
    months: int | None = None  # a multi-month / all-payments refund: how many (0: all)
    other_party: str | None = None  # why the ask is about another account or person
    unnamed_part: bool = False  # a part without its amount: "the difference", "a partial/prorated refund"
    words: str = ""  # the customer's new words, as parsed

    @property
    def amount(self) -> Money | None:
        """The one amount asked for (``None`` when none, or several different ones)."""
        distinct = set(self.amounts)
        return self.amounts[0] if len(distinct) == 1 else None


# --------------------------------------------------------------------------- the customer's new words


def customer_words(text: str) -> str:
    """The customer's new words: no quoted reply, signature, greeting or disclaimer (``tierline.textprep``),
    one paragraph a line so that clause breaks stay where the customer put them."""
    return "\n".join(clean_lines(text)).strip()


# --------------------------------------------------------------------------- money

_CURRENCY_SYMBOLS: dict[str, str] = {
    "us$": "USD",
    "$": "USD",
    "usd": "USD",
    "ca$": "CAD",
    "c$": "CAD",
    "cad": "CAD",
    "a$": "AUD",
    "au$": "AUD",
    "aud": "AUD",
    "€": "EUR",
    "eur": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "¥": "JPY",
    "jpy": "JPY",
    "₹": "INR",
    "inr": "INR",
    "chf": "CHF",
}
_CURRENCY_WORDS: dict[str, str] = {
    "dollar": "USD",
    "dollars": "USD",
    "buck": "USD",
    "bucks": "USD",
    "euro": "EUR",
    "euros": "EUR",
    "pound": "GBP",
    "pounds": "GBP",
    "quid": "GBP",
    "yen": "JPY",
    "rupee": "INR",
    "rupees": "INR",
    "franc": "CHF",
    "francs": "CHF",
}
_NUM = r"\d{1,3}(?:[,.\u00a0]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_CODE = r"usd|cad|aud|eur|gbp|jpy|inr|chf"
_PREFIX = rf"(?P<pcur>us\$|ca\$|au\$|c\$|a\$|\$|€|£|¥|₹|\b(?:{_CODE})\b)\s?(?P<pnum>{_NUM})"
_SUFFIX = (
    rf"(?<![\w#.,/\-])(?P<snum>{_NUM})\s?"
    rf"(?P<scur>\$|€|£|¥|₹|\b(?:{_CODE}|dollars?|bucks?|euros?|pounds?|quid|yen|rupees?|francs?)\b)"
)
_MONEY = re.compile(rf"{_PREFIX}|{_SUFFIX}", re.IGNORECASE)

_UNITS = {
    "zero": 0,
    "one": 1,
    "a": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_NUMBER_WORD = "|".join(
    [*sorted(_TENS), *sorted(_UNITS, key=len, reverse=True), "hundred", "thousand", "and"]
)
_WORD_MONEY = re.compile(
    rf"\b(?P<words>(?:(?:{_NUMBER_WORD})[\s-]+)*(?:{_NUMBER_WORD}))[\s-]+"
    r"(?P<wcur>dollars?|bucks?|euros?|pounds?|quid)\b",
    re.IGNORECASE,
)


def _number(raw: str) -> Decimal | None:
    text = raw.replace("\u00a0", "").replace(" ", "")
    if "," in text and "." in text:
        decimal_sep = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal_sep == "," else ","
        text = text.replace(thousands, "").replace(decimal_sep, ".")
    elif "," in text:
        head, _, tail = text.rpartition(",")
        text = text.replace(",", "") if len(tail) == 3 else f"{head.replace(',', '')}.{tail}"
    elif text.count(".") > 1 or (text.count(".") == 1 and len(text.rpartition(".")[2]) == 3):
        text = text.replace(".", "")  # 1.000 / 1.000.000: thousands
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _words_number(words: str) -> int | None:
    total, current, seen = 0, 0, False
    for word in re.split(r"[\s-]+", words.lower()):
        if word in ("and", ""):
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


@dataclass(frozen=True, slots=True)
class _Mention:
    money: Money
    start: int
    end: int


def _money_mentions(text: str) -> list[_Mention]:
    found: list[_Mention] = []
    for m in _MONEY.finditer(text):
        cur = (m.group("pcur") or m.group("scur") or "").lower()
        raw = m.group("pnum") or m.group("snum") or ""
        currency = _CURRENCY_SYMBOLS.get(cur) or _CURRENCY_WORDS.get(cur)
        value = _number(raw)
        if currency is None or value is None:
            continue
        found.append(_Mention(Money(cents(value), currency), m.start(), m.end()))
    for m in _WORD_MONEY.finditer(text):
        if any(f.start <= m.start() < f.end for f in found):
            continue
        value_int = _words_number(m.group("words"))
        if not value_int:  # "a dollar" is 1; "and dollars" is nothing
            continue
        currency = _CURRENCY_WORDS[m.group("wcur").lower()]
        found.append(_Mention(Money(cents(value_int), currency), m.start(), m.end()))
    return sorted(found, key=lambda f: f.start)


#: Words right before an amount that make it a charge's amount, not an amount asked for.
_CHARGE_BEFORE = re.compile(
    r"(?:\b(?:charged|charging|billed|billing|debited|took|taken|withdrew|paid|cost|costs|"
    r"priced|price|fee|total|totals|totalling|totaling|invoiced|deducted)\b"
    r"(?:\s+(?:me|us|my|our|the|a|an|of|for|was|is|at|about|around|exactly|twice|again|card|account))*"
    r"|\b(?:payment|charge|invoice|bill|transaction|subscription|plan)\s+(?:of|for|was|is)"
    r"(?:\s+(?:only|about|around|exactly))?)\s*$",
    re.IGNORECASE,
)
#: Words right after an amount that make it a charge's amount ("the $40 add-on", "$49/month").
_CHARGE_AFTER = re.compile(
    r"^\s*(?:(?:usd|us)\s+)?(?:/\s*(?:mo|month|yr|year)\b|(?:a|per|each|every)\s+(?:month|year|seat|user)\b|"
    r"monthly\b|yearly\b|annual\b|(?:add[\s-]?on|addon|charge|payment|invoice|bill|fee|subscription|plan|"
    r"transaction|purchase|upgrade|renewal|order)s?\b|(?:was|were)\s+(?:charged|taken|billed|debited)\b|"
    r"twice\b|two\s+times\b|(?:on|from)\s+my\s+(?:card|account|statement)\b)",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"(?<!\d)[.!?;:](?!\d)|\n|\bbut\b|\band\b(?=\s+(?:i|we|please|can|could)\b)")


def _clause_start(text: str, pos: int) -> int:
    start = 0
    for m in _CLAUSE_BREAK.finditer(text, 0, pos):
        start = m.end()
    return start


def _is_charge_reference(text: str, mention: _Mention) -> bool:
    before = text[_clause_start(text, mention.start) : mention.start]
    after = text[mention.end : mention.end + 60]
    return bool(_CHARGE_BEFORE.search(before) or _CHARGE_AFTER.match(after))


# --------------------------------------------------------------------------- fractions, periods

_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s?(?:%|percent\b|per\s+cent\b)(?P<off>\s*off\b)?", re.I)
_HALF = re.compile(
    r"\bhalf\b(?!\s*(?:an?\s+)?(?:hour|minute|day|week|year)s?\b)(?![\s-]*(?:price|way|time|off)\b)", re.I
)
_QUARTER = re.compile(r"\b(?:a|one)\s+quarter\b(?!\s+of\s+an?\s+hour)", re.I)
_THIRD = re.compile(r"\b(?:a|one)\s+third\b", re.I)
_COUNT_WORDS = {
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "eighteen": 18,
    "twenty-four": 24,
    "twenty four": 24,
    "thirty-six": 36,
    "several": 0,
    "few": 0,
    "couple of": 2,
}
_COUNT = r"\d{1,3}|" + "|".join(re.escape(w) for w in sorted(_COUNT_WORDS, key=len, reverse=True))
_MULTI = re.compile(
    rf"\b(?:last|past|previous|prior|first)\s+(?P<n>{_COUNT})\s+(?:months?|payments?|charges?|invoices?|"
    r"bills?|billing\s+cycles?|renewals?)\b"
    rf"|\b(?P<n2>{_COUNT})\s+months?(?:'|’)?\s+(?:of|worth)\b"
    r"|\b(?P<all>all\s+(?:of\s+)?(?:(?:my|our|the|those|these)\s+)?(?:payments|charges|invoices|bills|fees|months|"
    r"money\s+(?:i|we)(?:'ve|\s+have)?\s+(?:paid|spent))|every\s+(?:single\s+)?(?:payment|charge|invoice)|"
    r"everything\s+(?:i|we)(?:'ve|\s+have)?\s+(?:paid|spent))\b"
    r"|\b(?P<since>since\s+(?:i|we)\s+(?:signed\s+up|joined|started|subscribed))\b"
    r"|\b(?P<year>(?:whole|entire|full|past)\s+year|(?:two|2|three|3)\s+years|(?:a|one)\s+year(?:'s|s)?\s+"
    r"(?:of\s+payments|worth))\b"
    r"|\b(?P<sincemonth>since\s+(?:january|february|march|april|may|june|july|august|september|october|"
    r"november|december))\b",
    re.IGNORECASE,
)
_MONEY_BACK = re.compile(r"\b(?:refund\w*|reimburs\w*|back|money|compensat\w*|return)\b", re.IGNORECASE)
_SHORT_CLAUSE = re.compile(r"(?<!\d)[.!?;,:](?!\d)|\n|\bbut\b|\band\b")
_MONTHS = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "mar": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_NAMED_MONTH = re.compile(
    rf"\b(?:in|for|from|of|during|on|the)\s+(?P<m1>{_MONTH_NAMES})\b"
    rf"|\b(?P<m2>{_MONTH_NAMES})(?:'s|’s|\s+(?:charge|payment|invoice|bill|renewal|subscription))\b",
    re.IGNORECASE,
)
_THIS_MONTH = re.compile(
    r"\b(?:this|current|the\s+current|this\s+billing)\s+(?:month|period|cycle|billing\s+(?:period|cycle))\b"
    r"|\bthis\s+month'?s\b",
    re.I,
)
_LAST_MONTH = re.compile(r"\b(?:last|previous)\s+month(?:'s|’s)?\b|\bprevious\s+billing\s+period\b", re.I)


def _fraction(words: str) -> tuple[Decimal | None, bool]:
    """(fraction asked, whether a percentage was a discount "x% off")."""
    discount = False
    for m in _PERCENT.finditer(words):
        if m.group("off"):
            discount = True
            continue
        value = Decimal(m.group(1))
        if 0 < value <= 100:
            return value / 100, discount
    if _HALF.search(words):
        return Decimal("0.5"), discount
    if _QUARTER.search(words):
        return Decimal("0.25"), discount
    if _THIRD.search(words):
        return Decimal(1) / Decimal(3), discount
    return None, discount


def _multi_months(words: str) -> int | None:
    """How many charges a refund of several months asks for (0: all of them); only in a refund clause."""
    for m in _MULTI.finditer(words):
        begin = max((b.end() for b in _SHORT_CLAUSE.finditer(words, 0, m.start())), default=0)
        after = _SHORT_CLAUSE.search(words, m.end())
        clause = words[begin : after.start() if after else len(words)]
        if not _MONEY_BACK.search(clause):
            continue  # "a customer for the last 24 months": tenure, not an ask
        raw = (m.group("n") or m.group("n2") or "").lower()
        if raw:
            n = int(raw) if raw.isdigit() else _COUNT_WORDS.get(raw, 0)
            if n == 1:
                continue
            return n
        year = m.group("year")
        if year:
            return 24 if re.search(r"two|2", year) else 36 if re.search(r"three|3", year) else 12
        return 0  # all / every / since …
    return None


_CAPITALISED_ONLY = frozenset({"may", "mar", "march"})  # "may" the verb, "march" the word


def _period(words: str) -> Period | None:
    if _THIS_MONTH.search(words):
        return Period("this_month")
    if _LAST_MONTH.search(words):
        return Period("last_month")
    for m in _NAMED_MONTH.finditer(words):
        raw = m.group("m1") or m.group("m2") or ""
        if raw.lower() in _CAPITALISED_ONLY and not raw[0].isupper():
            continue
        return Period("month", _MONTHS[raw.lower()])
    return None


_UNNAMED_PART = re.compile(
    r"\bthe\s+difference\b|\bpartial(?:ly)?\b|\bpro[\s-]?rat\w*|\b(?:part|some)\s+of\s+(?:it|my|the|our)\b"
    r"|\bunused\s+(?:time|days|part|portion)\b",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- kinds

_NEGATED = re.compile(
    r"\b(?:instead\s+of|rather\s+than|not|no|never|without|don'?t\s+(?:want|need)|do\s+not\s+(?:want|need)|"
    r"doesn'?t\s+have\s+to\s+be)\s+(?:an?\s+|the\s+|any\s+|my\s+)?"
    r"(?P<w>refund|credit|coupon|voucher|discount|downgrade|upgrade|cancel\w*)\b",
    re.IGNORECASE,
)
_KIND_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "credit",
        re.compile(
            r"(?<!debit or )(?<!debit/)(?<!debit / )\b(?:account\s+|store\s+|service\s+)?credits?\b"
            r"(?!\s*(?:-\s*)?(?:card|or\s+debit|/\s*debit|score|limit|union|check))"
            r"(?!\s+(?:it\s+|that\s+|this\s+|the\s+money\s+)?(?:back|to\s+(?:my|the|our)\s+card))",
            re.I,
        ),
    ),
    (
        "coupon",
        re.compile(r"\b(?:coupons?|vouchers?|promo(?:tional)?\s+codes?|promo|discount\s+codes?)\b", re.I),
    ),
    (
        "discount",
        re.compile(
            r"\b(?:discount(?:ed)?|price\s+reduction|reduced\s+(?:price|rate)|cheaper\s+(?:price|rate)|"
            r"half[\s-]price|loyalty\s+(?:discount|deal)|lower\s+(?:my|the|our)\s+(?:price|rate|bill))\b"
            r"|\d+\s?(?:%|percent)\s*off\b",
            re.I,
        ),
    ),
    (
        "downgrade",
        re.compile(
            r"\bdowngrad\w*|\b(?:cheaper|lower|smaller|basic)\s+(?:plan|tier)\b"
            r"|\b(?:move|switch|change|put)\s+(?:me|us|my\s+\w+|our\s+\w+)?\s*(?:down\s+)?to\s+(?:the\s+)?starter\b"
            r"|\b(?:fewer|less)\s+seats\b|\b(?:reduce|remove|drop)\s+(?:my\s+|our\s+)?(?:\d+\s+)?seats?\b",
            re.I,
        ),
    ),
    (
        "upgrade",
        re.compile(
            r"\bupgrad\w*|\bmore\s+seats\b|\badd\s+(?:\d+|a\s+few|some)\s+(?:more\s+)?seats?\b"
            r"|\b(?:move|switch|change|put)\s+(?:me|us|my\s+\w+|our\s+\w+)?\s*(?:up\s+)?to\s+(?:the\s+)?"
            r"(?:enterprise|business)\b|\b(?:enterprise|business)\s+plan\s+for\s+free\b",
            re.I,
        ),
    ),
    (
        "refund",
        re.compile(
            r"\brefund\w*|\breimburs\w*|\bmoney\s+back\b|\bcompensat\w*|\bcharge\s*back\b"
            r"|\breturn\s+(?:my|the|our)\s+(?:money|payment|funds)\b|\bcredit(?:ed)?\s+back\b"
            r"|\b(?:give|send|pay|put|want|get|have|need|like)\s+(?:me\s+|us\s+)?(?:my|our|the|it|that|this|all|"
            r"some|part|half)\b[^.!?\n]{0,40}\bback\b|\b(?:give|pay|send)\s+(?:me|us)\s+back\b",
            re.I,
        ),
    ),
    (
        "cancel",
        re.compile(
            r"\bcancel\w*|\bterminat\w*|\bunsubscribe\b|\bclose\s+(?:my|our|the)\s+account\b"
            r"|\bend\s+(?:my|our|the)\s+(?:subscription|plan|account)\b",
            re.I,
        ),
    ),
)
#: When several asks are made, the main one: anything that is not a plain refund wins over it.
_PRECEDENCE: tuple[AskKind, ...] = (
    "multi_refund",
    "credit",
    "coupon",
    "discount",
    "downgrade",
    "upgrade",
    "refund",
    "cancel",
)


def _kinds(words: str) -> set[str]:
    """Every kind of ask in the words; a negated one ("not a credit", "instead of a refund") is not one."""
    stripped = _NEGATED.sub(" ", words)
    return {name for name, pattern in _KIND_PATTERNS if pattern.search(stripped)}


# --------------------------------------------------------------------------- another account or person

_RELATIONS = (
    r"colleague|co-?worker|friend|wife|husband|spouse|partner|boss|manager|client|customer|brother|sister|"
    r"mother|mom|mum|father|dad|son|daughter|cousin|uncle|aunt|teammate|team\s*mate|employee|employer|"
    r"neighbou?r|room-?mate|flat-?mate|girlfriend|boyfriend|fianc[eé]e?|relative|parent|kid|child|"
    r"business\s+partner|assistant|accountant|sibling|grandma|grandpa|grandmother|grandfather|in-?law"
)
_OTHER_PARTY = re.compile(
    rf"\b(?:my|our)\s+(?:{_RELATIONS})(?:'s|’s|s'|s’)"
    rf"|\b(?:for|of)\s+(?:my|our)\s+(?:{_RELATIONS})\b"
    r"|\bon\s+behalf\s+of\b"
    r"|\bsome(?:one|body)\s+else(?:'s|’s)?"
    r"|\b(?:his|her|their)\s+(?:account|subscription|payment|charge|plan|card|invoice|money|refund|seat)s?\b"
    r"|\b(?:another|other|a\s+different|different|second|separate)\s+(?:account|customer|user|person|"
    r"company|workspace|organi[sz]ation|subscription)s?\b"
    r"|\b(?:account|customer|user|subscription|workspace)\s+(?:belonging\s+to|owned\s+by|registered\s+to)"
    r"\s+(?!me\b|us\b)\w+",
    re.IGNORECASE,
)
_CUSTOMER_ID = re.compile(r"\bcus_[A-Za-z0-9]{4,}\b")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


def _other_party(words: str, own_customer_id: str | None, own_emails: frozenset[str]) -> str | None:
    m = _OTHER_PARTY.search(words)
    if m is not None:
        return f"names another person or account: {m.group(0)!r}"
    for cid in _CUSTOMER_ID.findall(words):
        if cid != own_customer_id:
            return f"names another customer: {cid}"
    for email in _EMAIL.findall(words):
        if email.lower() not in own_emails:
            return f"names another email address: {email}"
    return None


# --------------------------------------------------------------------------- parse


def parse_ask(
    text: str, *, own_customer_id: str | None = None, own_emails: frozenset[str] | set[str] = frozenset()
) -> MoneyAsk:
    """Read what money action the customer's own new words ask for."""
    words = customer_words(text)
    emails = frozenset(e.lower() for e in own_emails)
    mentions = _money_mentions(words)
    asked = tuple(m.money for m in mentions if not _is_charge_reference(words, m))
    named = tuple(m.money for m in mentions if _is_charge_reference(words, m))
    fraction, percent_off = _fraction(words)
    kinds = _kinds(words)
    if percent_off:
        kinds.add("discount")
    months = _multi_months(words)
    if months is not None and ("refund" in kinds or asked or not kinds):
        kinds.add("multi_refund")
    elif months is None and not kinds and (asked or fraction is not None):
        kinds.add("refund")  # "I want the $228 back", "half of it" — money asked for is a refund
    kind: AskKind = next((k for k in _PRECEDENCE if k in kinds), "other")
    return MoneyAsk(
        kind=kind,
        kinds=frozenset(kinds),
        amounts=asked,
        charge_amounts=named,
        fraction=fraction,
        period=_period(words),
        months=months if kind == "multi_refund" else None,
        other_party=_other_party(words, own_customer_id, emails),
        unnamed_part=bool(_UNNAMED_PART.search(words)),
        words=words,
    )


# --------------------------------------------------------------------------- resolve against the records


@dataclass(frozen=True, slots=True)
class ChargeRef:
    """A verified charge record (from the diagnosis evidence), newest first when in a list."""

    id: str
    amount_usd: Decimal
    refundable_usd: Decimal
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """Refund ``amount_usd`` of ``charge_id`` (the policy engine still decides)."""

    charge_id: str
    amount_usd: Decimal
    amount_asked: bool  # the customer named the amount (or a fraction): it is exact, not a default
    charge_asked: bool  # the customer named the charge (a period, its amount)


@dataclass(frozen=True, slots=True)
class HandOff:
    reason: EscalationReason
    detail: str


_NOT_REFUNDS: dict[str, str] = {
    "credit": "an account credit",
    "coupon": "a coupon",
    "discount": "a discount",
    "downgrade": "a downgrade",
    "upgrade": "an upgrade",
}


def _previous_month(now: datetime) -> tuple[int, int]:
    return (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)


def _in_period(charge: ChargeRef, period: Period, now: datetime) -> bool:
    created = charge.created_at
    if created is None:
        return False
    if period.kind == "last_month":
        return (created.year, created.month) == _previous_month(now)
    if period.kind == "month" and period.month is not None:
        year = now.year if period.month <= now.month else now.year - 1
        return (created.year, created.month) == (year, period.month)
    return False


def _pick_charge(
    ask: MoneyAsk, charges: list[ChargeRef], now: datetime, default_charge_id: str | None
) -> ChargeRef | HandOff:
    period = ask.period
    usd_named = [m for m in ask.charge_amounts if m.currency == "USD"]
    default = next((c for c in charges if c.id == default_charge_id), None)
    if default is not None and (period is not None or usd_named):
        in_period = period is None or period.kind == "this_month" or _in_period(default, period, now)
        named_ok = not usd_named or cents(default.amount_usd) in {cents(m.amount) for m in usd_named}
        if in_period and named_ok:
            return default  # the charge the caller proposes is the one the customer names
    if period is not None:
        if period.kind == "this_month":
            found = charges[0] if charges else None
        else:
            found = next((c for c in charges if _in_period(c, period, now)), None)
        if found is None:
            return HandOff(EscalationReason.LOW_CONFIDENCE, "asks about a period with no charge on record")
        return found
    if usd_named:
        wanted = {cents(m.amount) for m in usd_named}
        found = next((c for c in charges if cents(c.amount_usd) in wanted), None)
        if found is None:
            return HandOff(
                EscalationReason.LOW_CONFIDENCE,
                f"names a charge of {', '.join(str(m) for m in usd_named)}; no such charge on record",
            )
        return found
    if default is not None:
        return default
    found = next((c for c in charges if c.refundable_usd > 0), None)
    if found is None:
        return HandOff(EscalationReason.LOW_CONFIDENCE, "refund requested; no refundable charge on record")
    return found


def resolve_refund(
    ask: MoneyAsk,
    charges: list[ChargeRef],
    now: datetime,
    *,
    default_charge_id: str | None = None,
) -> RefundPlan | HandOff:
    """What refund (if any) the ask allows an agent to propose on these charges (newest first).

    The amount is the one asked for (or the fraction of the charge), never clamped to what the
    policy allows: the policy engine then refuses it whole and a person decides.
    """
    if ask.other_party is not None:
        return HandOff(
            EscalationReason.POLICY_DENIED, f"the request is about someone else: {ask.other_party}"
        )
    if ask.kind == "multi_refund":
        months = f"{ask.months} months" if ask.months else "all payments"
        return HandOff(
            EscalationReason.REFUND_OVER_POLICY, f"asks for a refund of {months}; more than one charge"
        )
    if ask.kind in _NOT_REFUNDS:
        return HandOff(
            EscalationReason.POLICY_DENIED,
            f"asks for {_NOT_REFUNDS[ask.kind]}, not a refund; no automatic action gives one",
        )
    if ask.kind == "cancel":
        return HandOff(EscalationReason.LOW_CONFIDENCE, "asks to cancel, not for a refund")
    foreign = [m for m in (*ask.amounts, *ask.charge_amounts) if m.currency != "USD"]
    if foreign:
        return HandOff(
            EscalationReason.LOW_CONFIDENCE,
            f"names {foreign[0]} for a USD account; amounts are not converted",
        )
    if len(set(ask.amounts)) > 1:
        return HandOff(
            EscalationReason.LOW_CONFIDENCE,
            f"names several amounts ({', '.join(str(m) for m in ask.amounts)}); which one is unclear",
        )
    if ask.unnamed_part and ask.amount is None and ask.fraction is None:
        return HandOff(EscalationReason.LOW_CONFIDENCE, "asks for part of a charge without naming how much")
    picked = _pick_charge(ask, charges, now, default_charge_id)
    if isinstance(picked, HandOff):
        return picked
    charge_asked = ask.period is not None or bool(ask.charge_amounts)
    if ask.amount is not None:
        return RefundPlan(picked.id, cents(ask.amount.amount), amount_asked=True, charge_asked=charge_asked)
    if ask.fraction is not None:
        amount = cents(picked.amount_usd * ask.fraction)
        return RefundPlan(picked.id, amount, amount_asked=True, charge_asked=charge_asked)
    if picked.refundable_usd <= 0:
        return HandOff(
            EscalationReason.REFUND_OVER_POLICY, f"the charge {picked.id} the customer names has nothing left"
        )
    return RefundPlan(picked.id, cents(picked.refundable_usd), amount_asked=False, charge_asked=charge_asked)


def ceiling_refusal(plan: RefundPlan | HandOff, charge_id: str, amount_usd: float) -> HandOff | None:
    """Why a proposed refund (by a model) goes beyond what the customer asked, or ``None`` if it does not.

    ``plan`` is :func:`resolve_refund` of the customer's words with ``default_charge_id=charge_id``.
    """
    if isinstance(plan, HandOff):
        return plan
    if plan.charge_asked and charge_id != plan.charge_id:
        return HandOff(
            EscalationReason.POLICY_DENIED,
            f"the customer asked about charge {plan.charge_id}, not {charge_id}",
        )
    proposed = cents(amount_usd)
    if plan.amount_asked and proposed != plan.amount_usd:
        relation = "more than" if proposed > plan.amount_usd else "not"
        return HandOff(
            EscalationReason.POLICY_DENIED,
            f"${proposed:.2f} is {relation} the ${plan.amount_usd:.2f} the customer asked for",
        )
    return None


# --------------------------------------------------------------------------- the months an invoice ask names

BillingMonth = tuple[int, int]  # (year, month)

#: Month names in Spanish, German, French and Portuguese (the English ones are ``_MONTHS``).
_FOREIGN_MONTHS = {
    "enero": 1,
    "febrero": 2,
    "marzo": 3,
    "abril": 4,
    "mayo": 5,
    "junio": 6,
    "julio": 7,
    "agosto": 8,
    "septiembre": 9,
    "setiembre": 9,
    "octubre": 10,
    "noviembre": 11,
    "diciembre": 12,
    "januar": 1,
    "jänner": 1,
    "februar": 2,
    "märz": 3,
    "maerz": 3,
    "mai": 5,
    "juni": 6,
    "juli": 7,
    "oktober": 10,
    "dezember": 12,
    "janvier": 1,
    "février": 2,
    "fevrier": 2,
    "mars": 3,
    "avril": 4,
    "juin": 6,
    "juillet": 7,
    "août": 8,
    "aout": 8,
    "septembre": 9,
    "octobre": 10,
    "novembre": 11,
    "décembre": 12,
    "decembre": 12,
    "janeiro": 1,
    "fevereiro": 2,
    "março": 3,
    "maio": 5,
    "junho": 6,
    "julho": 7,
    "setembro": 9,
    "outubro": 10,
    "novembro": 11,
    "dezembro": 12,
}
_ALL_MONTHS = {**_MONTHS, **_FOREIGN_MONTHS}
_MONTH_WORD = "|".join(sorted(_ALL_MONTHS, key=len, reverse=True))
_YEAR = r"(?:19|20)\d{2}"
_ORDINAL = r"(?:st|nd|rd|th|\.|º|er)?"
_MONTH_MENTION = re.compile(
    rf"(?:\b(?P<day1>[0-3]?\d){_ORDINAL}\s+(?:of\s+|de\s+)?)?"
    rf"\b(?P<month>{_MONTH_WORD})\b\.?"
    rf"(?:\s+(?P<day2>[0-3]?\d)(?:st|nd|rd|th)?\b(?!\s*(?:%|\$|€|£|usd|eur|dollars?|euros?|seats?|users?)))?"
    rf"(?:,?\s+(?:de\s+|of\s+)?(?P<year>{_YEAR})\b|\s+['’](?P<yy>\d{{2}})\b)?",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(rf"\b(?P<y>{_YEAR})-(?P<m>0[1-9]|1[0-2])(?:-(?P<d>[0-3]\d))?\b")
_NUMERIC_MONTH = re.compile(rf"\b(?P<m>0?[1-9]|1[0-2])[/.](?P<y>{_YEAR})\b")
_QUARTER_WORDS = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "primer": 1,
    "segundo": 2,
    "tercer": 3,
    "cuarto": 4,
    "erstes": 1,
    "zweites": 2,
    "drittes": 3,
    "viertes": 4,
    "premier": 1,
    "deuxième": 2,
    "troisième": 3,
    "quatrième": 4,
    "primeiro": 1,
    "terceiro": 3,
    "quarto": 4,
}
_QUARTER_NAMED = re.compile(
    rf"\b(?:Q|T)(?P<q>[1-4])\b(?:\s*(?:/|-|of|de)?\s*(?P<qy>{_YEAR})\b|\s*['’](?P<qyy>\d{{2}})\b)?"
    rf"|\b(?P<qy0>{_YEAR})\s*[-/]?\s*Q(?P<q0>[1-4])\b"
    rf"|\b(?P<qw>{'|'.join(sorted(_QUARTER_WORDS, key=len, reverse=True))})\s+"
    rf"(?:quarter|trimestre|quartal)\b(?:\s+(?:of\s+|de\s+|del\s+|do\s+)?(?P<qwy>{_YEAR})\b)?"
    rf"|\b(?P<qn>[1-4])\.\s*quartal\b(?:\s+(?P<qny>{_YEAR})\b)?"
    r"|\b(?P<qrel>last|previous|this|current)\s+quarter\b",
    re.IGNORECASE,
)
_RANGE_JOIN = re.compile(
    r"^\s*(?:-|–|—|to|through|thru|till|until|up\s+to|bis|à|au|a|al|hasta|até)\s*(?:the\s+|el\s+|o\s+)?$",
    re.IGNORECASE,
)
_LAST_MONTH_ANY = re.compile(
    rf"{_LAST_MONTH.pattern}|\b(?:el\s+)?mes\s+pasado\b|\búltimo\s+mes\b|\b(?:letzten|vorigen|letzter|"
    r"voriger)\s+monat\b|\bvormonat\b|\bmois\s+(?:dernier|précédent|precedent)\b|\bm[êe]s\s+passado\b"
    r"|\bmês\s+anterior\b",
    re.IGNORECASE,
)
_THIS_MONTH_ANY = re.compile(
    rf"{_THIS_MONTH.pattern}|\beste\s+m[eê]s\b|\bneste\s+m[eê]s\b|\bdeste\s+m[eê]s\b|\b(?:diesen|dieser|"
    r"diesem|aktuellen)\s+monat\b|\bce\s+mois(?:-ci)?\b",
    re.IGNORECASE,
)
_WHOLE_YEAR = re.compile(
    rf"\b(?:for|in|from|of|during|de|del|für|aus|pour|en|do)\s+(?:the\s+(?:year\s+)?|year\s+|el\s+año\s+|"
    rf"das\s+jahr\s+|l'année\s+|o\s+ano\s+)?(?P<y>{_YEAR})\b",
    re.IGNORECASE,
)
_MODAL_AFTER = re.compile(r"\s+(?:i|we|you|they|he|she|it|someone|somebody|one|my|our|the\s+team)\b", re.I)
_MONTH_NAMES_EN = (
    "January February March April May June July August September October November December"
).split()


@dataclass(frozen=True, slots=True)
class MonthsAsked:
    """The billing months a customer names ("October", "last month", "Q3 2025"), oldest first."""

    months: tuple[BillingMonth, ...]
    label: str  # in words, for the answer: "October 2026", "Q3 2026", "last month (November 2026)"
    relative: bool = False  # "this month" / "last month": loosely meant, the latest document may do
    day: int | None = None  # "the invoice from 3 October"


def _month_label(month: BillingMonth) -> str:
    return f"{_MONTH_NAMES_EN[month[1] - 1]} {month[0]}"


def _latest_year(month: int, now: datetime) -> int:
    """The year of the most recent ``month`` that is not in the future."""
    return now.year if month <= now.month else now.year - 1


def _shift(month: BillingMonth, by: int) -> BillingMonth:
    index = month[0] * 12 + month[1] - 1 + by
    return index // 12, index % 12 + 1


def _quarter_months(quarter: int, year: int) -> tuple[BillingMonth, ...]:
    return tuple((year, 3 * (quarter - 1) + i) for i in (1, 2, 3))


def _year_of(raw: str | None, short: str | None) -> int | None:
    if raw:
        return int(raw)
    if short:
        return 2000 + int(short)
    return None


@dataclass(frozen=True, slots=True)
class _MonthMention:
    month: int
    year: int | None
    day: int | None
    start: int
    end: int


def _month_mentions(words: str) -> list[_MonthMention]:
    found: list[_MonthMention] = []
    for m in _ISO_DATE.finditer(words):
        day = int(m.group("d")) if m.group("d") else None
        found.append(_MonthMention(int(m.group("m")), int(m.group("y")), day, m.start(), m.end()))
    for m in _NUMERIC_MONTH.finditer(words):
        if not any(f.start <= m.start() < f.end for f in found):
            found.append(_MonthMention(int(m.group("m")), int(m.group("y")), None, m.start(), m.end()))
    for m in _MONTH_MENTION.finditer(words):
        raw = m.group("month")
        if raw.lower() in _CAPITALISED_ONLY and (
            not raw[0].isupper() or _MODAL_AFTER.match(words, m.end("month"))
        ):
            continue  # "may" the verb ("May I have ...")
        if any(f.start <= m.start("month") < f.end for f in found):
            continue
        day_raw = m.group("day1") or m.group("day2")
        day = int(day_raw) if day_raw and 1 <= int(day_raw) <= 31 else None
        year = _year_of(m.group("year"), m.group("yy"))
        found.append(_MonthMention(_ALL_MONTHS[raw.lower()], year, day, m.start(), m.end()))
    return sorted(found, key=lambda f: f.start)


def _year_in_list(mentions: list[_MonthMention], i: int, now: datetime) -> int:
    """A mention's year: its own; else from the nearest one with a year in the same list ("September and
    October 2025", "December and January 2026": December 2025); else its most recent occurrence."""
    here = mentions[i]
    if here.year is not None:
        return here.year
    after = next((m for m in mentions[i + 1 :] if m.year is not None), None)
    if after is not None and after.year is not None:
        return after.year if here.month <= after.month else after.year - 1
    before = next((m for m in reversed(mentions[:i]) if m.year is not None), None)
    if before is not None and before.year is not None:
        return before.year if here.month >= before.month else before.year + 1
    return _latest_year(here.month, now)


def _named_months(words: str, now: datetime) -> tuple[list[BillingMonth], int | None]:
    mentions = _month_mentions(words)
    resolved = [(_year_in_list(mentions, i, now), m.month) for i, m in enumerate(mentions)]
    months: list[BillingMonth] = []
    i = 0
    while i < len(mentions):
        here = resolved[i]
        if i + 1 < len(mentions) and _RANGE_JOIN.match(words[mentions[i].end : mentions[i + 1].start]):
            last = resolved[i + 1]
            if here > last:  # "November to January": the range ends in the later year
                if mentions[i].year is None:
                    here = (last[0] - 1, here[1])
                else:
                    last = (here[0] + 1, last[1])
            span = (last[0] - here[0]) * 12 + last[1] - here[1]
            months.extend(_shift(here, k) for k in range(min(span, 24) + 1))
            i += 2
            continue
        months.append(here)
        i += 1
    day = mentions[0].day if len(mentions) == 1 else None
    return months, day


def _quarters(words: str, now: datetime) -> list[tuple[BillingMonth, ...]]:
    current_q = (now.month - 1) // 3 + 1
    found: list[tuple[BillingMonth, ...]] = []
    for m in _QUARTER_NAMED.finditer(words):
        if m.group("qrel"):
            rel = m.group("qrel").lower()
            q, year = current_q, now.year
            if rel in ("last", "previous"):
                q, year = (q - 1, year) if q > 1 else (4, year - 1)
            found.append(_quarter_months(q, year))
            continue
        raw_q = m.group("q") or m.group("q0") or m.group("qn")
        q = int(raw_q) if raw_q else _QUARTER_WORDS[m.group("qw").lower()]
        named = _year_of(m.group("qy") or m.group("qy0") or m.group("qwy") or m.group("qny"), m.group("qyy"))
        if named is None:
            named = now.year if q <= current_q else now.year - 1
        found.append(_quarter_months(q, named))
    return found


def months_asked(text: str, now: datetime) -> MonthsAsked | None:
    """The billing months the customer's new words name, or ``None`` when they name none.

    Month names (en/es/de/fr/pt, with a day or a year: "the invoice from 3 October", "Oct 2025"),
    ``2025-10`` / ``10/2025``, ranges ("July to September") and lists, quarters ("Q3", "third quarter
    2025", "last quarter"), "this month" / "last month", a whole year ("invoices for 2025"). A month
    without a year is its most recent occurrence that is not in the future.
    """
    words = customer_words(text)
    months, day = _named_months(words, now)
    labels = [_month_label(m) for m in months]
    for quarter in _quarters(words, now):
        months.extend(quarter)
        labels.append(f"Q{(quarter[0][1] - 1) // 3 + 1} {quarter[0][0]}")
    if months:
        unique = tuple(sorted(set(months)))
        label = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
        return MonthsAsked(unique, label, day=day if len(unique) == 1 else None)
    current: BillingMonth = (now.year, now.month)
    if _LAST_MONTH_ANY.search(words):
        last = _shift(current, -1)
        return MonthsAsked((last,), f"last month ({_month_label(last)})", relative=True)
    if _THIS_MONTH_ANY.search(words):
        return MonthsAsked((current,), f"this month ({_month_label(current)})", relative=True)
    whole = _WHOLE_YEAR.search(words)
    if whole is not None and int(whole.group("y")) <= now.year:
        year = int(whole.group("y"))
        last_month = 12 if year < now.year else now.month
        return MonthsAsked(tuple((year, m) for m in range(1, last_month + 1)), str(year))
    return None


# --------------------------------------------------------------------------- which documents those are


@dataclass(frozen=True, slots=True)
class BillingDocument:
    """An invoice (or, for a payment without one, its receipt) the customer can be sent."""

    id: str  # the invoice id, or the charge id of a payment without an invoice
    created: datetime
    kind: Literal["invoice", "receipt"] = "invoice"
    amount_usd: Decimal | None = None
    status: str | None = None

    def describe(self) -> str:
        amount = f" (${self.amount_usd:,.2f})" if self.amount_usd is not None else ""
        return f"{self.kind} {self.id} of {self.created.strftime('%d %B %Y')}{amount}"


def _stamp(raw: object) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _usd(raw: object) -> Decimal | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        return cents(raw)
    except InvalidOperation:
        return None


def documents_from_evidence(evidence: Mapping[str, Any]) -> list[BillingDocument]:
    """The documents a diagnosis' evidence shows, newest first: each paid charge as its invoice (or its
    receipt when it has none), and the open invoice."""
    docs: dict[str, BillingDocument] = {}
    charges = evidence.get("charges")
    for charge in charges if isinstance(charges, list) else []:
        if not isinstance(charge, dict) or not isinstance(charge.get("id"), str):
            continue
        if charge.get("status") not in (None, "succeeded", "paid"):
            continue
        created = _stamp(charge.get("created_at"))
        if created is None:
            continue
        invoice_id = charge.get("invoice_id")
        doc_id = invoice_id if isinstance(invoice_id, str) and invoice_id else charge["id"]
        kind: Literal["invoice", "receipt"] = "invoice" if doc_id != charge["id"] else "receipt"
        docs.setdefault(
            doc_id, BillingDocument(doc_id, created, kind, _usd(charge.get("amount_usd")), "paid")
        )
    invoice = evidence.get("invoice")
    if isinstance(invoice, dict) and isinstance(invoice.get("id"), str):
        created = _stamp(invoice.get("created_at"))
        if created is not None:
            docs.setdefault(
                invoice["id"],
                BillingDocument(
                    invoice["id"],
                    created,
                    "invoice",
                    _usd(invoice.get("amount_due_usd")),
                    invoice.get("status"),
                ),
            )
    return sorted(docs.values(), key=lambda d: d.created, reverse=True)


def _month_of(doc: BillingDocument) -> BillingMonth:
    created = doc.created.astimezone(UTC)
    return created.year, created.month


#: "Last month's invoice" said loosely: with none in the calendar month, the latest this recent.
RELATIVE_FALLBACK = timedelta(days=45)


def documents_for(
    asked: MonthsAsked, documents: Sequence[BillingDocument], now: datetime
) -> tuple[BillingDocument, ...]:
    """The documents of the months asked, oldest first (invoices before bare receipts in a month); empty
    when none is on record. A day named picks that day's document when there is one."""
    picked: list[BillingDocument] = []
    for month in asked.months:
        in_month = [d for d in documents if _month_of(d) == month]
        if asked.day is not None:
            in_month = [d for d in in_month if d.created.astimezone(UTC).day == asked.day] or in_month
        invoices = [d for d in in_month if d.kind == "invoice"]
        picked.extend(sorted(invoices or in_month, key=lambda d: d.created))
    if not picked and asked.relative:
        recent = [d for d in documents if timedelta(0) <= now - d.created <= RELATIVE_FALLBACK]
        if recent:
            picked.append(max(recent, key=lambda d: d.created))
    return tuple(picked)


def side_ask_invoices(text: str | None, evidence: Mapping[str, Any], now: datetime) -> list[str | None]:
    """The invoices a side ask for "the invoice" sends (issue 20): those of the period the customer's words
    name ("... and the March invoice"), oldest first; ``[None]`` (the latest) when they name no period;
    ``[]`` when the period named has no invoice on record (never the latest instead)."""
    asked = months_asked(customer_words(text), now) if text else None
    if asked is None:
        return [None]
    return [d.id for d in documents_for(asked, documents_from_evidence(evidence), now) if d.kind == "invoice"]
