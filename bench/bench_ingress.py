"""Tier 0 ingress throughput: verified, de-duplicated, broker-acked Stripe webhooks per second, and p99.

Starts its own stack (Tansu, PostgreSQL, ...) in a temporary directory, serves the real ingress
(``WebhookIngress`` + ``BatchingIngestor`` on the service's broker and pool, over uvicorn), and drives
it from a separate process with keep-alive HTTP/1.1 connections sending events signed as Stripe signs
them. Every 2xx means: signature verified, event id inserted in ``webhook_events``, message acked by the
broker. Prints JSON lines ``{"name", "value", "unit", "baseline", "ratio"}``.

    .venv/bin/python -m bench.bench_ingress [--events 20000] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SECRET = "whsec_bench"  # noqa: S105 - throwaway webhook secret of the local benchmark stack
TARGET_RPS = 1000.0
TARGET_P99_MS = 250.0


# ------------------------------------------------------------------------------------------- load client
def _payloads(n: int, run: str) -> list[bytes]:
    from tierline_tools.world import build_event

    out = []
    for i in range(n):
        event = build_event(
            "invoice.payment_succeeded",
            {
                "id": f"in_{run}{i}",
                "object": "invoice",
                "customer": f"cus_{run}{i % 500}",
                "status": "paid",
                "amount_due": 4900,
                "amount_paid": 4900,
                "currency": "usd",
            },
        )
        event["id"] = f"evt_{run}_{i}"
        out.append(json.dumps(event).encode())
    return out


async def _drive(
    port: int, payloads: list[bytes], connections: int
) -> tuple[float, list[float], dict[int, int]]:
    from tierline_tools.world import sign_payload

    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def conn() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not queue.empty():
                body = queue.get_nowait()
                sig = sign_payload(body, SECRET, int(time.time()))
                head = (
                    f"POST /stripe/webhook HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                    f"Stripe-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                t0 = time.perf_counter()
                writer.write(head + body)
                await writer.drain()
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value.strip())
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                code = int(status_line.split()[1])
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(conn() for _ in range(connections)))
    return time.perf_counter() - start, latencies, statuses


def _client_main(port: int, n: int, connections: int, run: str, out: Any) -> None:
    payloads = _payloads(n, run)
    out.send(asyncio.run(_drive(port, payloads, connections)))


# ------------------------------------------------------------------------------------------- server
async def _serve_and_measure(env: dict[str, str], port: int, events: int, connections: int) -> dict[str, Any]:
    from services.tier0_prevent.ingress import BatchingIngestor, WebhookIngress
    from services.tier0_prevent.settings import Tier0Settings
    from tierline.messaging import publish
    from tierline.runtime import Service
    from tierline.settings import InfraSettings

    _publish_compat()
    settings = InfraSettings(
        kafka_bootstrap=env["TIERLINE_KAFKA_BOOTSTRAP"],
        postgres_dsn=env["TIERLINE_POSTGRES_DSN"],
        stripe_api_base=env["TIERLINE_STRIPE_API_BASE"],  # the embedded emulator: built-ins allowed
        stripe_webhook_secrets=SECRET,
        http_port=port,
    )
    t0 = Tier0Settings()
    service = Service.create("tier0_prevent", settings, http_port=port)
    ingestor = BatchingIngestor(
        None,
        lambda m: publish(service.broker, m),  # type: ignore[arg-type]
        batch_max=t0.ingest_batch_max,
        workers=t0.ingest_workers,
    )
    service.routes.append(
        WebhookIngress(ingestor, settings.webhook_secrets, tolerance_s=t0.signature_tolerance_s).route()
    )

    async def on_start(svc: Service) -> None:
        ingestor.pool = svc.db

    service.on_start.append(on_start)
    await service.start()
    try:
        results = {}
        for phase, n in (("warmup", min(2000, events // 5)), ("run", events)):
            parent, child = mp.Pipe()
            run = uuid.uuid4().hex[:8]
            proc = mp.get_context("spawn").Process(
                target=_client_main, args=(port, n, connections, run, child)
            )
            proc.start()
            elapsed, latencies, statuses = await asyncio.to_thread(parent.recv)
            await asyncio.to_thread(proc.join)
            stored = await service.db.fetchval(
                "SELECT count(*) FROM webhook_events WHERE event_id LIKE $1", f"evt_{run}_%"
            )
            results[phase] = {
                "elapsed": elapsed,
                "latencies": sorted(latencies),
                "statuses": statuses,
                "stored": stored,
                "n": n,
            }
        return results["run"]
    finally:
        await ingestor.stop()
        await service.stop()


def _publish_compat() -> None:
    """Same temporary shim as the integration tests (core publish passes content_type; reported)."""
    import inspect

    from faststream.kafka import KafkaBroker

    original = KafkaBroker.publish
    if "content_type" in inspect.signature(original).parameters:
        return

    async def publish(self: Any, *args: Any, content_type: Any = None, **kwargs: Any) -> Any:
        return await original(self, *args, **kwargs)

    KafkaBroker.publish = publish  # type: ignore[method-assign]


def _line(name: str, value: float, unit: str, baseline: float, higher_is_better: bool = True) -> str:
    ratio = (value / baseline) if higher_is_better else (baseline / value if value else 0.0)
    return json.dumps(
        {"name": name, "value": round(value, 2), "unit": unit, "baseline": baseline, "ratio": round(ratio, 3)}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_ingress")
    quick = os.environ.get("TIERLINE_BENCH_QUICK") == "1"  # `tierline bench --quick`
    parser.add_argument("--events", type=int, default=4_000 if quick else 20_000)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)

    from tierline.observability import configure_logging
    from tierline_tools.stack.manager import StackConfig, down, prepare, start_components
    from tierline_tools.stack.procs import free_port

    configure_logging("bench")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    root = Path(tempfile.mkdtemp(prefix="tierline-bench-ingress-"))
    cfg = StackConfig.for_tests(root)
    try:
        start_components(cfg, fsync=False)
        asyncio.run(prepare(cfg))
        r = asyncio.run(_serve_and_measure(cfg.env(), free_port(), args.events, args.connections))
    finally:
        down(cfg)
    lat = r["latencies"]
    ok = r["statuses"].get(200, 0)
    rps = ok / r["elapsed"]
    p50 = lat[len(lat) // 2] * 1000
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
    print(_line("tier0.ingress.verified_webhooks_per_s", rps, "events/s", TARGET_RPS))
    print(_line("tier0.ingress.latency_p99", p99, "ms", TARGET_P99_MS, higher_is_better=False))
    print(_line("tier0.ingress.latency_p50", p50, "ms", TARGET_P99_MS, higher_is_better=False))
    print(
        json.dumps(
            {
                "name": "tier0.ingress.accounting",
                "value": ok,
                "unit": "events",
                "baseline": r["n"],
                "ratio": round(ok / r["n"], 3),
                "stored": r["stored"],
                "statuses": r["statuses"],
            }
        )
    )
    return 0 if ok == r["n"] == r["stored"] else 1


if __name__ == "__main__":
    sys.exit(main())
