"""Never a dead end, actively: Tier 3's sweeper hands contacts with no outcome to a person.

On the session broker, with Tier 3 running in-process on its own database (the sweep looks at every
contact of its database, so it must not see the other tests' contacts).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.messages import AuditEventRecordedV1, EscalationOpenedV1
from tests.helpers import read_topic, wait_rows
from tierline.db import create_pool, migrate
from tierline.pipeline import start_contact
from tierline.sweeper import ContactSweeper, SweeperSettings
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline
from tierline_tools.stack.procs import free_port

pytestmark = pytest.mark.integration

#: the background pass never runs during a test: each test drives its passes
SETTINGS = SweeperSettings(interval_s=3600, bound_s=300)


@pytest.fixture(scope="module")
async def tier3(stack: Any, infra: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Tier 3 on its own database; yields (service, pool of that database)."""
    database = f"sweeper_{uuid.uuid4().hex[:8]}"
    stack.postgres().create_database(database)
    dsn = f"postgresql://postgres@127.0.0.1:{stack.postgres_port}/{database}"
    await migrate(dsn)
    settings = infra.model_copy(update={"postgres_dsn": dsn})
    services = await start_pipeline(
        settings,
        {"tier3_handoff": free_port()},
        services=("tier3_handoff",),
        overrides={"tier3_handoff": {"sweeper": SETTINGS}},
    )
    pool = await create_pool(dsn)
    yield services[0], pool
    await pool.close()
    await stop_pipeline(services)


async def open_contact(pool: Any, contact_id: str, age: timedelta) -> None:
    await start_contact(
        pool,
        contact_id=contact_id,
        customer_id=f"cus_{contact_id}",
        trigger="contact",
        channel="chat",
        started_at=datetime.now(UTC) - age,
    )


async def outcome_of(pool: Any, contact_id: str) -> dict[str, Any] | None:
    rows = await wait_rows(pool, "SELECT message FROM outcomes WHERE contact_id=$1", contact_id, timeout=30.0)
    if not rows:
        return None
    message = rows[0]["message"]
    return json.loads(message) if isinstance(message, str) else dict(message)


async def test_given_stale_and_fresh_contacts_when_swept_then_only_the_stale_open_one_reaches_a_person(
    tier3: tuple[Any, Any], infra: Any, unique: str
) -> None:
    """Given a contact with no outcome for 10 minutes, one as old that has its outcome and a fresh one
    without, When the sweeper passes, Then only the first is escalated with reason error, gets a Tier 3
    case and its outcome, and Tier 3's health counts it."""
    service, pool = tier3
    sweeper: ContactSweeper = service.state["sweeper"]
    stale, answered, fresh = f"sw-stale-{unique}", f"sw-answered-{unique}", f"sw-fresh-{unique}"
    await open_contact(pool, stale, timedelta(minutes=10))
    await open_contact(pool, answered, timedelta(minutes=10))
    await pool.execute(
        """INSERT INTO outcomes (contact_id, customer_id, message_id, resolved_by, message)
           VALUES ($1, $2, $3, 'tier1', '{"resolved_by": "tier1"}')""",
        answered,
        f"cus_{answered}",
        uuid.uuid4(),
    )
    await open_contact(pool, fresh, timedelta(seconds=5))
    before = sweeper.swept_since_start

    escalated = await sweeper.sweep_once()

    assert stale in escalated
    assert answered not in escalated
    assert fresh not in escalated
    outcome = await outcome_of(pool, stale)
    assert outcome is not None, "the swept contact got no outcome"
    assert outcome["payload"]["resolved_by"] == "tier3"
    assert outcome["payload"]["escalation_reason"] == "error"
    cases = await pool.fetch(
        "SELECT contact_id, reason FROM cases WHERE contact_id = ANY($1)", [stale, answered, fresh]
    )
    assert [(r["contact_id"], r["reason"]) for r in cases] == [(stale, "error")]
    assert await pool.fetchval("SELECT message FROM outcomes WHERE contact_id=$1", answered) is not None
    assert await pool.fetchval("SELECT 1 FROM outcomes WHERE contact_id=$1", fresh) is None
    assert sweeper.swept_since_start == before + 1

    async with httpx.AsyncClient() as client:
        health = (await client.get(f"http://127.0.0.1:{service.http_port}/healthz")).json()
    assert health["checks"]["sweeper"]["ok"] is True
    assert health["checks"]["sweeper"]["detail"].startswith(
        f"swept {sweeper.swept_since_start} contacts since start"
    )


async def test_given_a_stale_contact_when_swept_twice_then_one_escalation_one_case_one_count(
    tier3: tuple[Any, Any], infra: Any, unique: str
) -> None:
    """Given a contact with no outcome for an hour, When two passes sweep it (as two replicas would),
    Then every escalation published for it is the same message, Tier 3 opens one case, the sweep is
    audited and counted once, and a later pass leaves the contact alone."""
    service, pool = tier3
    sweeper: ContactSweeper = service.state["sweeper"]
    contact_id = f"sw-twice-{unique}"
    await open_contact(pool, contact_id, timedelta(hours=1))
    before = sweeper.swept_since_start

    first = await sweeper.sweep_once()
    second = await sweeper.sweep_once()

    assert contact_id in first
    assert await outcome_of(pool, contact_id) is not None
    escalations = await read_topic(
        infra.kafka_bootstrap,
        EscalationOpenedV1.TOPIC,
        lambda b: b.get("contact_id") == contact_id,
        min_count=1 + (contact_id in second),
    )
    assert len({e["message_id"] for e in escalations}) == 1
    assert await pool.fetchval("SELECT count(*) FROM cases WHERE contact_id=$1", contact_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM swept_contacts WHERE contact_id=$1", contact_id) == 1
    assert sweeper.swept_since_start == before + 1
    audits = await read_topic(
        infra.kafka_bootstrap,
        AuditEventRecordedV1.TOPIC,
        lambda b: b.get("contact_id") == contact_id and b["payload"].get("action") == "contact.swept",
    )
    assert len(audits) == 1
    assert audits[0]["payload"]["decision"] == "error"
    assert contact_id not in await sweeper.sweep_once()
