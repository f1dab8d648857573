"""Guardrails on untrusted text: prompt-injection detection and redaction of secrets and card data.

Both functions are pure and fast (regexes compiled once at import). ``detect_injection`` flags text that tries
to instruct the system; a finding never grants anything: the agent treats the message as data, the policy
engine still decides every action. ``redact`` runs before text reaches logs, prompts, audit or the case store.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict

InjectionCategory = Literal[
    "instruction_override",
    "privilege_escalation",
    "authority_claim",
    "role_play",
    "fake_tool_output",
    "prompt_exfiltration",
    "policy_bypass",
    "encoded_payload",
]


class InjectionFinding(BaseModel):
    model_config = ConfigDict(frozen=True)
    category: InjectionCategory
    rule: str
    excerpt: str  # the matched text (redacted, at most 120 characters)


# --------------------------------------------------------------------------- injection patterns
_W = r"(?:\s+\S+){0,3}?\s+"  # up to three filler words: "ignore ALL OF your previous instructions"
_RULES_NOUN = (
    r"(?:instructions?|rules?|prompts?|directions?|guidelines?|polic(?:y|ies)|directives?|constraints?"
    r"|restrictions?|programming|guardrails?|safeguards?|system\s+message)"
)

_INJECTION_PATTERNS: list[tuple[InjectionCategory, str, str]] = [
    # "ignore/disregard/forget ... previous instructions / your rules"
    (
        "instruction_override",
        "ignore_instructions",
        r"\b(?:ignore|disregard|forget|override|bypass|circumvent)\b"
        + _W
        + r"(?:(?:all|any|the|your|my|these|those|previous|prior|above|earlier|existing|current|original"
        r"|system|safety|refund|billing|internal|standard|usual|normal)\s+){0,4}" + _RULES_NOUN + r"\b",
    ),
    (
        "instruction_override",
        "new_instructions",
        r"\b(?:new|updated|revised|real|actual|true)\s+(?:system\s+)?(?:instructions?|rules|directives?)\s*[:\-]",
    ),
    (
        "instruction_override",
        "from_now_on",
        r"\b(?:from\s+now\s+on|henceforth|for\s+the\s+rest\s+of\s+this\s+conversation)\b.{0,60}"
        r"\byou\s+(?:will|must|shall|are\s+to)\s+(?:now\s+|only\s+|always\s+)?(?:ignore|obey|act|behave|"
        r"respond\s+only|answer\s+only|approve|refund|comply|follow\s+my|be\s+an?|no\s+longer)\b",
    ),
    (
        "instruction_override",
        "do_not_follow",
        r"\b(?:do\s+not|don'?t|stop)\s+(?:follow(?:ing)?|obey(?:ing)?|apply(?:ing)?|enforc(?:e|ing))\s+"
        r"(?:\S+\s+){0,3}" + _RULES_NOUN + r"\b",
    ),
    # "system override", "admin mode", "developer mode", "sudo", "god mode"
    (
        "privilege_escalation",
        "system_override",
        r"\b(?:system|admin(?:istrator)?|root|security|emergency|maintenance|master)\s+"
        r"(?:override|overrides|bypass|access\s+granted|unlock(?:ed)?|command|authori[sz]ation\s+code)\b",
    ),
    (
        "privilege_escalation",
        "mode_switch",
        r"\b(?:you\s+are|you'?re|switch(?:ing)?|enter(?:ing)?|activate|enable|now\s+in|go\s+into|put\s+\w+\s+in(?:to)?)"
        r"\b.{0,30}\b(?:admin(?:istrator)?|developer|debug|god|sudo|root|maintenance|unrestricted|jailbreak|dan|"
        r"privileged|superuser)\s+mode\b",
    ),
    ("privilege_escalation", "sudo", r"(?:^|\s)sudo\s+\w+|\bjailbreak(?:ed|ing)?\b|\bDAN\s+mode\b"),
    (
        "privilege_escalation",
        "you_are_now",
        r"\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+)?(?:unrestricted|unfiltered|uncensored|free|allowed|able"
        r"|authori[sz]ed|permitted|bound|limited|restricted|required|a\s+different|my)\b",
    ),
    # claims of authority / approval made in the message itself
    (
        "authority_claim",
        "executive_authorises",
        r"\b(?:as|i\s+am|i'?m|this\s+is)\s+(?:the|your|a|an)?\s*(?:ceo|cfo|cto|coo|founder|owner\s+of\s+"
        r"(?:this|your)\s+company|head\s+of\s+\w+|vp\s+of\s+\w+|director|manager|supervisor|team\s+lead|admin"
        r"(?:istrator)?|developer|engineer|security\s+team|billing\s+team|support\s+lead|compliance\s+officer)\b"
        r".{0,80}\b(?:authori[sz](?:e|ing|ed)|(?:instruct|order|command|direct)(?:ing)?\s+you|override|grant(?:ing)?"
        r"|approv(?:e|ing)\s+(?:this\s+|the\s+|a\s+|an\s+|my\s+)?(?:refund|exception|override|payout|transfer))",
    ),
    (
        "authority_claim",
        "pre_approved",
        r"\b(?:already|been|was|is|has\s+been|were)\s+(?:pre-?)?(?:approved|authori[sz]ed|cleared|signed\s+off)"
        r"\s+(?:by|from)\s+(?:the\s+|your\s+|a\s+|an\s+)?(?:ceo|cfo|manager|supervisor|management|team\s+lead|"
        r"your\s+(?:boss|team)|stripe|legal|finance|support|billing|admin|security)\b",
    ),
    (
        "authority_claim",
        "impersonate_staff",
        r"\b(?:i\s+am|i'?m|this\s+is|we\s+are|speaking\s+as)\s+(?:an?\s+|the\s+)?(?:(?:stripe|openai|"
        r"anthropic|tierline)\s+(?:support|staff|employee|engineer|team|security|admin)|from\s+(?:stripe|openai|"
        r"anthropic|your\s+(?:security|engineering|billing|support|it|fraud)\s+team)|your\s+(?:own\s+)?"
        r"(?:developer|engineer|admin|operator|creator|supervisor|manager|boss))\b",
    ),
    (
        "authority_claim",
        "authorisation_code",
        r"\b(?:authori[sz]ation|override|admin|security|verification)\s+(?:code|token|key|password)\s*"
        r"(?:is|=|:)\s*[A-Za-z0-9\-]{4,}",
    ),
    # role-play framing
    (
        "role_play",
        "pretend",
        r"\b(?:pretend|imagine|suppose)\s+(?:that\s+|for\s+a\s+(?:moment|second)\s+(?:that\s+)?)?"
        r"(?:you\s+are|you'?re|to\s+be|you\s+have|there\s+(?:is|are)\s+no)\b|\b(?:act|behave|respond)\s+as\s+"
        r"(?:if\s+you|though\s+you|an?\s+(?:\w+\s+)?(?:ai|assistant|bot|model|agent|admin|employee)|my\s+)|"
        r"\b(?:roleplay|role-play|role\s+play)\b",
    ),
    (
        "role_play",
        "lets_play",
        r"\b(?:let'?s|we\s+will|we'?re\s+going\s+to)\s+play\s+a\s+game\b|\bin\s+this\s+(?:story|scenario|game|"
        r"hypothetical|role-?play)\b.{0,60}\byou\b",
    ),
    (
        "role_play",
        "hypothetical_ai",
        r"\b(?:hypothetically|in\s+theory|for\s+a\s+novel|for\s+research)\b.{0,60}\b(?:an?\s+ai|assistant|bot|"
        r"you)\b.{0,40}\b(?:without|no)\s+(?:rules|restrictions|limits|policy|filters)",
    ),
    # text dressed up as system/tool messages
    (
        "fake_tool_output",
        "role_tags",
        r"(?:<\|?\s*(?:im_start|im_end|system|assistant|tool|function|endoftext)\s*\|?>|</?(?:system|tool_result|"
        r"tool_output|function_result|function_call|assistant|instructions?)>|\[/?(?:system|inst|tool|assistant|"
        r"admin)\]|^\s*#{1,4}\s*(?:system|assistant|tool|instruction)s?\s*:?\s*$|^\s*(?:system|assistant|tool)"
        r"\s*:\s)",
    ),
    (
        "fake_tool_output",
        "json_role",
        r"[\"']\s*role\s*[\"']\s*:\s*[\"']\s*(?:system|tool|assistant|function|developer)\s*[\"']|"
        r"[\"'](?:tool_call_id|function_call|tool_calls)[\"']\s*:",
    ),
    (
        "fake_tool_output",
        "fake_result",
        r"\b(?:tool|function|policy(?:\s+engine)?|policy_engine)\s*(?:output|result|response|verdict)"
        r"\s*[:=]\s*.{0,40}\b(?:approved|allow(?:ed)?|authori[sz]ed|success|granted|eligible|true)\b",
    ),
    (
        "fake_tool_output",
        "fake_policy_field",
        r"\b(?:refund_approved|policy_override|is_admin|admin|approved|bypass_policy|verified)\s*[:=]\s*"
        r"(?:true|1|yes)\b",
    ),
    # asking for hidden instructions
    (
        "prompt_exfiltration",
        "reveal_prompt",
        r"\b(?:reveal|show|print|repeat|output|display|tell\s+me|what\s+(?:is|are|were)|give\s+me|dump|leak"
        r"|list)\b.{0,30}\b(?:your|the)\s+(?:system\s+prompt|initial\s+prompt|hidden\s+(?:prompt|instructions)"
        r"|(?:original|internal|secret|hidden|system)\s+(?:instructions|rules)|api\s+keys?|secret\s+keys?)\b|"
        r"\b(?:reveal|print|repeat|output|dump|leak|show\s+me)\s+(?:all\s+(?:of\s+)?)?your\s+(?:instructions|"
        r"prompt|configuration)\b",
    ),
    # attempts to talk the policy away
    (
        "policy_bypass",
        "policy_changed",
        r"\b(?:the\s+|your\s+|refund\s+)?polic(?:y|ies)\s+(?:has|have)\s+(?:been\s+)?(?:changed|updated|"
        r"suspended|lifted|waived|removed|disabled)\b|\b(?:limits?|caps?|polic(?:y|ies)|rules?)\s+(?:do(?:es)?\s+"
        r"not|don'?t|doesn'?t)\s+apply\s+(?:to\s+(?:me|this|us)|here|today)\b",
    ),
    (
        "policy_bypass",
        "you_are_allowed",
        r"\byou\s+(?:are|'re)\s+(?:now\s+)?(?:allowed|authori[sz]ed|permitted|cleared)\s+to\s+"
        r"(?:refund|issue|approve|override|bypass|skip|ignore|waive|credit|transfer|send|give)\b",
    ),
    (
        "policy_bypass",
        "without_checks",
        r"\b(?:refund|credit|approve|pay|transfer)\b.{0,40}\b(?:without|skip(?:ping)?|bypass(?:ing)?|no)\s+"
        r"(?:any\s+)?(?:checks?|verification|approval|review|policy|limits?|escalation)\b",
    ),
    (
        "policy_bypass",
        "execute_tool",
        r"\b(?:call|invoke|execute|run|trigger|use)\s+(?:the\s+)?(?:tool|function)\s*[:`\"'(]?\s*"
        r"(?:refund|issue_refund|retry_payment|change_plan|cancel_subscription|update_billing_details)\b|"
        r"\b(?:issue_refund|refund_charge|stripe\.refund)\s*\(",
    ),
]

_COMPILED_INJECTION = [
    (category, rule, re.compile(pattern, re.IGNORECASE | re.MULTILINE | re.DOTALL))
    for category, rule, pattern in _INJECTION_PATTERNS
]

_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2028-\u202f\u2060-\u2064\ufeff\u00ad]")
_SPACES = re.compile(r"[ \t\f\v]+")
_URL = re.compile(r"\bhttps?://\S+", re.IGNORECASE)
_BASE64_BLOB = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX_BLOB = re.compile(r"\b(?:[0-9a-fA-F]{2}[ ]?){24,}\b")
_EXCERPT_MAX = 120


def _normalise(text: str) -> str:
    """Fold look-alikes (full-width, ligatures), drop zero-width chars and soft hyphens, squeeze spaces."""
    folded = unicodedata.normalize("NFKC", text)
    folded = _ZERO_WIDTH.sub("", folded)
    return _SPACES.sub(" ", folded)


def _printable_ratio(raw: bytes) -> tuple[float, str]:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 0.0, ""
    if not decoded:
        return 0.0, ""
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\n\r\t")
    return printable / len(decoded), decoded


def _decoded_text_blobs(text: str) -> list[tuple[str, str]]:
    """(blob, decoded) for base64 / hex runs that decode to readable prose (URLs are not inspected)."""
    found: list[tuple[str, str]] = []
    without_urls = _URL.sub(" ", text)
    for match in _BASE64_BLOB.finditer(without_urls):
        blob = match.group(0)
        padded = blob + "=" * (-len(blob) % 4)
        try:
            raw = base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            continue
        ratio, decoded = _printable_ratio(raw)
        if ratio >= 0.9 and re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", decoded):
            found.append((blob, decoded))
    for match in _HEX_BLOB.finditer(without_urls):
        blob = match.group(0)
        try:
            raw = bytes.fromhex(blob.replace(" ", ""))
        except ValueError:
            continue
        ratio, decoded = _printable_ratio(raw)
        if ratio >= 0.9 and re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}", decoded):
            found.append((blob, decoded))
    return found


def _excerpt(text: str) -> str:
    clean = redact(text.strip())
    return clean if len(clean) <= _EXCERPT_MAX else clean[: _EXCERPT_MAX - 1] + "…"


def _match_patterns(text: str) -> InjectionFinding | None:
    """The match that starts earliest in ``text`` (ties go to the pattern listed first)."""
    best: tuple[int, InjectionCategory, str, str] | None = None
    for category, rule, pattern in _COMPILED_INJECTION:
        match = pattern.search(text)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), category, rule, match.group(0))
    if best is None:
        return None
    _, category, rule, matched = best
    return InjectionFinding(category=category, rule=rule, excerpt=_excerpt(matched))


def detect_injection(text: str) -> InjectionFinding | None:
    """The earliest injection / jailbreak / social-engineering pattern in ``text``, or ``None``.

    Encoded blobs (base64, hex) that decode to prose are reported as ``encoded_payload`` whatever they say.
    """
    if not text:
        return None
    normalised = _normalise(text)
    finding = _match_patterns(normalised)
    if finding is not None:
        return finding
    blobs = _decoded_text_blobs(normalised)
    if blobs:
        blob, decoded = blobs[0]
        inner = _match_patterns(_normalise(decoded))
        rule = f"encoded_{inner.rule}" if inner else "encoded_text"
        return InjectionFinding(category="encoded_payload", rule=rule, excerpt=_excerpt(blob))
    return None


# --------------------------------------------------------------------------- redaction
_SECRET_PATTERNS = [
    # Stripe secret / restricted keys, webhook secrets; OpenAI-style and GitHub tokens; Slack tokens
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}",
    r"\bwhsec_[A-Za-z0-9+/=]{8,}",
    r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    # AWS access key ids
    r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",
    # JSON Web Tokens
    r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    # PEM private keys
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
]
_SECRET = re.compile("|".join(f"(?:{p})" for p in _SECRET_PATTERNS))
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9\-._~+/]{8,}=*", re.IGNORECASE)
_SECRET_FIELD = re.compile(
    r"\b((?:aws_)?secret(?:_access)?(?:_key)?|api[_\- ]?key|access[_\- ]?token|auth[_\- ]?token|password"
    r"|passwd|pwd|client[_\- ]?secret|private[_\- ]?key)(\s*[:=]\s*|\s+is\s+)([\"']?)[^\s\"',;]{6,}\3",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"\b[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,30}\b", re.IGNORECASE)
_CARD = re.compile(r"(?<![\w.,])\d(?:[ \-]?\d){12,}(?![\w])")
_DIGIT_GROUP = re.compile(r"\d+")
_CVC = re.compile(
    r"\b(cvc2?|cvv2?|cid|csc|security\s+code|card\s+verification(?:\s+(?:code|value))?)"
    r"(\s*(?:number|no\.?|code)?\s*(?:is|:|=|#)?\s*)\d{3,4}\b",
    re.IGNORECASE,
)
_EXPIRY = re.compile(
    r"\b(exp(?:iry|iration)?(?:\s+date)?|valid\s+thru)(\s*(?:is|:|=)?\s*)\d{1,2}\s*/\s*\d{2,4}\b",
    re.IGNORECASE,
)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d[\d \-().]{7,18}\d|\(?\b\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b"
    r"|\b0\d{2,4}[ \-]\d{3,4}[ \-]?\d{3,4}\b)"
)


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    reverse = digits[::-1]
    total = sum(int(ch) for ch in reverse[0::2]) + sum(_LUHN_DOUBLED[int(ch)] for ch in reverse[1::2])
    return total % 10 == 0


def _iban_ok(candidate: str) -> bool:
    compact = re.sub(r"[ \-]", "", candidate).upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


class _LuhnSpans:
    """Luhn checks of any digit span of one run in O(1), from prefix sums split by position parity."""

    def __init__(self, digits: str) -> None:
        values = [ord(ch) - 48 for ch in digits]
        size = len(values) + 1
        self._plain = [[0] * size, [0] * size]
        self._doubled = [[0] * size, [0] * size]
        for i, value in enumerate(values):
            for parity in (0, 1):
                hit = i % 2 == parity
                self._plain[parity][i + 1] = self._plain[parity][i] + (value if hit else 0)
                self._doubled[parity][i + 1] = self._doubled[parity][i] + (_LUHN_DOUBLED[value] if hit else 0)

    def ok(self, start: int, stop: int) -> bool:
        """Luhn over digits[start:stop]: the last digit is not doubled, every second one before it is."""
        keep = (stop - 1) % 2
        total = self._plain[keep][stop] - self._plain[keep][start]
        total += self._doubled[1 - keep][stop] - self._doubled[1 - keep][start]
        return total % 10 == 0


def _card_sub(match: re.Match[str]) -> str:
    """Redact Luhn-valid 13-19 digit spans made of whole digit groups ("qty 2 4242 ..." keeps the "2")."""
    run = match.group(0)
    groups = list(_DIGIT_GROUP.finditer(run))
    offsets = [0]
    for group in groups:
        offsets.append(offsets[-1] + len(group.group(0)))
    luhn = _LuhnSpans("".join(group.group(0) for group in groups))
    pieces: list[str] = []
    cursor, first = 0, 0
    while first < len(groups):
        found = None
        for last in range(first, len(groups)):
            length = offsets[last + 1] - offsets[first]
            if length > 19:
                break
            if length >= 13 and luhn.ok(offsets[first], offsets[last + 1]):
                found = last  # keep the longest valid span
        if found is None:
            first += 1
            continue
        pieces.append(run[cursor : groups[first].start()])
        pieces.append("[CARD]")
        cursor = groups[found].end()
        first = found + 1
    pieces.append(run[cursor:])
    return "".join(pieces)


def _iban_sub(match: re.Match[str]) -> str:
    """The longest valid IBAN at the start of the match (the pattern may run on into following words)."""
    candidate = match.group(0)
    for end in range(len(candidate), 14, -1):
        if candidate[end - 1].isalnum() and _iban_ok(candidate[:end]):
            return "[IBAN]" + candidate[end:]
    return candidate


def _phone_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[PHONE]" if 9 <= len(digits) <= 15 else match.group(0)


def redact(text: str) -> str:
    """Replace secrets, card data, emails, IBANs and phone numbers with placeholders.

    Placeholders: ``[SECRET]``, ``[EMAIL]``, ``[IBAN]``, ``[CARD]`` (Luhn-valid 13-19 digits, spaces or dashes
    allowed), ``[CVC]``, ``[EXPIRY]``, ``[PHONE]``. Labels before a value ("password: ", "cvc ") are kept.
    """
    if not text:
        return text
    out = _SECRET.sub("[SECRET]", text)
    out = _BEARER.sub(lambda m: f"{m.group(1)} [SECRET]", out)
    out = _SECRET_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}[SECRET]", out)
    if "@" in out:
        out = _EMAIL.sub("[EMAIL]", out)
    out = _IBAN.sub(_iban_sub, out)
    out = _CARD.sub(_card_sub, out)
    out = _CVC.sub(lambda m: f"{m.group(1)}{m.group(2)}[CVC]", out)
    out = _EXPIRY.sub(lambda m: f"{m.group(1)}{m.group(2)}[EXPIRY]", out)
    return _PHONE.sub(_phone_sub, out)
