"""Tier 0 burst: N signed Stripe events through the webhook door → mirror sync → dunning decisions.

Starts its own stack (Tansu, PostgreSQL, the Stripe emulator) and the real diagnostics and tier0_prevent
services as processes. Builds a few customers with a declined card in the emulator, then sends N events
signed as Stripe signs them (a mix: payment failures, successes, card updates) from a separate process
over keep-alive connections, and waits until every effect is in Postgres:

- every event stored once by the door (``webhook_events``),
- every invoice of the burst in the mirror (``stripe_invoices``),
- every failed invoice with exactly one dunning schedule and one ``schedule_retry`` ledger row, and the
  same number of planned retries for each (nothing applied twice).

Figures: events/s end to end (first send → last effect), the door's rate, the time the backlog takes to
drain after the last webhook was acknowledged, lost and doubled counts, CPU per event per process.

    .venv/bin/python -m bench.bench_tier0_burst [--events 10000] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import figure
from bench.procstats import cpu_delta, sample, stack_pids

QUICK = os.environ.get("TIERLINE_BENCH_QUICK") == "1"
CUSTOMERS = 10
#: share of each kind in the burst (the rest are card updates)
FAILURES, SUCCESSES = 0.3, 0.5
TARGET_EVENTS_PER_S = 500.0


def _client_main(port: int, payloads: list[bytes], connections: int, secret: str, out: Any) -> None:
    import bench.bench_ingress as ingress

    ingress.SECRET = secret  # the stack's webhook secret, not the ingress bench's own
    out.send(asyncio.run(ingress._drive(port, payloads, connections)))


def burst_events(
    templates: list[dict[str, Any]], n: int, run: str
) -> tuple[list[bytes], dict[str, set[str]]]:
    """N Stripe events from the customers' real objects: failures and successes on new invoices (one
    each), card updates on the customers' cards. Returns the bodies and the invoice ids by kind."""
    from tierline_tools.world import build_event

    bodies: list[bytes] = []
    ids: dict[str, set[str]] = {"failed": set(), "paid": set(), "card": set()}
    now = int(time.time())
    for i in range(n):
        t = templates[i % len(templates)]
        slot = (i * 7919) % 100 / 100  # a fixed, interleaved mix
        if slot < FAILURES:
            obj = copy.deepcopy(t["invoice"])
            obj["id"] = f"in_b{run}{i}"
            obj.update(status="open", paid=False, attempted=True, attempt_count=1)
            obj["payment_intent"] = {
                "id": f"pi_b{run}{i}",
                "object": "payment_intent",
                "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"},
            }
            event = build_event("invoice.payment_failed", obj, created=now)
            ids["failed"].add(obj["id"])
        elif slot < FAILURES + SUCCESSES:
            obj = copy.deepcopy(t["invoice"])
            obj["id"] = f"in_b{run}{i}"
            obj.update(status="paid", paid=True, amount_paid=obj.get("amount_due", 0), attempt_count=1)
            event = build_event("invoice.payment_succeeded", obj, created=now)
            ids["paid"].add(obj["id"])
        else:
            obj = copy.deepcopy(t["card"])
            card = obj.get("card") if isinstance(obj.get("card"), dict) else obj
            card["exp_year"] = int(card.get("exp_year") or 2030) + 1 + i % 5
            event = build_event("payment_method.updated", obj, created=now + i)  # newest wins
            ids["card"].add(obj["id"])
        event["id"] = f"evt_b{run}_{i}"
        bodies.append(json.dumps(event).encode())
    return bodies, ids


async def counts(pool: Any, run: str) -> dict[str, int]:
    row = await pool.fetchrow(
        """SELECT
             (SELECT count(*) FROM webhook_events WHERE event_id LIKE $1) AS stored,
             (SELECT count(*) FROM stripe_invoices WHERE id LIKE $2) AS mirrored,
             (SELECT count(*) FROM dunning_schedules WHERE invoice_id LIKE $2) AS schedules,
             (SELECT count(*) FROM action_ledger WHERE action = 'schedule_retry' AND target LIKE $2)
                AS ledger_schedules,
             (SELECT count(DISTINCT n) FROM (SELECT count(*) AS n FROM dunning_attempts
                WHERE invoice_id LIKE $2 GROUP BY invoice_id) a) AS retry_plans""",
        f"evt_b{run}_%",
        f"in_b{run}%",
    )
    return dict(row)


async def main(events: int, connections: int) -> None:
    import asyncpg

    from tierline.stripe_adapter import StripeActions
    from tierline_tools.stack.manager import StackConfig, down, prepare, start_components, start_services
    from tierline_tools.world import build_world, world_event

    root = Path(tempfile.mkdtemp(prefix="tierline-bench-tier0-"))
    cfg = StackConfig.for_tests(root)
    try:
        start_components(cfg, fsync=False)
        await prepare(cfg)
        await asyncio.to_thread(start_services, cfg, ("diagnostics", "tier0_prevent"))
        env = cfg.env()
        secret = cfg.settings().webhook_secrets()[0]
        actions = StripeActions(cfg.settings())
        templates = []
        for i in range(CUSTOMERS):
            built = await build_world(
                {
                    "card": "declined_insufficient_funds",
                    "failed_invoice": {"amount_usd": 49, "decline_code": "insufficient_funds"},
                },
                actions,
                label=f"burst-{i}",
            )
            invoice = (await world_event({"type": "invoice.payment_failed"}, built))["data"]["object"]
            card = (await world_event({"type": "payment_method.updated"}, built))["data"]["object"]
            templates.append({"invoice": invoice, "card": card})
        pool = await asyncpg.create_pool(env["TIERLINE_POSTGRES_DSN"], min_size=1, max_size=2)
        port = cfg.service_ports["tier0_prevent"]
        pids = stack_pids(cfg)
        try:
            # warm-up: a small burst through every path, waited for
            warm_run = uuid.uuid4().hex[:6]
            warm, warm_ids = burst_events(templates, 60, warm_run)
            await send(port, warm, connections, secret)
            await wait_done(pool, warm_run, warm_ids, len(warm), 120)

            run = uuid.uuid4().hex[:6]
            bodies, ids = burst_events(templates, events, run)
            before = sample(pids)
            t0 = time.monotonic()
            elapsed, _latencies, statuses = await send(port, bodies, connections, secret)
            acked = time.monotonic()
            final, done_at = await wait_done(pool, run, ids, events, 600)
            used = cpu_delta(before, sample(pids))
        finally:
            await pool.close()
        end = done_at or time.monotonic()
        failed, paid = len(ids["failed"]), len(ids["paid"])
        lost = (
            (events - final["stored"])
            + (failed + paid - final["mirrored"])
            + (failed - final["schedules"])
            + (failed - final["ledger_schedules"])
        )
        figure(
            "tier0.burst_events_per_s",
            events / (end - t0),
            "events/s",
            target=TARGET_EVENTS_PER_S,
            events=events,
            failures=failed,
            successes=paid,
            card_updates=events - failed - paid,
            completed=done_at is not None,
        )
        figure("tier0.burst_door_events_per_s", events / elapsed, "events/s", statuses=statuses)
        figure("tier0.burst_lag_drain_s", end - acked, "s", higher_is_better=False)
        figure("tier0.burst_lost", max(0, lost), "events", higher_is_better=False, target=0.0, **final)
        figure(
            "tier0.burst_applied_twice",
            max(0, final["ledger_schedules"] - failed) + max(0, final["retry_plans"] - 1),
            "effects",
            higher_is_better=False,
            target=0.0,
        )
        for name in sorted(used):
            figure(f"tier0.cpu_ms_per_event.{name}", used[name] * 1000 / events, "ms", higher_is_better=False)
        if used.get("tier0_prevent"):
            figure(
                "capacity.events_per_s_per_core.tier0_prevent",
                events / used["tier0_prevent"],
                "events/s/core",
            )
    finally:
        down(cfg)
        shutil.rmtree(root, ignore_errors=True)


async def send(port: int, bodies: list[bytes], connections: int, secret: str) -> Any:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(
        target=_client_main, args=(port, bodies, connections, secret, child)
    )
    proc.start()
    result = await asyncio.to_thread(parent.recv)
    await asyncio.to_thread(proc.join)
    return result


async def wait_done(
    pool: Any, run: str, ids: dict[str, set[str]], events: int, within_s: float
) -> tuple[dict[str, int], float | None]:
    """Poll Postgres until every effect of the burst is there (at most ``within_s``)."""
    failed, paid = len(ids["failed"]), len(ids["paid"])
    deadline = time.monotonic() + within_s
    while True:
        now = await counts(pool, run)
        if (
            now["stored"] >= events
            and now["mirrored"] >= failed + paid
            and now["schedules"] >= failed
            and now["ledger_schedules"] >= failed
        ):
            return now, time.monotonic()
        if time.monotonic() > deadline:
            return now, None
        await asyncio.sleep(0.25)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000 if QUICK else 10_000)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(sys.argv[1:])
    asyncio.run(main(args.events, args.connections))
