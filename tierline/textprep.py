"""Email and chat text normalisation: keep the customer's new words, drop everything around them.

Pure functions, no I/O. The router classifies the cleaned text and the tiers read their text cues
from it; the contact keeps the original text for the person who may read it later.

What is dropped: quoted history (``On … wrote:``, ``-----Original Message-----``, Outlook's
``From: … Sent: …`` header block, lines starting with ``>``, and the French, German, Spanish,
Portuguese, Italian and Dutch forms of "on … wrote"), signatures (``-- ``, a sign-off such as "Best
regards," or "Thanks, Ana" and what follows it, "Sent from my iPhone", legal disclaimers, trailing
phone / address / web blocks), greetings ("Hi team,"), pleasantries ("I hope you are well"), HTML
remnants; whitespace is collapsed. :func:`clean_text` never returns an empty string for a text that
had words: it falls back to the original, collapsed.

:func:`split_asks` cuts a cleaned text into sentences and clauses ("send me a new card link and last
month's invoice" → two asks), for classifying several asks in one message.
"""

from __future__ import annotations

import html
import re

__all__ = ["clean_text", "split_asks"]

_WORD = re.compile(r"\w", re.UNICODE)

# --------------------------------------------------------------------------- HTML
_HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][^<>@]{0,2000}>")  # not "<ana@acme.com>"
_HTML_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li|/tr|/h\d|p|div|li|tr)\b[^<>@]{0,2000}>", re.IGNORECASE)
_HTML_DROP = re.compile(
    r"<\s*(style|script|head|blockquote)\b[^<>]{0,2000}>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL
)
_HTML_GMAIL_QUOTE = re.compile(
    r"<div[^<>]{0,200}class=[\"']?gmail_(?:quote|extra)[^<>]{0,200}>.*", re.IGNORECASE | re.DOTALL
)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)

# --------------------------------------------------------------------------- quoted history
# A line (or up to three wrapped lines) introducing the quoted message, in several languages.
_ATTRIBUTION = re.compile(
    r"^[ \t]*(?:"
    r"On\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bwrote\s*:"
    r"|Le\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\ba\s+écrit\s*:"
    r"|Am\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bschrieb\b[^\n]{0,200}:"
    r"|El\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bescribió\s*:"
    r"|Em\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bescreveu\s*:"
    r"|Il\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bha\s+scritto\s*:"
    r"|Op\b[^\n]{0,300}?(?:\n[^\n]{0,300}?){0,2}\bschreef\b[^\n]{0,200}:"
    r"|[^\n]{0,200}<[^<>\n@]{1,100}@[^<>\n]{1,200}>\s+(?:wrote|a\s+écrit|schrieb|escribió|escreveu)\s*:"
    r")[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_SEPARATOR = re.compile(
    r"^[ \t]*(?:"
    r"-{2,}\s*(?:Original\s+Message|Forwarded\s+message|Mensaje\s+original|Ursprüngliche\s+Nachricht"
    r"|Message\s+d'origine|Message\s+transféré|Mensagem\s+original|Weitergeleitete\s+Nachricht)\s*-{2,}"
    r"|_{8,}"
    r"|Begin\s+forwarded\s+message\s*:"
    r")[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# Outlook's header block: "From: …" followed within two lines by "Sent:/Date:/To:/Subject:".
_HEADER_BLOCK = re.compile(
    r"^[ \t]*\*?(?:From|De|Von|Van|Da)\s*:\*?[^\n]*\n(?:[^\n]*\n){0,1}[ \t]*\*?"
    r"(?:Sent|Date|To|Subject|Enviado|Fecha|Para|Asunto|Envoyé|À|Objet|Gesendet|An|Betreff|Datum)\s*:",
    re.IGNORECASE | re.MULTILINE,
)

# --------------------------------------------------------------------------- signatures
_SIG_DASHES = re.compile(r"^[ \t]*(?:--|—|–|__)[ \t]*$", re.MULTILINE)
_SENT_FROM = re.compile(
    r"(?:^[ \t]*|(?<=[.!?])[ \t]+)"
    r"(?:Sent\s+from\s+my\s+\w+|Sent\s+from\s+(?:Mail|Outlook|Yahoo\s+Mail|Gmail)\b|Sent\s+via\b"
    r"|Get\s+Outlook\s+for\b|Enviado\s+desde\s+mi\b|Von\s+meinem\s+\w+\s+gesendet|Envoyé\s+de\s+mon\b"
    r"|Enviado\s+do\s+meu\b|Inviato\s+da\b)",
    re.IGNORECASE | re.MULTILINE,
)
_DISCLAIMER = re.compile(
    r"^[ \t]*(?:CONFIDENTIALITY(?:\s+NOTICE)?\b|DISCLAIMER\b|(?:IMPORTANT|LEGAL)\s+NOTICE\b"
    r"|PRIVILEGED\s+AND\s+CONFIDENTIAL"
    r"|This\s+(?:e-?mail|message|communication)\b[^\n]{0,80}\b(?:confidential|intended\s+(?:solely|only))"
    r"|The\s+information\s+(?:contained\s+)?in\s+this\s+(?:e-?mail|message)"
    r"|If\s+you\s+(?:are\s+not|have\s+received\s+this)\b[^\n]{0,60}\b(?:intended|in\s+error)"
    r"|Please\s+consider\s+the\s+environment\s+before\s+printing)",
    re.IGNORECASE | re.MULTILINE,
)
_SIGN_OFF_WORDS = (
    r"(?:best(?:\s+regards|\s+wishes)?|kind(?:est)?\s+regards|warm(?:est)?\s+regards|regards|rgds|br"
    r"|many\s+thanks|thanks(?:\s+(?:again|so\s+much|a\s+lot|in\s+advance))?|thank\s+you(?:\s+(?:so\s+much|again))?"
    r"|thx|thnx|thanx|tnx|tks|thank\s+u|ty|cheers|sincerely(?:\s+yours)?|yours(?:\s+(?:truly|sincerely|faithfully))?"
    r"|all\s+the\s+best|talk\s+soon|best\s+wishes|with\s+thanks|respectfully"
    r"|mit\s+freundlichen\s+grüßen|freundliche\s+grüße|viele\s+grüße|beste\s+grüße|liebe\s+grüße|grüße|gruß|danke"
    r"|saludos(?:\s+cordiales)?|un\s+saludo|atentamente|gracias|muchas\s+gracias"
    r"|cordialement|bien\s+à\s+vous|merci(?:\s+beaucoup)?|bonne\s+journée"
    r"|obrigad[oa]|atenciosamente|abraços|cumprimentos|grazie|cordiali\s+saluti|met\s+vriendelijke\s+groet)"
)
# A line that is only a sign-off ("Best regards,") or a sign-off and a short name ("Thanks, Ana K.").
_SIGN_OFF_LINE = re.compile(
    rf"^[ \t]*{_SIGN_OFF_WORDS}[ \t]*[,.!:]*[ \t]*"
    r"(?:[-–—]?[ \t]*(?-i:[A-ZÀ-Ý][\w'.-]*(?:[ \t]+[A-ZÀ-Ý][\w'.-]*){0,2}))?"
    r"[ \t]*[,.!]?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# The same at the end of a one-paragraph message: "… invoice please. Thanks, Ana".
_TRAILING_SIGN_OFF = re.compile(
    rf"(?<=[.!?])\s+{_SIGN_OFF_WORDS}[ \t]*[,.!]*"
    r"(?:[ \t]+(?-i:[A-ZÀ-Ý][\w'.-]*(?:[ \t]+[A-ZÀ-Ý][\w'.-]*){0,2}))?"
    r"[ \t]*[.!]?\s*$",
    re.IGNORECASE,
)
_CONTACT_LINE = re.compile(
    r"^[ \t]*(?:"
    r"(?:tel|phone|mobile|mob|cell|fax|direct|office|t|m|p|f|e|w|email|e-mail|web|website|skype)\s*[.:]"
    r"[^\n]*"
    r"|\+?[\d][\d ().\-/]{6,}\d"  # a bare phone number
    r"|(?:https?://|www\.)\S+"
    r"|[\w.+-]+@[\w-]+\.[\w.-]+"
    r"|[^\n]*\s[|•·]\s[^\n]*"  # "Ana Kim | Head of Finance | Acme"
    r"|\d{1,5}\s+[\w .'-]{2,40}\b"
    r"(?:street|st|road|rd|avenue|ave|blvd|lane|ln|drive|dr|way|suite|floor)\b\.?[^\n]*"
    r"|[\w .'-]{2,40},\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?"  # "Austin, TX 78701"
    r"|[^\n]{0,60}\b(?:CEO|CFO|CTO|COO|VP|Founder|Co-?founder|Director|Manager|Head\s+of\b[^\n]{0,40}"
    r"|Accountant|Controller|Bookkeeper|Administrator|Owner|Engineer|Assistant|Officer)\b[^\n]{0,40}"
    r"|(?:Inc|LLC|Ltd|GmbH|S\.?A|SAS|BV|AG|Pty\s+Ltd|Corp|Co)\.?"
    r")[ \t]*$",
    re.MULTILINE,
)
_NAME_LINE = re.compile(r"^[ \t]*[A-ZÀ-Ý][\w'.-]*(?:[ \t]+[A-ZÀ-Ý][\w'.-]*){0,3}[ \t]*$")

# --------------------------------------------------------------------------- greetings, pleasantries
_GREETING_WORDS = (
    r"(?:hi|hello|hey|hiya|dear|greetings|good\s+(?:morning|afternoon|evening|day)|morning|yo"
    r"|hola|buenos\s+días|buenas(?:\s+tardes)?|estimad[oa]s?|hallo|guten\s+(?:tag|morgen)|sehr\s+geehrte[rs]?"
    r"|liebe[rs]?|bonjour|bonsoir|salut|cher|chère|olá|oi|bom\s+dia|boa\s+tarde|prezad[oa]s?|ciao|buongiorno)"
)
_GREETING_ADDRESSEE = (
    r"(?:there|all|team|everyone|everybody|folks|guys|support|billing|tierline|sir|madam|sir/madam|or"
    r"|equipo|equipe|équipe|(?-i:[A-ZÀ-Ý][\w'.-]*))"
)
# "Hi team," / "Dear Sir/Madam," / "Hola Ana": a greeting and at most three addressee words, alone on a line.
_GREETING_LINE = re.compile(
    rf"^[ \t]*{_GREETING_WORDS}(?:[ \t]+{_GREETING_ADDRESSEE}){{0,3}}[ \t]*[,!:.]*[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
# "Hi team, could you …": the greeting before the first comma / colon / exclamation mark.
_GREETING_LEAD = re.compile(
    rf"^\s*{_GREETING_WORDS}(?:\s+{_GREETING_ADDRESSEE}){{0,3}}\s*[,!:]+\s*",
    re.IGNORECASE,
)
_PLEASANTRY = re.compile(
    r"(?:^|(?<=[.!?]\s)|(?<=\n))\s*(?:"
    r"I\s+hope\s+(?:you|u|ur|this|all|everyone)\b[^.!?\n]{0,60}[.!?]"
    r"|Hope\s+(?:you|u|ur|this|all|everyone)\b[^.!?\n]{0,60}[.!?]"
    r"|(?:I\s+am|I'm)\s+writing\s+(?:to\s+you\s+)?(?:because|as|since|regarding|about)\b[^.!?\n]{0,0}"
    r"|Thanks?\s+(?:you\s+)?(?:in\s+advance|for\s+(?:your|the)\s+(?:help|time|assistance|support))[^.!?\n]{0,40}[.!?]?"
    r")\s*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^(?:[-*•]|\d{1,2}[.)])\s+")
_ENDS_SENTENCE = re.compile(r"[.?!:;]$")
_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")


def _has_words(text: str) -> bool:
    return bool(_WORD.search(text))


def _strip_html(text: str) -> str:
    if not re.search(r"<\s*/?\s*[a-zA-Z][^<>@]*>|&(?:[a-zA-Z]{2,8}|#\d{1,6});", text):
        return text
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_GMAIL_QUOTE.sub("\n", text)
    text = _HTML_DROP.sub("\n", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub(" ", text)
    return html.unescape(text)


def _cut_at_first(text: str, *patterns: re.Pattern[str]) -> str:
    """Cut the text at the earliest match of any pattern that leaves some words before it."""
    cut = len(text)
    for pattern in patterns:
        for match in pattern.finditer(text):
            if match.start() < cut and _has_words(text[: match.start()]):
                cut = match.start()
                break
    return text[:cut]


def _drop_quoted_lines(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not line.lstrip().startswith(">"))


def _cut_sign_off(text: str) -> str:
    """Cut at a sign-off line that has words before it (what follows it is the signature)."""
    return _cut_at_first(text, _SIGN_OFF_LINE)


def _trim_trailing_block(text: str) -> str:
    """Drop trailing signature-like lines (contact details, titles, a bare name) after the last words."""
    lines = text.rstrip().split("\n")
    while len(lines) > 1:
        last = lines[-1].strip()
        contact_like = bool(re.search(r"[@|\d]|https?:|www\.", last)) or len(last.split()) <= 6
        if (
            not last
            or (contact_like and _CONTACT_LINE.match(last))
            or (_NAME_LINE.match(last) and len(last) <= 40 and not last.endswith(("?", "!")))
        ):
            lines.pop()
            continue
        break
    return "\n".join(lines)


def _drop_greeting(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _GREETING_LINE.match(line) and any(_has_words(rest) for rest in lines[i + 1 :]):
            lines[i] = ""
        else:
            stripped = _GREETING_LEAD.sub("", line, count=1)
            if _has_words(stripped):
                lines[i] = stripped
        break
    return "\n".join(lines)


def _drop_pleasantries(text: str) -> str:
    out = _PLEASANTRY.sub(" ", text)
    return out if _has_words(out) else text


def clean_lines(text: str) -> list[str]:
    """The customer's new words as paragraphs (blank-line separated), each with its lines joined."""
    t = text.replace("\r\n", "\n").replace("\r", "\n")
    t = _strip_html(t)
    t = _cut_at_first(t, _ATTRIBUTION, _SEPARATOR, _HEADER_BLOCK, _SENT_FROM, _DISCLAIMER, _SIG_DASHES)
    t = _drop_quoted_lines(t)
    t = _cut_sign_off(t)
    t = _trim_trailing_block(t)
    t = _drop_greeting(t)
    paragraphs: list[str] = []
    for block in re.split(r"\n[ \t]*\n+", t):
        lines = [_SPACE.sub(" ", line).strip() for line in block.split("\n")]
        kept = [ln for ln in lines if ln]
        if kept and all(_BULLET.match(ln) or _ENDS_SENTENCE.search(ln) for ln in kept):
            paragraphs.extend(_BULLET.sub("", ln) for ln in kept)  # a list of asks: one piece each
        elif kept:
            paragraphs.append(" ".join(_BULLET.sub("", ln) for ln in kept))
    return [p for p in paragraphs if _has_words(p)]


def clean_text(text: str) -> str:
    """The customer's new words, whitespace collapsed; the original (collapsed) if nothing would be left."""
    original = " ".join(_SPACE.sub(" ", text).split())
    if not _has_words(text):
        return original
    try:
        paragraphs = clean_lines(text)
    except RecursionError:  # pragma: no cover - regexes are bounded; belt and braces
        return original
    # paragraphs and list items are separate sentences for the classifier's clauses
    cleaned = " ".join(p if _ENDS_SENTENCE.search(p) else f"{p}." for p in paragraphs[:-1])
    cleaned = f"{cleaned} {paragraphs[-1]}" if paragraphs else ""
    cleaned = _TRAILING_SIGN_OFF.sub("", cleaned).strip()
    cleaned = _drop_pleasantries(cleaned)
    cleaned = " ".join(cleaned.split())
    return cleaned if _has_words(cleaned) else original


# --------------------------------------------------------------------------- several asks
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=\S)|\n+")
# "… card link and (also) last month's invoice", "…; also …", "… as well as …", "… plus …"
_CLAUSE = re.compile(
    r"\s*(?:,\s*)?\b(?:and\s+also|and\s+then|and\s+please|and\s+can\s+you|and\s+could\s+you|and|also|plus"
    r"|as\s+well\s+as|then|y\s+también|y|und\s+auch|und|et\s+aussi|et|e\s+também|e)\b\s+|\s+&\s+"
    r"|\s*,\s*(?=(?:please|pls|plz|can\s+you|could\s+you|would\s+you|can\s+u|could\s+u)\b)",
    re.IGNORECASE,
)
_MIN_CLAUSE_WORDS = 2


def split_asks(cleaned: str, *, max_segments: int = 8) -> list[str]:
    """Sentences, then clauses joined by "and / also / plus", of at least two words each.

    Returns ``[]`` when the text is a single ask (nothing to split). Pieces keep their own words only;
    a clause too short to stand alone stays joined to the one before it.
    """
    pieces: list[str] = []
    for sentence in _SENTENCE.split(cleaned):
        sentence = sentence.strip()
        if not _has_words(sentence):
            continue
        clauses = [c.strip(" ,;") for c in _CLAUSE.split(sentence)]
        merged: list[str] = []
        for clause in clauses:
            if not clause:
                continue
            if merged and len(clause.split()) < _MIN_CLAUSE_WORDS:
                merged[-1] = f"{merged[-1]} {clause}"
            else:
                merged.append(clause)
        if len(merged) > 1 and len(merged[0].split()) < _MIN_CLAUSE_WORDS:
            merged[1] = f"{merged[0]} {merged[1]}"
            merged.pop(0)
        if len(merged) > 1:
            pieces.append(sentence)  # the whole sentence too: its clauses may only make sense together
        pieces.extend(merged)
    unique = [p for p in dict.fromkeys(pieces) if _has_words(p) and p != cleaned.strip()]
    if len(unique) <= 1:
        return []  # the whole text is the only ask
    return unique[:max_segments]
