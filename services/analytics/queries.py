"""The report: every analyst table for a period, as one JSON-ready dict (used by the API and the CLI)."""

from __future__ import annotations

from datetime import date
from typing import Any

from services.analytics.deflection import deflection_report
from services.analytics.learning import learning_report
from services.analytics.store import AnalyticsStore

TIERS = ("tier0", "tier1", "tier2", "tier3")


def _rate(num: float, den: float) -> float:
    return round(num / den, 4) if den else 0.0


#: Audit actions the report counts (tier 2's answer quality check; the router's clarifying questions).
ANSWER_STOPPED_ACTION = "answer.quality_stopped"
CLARIFY_ASKED_ACTION = "clarify.asked"


def answers_stopped(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Answers the quality check stopped: in all, by cause (an answer with two causes counts in each) and
    by what happened to them (rewritten from the facts, or a person took the contact)."""
    by_cause: dict[str, int] = {}
    by_outcome: dict[str, int] = {}
    total = 0
    for r in rows:
        n = int(r["n"])
        total += n
        for cause in filter(None, str(r["target"] or "").split(",")):
            by_cause[cause] = by_cause.get(cause, 0) + n
        outcome = str(r["decision"] or "(none)")
        by_outcome[outcome] = by_outcome.get(outcome, 0) + n
    return {
        "total": total,
        "by_cause": dict(sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_outcome": dict(sorted(by_outcome.items())),
    }


def build_report(store: AnalyticsStore, start: date, end: date) -> dict[str, Any]:
    store.ensure_schema()
    by_tid = store.period(
        "v_resolution_by_tier_intent_day",
        start,
        end,
        "toString(day) AS d, resolved_by, intent, sum(contacts) AS contacts, sum(automated) AS automated",
        group="d, resolved_by, intent",
        order="d, resolved_by, intent",
    )
    total = sum(int(r["contacts"]) for r in by_tid)
    automated = sum(int(r["automated"]) for r in by_tid)

    tiers: dict[str, int] = {t: 0 for t in TIERS}
    intents: dict[str, dict[str, int]] = {}
    days: dict[str, dict[str, Any]] = {}
    for r in by_tid:
        n = int(r["contacts"])
        tiers[r["resolved_by"]] = tiers.get(r["resolved_by"], 0) + n
        i = intents.setdefault(r["intent"] or "(none)", {"contacts": 0, "automated": 0})
        i["contacts"] += n
        i["automated"] += int(r["automated"])
        d = days.setdefault(r["d"], {"day": r["d"], "contacts": 0, "automated": 0, **{t: 0 for t in TIERS}})
        d["contacts"] += n
        d["automated"] += int(r["automated"])
        d[r["resolved_by"]] = d.get(r["resolved_by"], 0) + n

    cost_rows = store.period(
        "v_cost_by_day", start, end, "sum(contacts) AS contacts, sum(cost_total) AS cost"
    )
    cost = float(cost_rows[0]["cost"] or 0) if cost_rows else 0.0
    recovered = store.period(
        "v_recovered_revenue_by_day",
        start,
        end,
        "resolved_by, sum(recoveries) AS recoveries, sum(recovered_total) AS recovered_usd",
        group="resolved_by",
        order="resolved_by",
    )
    reasons = store.period(
        "v_escalation_reasons_by_day",
        start,
        end,
        "reason, sum(escalations) AS escalations",
        group="reason",
        order="escalations DESC, reason",
    )
    escalations = sum(int(r["escalations"]) for r in reasons)
    repeat = store.period(
        "v_repeat_contacts_by_day", start, end, "sum(contacts) AS contacts, sum(repeats) AS repeats"
    )
    rep_contacts = int(repeat[0]["contacts"] or 0) if repeat else 0
    rep_repeats = int(repeat[0]["repeats"] or 0) if repeat else 0
    recovered_total = round(sum(float(r["recovered_usd"]) for r in recovered), 2)

    return {
        "period": {"start": start.isoformat(), "end": end.isoformat()},
        "totals": {
            "contacts": total,
            "automated": automated,
            "automated_rate": _rate(automated, total),
            "cost_usd": round(cost, 2),
            "cost_per_contact_usd": round(cost / total, 4) if total else 0.0,
            "recovered_usd": recovered_total,
            "escalations": escalations,
            "repeat_contact_rate_7d": _rate(rep_repeats, rep_contacts),
        },
        "resolution_by_tier": [
            {"tier": t, "contacts": n, "share": _rate(n, total)} for t, n in tiers.items()
        ],
        "resolution_by_intent": [
            {
                "intent": k,
                "contacts": v["contacts"],
                "automated": v["automated"],
                "automated_rate": _rate(v["automated"], v["contacts"]),
            }
            for k, v in sorted(intents.items(), key=lambda kv: (-kv[1]["contacts"], kv[0]))
        ],
        "resolution_by_day": [
            {**d, "automated_rate": _rate(d["automated"], d["contacts"])} for _, d in sorted(days.items())
        ],
        "resolution_by_tier_intent_day": [
            {
                "day": r["d"],
                "tier": r["resolved_by"],
                "intent": r["intent"] or "(none)",
                "contacts": int(r["contacts"]),
            }
            for r in by_tid
        ],
        "cost_by_month": [
            {
                "month": r["month"],
                "contacts": int(r["contacts"]),
                "cost_usd": round(float(r["cost_total"]), 2),
                "cost_per_contact_usd": round(float(r["cost_total"]) / int(r["contacts"]), 4),
            }
            for r in store.cost_by_month(start, end)
        ],
        "recovered_revenue": [
            {
                "tier": r["resolved_by"],
                "recoveries": int(r["recoveries"]),
                "recovered_usd": round(float(r["recovered_usd"]), 2),
            }
            for r in recovered
        ],
        "escalation_reasons": [
            {
                "reason": r["reason"] or "(none)",
                "escalations": int(r["escalations"]),
                "share": _rate(int(r["escalations"]), escalations),
            }
            for r in reasons
        ],
        "repeat_contacts": {
            "contacts": rep_contacts,
            "repeats_within_7d": rep_repeats,
            "rate": _rate(rep_repeats, rep_contacts),
        },
        "answers_stopped": answers_stopped(store.audit_counts(ANSWER_STOPPED_ACTION, start, end)),
        "clarifying_questions": {
            "asked": sum(int(r["n"]) for r in store.audit_counts(CLARIFY_ASKED_ACTION, start, end))
        },
        # issue 19: support figures, knowledge gaps, answer template experiments
        **learning_report(store.support_contacts(start, end)),
        # issue 21: per ticket type, done in the portal or by a fix vs reached a person, month over month
        "deflection_by_workflow": deflection_report(store, start, end),
    }
