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
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

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
