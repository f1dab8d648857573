"""ClickHouse adapter of the analyst stream: tables, views, inserts, the report queries, the audit chain.

Works on a clickhouse-connect client (chDB in-process or a ClickHouse server). Every statement names its
database explicitly, so several databases can share one chDB path (tests use one per test).
"""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, date, datetime
from typing import Any

from services.analytics.domain import ChainRow

DEFAULT_DATABASE = "tierline"


def _ddl(db: str) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        # One row per contact: ReplacingMergeTree on contact_id, read with FINAL (redelivery-proof).
        f"""CREATE TABLE IF NOT EXISTS {db}.outcomes (
            contact_id String, message_id UUID, customer_id String, occurred_at DateTime64(3, 'UTC'),
            resolved_by LowCardinality(String), tier_path Array(String), intent LowCardinality(String),
            root_cause LowCardinality(String), actions Array(String),
            refund_usd Float64, recovered_usd Float64,
            escalation_reason LowCardinality(String), latency_ms UInt64, cost_usd Float64,
            channel LowCardinality(String), trigger LowCardinality(String), summary String,
            inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree ORDER BY contact_id""",
        f"""CREATE TABLE IF NOT EXISTS {db}.audit_events (
            partition UInt32, offset UInt64, message_id UUID, contact_id String, customer_id String,
            occurred_at DateTime64(3, 'UTC'), actor String, action String, target String, decision String,
            record String, prev_hash String, hash String, inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
            INDEX message_id_bf message_id TYPE bloom_filter GRANULARITY 4
        ) ENGINE = ReplacingMergeTree ORDER BY (partition, offset)""",
        # the duplicate check looks records up by message id: a skip index (also on older tables)
        f"ALTER TABLE {db}.audit_events ADD INDEX IF NOT EXISTS message_id_bf message_id "
        "TYPE bloom_filter GRANULARITY 4",
        # the A/B variant of the answer (issue 19), also on tables made before it
        f"ALTER TABLE {db}.outcomes ADD COLUMN IF NOT EXISTS variant String DEFAULT ''",
        # ---- the support stream (issue 19): customer messages, messages to them, their ratings
        f"""CREATE TABLE IF NOT EXISTS {db}.contacts_received (
            contact_id String, message_id UUID, customer_id String, conversation_id String,
            channel LowCardinality(String), occurred_at DateTime64(3, 'UTC'), text String, choice String,
            inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree ORDER BY contact_id""",
        f"""CREATE TABLE IF NOT EXISTS {db}.conversation_messages (
            message_id UUID, contact_id String, customer_id String, conversation_id String,
            occurred_at DateTime64(3, 'UTC'), kind LowCardinality(String), author String, variant String,
            inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree ORDER BY message_id""",
        # csat 0 = not given; solved -1 = not given, 0 no, 1 yes (a later rating completes an earlier one)
        f"""CREATE TABLE IF NOT EXISTS {db}.conversation_ratings (
            message_id UUID, contact_id String, customer_id String, conversation_id String,
            occurred_at DateTime64(3, 'UTC'), csat UInt8, solved Int8,
            inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = ReplacingMergeTree ORDER BY message_id""",
        f"""CREATE TABLE IF NOT EXISTS {db}.case_resolutions (
            message_id UUID, case_id String, contact_id String, customer_id String,
            occurred_at DateTime64(3, 'UTC'), agent_id String, refund_usd Float64, actions Array(String),
            knowledge_article_id String, resolution_note String
        ) ENGINE = ReplacingMergeTree ORDER BY message_id""",
        # ---- views: additive per-day counts, so any period is a SUM over days
        f"""CREATE VIEW IF NOT EXISTS {db}.v_resolution_by_tier_intent_day AS
            SELECT toDate(occurred_at) AS day, resolved_by, intent, count() AS contacts,
                   countIf(resolved_by != 'tier3') AS automated
            FROM {db}.outcomes FINAL GROUP BY day, resolved_by, intent""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_automated_rate_by_day AS
            SELECT toDate(occurred_at) AS day, count() AS contacts,
                   countIf(resolved_by != 'tier3') AS automated,
                   automated / contacts AS automated_rate
            FROM {db}.outcomes FINAL GROUP BY day""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_cost_by_day AS
            SELECT toDate(occurred_at) AS day, count() AS contacts, sum(cost_usd) AS cost_total
            FROM {db}.outcomes FINAL GROUP BY day""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_cost_by_month AS
            SELECT toStartOfMonth(occurred_at) AS month, count() AS contacts, sum(cost_usd) AS cost_total,
                   cost_total / contacts AS cost_per_contact
            FROM {db}.outcomes FINAL GROUP BY month""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_recovered_revenue_by_day AS
            SELECT toDate(occurred_at) AS day, resolved_by, countIf(recovered_usd > 0) AS recoveries,
                   sum(recovered_usd) AS recovered_total
            FROM {db}.outcomes FINAL WHERE resolved_by IN ('tier0', 'tier1') GROUP BY day, resolved_by""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_escalation_reasons_by_day AS
            SELECT toDate(occurred_at) AS day, escalation_reason AS reason, count() AS escalations
            FROM {db}.outcomes FINAL WHERE resolved_by = 'tier3' GROUP BY day, reason""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_repeat_contacts_by_day AS
            SELECT toDate(occurred_at) AS day, count() AS contacts, countIf(is_repeat) AS repeats
            FROM (
                SELECT occurred_at,
                       (row_number() OVER w > 1)
                       AND (dateDiff('second', lagInFrame(occurred_at) OVER w, occurred_at) <= 7 * 86400)
                       AS is_repeat
                FROM {db}.outcomes FINAL
                WINDOW w AS (PARTITION BY customer_id ORDER BY occurred_at, contact_id
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            ) GROUP BY day""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_intent_by_day AS
            SELECT toDate(occurred_at) AS day, intent AS key, count() AS contacts
            FROM {db}.outcomes FINAL GROUP BY day, key""",
        f"""CREATE VIEW IF NOT EXISTS {db}.v_root_cause_by_day AS
            SELECT toDate(occurred_at) AS day, root_cause AS key, count() AS contacts
            FROM {db}.outcomes FINAL GROUP BY day, key""",
    ]


def _dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class AnalyticsStore:
    """Synchronous ClickHouse calls behind a lock (one chDB engine per process), awaited in a thread."""

    def __init__(
        self, client: Any, database: str = DEFAULT_DATABASE, lock: threading.Lock | None = None
    ) -> None:
        if not database.replace("_", "").isalnum():
            raise ValueError(f"bad database name {database!r}")
        self.client = client
        self.db = database
        # share the process-wide lock of the client when others use it too (chDB is not thread-safe)
        self._lock = lock or threading.Lock()
        self._ready = False

    # ------------------------------------------------------------------ plumbing
    def _command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self.client.command(sql, parameters=parameters)

    def _rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self.client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def _insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        if rows:
            with self._lock:
                self.client.insert(f"{self.db}.{table}", rows, column_names=columns)

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    def ensure_schema(self) -> None:
        if not self._ready:
            for stmt in _ddl(self.db):
                self._command(stmt)
            self._ready = True

    # ------------------------------------------------------------------ writes
    OUTCOME_COLUMNS = [
        "contact_id",
        "message_id",
        "customer_id",
        "occurred_at",
        "resolved_by",
        "tier_path",
        "intent",
        "root_cause",
        "actions",
        "refund_usd",
        "recovered_usd",
        "escalation_reason",
        "latency_ms",
        "cost_usd",
        "channel",
        "trigger",
        "summary",
        "variant",
    ]

    def insert_outcomes(self, messages: list[dict[str, Any]]) -> None:
        rows = []
        for m in messages:
            p = m["payload"]
            rows.append(
                [
                    m["contact_id"],
                    m["message_id"],
                    m["customer_id"],
                    _dt(m["occurred_at"]),
                    p["resolved_by"],
                    list(p.get("tier_path") or []),
                    p.get("intent") or "",
                    p.get("root_cause") or "",
                    list(p.get("actions") or []),
                    float(p.get("refund_usd") or 0),
                    float(p.get("recovered_usd") or 0),
                    p.get("escalation_reason") or "",
                    int(p.get("latency_ms") or 0),
                    float(p.get("cost_usd") or 0),
                    p.get("channel") or "",
                    p.get("trigger") or "contact",
                    p.get("summary") or "",
                    p.get("variant") or "",
                ]
            )
        self._insert("outcomes", rows, self.OUTCOME_COLUMNS)

    # ---- the support stream (issue 19)
    def insert_contacts_received(self, rows: list[list[Any]]) -> None:
        self._insert(
            "contacts_received",
            rows,
            [
                "contact_id",
                "message_id",
                "customer_id",
                "conversation_id",
                "channel",
                "occurred_at",
                "text",
                "choice",
            ],
        )

    def insert_conversation_messages(self, rows: list[list[Any]]) -> None:
        self._insert(
            "conversation_messages",
            rows,
            [
                "message_id",
                "contact_id",
                "customer_id",
                "conversation_id",
                "occurred_at",
                "kind",
                "author",
                "variant",
            ],
        )

    def insert_ratings(self, rows: list[list[Any]]) -> None:
        self._insert(
            "conversation_ratings",
            rows,
            ["message_id", "contact_id", "customer_id", "conversation_id", "occurred_at", "csat", "solved"],
        )

    def support_contacts(self, start: date, end: date) -> list[dict[str, Any]]:
        """One row per customer message received in the period: its conversation, how long until the first
        message to the customer (and its kind), its outcome, the case resolution time for a person's case,
        its latest rating, and how many customer messages its conversation holds in all."""
        db = self.db
        return self._rows(
            f"""
            WITH period AS (
                SELECT contact_id, customer_id, conversation_id, channel, occurred_at, text
                FROM {db}.contacts_received FINAL
                WHERE toDate(occurred_at) >= {{s:Date}} AND toDate(occurred_at) <= {{e:Date}}),
            firsts AS (
                SELECT m.contact_id AS contact_id, argMin(m.kind, m.occurred_at) AS first_kind,
                       min(m.occurred_at) AS first_at
                FROM {db}.conversation_messages AS m FINAL
                WHERE m.contact_id IN (SELECT contact_id FROM period)
                GROUP BY m.contact_id),
            rated AS (
                SELECT contact_id, argMaxIf(csat, occurred_at, csat > 0) AS last_csat,
                       argMaxIf(solved, occurred_at, solved >= 0) AS last_solved,
                       countIf(csat > 0) AS csat_n, countIf(solved >= 0) AS solved_n
                FROM {db}.conversation_ratings FINAL
                WHERE contact_id IN (SELECT contact_id FROM period)
                GROUP BY contact_id),
            threads AS (
                SELECT conversation_id, count() AS messages, argMin(contact_id, occurred_at) AS first_contact
                FROM {db}.contacts_received FINAL
                WHERE conversation_id IN (SELECT conversation_id FROM period)
                GROUP BY conversation_id),
            cases AS (
                SELECT contact_id, min(occurred_at) AS resolved_at
                FROM {db}.case_resolutions FINAL
                WHERE contact_id IN (SELECT contact_id FROM period)
                GROUP BY contact_id)
            SELECT p.contact_id AS contact_id, p.customer_id AS customer_id,
                   p.conversation_id AS conversation_id, p.text AS text, toString(p.occurred_at) AS at,
                   f.contact_id != '' AS answered, f.first_kind AS first_kind,
                   dateDiff('millisecond', p.occurred_at, f.first_at) AS first_response_ms,
                   o.contact_id != '' AS has_outcome, o.resolved_by AS resolved_by, o.intent AS intent,
                   o.escalation_reason AS escalation_reason, o.variant AS variant,
                   dateDiff('millisecond', p.occurred_at, o.occurred_at) AS outcome_ms,
                   c.contact_id != '' AS case_resolved,
                   dateDiff('millisecond', p.occurred_at, c.resolved_at) AS case_ms,
                   r.csat_n AS csat_n, r.last_csat AS csat, r.solved_n AS solved_n, r.last_solved AS solved,
                   t.messages AS thread_messages, t.first_contact = p.contact_id AS first_in_thread
            FROM period AS p
            LEFT JOIN firsts AS f ON f.contact_id = p.contact_id
            LEFT JOIN (SELECT * FROM {db}.outcomes FINAL
                       WHERE contact_id IN (SELECT contact_id FROM period)) AS o
                   ON o.contact_id = p.contact_id
            LEFT JOIN cases AS c ON c.contact_id = p.contact_id
            LEFT JOIN rated AS r ON r.contact_id = p.contact_id
            LEFT JOIN threads AS t ON t.conversation_id = p.conversation_id
            ORDER BY p.occurred_at, p.contact_id
            SETTINGS join_use_nulls = 0""",
            {"s": start, "e": end},
        )

    def outcome_exists(self, contact_id: str) -> bool:
        return bool(
            self._rows(
                f"SELECT 1 AS x FROM {self.db}.outcomes WHERE contact_id = {{c:String}} LIMIT 1",
                {"c": contact_id},
            )
        )

    def existing_outcomes(self, contact_ids: list[str]) -> set[str]:
        """Which of these contacts already have their outcome stored (one query for a batch)."""
        if not contact_ids:
            return set()
        rows = self._rows(
            f"SELECT DISTINCT contact_id FROM {self.db}.outcomes WHERE contact_id IN {{c:Array(String)}}",
            {"c": contact_ids},
        )
        return {str(r["contact_id"]) for r in rows}

    def insert_case_resolutions(self, messages: list[dict[str, Any]]) -> None:
        rows = [
            [
                m["message_id"],
                m["payload"]["case_id"],
                m["contact_id"],
                m["customer_id"],
                _dt(m["occurred_at"]),
                m["payload"]["agent_id"],
                float(m["payload"].get("refund_usd") or 0),
                [a["action"] for a in m["payload"].get("actions") or []],
                m["payload"].get("knowledge_article_id") or "",
                m["payload"].get("resolution_note") or "",
            ]
            for m in messages
        ]
        self._insert(
            "case_resolutions",
            rows,
            [
                "message_id",
                "case_id",
                "contact_id",
                "customer_id",
                "occurred_at",
                "agent_id",
                "refund_usd",
                "actions",
                "knowledge_article_id",
                "resolution_note",
            ],
        )

    AUDIT_COLUMNS = [
        "partition",
        "offset",
        "message_id",
        "contact_id",
        "customer_id",
        "occurred_at",
        "actor",
        "action",
        "target",
        "decision",
        "record",
        "prev_hash",
        "hash",
    ]

    def insert_audit(self, rows: list[list[Any]]) -> None:
        self._insert("audit_events", rows, self.AUDIT_COLUMNS)

    def last_audit_link(self, partition: int) -> tuple[int, str] | None:
        rows = self._rows(
            f"SELECT offset, hash FROM {self.db}.audit_events FINAL WHERE partition = {{p:UInt32}} "
            "ORDER BY offset DESC LIMIT 1",
            {"p": partition},
        )
        return (int(rows[0]["offset"]), str(rows[0]["hash"])) if rows else None

    def audit_message_seen(self, message_id: str) -> bool:
        return bool(
            self._rows(
                f"SELECT 1 AS x FROM {self.db}.audit_events WHERE message_id = {{m:UUID}} LIMIT 1",
                {"m": message_id},
            )
        )

    def audit_messages_seen(self, message_ids: list[str]) -> set[str]:
        """Which of these audit message ids are stored already (one query for a batch)."""
        if not message_ids:
            return set()
        rows = self._rows(
            f"SELECT DISTINCT toString(message_id) AS m FROM {self.db}.audit_events "
            "WHERE message_id IN {m:Array(UUID)}",
            {"m": message_ids},
        )
        return {str(r["m"]) for r in rows}

    def audit_chain(self) -> list[ChainRow]:
        rows = self._rows(
            f"SELECT partition, offset, toString(message_id) AS message_id, record, prev_hash, hash "
            f"FROM {self.db}.audit_events FINAL ORDER BY partition, offset"
        )
        return [
            ChainRow(
                int(r["partition"]), int(r["offset"]), r["message_id"], r["record"], r["prev_hash"], r["hash"]
            )
            for r in rows
        ]

    def tamper_audit_record(self, message_id: str, record: str, link: str | None = None) -> None:
        """Drills and tests: rewrite one stored record in place (as an attacker with write access could),
        and its link too when ``link`` is given (an insider recomputing the hash)."""
        self._command(
            f"ALTER TABLE {self.db}.audit_events UPDATE record = {{r:String}}"
            + (", hash = {h:String}" if link is not None else "")
            + " WHERE message_id = {m:UUID} SETTINGS mutations_sync = 2",
            {"r": record, "m": message_id, **({"h": link} if link is not None else {})},
        )

    # ------------------------------------------------------------------ reads
    def outcome_count(self, contact_id: str) -> int:
        rows = self._rows(
            f"SELECT count() AS n FROM {self.db}.outcomes FINAL WHERE contact_id = {{c:String}}",
            {"c": contact_id},
        )
        return int(rows[0]["n"])

    def period(
        self, view: str, start: date, end: date, select: str, group: str = "", order: str = ""
    ) -> list[dict[str, Any]]:
        sql = (
            f"SELECT {select} FROM {self.db}.{view} WHERE day >= {{s:Date}} AND day <= {{e:Date}}"
            + (f" GROUP BY {group}" if group else "")
            + (f" ORDER BY {order}" if order else "")
        )
        return self._rows(sql, {"s": start, "e": end})

    def cost_by_month(self, start: date, end: date) -> list[dict[str, Any]]:
        return self._rows(
            f"SELECT toString(toStartOfMonth(occurred_at)) AS month, count() AS contacts, "
            f"round(sum(cost_usd), 4) AS cost_total FROM {self.db}.outcomes FINAL "
            "WHERE toDate(occurred_at) >= {s:Date} AND toDate(occurred_at) <= {e:Date} "
            "GROUP BY month ORDER BY month",
            {"s": start, "e": end},
        )

    def audit_counts(self, action: str, start: date, end: date) -> list[dict[str, Any]]:
        """How many audit records of ``action`` there are per (target, decision) in the period."""
        return self._rows(
            f"SELECT target, decision, count() AS n FROM {self.db}.audit_events FINAL "
            "WHERE action = {a:String} "
            "AND toDate(occurred_at) >= {s:Date} AND toDate(occurred_at) <= {e:Date} "
            "GROUP BY target, decision ORDER BY target, decision",
            {"a": action, "s": start, "e": end},
        )

    def shares(self, view: str, start: date, end: date) -> dict[str, int]:
        rows = self.period(view, start, end, "key, sum(contacts) AS n", group="key")
        return {str(r["key"]) or "(none)": int(r["n"]) for r in rows}


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default)
