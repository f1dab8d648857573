"""The support figures and the learning loop of `tierline report` (issue 19): pure, over plain rows.

- **Support figures**: first-response time (p50/p99, automated vs a person's reply, share of automated
  first responses within the 30 s target), time to resolution per tier (tier 3: until the case was
  resolved; open cases counted apart), CSAT and "did this solve it?" from the ratings, first-contact
  resolution, and customer effort as customer messages per conversation. The arithmetic is
  ``tierline.conversation_metrics.summarise`` (the same as the Postgres figures).
- **Knowledge gaps**: per intent, the contacts that reached a person for want of an answer (not the
  handoffs policy demands: fraud, disputes, money over policy, a customer asking for a person, a denied
  action) or that were rated low (CSAT 1-2 or "did not solve it"), with their most common phrasing,
  example texts and the title of the article to write.
- **Experiments**: per answer-template variant, CSAT, solved share and resolution (not followed by
  another message in the conversation, not rated "did not solve it").
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tierline.conversation_metrics import percentile, summarise

#: first responses faster than this count as on target (automated answers)
FIRST_RESPONSE_TARGET_MS = 30_000
#: handoffs the policy demands: a person was always going to take these, no article would have helped
DESIGNED_HANDOFFS = frozenset({"fraud", "dispute", "refund_over_policy", "customer_asked", "policy_denied"})
TIERS = ("tier0", "tier1", "tier2", "tier3")


@dataclass(frozen=True)
class SupportContact:
    """One customer message of the period, with what came of it (a row of ``support_contacts``)."""

    contact_id: str
    conversation_id: str
    text: str
    at: str
    first_kind: str | None = None
    first_response_ms: float | None = None
    resolved_by: str | None = None
    intent: str | None = None
    escalation_reason: str | None = None
    variant: str | None = None
    resolution_ms: float | None = None
    csat: int | None = None
    solved: bool | None = None
    thread_messages: int = 1
    first_in_thread: bool = True

    @property
    def low_rated(self) -> bool:
        return (self.csat is not None and self.csat <= 2) or self.solved is False

    @property
    def reached_person_unplanned(self) -> bool:
        return self.resolved_by == "tier3" and (self.escalation_reason or "") not in DESIGNED_HANDOFFS


def contact_from_row(r: Mapping[str, Any]) -> SupportContact:
    has_outcome = bool(r.get("has_outcome"))
    resolved_by = str(r["resolved_by"]) if has_outcome and r.get("resolved_by") else None
    if resolved_by == "tier3":
        resolution_ms = float(r["case_ms"]) if r.get("case_resolved") else None
    else:
        resolution_ms = float(r["outcome_ms"]) if has_outcome else None
    return SupportContact(
        contact_id=str(r["contact_id"]),
        conversation_id=str(r["conversation_id"]),
        text=str(r.get("text") or ""),
        at=str(r.get("at") or ""),
        first_kind=str(r["first_kind"]) if r.get("answered") else None,
        first_response_ms=max(0.0, float(r["first_response_ms"])) if r.get("answered") else None,
        resolved_by=resolved_by,
        intent=(str(r["intent"]) or None) if has_outcome else None,
        escalation_reason=(str(r["escalation_reason"]) or None) if has_outcome else None,
        variant=(str(r["variant"]) or None) if has_outcome else None,
        resolution_ms=max(0.0, resolution_ms) if resolution_ms is not None else None,
        csat=int(r["csat"]) if int(r.get("csat_n") or 0) and int(r["csat"]) > 0 else None,
        solved=bool(int(r["solved"])) if int(r.get("solved_n") or 0) and int(r["solved"]) >= 0 else None,
        thread_messages=max(1, int(r.get("thread_messages") or 1)),
        first_in_thread=bool(r.get("first_in_thread", True)),
    )


def asked_back(c: SupportContact) -> bool:
    """The contact's outcome was a clarifying question (recorded as an automated reply): it resolved
    nothing yet; the customer's answer is a contact of its own."""
    return c.first_kind == "clarifying_question" and c.resolved_by != "tier3"


def time_to_resolution(contacts: Iterable[SupportContact]) -> dict[str, dict[str, Any]]:
    """Per tier: contacts it resolved (tier 3: cases a person resolved), p50/p90 from the customer's message
    to the resolution, and for tier 3 the cases still open. A contact answered by a clarifying question
    is not a resolution: left out."""
    times: dict[str, list[float]] = {t: [] for t in TIERS}
    still_open = 0
    for c in contacts:
        if c.resolved_by is None or asked_back(c):
            continue
        if c.resolution_ms is None:
            still_open += c.resolved_by == "tier3"
            continue
        times.setdefault(c.resolved_by, []).append(c.resolution_ms)
    return {
        tier: {
            "resolved": len(ms),
            "p50_ms": round(percentile(ms, 50)),
            "p90_ms": round(percentile(ms, 90)),
            **({"open": still_open} if tier == "tier3" else {}),
        }
        for tier, ms in times.items()
    }


def support_figures(
    contacts: list[SupportContact], target_ms: float = FIRST_RESPONSE_TARGET_MS
) -> dict[str, Any]:
    figures = summarise(
        [
            (c.first_kind, c.first_response_ms)
            for c in contacts
            if c.first_kind and c.first_response_ms is not None
        ],
        [(c.csat, c.solved) for c in contacts if c.csat is not None or c.solved is not None],
        # a question left unanswered resolved nothing: not a first-contact resolution
        [
            (c.thread_messages, None if asked_back(c) else c.resolved_by, c.solved)
            for c in contacts
            if c.first_in_thread
        ],
        first_response_target_ms=target_ms,
    )
    figures["first_response_ms"]["target_ms"] = target_ms
    figures["first_response_ms"]["unanswered"] = sum(c.first_kind is None for c in contacts)
    figures["time_to_resolution"] = time_to_resolution(contacts)
    figures["clarifying_questions"] = sum(asked_back(c) for c in contacts)
    # customer effort (CES): no effort question is asked yet, so the proxy is how many messages it took
    figures["effort"] = {"customer_messages_per_conversation": figures["customer_messages_per_conversation"]}
    return figures


_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have hello hi how i i'm
    if in is it it's its just me my of on or our please so that the their them then there this to
    us was we were what when where which who why will with would you your yours thanks thank can't
    don't didn't im ive i've get got any some all not no yes one also still again please help need want
    hey dear regards best cheers sorry ok okay""".split()
)


def _words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOPWORDS]


def common_phrasing(texts: Iterable[str]) -> str:
    """The phrase the texts share most: the most common pair of adjacent content words (counted once per
    text) when two texts share one, else the most common content word; empty for no words."""
    pairs: Counter[str] = Counter()
    words: Counter[str] = Counter()
    for text in texts:
        ws = _words(text)
        pairs.update({f"{a} {b}" for a, b in zip(ws, ws[1:], strict=False)})
        words.update(set(ws))
    ranked_pairs = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
    if ranked_pairs and ranked_pairs[0][1] >= 2:
        return ranked_pairs[0][0]
    ranked_words = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked_words[0][0] if ranked_words else ""


def article_title(intent: str, phrasing: str) -> str:
    """The article to write: the intent in words plus the customers' own phrasing."""
    topic = intent.replace("_", " ").strip().capitalize() if intent and intent != "(none)" else "Unclassified"
    return f"{topic}: “{phrasing}”" if phrasing else topic


def knowledge_gaps(
    contacts: Iterable[SupportContact], *, limit: int = 10, examples: int = 3
) -> list[dict[str, Any]]:
    """Intents ranked by how many contacts reached a person unplanned or were rated low (then by the gap
    share, then by name), each with its phrasing, example texts and the suggested article."""
    by_intent: dict[str, list[SupportContact]] = {}
    for c in contacts:
        if c.resolved_by is None and c.csat is None and c.solved is None:
            continue  # nothing known yet about how it went
        by_intent.setdefault(c.intent or "(none)", []).append(c)
    gaps: list[dict[str, Any]] = []
    for intent, items in by_intent.items():
        missed = [c for c in items if c.reached_person_unplanned or c.low_rated]
        if not missed:
            continue
        texts = [c.text for c in missed if c.text.strip()]
        phrasing = common_phrasing(texts)
        shown: list[str] = []
        for text in sorted(texts, key=lambda t: (phrasing not in t.lower(), t)):
            if text not in shown:
                shown.append(text[:300])
            if len(shown) == examples:
                break
        gaps.append(
            {
                "intent": intent,
                "contacts": len(items),
                "gaps": len(missed),
                "gap_rate": round(len(missed) / len(items), 4),
                "reached_person": sum(c.reached_person_unplanned for c in missed),
                "low_rated": sum(c.low_rated for c in missed),
                "phrasing": phrasing,
                "examples": shown,
                "suggested_article": article_title(intent, phrasing),
            }
        )
    gaps.sort(key=lambda g: (-g["gaps"], -g["gap_rate"], g["intent"]))
    return gaps[:limit]


def experiment_results(contacts: list[SupportContact]) -> list[dict[str, Any]]:
    """Per experiment and variant: answers, CSAT, solved share and resolution (the answer was not followed
    by another customer message in its conversation and not rated "did not solve it")."""
    last_in_thread: dict[str, str] = {}
    for c in sorted(contacts, key=lambda c: (c.at, c.contact_id)):
        last_in_thread[c.conversation_id] = c.contact_id
    followed = {c.contact_id: last_in_thread[c.conversation_id] != c.contact_id for c in contacts}
    by_variant: dict[tuple[str, str], list[SupportContact]] = {}
    for c in contacts:
        if c.variant and ":" in c.variant:
            experiment, variant = c.variant.rsplit(":", 1)
            by_variant.setdefault((experiment, variant), []).append(c)
    rows: list[dict[str, Any]] = []
    for (experiment, variant), items in sorted(by_variant.items()):
        csats = [c.csat for c in items if c.csat is not None]
        solved = [c.solved for c in items if c.solved is not None]
        resolved = [not followed[c.contact_id] and c.solved is not False for c in items]
        rows.append(
            {
                "experiment": experiment,
                "variant": variant,
                "answers": len(items),
                "ratings": len(csats),
                "csat_mean": round(statistics.fmean(csats), 2) if csats else None,
                "solved_share": round(sum(solved) / len(solved), 4) if solved else None,
                "resolved": sum(resolved),
                "resolution_rate": round(sum(resolved) / len(items), 4),
            }
        )
    return rows


def learning_report(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The report's issue 19 sections from the ``support_contacts`` rows."""
    contacts = [contact_from_row(r) for r in rows]
    return {
        "support": support_figures(contacts),
        "knowledge_gaps": knowledge_gaps(contacts),
        "experiments": experiment_results(contacts),
    }
