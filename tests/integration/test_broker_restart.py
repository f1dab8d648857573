"""Nothing the broker acknowledged is lost when the broker is killed and started again.

This test runs its OWN broker (the session broker is shared by every other test): Tansu on the
durable storage `tierline up` uses by default (our loopback S3 object store,
tierline_tools/stack/objectstore.py,
its files in the data directory), next to the session Postgres, Stripe emulator and chDB. The
services that a contact from an unknown customer goes through (diagnostics, router, Tier 3) run in
this process, as `tierline serve` runs them.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from schemas import Channel
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from tierline.messaging import ensure_topics, publish
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline
from tierline_tools.stack.manager import StackConfig, start_broker
from tierline_tools.stack.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

SERVICES = ("diagnostics", "tier3_handoff", "router")
CONTACTS = 100
KILL_AFTER = 50
OUTCOMES_WAIT_S = 300.0  # at most, from the first publish
STALLED_S = 90.0  # stop waiting when no contact got its outcome for this long


@pytest.fixture(scope="module")
def durable_broker() -> Iterator[StackConfig]:
    """Tansu on the loopback object store, as `tierline up` starts it by default (storage survives
    the broker, and the store itself)."""
    root = Path(tempfile.mkdtemp(prefix="tierline-test-durable-broker-"))
    cfg = StackConfig(
        data_dir=str(root),
        kafka_port=free_port(),
        s3_port=free_port(),
        durable_broker=True,  # with False (memory://), 46 of the 100 were lost when this was written
    )
    try:
        start_broker(cfg)
        yield cfg
    finally:
        cfg.kafka().stop()
        cfg.s3().stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
async def pipeline(durable_broker: StackConfig, infra: Any) -> AsyncIterator[Any]:
    bootstrap = durable_broker.kafka().bootstrap
    await ensure_topics(bootstrap)
    ports = {name: free_port() for name in SERVICES}
    settings = infra.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "diagnostics_url": f"http://127.0.0.1:{ports['diagnostics']}",
        }
    )
    services = await start_pipeline(settings, ports, services=SERVICES)
    yield settings
    await stop_pipeline(services)


def contact(run: str, i: int) -> ContactReceivedV1:
    customer = f"cus_restart_{run}_{i % 10}"  # unknown customers: the router hands them to Tier 3
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.CHAT,
            text=f"Why was I charged twice this month? (contact {i})",
            sender=Sender(kind="customer_session", subject=customer),
        ),
        contact_id=f"restart-{run}-{i:03d}",
        customer_id=customer,
    )


async def publish_until_acked(bootstrap: str, msg: ContactReceivedV1, deadline: float) -> None:
    """A gateway's publish: retried (new connection each time) until the broker acknowledges it."""
    last: BaseException | None = None
    while time.monotonic() < deadline:
        producer = KafkaBroker(bootstrap, logger=None, enable_idempotence=False)
        try:
            await asyncio.wait_for(producer.connect(), 10)
            await asyncio.wait_for(publish(producer, msg), 15)
            return
        except Exception as exc:  # noqa: BLE001 - the broker is restarting: try again
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await producer.stop()
    raise TimeoutError(f"{msg.contact_id} never acknowledged: {last!r}")


async def outcomes_for(pool: Any, run: str) -> set[str]:
    rows = await pool.fetch("SELECT contact_id FROM outcomes WHERE contact_id LIKE $1", f"restart-{run}-%")
    return {r["contact_id"] for r in rows}


async def test_given_durable_broker_when_killed_and_restarted_mid_stream_then_every_contact_has_an_outcome(
    durable_broker: StackConfig, pipeline: Any, pg_pool: Any
) -> None:
    """Given the pipeline on a durable broker, When 50 contacts are acknowledged, the broker is killed
    with SIGKILL before they are processed, started again on the same storage, and 50 more contacts
    are published, Then all 100 end in an outcome (the running services reconnected and resumed)."""
    bootstrap = durable_broker.kafka().bootstrap
    run = uuid.uuid4().hex[:8]
    deadline = time.monotonic() + OUTCOMES_WAIT_S
    producer = KafkaBroker(bootstrap, logger=None, enable_idempotence=False)
    await producer.connect()
    try:
        for i in range(KILL_AFTER):  # acknowledged by the broker, most not yet processed
            await publish(producer, contact(run, i))
    finally:
        await producer.stop()
    processed_before_kill = len(await outcomes_for(pg_pool, run))

    assert durable_broker.kafka().proc.kill()
    health = durable_broker.kafka().health()
    assert not health.ok, "status must report a dead broker"
    assert health.detail == "process not running"

    start_broker(durable_broker)  # what `tierline up` does after the crash: the broker alone, same storage
    assert durable_broker.kafka().health().ok
    await ensure_topics(bootstrap)  # as `tierline up` does (nothing to create on a durable log)
    for i in range(KILL_AFTER, CONTACTS):
        await publish_until_acked(bootstrap, contact(run, i), deadline)

    done: set[str] = set()
    progress_at = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - progress_at < STALLED_S:
        latest = await outcomes_for(pg_pool, run)
        if len(latest) > len(done):
            progress_at = time.monotonic()
        done = latest
        if len(done) == CONTACTS:
            break
        await asyncio.sleep(1.0)
    missing = sorted({contact(run, i).contact_id for i in range(CONTACTS)} - done)
    assert not missing, (
        f"{len(missing)} acknowledged contacts without an outcome "
        f"({processed_before_kill} had one before the kill): {missing[:10]}"
    )


async def test_given_durable_broker_when_broker_and_store_stop_and_start_then_the_log_is_still_there(
    durable_broker: StackConfig,
) -> None:
    """Given 20 records acknowledged on a fresh topic, When the broker and its object store are both
    stopped (what `tierline down` does) and started again (`tierline up`), Then a new consumer group
    reads all 20 from the start of the log."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    bootstrap = durable_broker.kafka().bootstrap
    topic = f"test.downup.{uuid.uuid4().hex[:8]}.v1"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for i in range(20):
            await producer.send_and_wait(topic, b"record %d" % i, key=b"k%d" % (i % 4))
    finally:
        await producer.stop()

    assert durable_broker.kafka().stop()
    assert durable_broker.s3().stop()
    start_broker(durable_broker)
    assert durable_broker.s3().health().ok
    assert durable_broker.kafka().health().ok

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"downup-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: set[bytes] = set()
    try:
        deadline = time.monotonic() + 90
        while len(values) < 20 and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values |= {r.value for r in records if r.value is not None}
    finally:
        await consumer.stop()
    assert values == {b"record %d" % i for i in range(20)}
