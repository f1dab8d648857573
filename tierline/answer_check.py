"""The answer quality check (issue 19): nothing automated is said that the pipeline cannot back.

Every amount, date, invoice/charge id, plan name and promise ("we refunded", "will be refunded",
"credited") in an answer must come from the facts the pipeline holds for the contact: the diagnosis, a
tool result (what a tool returned, and the arguments of a call that succeeded) or a knowledge article.
A sentence copied from a knowledge article is backed as a whole. The customer's own words back only a
date or a plan name they named themselves (the period or the plan they asked about), never an amount,
an id or a promise.

Pure: ``facts_from`` gathers the facts, ``check_answer`` returns a verdict with one finding per unbacked
item; the caller stops the answer (rewrites it from the facts or hands the contact to a person) and counts
the causes. With the LLM on, the share of stopped answers is the hallucination rate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

Cause = Literal["amount", "date", "id", "plan", "promise"]
CAUSES: tuple[Cause, ...] = ("amount", "date", "id", "plan", "promise")

# --------------------------------------------------------------------------- what an answer may claim
_CURRENCY = r"(?:US\$|\$|€|£|USD|EUR|GBP)"
_NUMBER = r"\d{1,3}(?:[,.\u202f\u00a0 ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
_AMOUNT = re.compile(
    rf"{_CURRENCY}\s?(?P<a>{_NUMBER})(?!\d)|(?<![\w.,])(?P<b>{_NUMBER})\s?(?:{_CURRENCY}|dollars?\b|euros?\b)",
    re.IGNORECASE,
)
#: Stripe-style object ids: charges, invoices, payment intents, refunds, subscriptions, disputes...
_ID = re.compile(
    r"\b(?:ch|in|pi|py|re|sub|si|dp|du|cn|il|ii|txn|po|pm|card|seti|prod|price|cus|evt|inv)_[A-Za-z0-9]{4,}\b"
)
_PLANS = ("starter", "pro", "business", "enterprise")
_PLAN = re.compile(
    r"\b(starter|pro|business|enterprise)\s+(?:plan|tier|subscription|package)\b"
    r"|\b(?:plan|tier)\s*(?:[:\-]\s*|is\s+|to\s+(?:the\s+)?)?[\"'“]?(starter|pro|business|enterprise)\b"
    r"|\b(?:plano|plan|tarif|formule|Tarif)\s+(starter|pro|business|enterprise)\b",
    re.IGNORECASE,
)
#: Money going back to the customer: a refund done or promised.
_REFUND_PROMISE = re.compile(
    r"\brefunded\b|\bwe(?:'ll|\s+will|'ve|\s+have)\s+(?:also\s+)?refund(?:ed)?\b"
    r"|\brefund\s+(?:has\s+been|was|is\s+being|will\s+be|is)\s+(?:issued|processed|sent|made|on\s+its\s+way)\b"
    r"|\breembols(?:ad[oa]s?|amos|aremos)\b|\berstatt(?:et|en\s+wir)\b|\brembours(?:é|ée|és|ées|ons|erons)\b",
    re.IGNORECASE,
)
#: A credit to the account (tierline has no credit action: only the facts can say one happened).
_CREDIT_PROMISE = re.compile(
    r"\bcredited\b|\b(?:a|as\s+a|issued\s+a|applied\s+a|add(?:ed)?\s+a)\s+credit\b(?!\s+card)"
    r"|\bcredit\s+(?:of|to\s+your|on\s+your|for\s+your)\b|\bgutgeschrieben\b|\bcrédit(?:é|ée)\b|\bacreditad[oa]\b",
    re.IGNORECASE,
)
_MONTHS = {
    m: i
    for i, names in enumerate(
        [
            ("january", "jan", "enero", "januar", "janvier", "janeiro"),
            ("february", "feb", "febrero", "februar", "février", "fevereiro"),
            ("march", "mar", "marzo", "märz", "mars", "março"),
            ("april", "apr", "abril", "avril"),
            ("may", "mayo", "mai", "maio"),
            ("june", "jun", "junio", "juni", "juin", "junho"),
            ("july", "jul", "julio", "juli", "juillet", "julho"),
            ("august", "aug", "agosto", "août"),
            ("september", "sep", "sept", "septiembre", "septembre", "setembro"),
            ("october", "oct", "octubre", "oktober", "octobre", "outubro"),
            ("november", "nov", "noviembre", "novembre", "novembro"),
            ("december", "dec", "diciembre", "dezember", "décembre", "dezembro"),
        ],
        start=1,
    )
    for m in names
}
_MONTH = r"(?P<mon>" + "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = (
    re.compile(r"\b(?P<y>20\d\d)-(?P<m>[01]\d)-(?P<d>[0-3]\d)\b"),
    re.compile(rf"\b{_MONTH}\s+(?P<d>[0-3]?\d)(?:st|nd|rd|th)?(?:,?\s+(?P<y>20\d\d))?\b", re.IGNORECASE),
    re.compile(
        rf"\b(?P<d>[0-3]?\d)(?:st|nd|rd|th|\.|º)?\s+(?:de\s+)?{_MONTH}(?:,?\s+(?:de\s+)?(?P<y>20\d\d))?\b",
        re.IGNORECASE,
    ),
    re.compile(rf"\b{_MONTH}\s+(?:de\s+)?(?P<y>20\d\d)\b", re.IGNORECASE),
)
#: Evidence fields whose positive value means money went back to the customer.
_REFUNDED_KEYS = frozenset({"refunded_usd", "amount_refunded", "amount_refunded_cents", "refunded"})
#: A period named relative to today, a quarter or a year: the answer names its months.
_PERIOD = re.compile(
    r"\b(?:last|this|previous|past|current)\s+(?:month|quarter|year)\b|\bQ[1-4]\b|\b20\d\d\b"
    r"|\b(?:mes|Monat|mois|mês)\s+(?:pasado|passado|dernier|anterior)\b|\bletzten\s+Monat\b",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class DateClaim:
    """A date as written: any part may be missing ("November 3", "October 2026")."""

    year: int | None
    month: int
    day: int | None

    def backed_by(self, known: Iterable[date]) -> bool:
        return any(
            d.month == self.month
            and (self.year is None or d.year == self.year)
            and (self.day is None or d.day == self.day)
            for d in known
        )


@dataclass(frozen=True)
class Finding:
    cause: Cause
    value: str


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def causes(self) -> list[Cause]:
        """Each cause once, in the fixed order of ``CAUSES``."""
        seen = {f.cause for f in self.findings}
        return [c for c in CAUSES if c in seen]


@dataclass
class Facts:
    """What the pipeline knows for one contact, in the shapes the check compares."""

    texts: list[str] = field(default_factory=list)
    amounts_cents: set[int] = field(default_factory=set)
    dates: set[date] = field(default_factory=set)
    #: (month, day) of dates the facts write without a year ("your renewal of 3 March")
    month_days: set[tuple[int, int]] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    plans: set[str] = field(default_factory=set)
    knowledge: list[str] = field(default_factory=list)
    refund_done: bool = False
    refund_on_record: bool = False
    credit_on_record: bool = False
    customer_dates: set[DateClaim] = field(default_factory=set)
    #: months the customer named ("the October invoice"); ``customer_period`` when they named a period
    #: relative to today or a quarter or a year ("last month", "Q3", "for 2025"), which the answer names
    customer_months: set[int] = field(default_factory=set)
    customer_period: bool = False
    customer_plans: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------- reading values
def _to_cents(raw: str) -> int | None:
    s = raw.replace("\u202f", "").replace("\u00a0", "").replace(" ", "")
    decimals = ""
    m = re.search(r"[.,](\d{1,2})$", s)
    if m and not re.search(r"[.,]\d{3}$", s):
        decimals = m.group(1).ljust(2, "0")
        s = s[: m.start()]
    digits = re.sub(r"[.,]", "", s)
    if not digits.isdigit():
        return None
    return int(digits) * 100 + (int(decimals) if decimals else 0)


def amounts_in(text: str) -> list[tuple[str, int]]:
    out = []
    for m in _AMOUNT.finditer(text):
        raw = m.group("a") or m.group("b")
        cents = _to_cents(raw) if raw else None
        if cents is not None:
            out.append((m.group(0).strip(), cents))
    return out


def dates_in(text: str) -> list[tuple[str, DateClaim]]:
    out: list[tuple[str, DateClaim]] = []
    taken: list[tuple[int, int]] = []
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            groups = m.groupdict()
            month = int(groups["m"]) if groups.get("m") else _MONTHS.get((groups.get("mon") or "").lower())
            if month is None or not 1 <= month <= 12:
                continue
            day = int(groups["d"]) if groups.get("d") else None
            if day is not None and not 1 <= day <= 31:
                continue
            if groups.get("mon") and len(groups["mon"]) <= 3 and day is None and groups.get("y") is None:
                continue  # "may" alone is a verb
            year = int(groups["y"]) if groups.get("y") else None
            if day is None and year is None:
                continue
            taken.append((m.start(), m.end()))
            out.append((m.group(0), DateClaim(year=year, month=month, day=day)))
    return out


def ids_in(text: str) -> list[str]:
    return list(dict.fromkeys(_ID.findall(text)))


def plans_in(text: str) -> list[str]:
    found = []
    for m in _PLAN.finditer(text):
        name = next(g for g in m.groups() if g)
        found.append(name.lower())
    return list(dict.fromkeys(found))


def _walk(value: Any, keys: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, (*keys, str(k)))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v, keys)
    else:
        yield keys, value


def _parse_iso(value: str) -> date | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def _add_value(facts: Facts, keys: tuple[str, ...], value: Any) -> None:
    key = keys[-1].lower() if keys else ""
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        facts.amounts_cents.add(round(float(value) * 100))
        if isinstance(value, int) and ("cents" in key or key in {"amount", "amount_due", "amount_paid"}):
            facts.amounts_cents.add(value)  # Stripe amounts are in cents
        if 1_000_000_000 <= value <= 4_000_000_000:  # a unix timestamp
            facts.dates.add(datetime.fromtimestamp(float(value), tz=UTC).date())
        if value > 0 and (key in _REFUNDED_KEYS or "refunds" in keys):
            facts.refund_on_record = True
        return
    text = str(value)
    facts.texts.append(text)
    iso = _parse_iso(text) if re.match(r"^\d{4}-\d{2}-\d{2}", text) else None
    if iso is not None:
        facts.dates.add(iso)
    if "refunds" in keys and text.strip():
        facts.refund_on_record = True  # a refund on the record (evidence ``refunds``)
    if _CREDIT_PROMISE.search(text):
        facts.credit_on_record = True  # the diagnosis or a tool says a credit was applied
    _add_text(facts, text)


def _add_text(facts: Facts, text: str) -> None:
    facts.amounts_cents.update(c for _, c in amounts_in(text))
    for raw in re.findall(r"(?<![\w.])\d+(?:[.,]\d{1,2})?(?![\w])", text):
        cents = _to_cents(raw)
        if cents is not None:
            facts.amounts_cents.add(cents)
    for _, claim in dates_in(text):
        if claim.year is None and claim.day is not None:
            facts.month_days.add((claim.month, claim.day))
        if claim.year is not None and claim.day is not None:
            facts.dates.add(date(claim.year, claim.month, min(claim.day, 28)))
            try:
                facts.dates.add(date(claim.year, claim.month, claim.day))
            except ValueError:
                pass
    facts.ids.update(ids_in(text))
    lowered = text.lower()
    facts.plans.update(p for p in _PLANS if re.search(rf"\b{p}\b", lowered))


@dataclass(frozen=True)
class ToolFact:
    """One tool call as the check sees it: what it returned (and its arguments when it succeeded)."""

    tool: str
    ok: bool
    args: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


def facts_from(
    diagnosis: Mapping[str, Any] | None,
    tools: Sequence[ToolFact] = (),
    *,
    customer_text: str = "",
) -> Facts:
    """The facts one contact's answer may use."""
    facts = Facts()
    for keys, value in _walk(dict(diagnosis or {})):
        _add_value(facts, keys, value)
    for call in tools:
        if call.tool == "search_knowledge":
            for hit in call.data.get("hits") or []:
                if isinstance(hit, Mapping):
                    article = " ".join(
                        str(hit.get(k) or "")
                        for k in ("title", "text", "snippet", "body", "article_id", "id")
                    )
                    facts.knowledge.append(_norm(article))
                    _add_text_knowledge(facts, article)
            continue
        for keys, value in _walk(dict(call.data)):
            _add_value(facts, (call.tool, *keys), value)
        if call.ok:
            for keys, value in _walk(dict(call.args)):
                _add_value(facts, (call.tool, *keys), value)
            if call.tool == "refund":
                facts.refund_done = True
    facts.customer_dates = {claim for _, claim in dates_in(customer_text)}
    facts.customer_months = {  # "may" is a verb, "May" a month
        _MONTHS[w.lower()]
        for w in re.findall(r"[^\W\d_]+", customer_text)
        if w.lower() in _MONTHS and (len(w) >= 4 or w[0].isupper())
    }
    facts.customer_period = bool(_PERIOD.search(customer_text))
    lowered = customer_text.lower()
    facts.customer_plans = {p for p in _PLANS if re.search(rf"\b{p}\b", lowered)}
    return facts


def _add_text_knowledge(facts: Facts, text: str) -> None:
    """A knowledge article backs its own amounts, dates, ids and plans (never a refund or a credit to this
    customer: only a sentence copied whole from it may say one)."""
    _add_text(facts, text)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w$€£.,%]+", " ", text.casefold()).split())


def _from_knowledge(sentence: str, facts: Facts) -> bool:
    norm = _norm(sentence)
    return len(norm) >= 20 and any(norm in article for article in facts.knowledge)


def check_answer(answer: str, facts: Facts) -> Verdict:
    """One finding per amount, date, id, plan or promise in ``answer`` that the facts do not back."""
    findings: list[Finding] = []
    for sentence in (s for s in _SENTENCE.split(answer) if s.strip()):
        if _from_knowledge(sentence, facts):
            continue  # copied from an article: the article is its source
        for raw, cents in amounts_in(sentence):
            if cents not in facts.amounts_cents:
                findings.append(Finding("amount", raw))
        for raw, claim in dates_in(sentence):
            named = claim.day is None and (claim.month in facts.customer_months or facts.customer_period)
            partial = claim.day is not None and (claim.month, claim.day) in facts.month_days
            if not (claim.backed_by(facts.dates) or claim in facts.customer_dates or named or partial):
                findings.append(Finding("date", raw))
        for found in ids_in(sentence):
            if found not in facts.ids and not any(found in t for t in facts.texts):
                findings.append(Finding("id", found))
        for plan in plans_in(sentence):
            if plan not in facts.plans and plan not in facts.customer_plans:
                findings.append(Finding("plan", plan))
        refund = _REFUND_PROMISE.search(sentence)
        if refund and not (facts.refund_done or facts.refund_on_record):
            findings.append(Finding("promise", refund.group(0)))
        credit = _CREDIT_PROMISE.search(sentence)
        if credit and not facts.credit_on_record:
            findings.append(Finding("promise", credit.group(0)))
    return Verdict(tuple(dict.fromkeys(findings)))


def facts_json(facts: Facts) -> str:
    """A short description of the facts, for a log line or a test failure."""
    return json.dumps(
        {
            "amounts_cents": sorted(facts.amounts_cents)[:50],
            "dates": sorted(d.isoformat() for d in facts.dates)[:50],
            "ids": sorted(facts.ids)[:50],
            "plans": sorted(facts.plans),
            "refund_done": facts.refund_done,
            "refund_on_record": facts.refund_on_record,
            "credit_on_record": facts.credit_on_record,
        }
    )
