"""Test helpers: read what actually landed on a topic (from the beginning, every partition), and build
a service the way `tierline serve` does without starting it."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


def _matches(where: Callable[[dict[str, Any]], bool], body: dict[str, Any]) -> bool:
    """``where(body)``; a record of another shape (a poison test's padding on a shared topic) is no match."""
    try:
        return bool(where(body))
    except (KeyError, TypeError, AttributeError):
        return False


async def read_topic(
    bootstrap: str,
    topic: str,
    where: Callable[[dict[str, Any]], bool],
    *,
    min_count: int = 1,
    # shared helper API (callers pass timeout=); a soft deadline that returns what was found so far,
    # where asyncio.timeout would cancel an in-flight fetch and raise instead
    timeout: float = 30.0,  # noqa: ASYNC109
    settle: float = 0.0,
) -> list[dict[str, Any]]:
    """Messages on ``topic`` (decoded JSON) matching ``where``.

    Waits for ``min_count`` of them (then ``settle`` s more), at most ``timeout`` s.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            await consumer.stop()
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False)
            await consumer.start()
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    try:
                        body = json.loads(record.value)
                    except (ValueError, TypeError):
                        body = {"__raw__": record.value}
                    if isinstance(body, dict) and _matches(where, body):
                        found.append(body)
            if len(found) >= min_count:
                if settle <= 0:
                    break
                settle_until = settle_until or time.monotonic() + settle
                if time.monotonic() >= settle_until:
                    break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return found


async def wait_rows(
    pool: Any,
    sql: str,
    *args: Any,
    min_count: int = 1,
    # soft deadline returning the rows seen so far (see read_topic); callers pass timeout=
    timeout: float = 30.0,  # noqa: ASYNC109
) -> list[Any]:
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await pool.fetch(sql, *args)
        if len(rows) >= min_count:
            return rows
        await asyncio.sleep(0.1)
    return rows


def built_service(name: str) -> Any:
    """The named service as `tierline serve` builds it (in a scratch data dir); nothing is started."""
    from tierline.registry import load_service_factory
    from tierline.settings import InfraSettings

    return load_service_factory(name)(InfraSettings(data_dir=Path(tempfile.mkdtemp())))


def chat_contact(customer_id: str, text: str) -> Any:
    """A chat contact from the customer's own session, with a fresh contact id."""
    import uuid

    from schemas import Channel
    from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender

    return ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.CHAT, text=text, sender=Sender(kind="customer_session", subject=customer_id)
        ),
        contact_id=f"c-{uuid.uuid4()}",
        customer_id=customer_id,
    )
