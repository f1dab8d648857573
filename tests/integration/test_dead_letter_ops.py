"""Dead letters an operator can act on (issue 24), on the real broker and Postgres: a poison message fixed
and replayed is processed once, with its original key and headers; a message that crashes its process is
counted across restarts and dead-lettered instead of retried forever; the counter table stays empty."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from tierline import deadletters
from tierline.messaging import ORDERED_DEFAULTS, ConsumerCrashed, DeadLetterRouter, ensure_topics, make_broker

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


async def until(check: Any, within: float = 60.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def produce(
    bootstrap: str, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def dead_letters_of(bootstrap: str, topic: str) -> list[Any]:
    records = deadletters.unique(await deadletters.read_all(bootstrap))
    return [r for r in records if r.payload.original_topic == topic]


async def cli(infra: Any, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "TIERLINE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "TIERLINE_POSTGRES_DSN": infra.postgres_dsn,
        "TIERLINE_DATA_DIR": str(infra.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tierline.cli",
        *args,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_given_a_poison_message_when_fixed_and_replayed_then_processed_once_with_its_key_and_headers(
    infra: Any, pg_pool: Any, unique: str
) -> None:
    topic = f"test.deadletter.replay.{unique}"
    await ensure_topics(infra.kafka_bootstrap, 1, [topic])
    service = f"dlreplay-{unique}"
    router = DeadLetterRouter(service, backoff_s=0.05)
    await router.attach(pg_pool)
    broker = make_broker(infra.kafka_bootstrap, service, router)
    fixed = asyncio.Event()
    processed: list[tuple[bytes | None, dict[str, Any], dict[str, Any]]] = []

    @broker.subscriber(topic, group_id=f"tierline.{service}", **ORDERED_DEFAULTS)
    async def handle(body: dict[str, Any], message: KafkaMessage) -> None:
        if not fixed.is_set():
            raise RuntimeError("bug: the amount was read in dollars")
        processed.append((message.raw_message.key, dict(message.headers), body))  # type: ignore[union-attr]

    value = json.dumps({"n": 1, "amount_cents": 4900}).encode()
    await broker.start()
    try:
        # Given a message the consumer cannot process (a bug), dead-lettered after its attempts
        await produce(
            infra.kafka_bootstrap,
            topic,
            value,
            f"cus_{unique}".encode(),
            [("x-origin", b"test-" + unique.encode())],
        )
        await until(lambda: asyncio.sleep(0, router.recorded >= 1))
        [record] = await until(lambda: dead_letters_of(infra.kafka_bootstrap, topic))
        assert record.payload.attempts == router.max_attempts
        assert (
            await pg_pool.fetchval("SELECT count(*) FROM consumer_attempts WHERE consumer=$1", service) == 0
        )  # pruned once dead-lettered

        # When the operator lists and shows it
        code, out = await cli(infra, "deadletter", "list", "--json")
        assert code == 0, out
        groups = json.loads(out.splitlines()[-1])
        assert {
            "original_topic": topic,
            "error": "handler_error:RuntimeError",
            "count": 1,
            "replayed": 0,
        } in groups
        code, out = await cli(infra, "deadletter", "show", str(record.message_id)[:13])
        assert code == 0, out
        shown = json.loads(out[out.index("{") :])
        assert (shown["key"], shown["headers"]["x-origin"]) == (f"cus_{unique}", f"test-{unique}")
        assert "the amount was read in dollars" in shown["error"]
        assert shown["replayable"] is True
        assert processed == []

        # ... and replays it after the fix
        fixed.set()
        code, out = await cli(infra, "deadletter", "replay", str(record.message_id), "--by", "ops:test")
        assert code == 0, out
        await until(lambda: asyncio.sleep(0, processed))

        # Then it is processed once, on its topic, with the original key and headers
        key, headers, body = processed[0]
        assert key == f"cus_{unique}".encode()
        assert headers.get("x-origin") == f"test-{unique}"
        assert body == {"n": 1, "amount_cents": 4900}

        # and a second replay is refused: nothing more is published
        before = await end_offset(infra.kafka_bootstrap, topic)
        code, out = await cli(infra, "deadletter", "replay", str(record.message_id))
        assert (code, "already replayed" in out, "ops:test" in out) == (3, True, True), out
        assert await end_offset(infra.kafka_bootstrap, topic) == before
        publisher = KafkaBroker(infra.kafka_bootstrap, logger=None)
        await publisher.start()
        try:
            with pytest.raises(deadletters.ReplayRefused):
                await deadletters.replay(pg_pool, publisher, record, actor="ops:again")
        finally:
            await publisher.stop()
        assert await end_offset(infra.kafka_bootstrap, topic) == before
    finally:
        await broker.stop()


async def test_given_a_message_that_crashes_its_process_when_restarted_then_counted_and_dead_lettered(
    infra: Any, pg_pool: Any, unique: str, tmp_path: Path
) -> None:
    topic = f"test.deadletter.crash.{unique}"
    service = f"dlcrash-{unique}"
    await ensure_topics(infra.kafka_bootstrap, 1, [topic])
    await produce(infra.kafka_bootstrap, topic, b'{"n": 7}', f"cus_{unique}".encode(), [])
    marker = tmp_path / "handled.txt"

    async def run_consumer() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.crashing_consumer",
            infra.kafka_bootstrap,
            infra.postgres_dsn,
            topic,
            service,
            str(marker),
            cwd=REPO_ROOT,
        )
        return await asyncio.wait_for(proc.wait(), 180)

    # Given a message whose handler takes the process down, When the consumer is restarted each time
    codes = [await run_consumer() for _ in range(DeadLetterRouter(service).max_attempts)]
    assert codes == [3, 3, 3]
    row = await pg_pool.fetchrow(
        'SELECT attempts FROM consumer_attempts WHERE consumer=$1 AND topic=$2 AND "offset"=0', service, topic
    )
    assert row is not None
    assert row["attempts"] == 3

    # Then the next start dead-letters it without running the handler again
    assert await run_consumer() == 0
    assert marker.read_text().split() == ["7", "7", "7"]
    [record] = await until(lambda: dead_letters_of(infra.kafka_bootstrap, topic))
    assert record.payload.error_type == ConsumerCrashed.__name__
    assert record.payload.attempts == 3
    assert record.payload.key == f"cus_{unique}"
    # and the counter is gone (the table never keeps what was committed or dead-lettered)
    assert await pg_pool.fetchval("SELECT count(*) FROM consumer_attempts WHERE consumer=$1", service) == 0


async def test_given_attached_counts_when_messages_succeed_then_no_counter_rows_remain(
    infra: Any, pg_pool: Any, unique: str
) -> None:
    topic = f"test.deadletter.ok.{unique}"
    service = f"dlok-{unique}"
    await ensure_topics(infra.kafka_bootstrap, 1, [topic])
    for n in range(5):
        await produce(infra.kafka_bootstrap, topic, json.dumps({"n": n}).encode(), b"k", [])
    failed_once: set[int] = set()
    done: list[int] = []
    router = DeadLetterRouter(service, backoff_s=0.05)
    await router.attach(pg_pool)
    broker = make_broker(infra.kafka_bootstrap, service, router)

    @broker.subscriber(topic, group_id=f"tierline.{service}", **ORDERED_DEFAULTS)
    async def handle(body: dict[str, Any]) -> None:
        if body["n"] % 2 and body["n"] not in failed_once:  # odd ones fail once, then succeed
            failed_once.add(body["n"])
            raise RuntimeError("transient")
        done.append(body["n"])

    await broker.start()
    try:
        await until(lambda: asyncio.sleep(0, len(done) >= 5))
    finally:
        await broker.stop()
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert router.recorded == 0
    assert await pg_pool.fetchval("SELECT count(*) FROM consumer_attempts WHERE consumer=$1", service) == 0
