"""Diagnostics benchmark: warm diagnosis latency/throughput on one core, and cold (mirror miss) latency.

Generates N customers in Postgres (mirror + subscription store) and M usage events in chDB (bulk,
reused when already generated under the data dir), then prints JSON lines
``{"name","value","unit","baseline","ratio"}``. Targets: warm p99 <= 10 ms (one request at a time),
>= 500 diagnoses/s (16 in flight), with this process pinned to one core (``--cores``).

    .venv/bin/python bench/bench_diagnostics.py            # 100,000 customers, 10,000,000 events
    .venv/bin/python bench/bench_diagnostics.py --small    # 2,000 customers, 200,000 events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_SEED = """
INSERT INTO stripe_customers (id, email, name, default_payment_method, created, version, synced_at)
SELECT 'cus_bench_' || g, 'c' || g || '@bench.io', 'Bench ' || g, 'pm_bench_' || g,
       now() - interval '400 days', 1, now()
FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING;
INSERT INTO customers (id, email, name, plan_tier)
SELECT 'cus_bench_' || g, 'c' || g || '@bench.io', 'Bench ' || g,
       (ARRAY['starter','pro','business','enterprise'])[1 + g % 4]
FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING;
INSERT INTO stripe_payment_methods (id, customer_id, brand, last4, exp_month, exp_year, version, synced_at)
SELECT 'pm_bench_' || g, 'cus_bench_' || g, 'visa', lpad((g % 10000)::text, 4, '0'), 1 + g % 12,
       2027 + g % 5, 1, now()
FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING;
INSERT INTO subscriptions (id, customer_id, plan_id, status, seats, price_usd, current_period_start,
                           current_period_end, version)
SELECT 'sub_bench_' || g, 'cus_bench_' || g,
       (ARRAY['starter','pro','business','enterprise'])[1 + g % 4], 'active',
       1 + g % 20, 49, now() - interval '10 days', now() + interval '20 days', 1
FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING;
INSERT INTO stripe_charges (id, customer_id, amount_cents, status, created, version, synced_at)
SELECT 'ch_bench_' || g || '_' || k, 'cus_bench_' || g, 4900, 'succeeded',
       now() - (k * interval '30 days'), 1, now()
FROM generate_series($1::int, $2::int) g, generate_series(0, 2) k ON CONFLICT DO NOTHING;
INSERT INTO stripe_invoices (id, customer_id, status, amount_due_cents, amount_paid_cents, attempt_count,
                             created, version, synced_at)
SELECT 'in_bench_' || g, 'cus_bench_' || g, CASE WHEN g % 10 = 0 THEN 'open' ELSE 'paid' END, 4900,
       CASE WHEN g % 10 = 0 THEN 0 ELSE 4900 END, 1, now() - interval '1 day', 1, now()
FROM generate_series($1::int, $2::int) g ON CONFLICT DO NOTHING;
"""

CH_SEED = """
INSERT INTO usage_events (customer_id, metric, ts, units, unit_price_usd, event_id)
SELECT concat('cus_bench_', toString(number % {customers})), 'api_calls',
       now64(3) - toIntervalSecond(intDiv(number * 5189, {customers}) % (60 * 86400)),
       toFloat64(100 + number % 900), 0.0002, concat('bev_', toString(number))
FROM numbers({start}, {count})
"""


def line(name: str, value: float, unit: str, baseline: float | None, lower_is_better: bool) -> None:
    ratio = None
    if baseline:
        ratio = round((baseline / value) if lower_is_better and value else (value / baseline), 3)
    print(
        json.dumps(
            {"name": name, "value": round(value, 3), "unit": unit, "baseline": baseline, "ratio": ratio}
        ),
        flush=True,
    )


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(args: argparse.Namespace) -> None:
    from services.diagnostics.adapters.clickhouse import UsageStore
    from services.diagnostics.adapters.stripe_reader import StripeLiveReader
    from services.diagnostics.handlers import Diagnostician
    from services.diagnostics.settings import DiagnosticsSettings
    from tierline.billing.mirror import MirrorStore
    from tierline.clickhouse import get_client
    from tierline.db import create_pool
    from tierline_tools.stack.manager import StackConfig, down, prepare, start_components

    root = Path(args.data_dir)  # made absolute by main()
    cfg = StackConfig.load(root / "stack") or StackConfig.for_tests(root / "stack")  # reuse data and ports
    start_components(cfg, fsync=False)
    try:
        await prepare(cfg)
        env = cfg.env()
        pool = await create_pool(env["TIERLINE_POSTGRES_DSN"], max_size=8)
        dsn = f"chdb://{root / 'clickhouse'}"
        usage = UsageStore(dsn)
        await usage.ensure_schema()
        t0 = time.perf_counter()
        have = await pool.fetchval("SELECT count(*) FROM customers WHERE id LIKE 'cus_bench_%'")
        if have < args.customers:
            step = 20_000
            for lo in range(have, args.customers, step):
                await pool.execute("SELECT 1")
                async with pool.acquire() as conn:
                    for stmt in filter(str.strip, PG_SEED.split(";")):
                        await conn.execute(stmt, lo, min(lo + step, args.customers) - 1)
            await pool.execute("ANALYZE")
        pg_s = time.perf_counter() - t0
        client = get_client(dsn)
        t0 = time.perf_counter()
        events = int(
            str(
                client.command("SELECT count() FROM usage_events WHERE startsWith(customer_id, 'cus_bench_')")
            )
        )
        chunk = 2_000_000
        while events < args.events:
            n = min(chunk, args.events - events)
            client.command(CH_SEED.format(customers=args.customers, start=events, count=n))
            events += n
        # Steady state: ClickHouse merges a table's parts in the background; the bulk seed leaves one part
        # per chunk, which a long-running store would long since have merged.
        client.command("OPTIMIZE TABLE usage_daily FINAL")
        parts = int(
            str(client.command("SELECT count() FROM system.parts WHERE active AND table = 'usage_daily'"))
        )
        ch_s = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "setup": {
                        "customers": args.customers,
                        "events": events,
                        "pg_seed_s": round(pg_s, 1),
                        "ch_seed_s": round(ch_s, 1),
                        "usage_daily_parts": parts,
                        "machine": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(),
                        "pinned_to": sorted(os.sched_getaffinity(0))
                        if hasattr(os, "sched_getaffinity")
                        else None,
                    }
                }
            ),
            flush=True,
        )

        mirror = MirrorStore(pool)
        stripe = StripeLiveReader("sk_test_bench", env["TIERLINE_STRIPE_API_BASE"], emulated=True)
        warm = Diagnostician(
            mirror, stripe, usage, None, DiagnosticsSettings(mirror_max_age_s=10 * 365 * 86400)
        )
        rng = random.Random(7)
        ids = [f"cus_bench_{rng.randrange(args.customers)}" for _ in range(args.samples)]
        for cid in ids[:50]:  # warm-up
            await warm.diagnose(cid)
        lat: list[float] = []
        started = time.perf_counter()
        for cid in ids:  # one at a time: the latency of a diagnosis on an idle service
            t = time.perf_counter()
            d = await warm.diagnose(cid)
            lat.append((time.perf_counter() - t) * 1000)
            assert d.evidence["sources"]["stripe"] == "mirror"
            assert d.evidence["sources"]["usage"] == "clickhouse"
        total = time.perf_counter() - started
        line("diagnostics.warm.p50", pct(lat, 0.50), "ms", None, True)
        line("diagnostics.warm.p99", pct(lat, 0.99), "ms", 10.0, True)
        line("diagnostics.warm.throughput.sequential", len(ids) / total, "diagnoses/s", None, False)

        # Under load: `concurrency` requests in flight, as the HTTP door sees them from several services.
        queue = list(reversed(ids))
        loaded: list[float] = []

        async def worker() -> None:
            while queue:
                cid = queue.pop()
                t = time.perf_counter()
                d = await warm.diagnose(cid)
                loaded.append((time.perf_counter() - t) * 1000)
                assert d.evidence["sources"]["usage"] == "clickhouse"

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        total = time.perf_counter() - started
        line(
            f"diagnostics.warm.throughput.c{args.concurrency}", len(ids) / total, "diagnoses/s", 500.0, False
        )
        line(f"diagnostics.warm.c{args.concurrency}.p99", pct(loaded, 0.99), "ms", None, True)

        import stripe as stripe_sdk

        plan_id = f"pro-bench-{int(time.time())}"
        sc = stripe_sdk.StripeClient("sk_test_bench", base_addresses={"api": env["TIERLINE_STRIPE_API_BASE"]})
        sc.v1.plans.create(
            params={
                "id": plan_id,
                "amount": 4900,
                "currency": "usd",
                "interval": "month",
                "product": {"name": "Pro"},
                "metadata": {"tl_plan": "pro"},
            }
        )
        cold: list[float] = []
        for i in range(args.cold):
            cus = sc.v1.customers.create(params={"email": f"cold{i}@bench.io"})
            pm = sc.v1.payment_methods.create(
                params={
                    "type": "card",
                    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
                }
            )
            sc.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
            sc.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
            sc.v1.subscriptions.create(params={"customer": cus.id, "items": [{"plan": plan_id}]})
            t = time.perf_counter()
            d = await warm.diagnose(cus.id)
            cold.append((time.perf_counter() - t) * 1000)
            assert d.evidence["sources"]["stripe"] == "live"
        line("diagnostics.cold.p50", pct(cold, 0.50), "ms", None, True)
        line("diagnostics.cold.p99", pct(cold, 0.99), "ms", None, True)
        line("diagnostics.cold.mean", statistics.fmean(cold), "ms", None, True)
        await pool.close()
    finally:
        down(cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--cold", type=int, default=30)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight for the loaded figure"
    )
    parser.add_argument("--cores", default="0", help="CPU ids this process may run on ('' = no pinning)")
    parser.add_argument("--small", action="store_true", help="2,000 customers, 200,000 events")
    parser.add_argument("--data-dir", default=".tierline/bench-diagnostics")
    args = parser.parse_args(argv)
    if args.small:
        args.customers, args.events, args.samples, args.cold = 2000, 200_000, 500, 10
        args.data_dir = args.data_dir + "-small"
    if args.cores and hasattr(os, "sched_setaffinity"):
        # "On one core": this process, chDB's threads and the stack it starts (Postgres and the Stripe
        # emulator inherit the affinity when spawned) all share the CPUs named here.
        os.sched_setaffinity(0, {int(c) for c in args.cores.split(",")})
    os.environ.setdefault("TIERLINE_LOG_LEVEL", "WARNING")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    args.data_dir = str(Path(args.data_dir).resolve())
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
