"""A router killed with SIGKILL in the middle of a batch, on the real broker (issue 22).

The router runs as its own process (`tierline serve router`, as `tierline up` runs it) beside diagnostics
and Tier 3 (in this process) on the session stack. Forty-eight contacts of four unknown customers wait
on contact.received.v1 (twelve a customer: a customer's contacts are routed one after the other, so a
batch takes a while); the router starts, takes them as a batch, and is killed as soon as the batch's
first contact left a trace in Postgres, before the batch is committed. A second router process gets
the batch again. Then every contact has exactly one outcome, one case and one customer turn, and every
message published twice for a contact (before and after the kill) carries the same id, so the
downstream inboxes applied it once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faststream.kafka import KafkaBroker

from schemas import Channel
from schemas.messages import (
    ContactReceivedPayload,
    ContactReceivedV1,
    EscalationOpenedV1,
    OutcomeRecordedV1,
    Sender,
)
from tierline.messaging import consumer_group, publish
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline
from tierline_tools.stack.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CONTACTS = 48
CUSTOMERS = 4
WATCHED = (EscalationOpenedV1.TOPIC, OutcomeRecordedV1.TOPIC)


@pytest.fixture(scope="module")
async def downstream(infra: Any) -> AsyncIterator[Any]:
    """Diagnostics (the router asks it over HTTP) and Tier 3 (opens the cases, records the outcomes)."""
    ports = {"diagnostics": free_port(), "tier3_handoff": free_port()}
    settings = infra.model_copy(update={"diagnostics_url": f"http://127.0.0.1:{ports['diagnostics']}"})
    services = await start_pipeline(settings, ports, services=("diagnostics", "tier3_handoff"))
    yield settings
    await stop_pipeline(services)


class Watched:
    """The ids published on the watched topics for this run's contacts, read from the topics' end."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.prefix = prefix
        self.ids: dict[tuple[str, str], list[str]] = defaultdict(list)  # (topic, contact) -> message ids
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        parts = [TopicPartition(t, p) for t in WATCHED for p in self.consumer.partitions_for_topic(t) or ()]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            body = json.loads(record.value)
            if str(body.get("contact_id", "")).startswith(self.prefix):
                self.ids[(record.topic, body["contact_id"])].append(body["message_id"])

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()


def router_process(downstream: Any, stack: Any, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERLINE_")}
    env.update(stack.env())
    env.update(
        TIERLINE_DIAGNOSTICS_URL=downstream.diagnostics_url,
        TIERLINE_SERVICE_TOKEN=downstream.service_token.get_secret_value(),
        PYTHONUNBUFFERED="1",
    )
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tierline.cli", "serve", "router", "--port", str(free_port())],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def count(pool: Any, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


async def test_given_a_router_killed_mid_batch_when_another_takes_over_then_each_effect_happened_once(
    downstream: Any, stack: Any, pg_pool: Any, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"crash-{run}-"
    like = f"{prefix}%"
    contacts = [
        ContactReceivedV1.build(
            ContactReceivedPayload(
                channel=Channel.CHAT,
                text="Please send me the invoice for my last payment",
                sender=Sender(kind="customer_session", subject=f"cus_crash_{run}_{i % CUSTOMERS}"),
            ),
            contact_id=f"{prefix}{i}",
            customer_id=f"cus_crash_{run}_{i % CUSTOMERS}",  # unknown customers: Tier 3 takes them
        )
        for i in range(CONTACTS)
    ]
    ids = [c.message_id for c in contacts]
    inbox = consumer_group("router")
    watched = Watched(downstream.kafka_bootstrap, prefix)
    await watched.start()
    producer = KafkaBroker(downstream.kafka_bootstrap, logger=None, enable_idempotence=False)
    await producer.connect()
    try:
        for c in contacts:  # all waiting before the router starts: they arrive as one batch
            await publish(producer, c)
    finally:
        await producer.stop()

    log = tmp_path / "router.log"
    first = router_process(downstream, stack, log)
    try:
        deadline = time.monotonic() + 240  # the router loads its model first
        while time.monotonic() < deadline and first.poll() is None:  # noqa: ASYNC110
            if await count(pg_pool, "SELECT count(*) FROM contacts WHERE contact_id LIKE $1", like):
                break
            await asyncio.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait(30)
    started = {
        r["contact_id"]
        for r in await pg_pool.fetch("SELECT contact_id FROM contacts WHERE contact_id LIKE $1", like)
    }
    marked_rows = await pg_pool.fetch(
        "SELECT message_id FROM inbox WHERE consumer = $1 AND message_id = ANY($2::uuid[])", inbox, ids
    )
    marked = {r["message_id"] for r in marked_rows}
    started_unmarked = [c for c in contacts if c.contact_id in started and c.message_id not in marked]
    assert started, f"the router never started a contact: {log.read_text()[-3000:]}"
    assert started_unmarked, "killed after the batch was committed, not in the middle of it"

    second = router_process(downstream, stack, log)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and second.poll() is None:  # noqa: ASYNC110
            if (
                await count(pg_pool, "SELECT count(*) FROM outcomes WHERE contact_id LIKE $1", like)
                == CONTACTS
            ):
                break
            await asyncio.sleep(0.5)
        # the last outcome messages reach the topic just after their rows: wait for them (bounded)
        while time.monotonic() < deadline and not all(  # noqa: ASYNC110
            (OutcomeRecordedV1.TOPIC, c.contact_id) in watched.ids for c in contacts
        ):
            await asyncio.sleep(0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
        await watched.stop()

    outcomes = await pg_pool.fetch(
        "SELECT contact_id, resolved_by FROM outcomes WHERE contact_id LIKE $1", like
    )
    assert len(outcomes) == CONTACTS, f"{len(outcomes)} outcomes: {log.read_text()[-3000:]}"
    assert {r["resolved_by"] for r in outcomes} == {"tier3"}
    cases = await pg_pool.fetch(
        "SELECT contact_id, count(*) AS n FROM cases WHERE contact_id LIKE $1 GROUP BY contact_id", like
    )
    assert len(cases) == CONTACTS
    assert {r["n"] for r in cases} == {1}
    turns = await pg_pool.fetch(
        """SELECT contact_id, count(*) AS n FROM conversation_turns
            WHERE contact_id LIKE $1 AND role = 'customer' GROUP BY contact_id""",
        like,
    )
    assert len(turns) == CONTACTS
    assert {r["n"] for r in turns} == {1}
    assert (
        await count(
            pg_pool,
            "SELECT count(*) FROM inbox WHERE consumer = $1 AND message_id = ANY($2::uuid[])",
            inbox,
            ids,
        )
        == CONTACTS
    )  # the contacts started before the kill were routed again by the second process
    for topic in WATCHED:
        per_contact = {c.contact_id: watched.ids.get((topic, c.contact_id), []) for c in contacts}
        assert all(per_contact.values()), f"{topic}: a contact without a message"
        doubled = {c: m for c, m in per_contact.items() if len(set(m)) != 1}
        assert doubled == {}, f"{topic}: a contact's message republished under another id: {doubled}"
