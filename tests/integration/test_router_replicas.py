"""Two router replicas share contact.received.v1's partitions on the embedded broker.

Replica A runs alone, B joins while contacts flow (the group rebalances), both share the partitions,
then A leaves (it rebalances again and B takes every partition). Every contact is forwarded (nothing
lost), and a contact redelivered across a rebalance is republished identically (one message id per
contact: downstream inboxes skip the copy, so no effect happens twice). Both replicas really routed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Channel
from schemas.messages import (
    AgentRequestedV1,
    ContactReceivedPayload,
    ContactReceivedV1,
    ConversationMessageSentV1,
    EscalationOpenedV1,
    SelfhealRequestedV1,
    Sender,
)
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.router.app import create_service
from services.router.intent.model import IntentClassifier
from services.router.settings import RouterSettings
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.messaging import publish
from tierline_tools.stack.procs import free_port

pytestmark = pytest.mark.integration

FORWARDED = (
    SelfhealRequestedV1.TOPIC,
    AgentRequestedV1.TOPIC,
    EscalationOpenedV1.TOPIC,
    ConversationMessageSentV1.TOPIC,
)
TEXTS = (
    "Please send me the invoice for my last payment, our accountant needs it",
    "I want to talk to a person about my account please",
    "Why was I charged more than usual this month?",
    "Do you accept bank transfers or only cards?",
)
PER_PHASE = 40


class CountingClassifier:
    """The real classifier, counting the contacts one replica classified."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.classified = 0

    @property
    def threshold(self) -> float:
        return float(self.inner.threshold)

    def predict(self, inputs: Sequence[Any]) -> Any:
        self.classified += len(inputs)
        return self.inner.predict(inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Forwarded:
    """Reads the router's output topics from their current end (no group: no join delay)."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.prefix = prefix
        self.records: dict[str, list[str]] = defaultdict(list)  # contact id -> message ids seen
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        parts = [TopicPartition(t, p) for t in FORWARDED for p in self.consumer.partitions_for_topic(t) or ()]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:
            await self.consumer.position(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            body = json.loads(record.value)
            if str(body.get("contact_id", "")).startswith(self.prefix):
                self.records[body["contact_id"]].append(body["message_id"])

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.consumer.stop()

    async def wait_for(self, contact_ids: list[str], within_s: float = 180) -> None:
        deadline = time.monotonic() + within_s  # exits as soon as every contact is forwarded
        while time.monotonic() < deadline and not all(c in self.records for c in contact_ids):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def test_given_two_router_replicas_when_the_group_rebalances_twice_then_nothing_is_lost_or_doubled(
    infra: Any, pg_pool: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"c-rep-{run}-"
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    model = await asyncio.to_thread(
        IntentClassifier.load, RouterSettings(**infra.model_dump()).intent_model_dir
    )
    clf_a, clf_b = CountingClassifier(model), CountingClassifier(model)
    replica_a = create_service(
        infra.model_copy(update={"http_port": free_port()}), classifier=clf_a, diagnostics=diagnostics
    )
    replica_b = create_service(
        infra.model_copy(update={"http_port": free_port()}), classifier=clf_b, diagnostics=diagnostics
    )
    forwarded = Forwarded(infra.kafka_bootstrap, prefix)
    sent: list[str] = []

    async def send(phase: str, n: int = PER_PHASE) -> None:
        for i in range(n):
            customer = f"cus_rep_{run}_{i % 12}"  # twelve customers: keys spread over every partition
            contact = ContactReceivedV1.build(
                ContactReceivedPayload(
                    channel=Channel.CHAT,
                    text=TEXTS[i % len(TEXTS)],
                    sender=Sender(kind="customer_session", subject=customer),
                ),
                contact_id=f"{prefix}{phase}-{i}",
                customer_id=customer,
            )
            sent.append(contact.contact_id)
            await publish(replica_a.broker if phase != "c" else replica_b.broker, contact)
            await asyncio.sleep(0.02)  # a stream, not one burst: the rebalance happens mid-flow

    await asyncio.gather(forwarded.start(), replica_a.start())
    stopped_a = False
    try:
        await send("a")  # A alone
        await asyncio.gather(send("b"), replica_b.start())  # B joins while contacts flow
        await send("ab")  # both up: the partitions are shared
        await forwarded.wait_for(sent)
        b_before_a_left = clf_b.classified
        await replica_a.stop()  # A leaves: B takes every partition
        stopped_a = True
        await send("c")
        await forwarded.wait_for(sent)
    finally:
        if not stopped_a:
            await replica_a.stop()
        await replica_b.stop()
        await forwarded.stop()

    lost = [c for c in sent if c not in forwarded.records]
    assert lost == [], f"{len(lost)} of {len(sent)} contacts never forwarded: {lost[:5]}"
    doubled = {c: ids for c, ids in forwarded.records.items() if len(set(ids)) != 1}
    assert doubled == {}, f"contacts forwarded as different messages: {doubled}"
    assert set(forwarded.records) == set(sent)
    assert clf_a.classified > 0, "replica A routed nothing"
    assert b_before_a_left > 0, "replica B got no partition while A was up"
    assert clf_b.classified >= b_before_a_left + PER_PHASE  # after A left, B routed the last phase
