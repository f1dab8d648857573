"""Full pipeline (router -> tier -> outcome, offline planner) vs a bare pass-through with the same
number of hops on the same broker. Starts its own stack (services as separate processes) and stops it.

Figures: pipeline sustained throughput and p50/p99 contact latency at an offered load, the
pass-through's ceiling throughput (saturated) and its latency at the same offered load.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.capacity import SERVICES, TRIGGERS, lag_thresholds, service_groups
from bench.common import figure, percentile
from bench.procstats import Usage, busiest_threads, cpu_delta, sample, stack_pids

QUICK = os.environ.get("TIERLINE_BENCH_QUICK") == "1"
IDLE_SECONDS = float(os.environ.get("TIERLINE_BENCH_IDLE_SECONDS", "20"))
MB = 1024 * 1024
RATE = float(os.environ.get("TIERLINE_BENCH_RATE", "200"))
DURATION = float(os.environ.get("TIERLINE_BENCH_SECONDS", "15" if QUICK else "60"))
TEXTS = [
    "Can you send me the invoice for my last payment? finance needs it",
    "Do you accept bank transfers or only cards?",
    "Why was I charged more than usual this month?",
    "I want to talk to a person please",
    "How do I pay with American Express?",
    "Please email me the receipt for this month",
]


class Collector:
    """Consumes a topic from its end and records when each awaited id arrives."""

    def __init__(self, bootstrap: str, topic: str, key: str) -> None:
        self.bootstrap, self.topic, self.key = bootstrap, topic, key
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=f"bench-{uuid.uuid4().hex[:8]}",
            fetch_max_wait_ms=20,  # Tansu holds a multi-partition fetch for about a quarter of the wait
            auto_offset_reset="latest",
        )
        await self._consumer.start()
        # aiokafka offers nothing to await for the group assignment: poll it
        while not self._consumer.assignment():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        for tp in self._consumer.assignment():
            await self._consumer.seek_to_end(tp)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            now = time.monotonic()
            try:
                ident = json.loads(record.value)[self.key]
            except (ValueError, KeyError, TypeError):
                continue
            self.arrived.setdefault(ident, now)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()


async def offered_load(
    producer: AIOKafkaProducer,
    topic: str,
    make: Any,
    rate: float,
    seconds: float,
    collector: Collector,
    drain: float = 30.0,
) -> tuple[dict[str, float], float]:
    sent: dict[str, float] = {}
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ident, value, key = make(n)
        sent[ident] = time.monotonic()
        await producer.send(topic, value, key=key)
        n += 1
    window_end = time.monotonic()
    deadline = window_end + drain
    # drain: poll the collector's arrivals (a bounded wait; the collector sets no event per id)
    while (  # noqa: ASYNC110
        time.monotonic() < deadline and len([i for i in sent if i in collector.arrived]) < len(sent)
    ):
        await asyncio.sleep(0.2)
    completed_in_window = sum(1 for i in sent if collector.arrived.get(i, 1e18) <= window_end)
    latencies = {i: (collector.arrived[i] - t) * 1000 for i, t in sent.items() if i in collector.arrived}
    return latencies, completed_in_window / (window_end - start)


async def passthrough(bootstrap: str) -> list[dict[str, Any]]:
    from bench.passthrough import DONE, HOPS
    from tierline.messaging import ensure_topics
    from tierline.settings import TOPIC_PARTITIONS

    await ensure_topics(bootstrap, TOPIC_PARTITIONS, topics=[*HOPS, DONE])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.passthrough", bootstrap, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # "ready"
    rows = []
    try:
        collector = Collector(bootstrap, DONE, "id")
        await collector.start()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
        await producer.start()

        def make(n: int) -> tuple[str, bytes, bytes]:
            ident = f"p{n}-{uuid.uuid4().hex[:6]}"
            return ident, json.dumps({"id": ident, "pad": "x" * 600}).encode(), str(n % 50).encode()

        await asyncio.sleep(5)  # let the hop consumers join
        lat, _ = await offered_load(producer, HOPS[0], make, 50, 3, collector)  # warm up
        lat, tput = await offered_load(producer, HOPS[0], make, RATE, DURATION, collector)
        rows.append(
            figure("passthrough.latency_p50_at_offered_load", percentile(list(lat.values()), 50), "ms")
        )
        rows.append(
            figure("passthrough.latency_p99_at_offered_load", percentile(list(lat.values()), 99), "ms")
        )
        # the ceiling: saturate it
        sat_n = 2000 if QUICK else 6000
        t0 = time.monotonic()
        idents = []
        for n in range(sat_n):
            ident, value, key = make(10_000_000 + n)
            idents.append(ident)
            await producer.send(HOPS[0], value, key=key)
        # poll the collector's arrivals, at most 120 s (it sets no event per id)
        while (  # noqa: ASYNC110
            time.monotonic() - t0 < 120 and sum(1 for i in idents if i in collector.arrived) < sat_n
        ):
            await asyncio.sleep(0.1)
        done = [collector.arrived[i] for i in idents if i in collector.arrived]
        ceiling = len(done) / (max(done) - t0) if done else 0.0
        rows.append(figure("passthrough.ceiling_throughput", ceiling, "msgs/s"))
        await producer.stop()
        await collector.stop()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
    return rows


async def pipeline(cfg: Any, ceiling: float, idle: dict[str, float]) -> None:
    from schemas import Channel
    from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
    from tierline.stripe_adapter import StripeActions
    from tierline_tools.world import build_world

    settings = cfg.settings()
    actions = StripeActions(settings)
    customers = [
        (
            await build_world({"charges": [{"amount_usd": 49, "days_ago": 3}]}, actions, label=f"bench-{i}")
        ).customer_id
        for i in range(20)
    ]
    bootstrap = settings.kafka_bootstrap
    collector = Collector(bootstrap, "contact.outcome.recorded.v1", "contact_id")
    await collector.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()

    def make(n: int) -> tuple[str, bytes, bytes]:
        cid = customers[n % len(customers)]
        msg = ContactReceivedV1.build(
            ContactReceivedPayload(
                channel=Channel.CHAT,
                text=TEXTS[n % len(TEXTS)],
                sender=Sender(kind="customer_session", subject=cid),
            ),
            contact_id=f"bench-{uuid.uuid4()}",
            customer_id=cid,
        )
        return msg.contact_id, msg.model_dump_json().encode(), cid.encode()

    await offered_load(producer, ContactReceivedV1.TOPIC, make, 5, 4, collector)  # warm every path
    pids = stack_pids(cfg)
    before, started = sample(pids), time.monotonic()
    offsets_before = await committed(bootstrap)
    load_memory: dict[str, Usage] = {}

    async def memory_under_load() -> None:  # sampled at the window's middle, while contacts flow
        await asyncio.sleep(DURATION / 2)
        load_memory.update(await asyncio.to_thread(sample, pids))

    probe = asyncio.create_task(memory_under_load())
    lat, tput = await offered_load(
        producer, ContactReceivedV1.TOPIC, make, RATE, DURATION, collector, drain=120
    )
    await probe
    values = list(lat.values())
    used = cpu_delta(before, sample(pids))
    seconds = time.monotonic() - started
    offsets_after = await committed(bootstrap)
    consumed = {k: offsets_after[k] - offsets_before.get(k, 0) for k in offsets_after}
    report_cpu_and_memory(used, len(values), load_memory, idle, seconds, consumed)
    figure(
        "pipeline.sustained_throughput",
        tput,
        "contacts/s",
        ceiling,
        target=200.0,
        offered_rate=RATE,
        seconds=DURATION,
        completed=len(values),
    )
    figure("pipeline.latency_p50", percentile(values, 50), "ms", higher_is_better=False)
    figure("pipeline.latency_p99", percentile(values, 99), "ms", higher_is_better=False, target=250.0)
    figure("pipeline.share_of_passthrough_ceiling", tput / ceiling if ceiling else 0.0, "ratio", target=0.30)
    # Past its capacity the latency above is queueing: measure it again at half the sustained rate,
    # once the backlog has drained (no new outcome for 5 s, at most 5 min).
    settled, last = time.monotonic(), len(collector.arrived)
    deadline = settled + 300
    while time.monotonic() - settled < 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if len(collector.arrived) != last:
            settled, last = time.monotonic(), len(collector.arrived)
    half = max(1.0, tput / 2)
    lat, _ = await offered_load(
        producer, ContactReceivedV1.TOPIC, make, half, min(DURATION, 20.0), collector, drain=60
    )
    values = list(lat.values())
    for p in (50, 99):
        figure(
            f"pipeline.latency_p{p}_at_half_sustained_rate",
            percentile(values, p),
            "ms",
            higher_is_better=False,
            offered_rate=round(half, 1),
            completed=len(values),
        )
    await producer.stop()
    await collector.stop()


async def idle_cost(cfg: Any) -> dict[str, float]:
    """The whole stack idle (services started, groups formed, nothing sent) for ``IDLE_SECONDS``: cores
    used per process and in total, memory per process; and, for the busiest processes, which threads
    woke (the wakers to fix first)."""
    pids = stack_pids(cfg)
    await asyncio.sleep(5)  # let the starts settle (model loads, group joins)
    before = sample(pids)
    await asyncio.sleep(IDLE_SECONDS)
    after = sample(pids)
    used = cpu_delta(before, after)
    total = sum(used.values()) / IDLE_SECONDS
    for name in sorted(used):
        figure(f"idle.cores.{name}", used[name] / IDLE_SECONDS, "cores", higher_is_better=False)
    busiest = sorted(used, key=lambda n: -used[n])[:3]
    wakers = {
        name: [f"{t}={c:.3f}" for t, c in await asyncio.to_thread(busiest_threads, pids[name], 3.0, 3)]
        for name in busiest
    }
    figure(
        "idle.stack_cores",
        total,
        "cores",
        higher_is_better=False,
        target=0.15,
        seconds=IDLE_SECONDS,
        processes=len(used),
        busiest_threads=wakers,
    )
    for name in sorted(after):
        figure(f"memory.idle_mb.{name}", after[name].memory_bytes / MB, "MB", higher_is_better=False)
    figure(
        "memory.idle_stack_mb",
        sum(u.memory_bytes for u in after.values()) / MB,
        "MB",
        higher_is_better=False,
        measure="PSS (shared pages split between processes)",
    )
    return {name: used[name] / IDLE_SECONDS for name in used}


def report_cpu_and_memory(
    used: dict[str, float],
    contacts: int,
    memory: dict[str, Usage],
    idle: dict[str, float],
    seconds: float,
    consumed: dict[tuple[str, str], int],
) -> None:
    """CPU per completed contact per process over the sustained window (and its drain); the capacity
    table (contacts/s one core gives each service) from the same CPU net of what the process burns idle
    over as long (the marginal cost of a contact, what sizing needs), the KEDA lag thresholds derived
    from it, and memory under load. Contacts still in flight when the drain ends count no contact but
    their CPU: at overload the per-contact figures are upper bounds."""
    if not contacts:
        figure("pipeline.cpu_ms_per_contact", 0.0, "ms", higher_is_better=False, error="no contact completed")
        return
    per_contact = {name: used[name] * 1000 / contacts for name in used}
    for name in sorted(per_contact):
        figure(f"cpu_ms_per_contact.{name}", per_contact[name], "ms", higher_is_better=False)
    figure(
        "pipeline.cpu_ms_per_contact",
        sum(per_contact.values()),
        "ms",
        higher_is_better=False,
        target=10.0,
        contacts=contacts,
        note="every process of the stack: broker, Postgres, emulators, services",
    )
    net = {name: max(0.0, used[name] - idle.get(name, 0.0) * seconds) * 1000 / contacts for name in used}
    figure(
        "pipeline.cpu_ms_per_contact_net_of_idle",
        sum(net.values()),
        "ms",
        higher_is_better=False,
        target=10.0,
        seconds=round(seconds, 1),
    )
    # a service's rate: the messages on the topics that scale it, per CPU second net of idle
    rates: dict[str, float] = {}
    for name in SERVICES:
        messages = sum(n for (group, topic), n in consumed.items() if (group, topic) in service_groups(name))
        cpu_s = net.get(name, 0.0) * contacts / 1000
        if messages and cpu_s > 0:
            rates[name] = messages / cpu_s
            figure(
                f"capacity.messages_per_s_per_core.{name}",
                rates[name],
                "msgs/s/core",
                messages=messages,
                topics=sorted(t for _, t in service_groups(name)),
            )
    for name, lag in sorted(lag_thresholds(rates).items()):
        figure(f"capacity.keda_lag_threshold.{name}", lag, "messages", note="bench/capacity.py")
    for name in sorted(memory):
        figure(f"memory.load_mb.{name}", memory[name].memory_bytes / MB, "MB", higher_is_better=False)
    if memory:
        figure(
            "memory.load_stack_mb",
            sum(u.memory_bytes for u in memory.values()) / MB,
            "MB",
            higher_is_better=False,
        )


async def committed(bootstrap: str) -> dict[tuple[str, str], int]:
    """(group, topic) → the group's committed offsets summed over the topic's partitions, for every
    group a KEDA trigger scales on: the messages that group has consumed so far."""
    from aiokafka.admin import AIOKafkaAdminClient

    from tierline.settings import TOPIC_PARTITIONS

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out: dict[tuple[str, str], int] = {}
        for trigger in TRIGGERS:
            parts = [TopicPartition(trigger.topic, p) for p in range(TOPIC_PARTITIONS)]
            offsets = await admin.list_consumer_group_offsets(trigger.group, partitions=parts)
            out[(trigger.group, trigger.topic)] = sum(max(0, o.offset) for o in offsets.values())
        return out
    finally:
        await admin.close()


def encoder_floor(n: int = 60 if QUICK else 200) -> float:
    """CPU of the two encoder passes every automated contact needs (the router's classification and
    Tier 2's retrieval), one text at a time as the services run them, before the stack starts: a
    floor under the pipeline's CPU per contact, hence a ceiling on contacts/s with all cores busy."""
    import random

    from services.router.intent.model import ENCODER
    from services.tier2_agent.adapters.qdrant import KNOWLEDGE_ENCODER
    from tierline.embeddings import embed
    from tierline_tools.demo_texts import TEMPLATES, contact_text

    rng = random.Random(7)
    intents = sorted(TEMPLATES)
    texts = [contact_text(intents[i % len(intents)], rng, 49.0) for i in range(n)]
    per_text: dict[str, float] = {}
    for name, variant in (("router", ENCODER), ("retrieval", KNOWLEDGE_ENCODER)):
        embed(texts[:2], variant=variant)  # load
        started = time.process_time()
        for text in texts:
            embed([text], variant=variant)
        per_text[name] = (time.process_time() - started) / len(texts) * 1000
    cores = len(os.sched_getaffinity(0))
    total = sum(per_text.values())
    figure(
        "pipeline.encoder_cpu_per_contact",
        total,
        "ms",
        higher_is_better=False,
        router_ms=round(per_text["router"], 2),
        retrieval_ms=round(per_text["retrieval"], 2),
        texts=n,
    )
    figure(
        "pipeline.encoder_floor_throughput",
        cores * 1000 / total,
        "contacts/s",
        target=200.0,
        cores=cores,
        note="upper bound from the two encoder passes alone, every other cost taken as zero",
    )
    return total


async def main() -> None:
    from tierline_tools.stack.manager import StackConfig, down, prepare, start_components, start_services

    encoder_floor()

    root = Path(tempfile.mkdtemp(prefix="tierline-bench-pipeline-"))
    cfg = StackConfig.for_tests(root)
    try:
        start_components(cfg, fsync=False)
        await prepare(cfg)
        rows = await passthrough(cfg.env()["TIERLINE_KAFKA_BOOTSTRAP"])
        ceiling = next(r["value"] for r in rows if r["name"] == "passthrough.ceiling_throughput")
        await asyncio.to_thread(start_services, cfg)
        idle = await idle_cost(cfg)
        await pipeline(cfg, ceiling, idle)
    finally:
        down(cfg)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
