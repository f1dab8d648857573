"""Deflection per workflow (issue 21), the self-service portal's success measure.

Per ticket type (the contact's intent, else its first action) and calendar month: how many contacts were done
in the portal (``trigger = selfheal``: a Health Meter or portal click, finished without a person), by a fix or
an answer (any other trigger, finished by tiers 0-2) and how many reached a person (``resolved_by = tier3``),
with the deflection rate and its change from the month before.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from services.analytics.store import AnalyticsStore


def deflection_rows(store: AnalyticsStore, start: date, end: date) -> list[dict[str, Any]]:
    """One row per (month, workflow) in the period, from the outcome stream (one outcome per contact)."""
    return store._rows(  # under the store's lock (chDB is not thread-safe)
        "SELECT toString(toStartOfMonth(occurred_at)) AS month, "
        "if(intent != '', intent, if(length(actions) > 0, actions[1], '(none)')) AS workflow, "
        "count() AS contacts, "
        "countIf(resolved_by != 'tier3' AND trigger = 'selfheal') AS portal, "
        "countIf(resolved_by != 'tier3' AND trigger != 'selfheal') AS fixed, "
        "countIf(resolved_by = 'tier3') AS person "
        f"FROM {store.db}.outcomes FINAL "
        "WHERE toDate(occurred_at) >= {s:Date} AND toDate(occurred_at) <= {e:Date} "
        "GROUP BY month, workflow ORDER BY workflow, month",
        {"s": start, "e": end},
    )


def deflection_by_workflow(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each workflow's months, oldest first, with the deflection rate ((portal + fixed) / contacts) and the
    change in that rate from the workflow's previous month (``None`` for its first month)."""
    out: list[dict[str, Any]] = []
    previous: dict[str, float] = {}
    for r in sorted(rows, key=lambda r: (str(r["workflow"]), str(r["month"]))):
        contacts, portal, fixed = int(r["contacts"]), int(r["portal"]), int(r["fixed"])
        rate = round((portal + fixed) / contacts, 4) if contacts else 0.0
        workflow = str(r["workflow"])
        out.append(
            {
                "month": str(r["month"])[:7],
                "workflow": workflow,
                "contacts": contacts,
                "portal": portal,
                "fixed": fixed,
                "person": int(r["person"]),
                "deflection_rate": rate,
                "change": round(rate - previous[workflow], 4) if workflow in previous else None,
            }
        )
        previous[workflow] = rate
    return out


def deflection_report(store: AnalyticsStore, start: date, end: date) -> list[dict[str, Any]]:
    return deflection_by_workflow(deflection_rows(store, start, end))
