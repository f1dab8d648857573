"""`tierline audit-inbox` as a person runs it: the real command (a subprocess), the router's real intent
model on the shipped helpdesk examples, and `--from-history` on the test stack's PostgreSQL (a database
of its own, so the session's other contacts do not count)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tierline.db import migrate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "helpdesk"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "tierline.cli", "audit-inbox", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
    return proc.returncode, proc.stdout, proc.stderr


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_given_the_zendesk_and_helpscout_examples_when_audited_then_a_ranked_csv_tickets_and_a_chart(
    tmp_path: Path,
) -> None:
    readings: dict[str, dict[str, str]] = {}
    for name, expected_format in (
        ("zendesk_tickets.csv", "zendesk"),
        ("helpscout_conversations.csv", "helpscout"),
    ):
        out = tmp_path / name.split("_")[0]
        code, stdout, stderr = run_cli(
            str(EXAMPLES / name), "--out", str(out), "--cost-per-ticket", "6.5", cwd=tmp_path
        )
        assert code == 0, stderr

        rows = read_rows(out / "reasons.csv")
        tickets = read_rows(out / "tickets.csv")
        n = len(tickets)
        assert f"as {expected_format}" in stderr
        assert f"{n}/{n} tickets classified" in stderr  # progress lines
        assert sum(int(r["count"]) for r in rows) == n
        counts = [int(r["count"]) for r in rows]
        assert counts == sorted(counts, reverse=True)
        assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
        assert float(rows[-1]["cumulative_share"]) == pytest.approx(1.0)
        for r in rows:
            assert float(r["share"]) == pytest.approx(int(r["count"]) / n, abs=1e-4)
            assert float(r["human_cost_usd"]) == pytest.approx(6.5 * int(r["count"]))
            assert r["median_hours_to_resolution"] != ""  # every reason here has solved tickets
            assert r["absorbed_by"].split(":")[0] in ("tier1", "tier2", "tier3")
        by_reason = {r["reason"]: r for r in rows}
        assert by_reason["invoice_request"]["absorbed_by"].startswith("tier1")
        assert by_reason["human_agent"]["absorbed_by"].startswith("tier3")
        assert "invoice_request" in stdout  # the table
        png = (out / "reasons.png").read_bytes()
        assert png.startswith(PNG_MAGIC)
        assert len(png) > 10_000
        readings.update({f"{expected_format}:{t['ticket_id']}": t for t in tickets})

    # the model's reading of tickets written to be unambiguous (Zendesk ids 41xx, Help Scout 980xx)
    expected = {
        "zendesk:4103": "invoice_request",  # "invoice for september" + "Sent from my iPhone"
        "zendesk:4106": "duplicate_charge",
        "zendesk:4115": "cancel_subscription",  # signature block after "--"
        "zendesk:4127": "human_agent",
        "zendesk:4128": "out_of_scope",  # CSV export bug: not billing
        "helpscout:98002": "invoice_request",
        "helpscout:98010": "cancel_subscription",
    }
    assert {key: readings[key]["reason"] for key in expected} == expected
    assert "Sent from my iPhone" not in readings["zendesk:4103"]["text"]


def test_given_a_semicolon_export_without_dates_when_audited_then_medians_are_blank_and_it_still_ranks(
    tmp_path: Path,
) -> None:
    export = tmp_path / "plain.csv"
    export.write_text(
        "title;message\nInvoice;please send me the invoice for October\nCard;my card was declined\n"
    )

    code, _, stderr = run_cli(str(export), "--out", str(tmp_path / "out"), "--quiet", cwd=tmp_path)

    assert code == 0, stderr
    rows = read_rows(tmp_path / "out" / "reasons.csv")
    assert sum(int(r["count"]) for r in rows) == 2
    assert all(r["median_hours_to_resolution"] == "" for r in rows)
    assert "tickets classified" not in stderr


async def _history_database(dsn: str) -> str:
    """A fresh database on the stack's server with tierline's schema; returns its DSN."""
    name = f"audit_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    own = dsn.rsplit("/", 1)[0] + f"/{name}"
    await migrate(own)
    return own


async def _record(
    conn: Any,
    *,
    intent: str | None,
    hours: float | None,
    resolved_by: str | None,
    trigger: str = "contact",
    days_ago: float = 1.0,
    outcome_intent: str | None = None,
    confidence: float = 0.95,
) -> None:
    contact_id = f"ct_{uuid.uuid4().hex[:12]}"
    started = datetime.now(UTC) - timedelta(days=days_ago)
    await conn.execute(
        """INSERT INTO contacts (contact_id, customer_id, trigger, channel, started_at, intent, confidence)
           VALUES ($1, 'cus_audit', $2, 'email', $3, $4, $5)""",
        contact_id,
        trigger,
        started,
        intent,
        confidence if intent else None,
    )
    if resolved_by is None or hours is None:
        return
    message = {"payload": {"resolved_by": resolved_by, "intent": outcome_intent or intent}}
    await conn.execute(
        """INSERT INTO outcomes (contact_id, customer_id, message_id, resolved_by, message, recorded_at)
           VALUES ($1, 'cus_audit', $2, $3, $4::jsonb, $5)""",
        contact_id,
        uuid.uuid4(),
        resolved_by,
        json.dumps(message),
        started + timedelta(hours=hours),
    )


async def test_given_recorded_contacts_when_audited_from_history_then_what_still_reaches_people_is_ranked(
    infra: Any, tmp_path: Path
) -> None:
    dsn = await _history_database(infra.postgres_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        for hours, tier in ((1, "tier1"), (1, "tier1"), (5, "tier3")):
            await _record(conn, intent="payment_failed", hours=hours, resolved_by=tier)
        for hours in (2, 4):
            await _record(conn, intent="human_agent", hours=hours, resolved_by="tier3")
        await _record(conn, intent="refund_request", hours=3, resolved_by="tier2")
        await _record(conn, intent="invoice_request", hours=None, resolved_by=None)  # no outcome yet
        await _record(conn, intent=None, hours=0.5, resolved_by="tier1", outcome_intent="cancel_subscription")
        await _record(conn, intent="plan_change", hours=1, resolved_by="tier3", trigger="stripe_event")
        await _record(conn, intent="plan_change", hours=1, resolved_by="tier3", days_ago=40)  # before --since
    finally:
        await conn.close()
    try:
        await _audit_history(dsn, tmp_path)
    finally:
        admin = await asyncpg.connect(infra.postgres_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()


async def _audit_history(dsn: str, tmp_path: Path) -> None:
    code, stdout, stderr = await asyncio.to_thread(
        run_cli,
        "--from-history",
        "--since",
        "30d",
        "--out",
        str(tmp_path / "history"),
        cwd=tmp_path,
        env={"TIERLINE_POSTGRES_DSN": dsn},
    )

    assert code == 0, stderr
    rows = {r["reason"]: r for r in read_rows(tmp_path / "history" / "reasons.csv")}
    assert {
        k: (int(r["count"]), int(r["reached_people"]), float(r["human_cost_usd"])) for k, r in rows.items()
    } == {
        "payment_failed": (3, 1, 8.0),
        "human_agent": (2, 2, 16.0),
        "refund_request": (1, 0, 0.0),
        "invoice_request": (1, 0, 0.0),
        "cancel_subscription": (1, 0, 0.0),
    }
    assert rows["payment_failed"]["rank"] == "1"
    assert float(rows["payment_failed"]["share"]) == pytest.approx(3 / 8, abs=1e-4)
    assert float(rows["payment_failed"]["median_hours_to_resolution"]) == pytest.approx(1.0, abs=0.01)
    assert float(rows["human_agent"]["median_hours_to_resolution"]) == pytest.approx(3.0, abs=0.01)
    assert rows["invoice_request"]["median_hours_to_resolution"] == ""
    assert (tmp_path / "history" / "reasons.png").read_bytes().startswith(PNG_MAGIC)
    assert "human cost in total: $24.00" in stdout
