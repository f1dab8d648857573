"""`tierline policy simulate`: recorded decisions read from Postgres, decided again under another policy.

Reading only: one ``READ ONLY`` transaction over ``policy_decisions`` (each decision with the verified facts
it was made on), the action ledger (what was executed) and ``outcomes`` (each contact's one outcome).
Nothing is written anywhere, no broker is touched and Stripe is not called; the comparison is
:func:`tierline.billing.simulate.simulate`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from tierline.billing.policy import PolicyContext, PolicyEngine, PolicyError
from tierline.billing.simulate import (
    RecordedContact,
    RecordedDecision,
    SimulateError,
    SimulationReport,
    parse_since,
    render,
    simulate,
)

log = structlog.get_logger(__name__)


async def read_records(dsn: str, since: datetime) -> tuple[list[RecordedDecision], list[RecordedContact]]:
    """The decisions made and the outcomes recorded since ``since``, in a read-only transaction."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(readonly=True):
            decisions = await conn.fetch(
                """SELECT p.idempotency_key, p.contact_id, p.customer_id, p.action, p.target, p.actor,
                          p.amount_usd, p.verdict, p.reason, p.rule, p.policy_version, p.decided_at,
                          p.context::text AS context, l.status AS executed
                   FROM policy_decisions p LEFT JOIN action_ledger l USING (idempotency_key)
                   WHERE p.decided_at >= $1 ORDER BY p.decided_at, p.idempotency_key""",
                since,
            )
            outcomes = await conn.fetch(
                """SELECT contact_id, customer_id, resolved_by,
                          message->'payload'->>'escalation_reason' AS escalation_reason
                   FROM outcomes WHERE recorded_at >= $1 ORDER BY contact_id""",
                since,
            )
    finally:
        await conn.close()
    return (
        [
            RecordedDecision(
                key=r["idempotency_key"],
                contact_id=r["contact_id"],
                customer_id=r["customer_id"],
                action=r["action"],
                target=r["target"],
                actor=r["actor"],
                amount_usd=float(r["amount_usd"]),
                verdict=r["verdict"],
                reason=r["reason"],
                rule=r["rule"],
                policy_version=r["policy_version"],
                executed=r["executed"],
                decided_at=r["decided_at"],
                context=PolicyContext.model_validate(json.loads(r["context"])),
            )
            for r in decisions
        ],
        [
            RecordedContact(
                contact_id=r["contact_id"],
                customer_id=r["customer_id"],
                resolved_by=r["resolved_by"],
                escalation_reason=r["escalation_reason"],
            )
            for r in outcomes
        ],
    )


async def run_simulation(
    dsn: str, policy: Path, since: str, *, now: datetime | None = None
) -> SimulationReport:
    """Read the records of the last ``since`` (``30d``) and decide them again under the policy file."""
    engine = PolicyEngine.from_yaml(policy)
    start = (now or datetime.now(UTC)) - parse_since(since)
    decisions, contacts = await read_records(dsn, start)
    report = simulate(engine, decisions, contacts, since=start)
    log.info(
        "policy.simulated",
        decisions=report.decisions,
        changed=report.decisions_changed,
        policy_version=report.new_policy_version,
    )
    return report


def simulate_command(args: argparse.Namespace, dsn: str) -> int:
    try:
        report = asyncio.run(run_simulation(dsn, Path(args.policy), args.since))
    except (PolicyError, SimulateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else render(report))
    return 0


__all__ = ["read_records", "run_simulation", "simulate_command"]
