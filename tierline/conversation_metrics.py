"""What a support team is judged by, read from the conversations (issue 19): first-response time, time to
resolution per tier, CSAT and "did this solve it?" from the ratings, and resolution on first contact.

- **First response**: from a customer's message to the next message to them in the same conversation (an
  answer, a fix confirmation, a question, a handoff status or a human's reply), per contact.
- **First-contact resolution**: a conversation with one message from the customer whose contact was resolved
  without a person and was not rated "did not solve it".
- **CSAT**: mean of the 1–5 ratings and the share of 4s and 5s; **solved**: share of "yes" among answers to
  "did this solve it?". Customer effort is approximated by customer messages per conversation.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

import asyncpg


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1)))))
    return float(ordered[k])


def summarise(
    first_responses_ms: list[tuple[str, float]],
    ratings: list[tuple[int | None, bool | None]],
    conversations: list[tuple[int, str | None, bool | None]],
    first_response_target_ms: float = 30_000,
) -> dict[str, Any]:
    """The figures from plain rows (pure, so the arithmetic is tested without a database).

    ``first_responses_ms``: (kind of the first message to the customer, milliseconds) per contact;
    ``ratings``: (csat, solved) per rated contact; ``conversations``: (customer messages, tier that resolved
    its first contact or None, solved rating of it or None) per conversation.
    """
    automated = [ms for kind, ms in first_responses_ms if kind != "human_reply"]
    all_ms = [ms for _, ms in first_responses_ms]
    csats = [c for c, _ in ratings if c is not None]
    solved = [s for _, s in ratings if s is not None]
    fcr = [
        messages == 1 and tier is not None and tier != "tier3" and solved_flag is not False
        for messages, tier, solved_flag in conversations
    ]
    return {
        "first_response_ms": {
            "count": len(all_ms),
            "p50": percentile(all_ms, 50),
            "p99": percentile(all_ms, 99),
            "automated_p50": percentile(automated, 50),
            "automated_p99": percentile(automated, 99),
            "automated_within_target": round(
                sum(ms <= first_response_target_ms for ms in automated) / len(automated), 4
            )
            if automated
            else 0.0,
        },
        "csat": {
            "ratings": len(csats),
            "mean": round(statistics.fmean(csats), 2) if csats else None,
            "satisfied_share": round(sum(c >= 4 for c in csats) / len(csats), 4) if csats else None,
            "solved_answers": len(solved),
            "solved_share": round(sum(solved) / len(solved), 4) if solved else None,
        },
        "conversations": len(conversations),
        "first_contact_resolution": round(sum(fcr) / len(fcr), 4) if fcr else None,
        "customer_messages_per_conversation": round(statistics.fmean(m for m, _, _ in conversations), 2)
        if conversations
        else None,
    }


async def conversation_metrics(
    conn: asyncpg.Pool | asyncpg.Connection,
    *,
    since: datetime | None = None,
    contact_ids: list[str] | None = None,
) -> dict[str, Any]:
    """The figures for conversations started since ``since`` (or holding one of ``contact_ids``)."""
    scope = """SELECT DISTINCT c.conversation_id FROM contacts c
               WHERE c.conversation_id IS NOT NULL
                 AND ($1::timestamptz IS NULL OR c.started_at >= $1)
                 AND ($2::text[] IS NULL OR c.contact_id = ANY($2))"""
    responses = await conn.fetch(
        f"""WITH scope AS ({scope}),
                asked AS (
                  SELECT t.conversation_id, t.contact_id, t.seq, t.created_at
                  FROM conversation_turns t JOIN scope USING (conversation_id) WHERE t.role = 'customer')
            SELECT a.contact_id, r.kind, extract(epoch FROM r.created_at - a.created_at) * 1000 AS ms
            FROM asked a
            JOIN LATERAL (
              SELECT kind, created_at FROM conversation_turns r
              WHERE r.conversation_id = a.conversation_id AND r.seq > a.seq AND r.role <> 'customer'
              ORDER BY r.seq LIMIT 1) r ON true""",
        since,
        contact_ids,
    )
    ratings = await conn.fetch(
        f"""WITH scope AS ({scope})
            SELECT csat, solved FROM conversation_ratings JOIN scope USING (conversation_id)""",
        since,
        contact_ids,
    )
    conversations = await conn.fetch(
        f"""WITH scope AS ({scope}),
                firsts AS (
                  SELECT DISTINCT ON (t.conversation_id) t.conversation_id, t.contact_id
                  FROM conversation_turns t JOIN scope USING (conversation_id)
                  WHERE t.role = 'customer' ORDER BY t.conversation_id, t.seq)
            SELECT f.conversation_id,
                   (SELECT count(*) FROM conversation_turns t
                     WHERE t.conversation_id = f.conversation_id AND t.role = 'customer') AS messages,
                   o.resolved_by,
                   r.solved
            FROM firsts f
            LEFT JOIN outcomes o ON o.contact_id = f.contact_id
            LEFT JOIN conversation_ratings r
              ON r.conversation_id = f.conversation_id AND r.contact_id = f.contact_id""",
        since,
        contact_ids,
    )
    return summarise(
        [(r["kind"], max(0.0, float(r["ms"]))) for r in responses],
        [(r["csat"], r["solved"]) for r in ratings],
        [(int(r["messages"]), r["resolved_by"], r["solved"]) for r in conversations],
    )
