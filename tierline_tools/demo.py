"""`tierline demo`: a synthetic SaaS month through the real doors, then the month's numbers.

1. Build N customers in the Stripe emulator on four plans, with realistic failure rates (declines by
   code, expiring cards, expired links, duplicates, disputes, overage), and a month of metered usage
   through `usage.event.recorded.v1` into ClickHouse.
2. Replay the month: Stripe events through the signed webhook ingress, dashboard self-heal requests on
   the topic, chat/email contacts drawn from an intent mix (texts the router was not trained on).
3. Wait for every contact's one outcome, then print tier mix, resolution rate, cost per contact and per
   month against the all-human baseline, recovered revenue, time to resolution per tier and escalation
   reasons; write the same as JSON and a PNG chart.
4. Customers asked a clarifying question answer it (the ask they meant, or a person when it was not
   offered): how many unsure contacts a question settled without a person.
5. Customers react through the real doors: some reply "that didn't work" in the same conversation, some
   rate the answer (CSAT, "did this solve it?") in the chat widget's rating door; then print first-response
   p50/p99, CSAT and first-contact resolution from the conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas import Action, Channel
from schemas.messages import (
    ContactReceivedPayload,
    ContactReceivedV1,
    SelfhealRequestedPayload,
    SelfhealRequestedV1,
    Sender,
)
from tierline.clarify_words import CLARIFY_SUMMARY_PREFIX
from tierline.conversation_metrics import conversation_metrics, percentile
from tierline.messaging import publish
from tierline.pipeline import CostModel
from tierline_tools.demo_texts import contact_text

log = structlog.get_logger(__name__)

PLAN_MIX = [("starter", 0.45), ("pro", 0.35), ("business", 0.15), ("enterprise", 0.05)]
PRICES = {"starter": 19, "pro": 49, "business": 299, "enterprise": 999}


@dataclass
class Archetype:
    name: str
    weight: float
    intents: list[tuple[str, float]] = field(default_factory=list)  # what these customers write about
    stripe_event: str | None = None
    selfheal: str | None = None


ARCHETYPES = [
    Archetype(
        "healthy",
        0.52,
        [
            ("invoice_request", 3),
            ("payment_methods_question", 1.5),
            ("plan_change", 1.5),
            ("cancel_subscription", 1),
            ("update_billing_details", 1.5),
            ("human_agent", 0.7),
            ("out_of_scope", 1.2),
            ("unrecognized_charge", 0.6),
        ],
    ),
    Archetype("soft_decline", 0.09, [("payment_failed", 1)], stripe_event="invoice.payment_failed"),
    Archetype("recovered_card", 0.05, [("payment_failed", 1)], selfheal="retry_payment"),
    Archetype("hard_decline", 0.04, [("payment_failed", 1)], stripe_event="invoice.payment_failed"),
    Archetype("fraud_decline", 0.005, [("fraud_compromised", 1)], stripe_event="invoice.payment_failed"),
    Archetype("expired_link", 0.02, [("payment_failed", 1)]),
    Archetype("duplicate", 0.03, [("duplicate_charge", 1)]),
    Archetype("overage", 0.08, [("unexpected_charge", 1)]),
    Archetype("big_refund", 0.02, [("refund_request", 1)]),
    Archetype("small_refund", 0.03, [("refund_request", 1)]),
    Archetype("refund_pending", 0.02, [("refund_status", 1)]),
    Archetype("dispute", 0.01, [("refund_request", 1)]),
    Archetype("expiring_card", 0.045, [("card_expiring", 1)], stripe_event="customer.source.expiring"),
]


def world_for(arch: str, rng: random.Random, i: int) -> dict[str, Any]:
    plan = rng.choices([p for p, _ in PLAN_MIX], [w for _, w in PLAN_MIX])[0]
    price = PRICES[plan]
    limit = {"starter": 100_000, "pro": 500_000, "business": 2_000_000, "enterprise": 10_000_000}[plan]
    usage = {
        "metric": "api_calls",
        "limit": limit,
        "last_30d": int(limit * rng.uniform(0.3, 0.9)),
        "prev_30d": int(limit * rng.uniform(0.3, 0.9)),
    }
    world: dict[str, Any] = {
        "customer": {
            "plan": plan,
            "tenure_days": rng.randint(20, 900),
            "seats": rng.randint(1, 12),
            "email": f"billing+{i}@customer{i}.example",
            "country": rng.choice(["US", "DE", "FR", "GB"]),
        },
        "subscription": {"status": "active", "monthly_usd": price},
        "charges": [{"amount_usd": price, "days_ago": rng.randint(1, 25)}],
        "usage": usage,
    }
    if arch == "soft_decline":
        world |= {
            "card": "declined_insufficient_funds",
            "subscription": {"status": "past_due", "monthly_usd": price},
            "failed_invoice": {"amount_usd": price, "days_ago": 0, "decline_code": "insufficient_funds"},
        }
    elif arch == "recovered_card":
        world |= {
            "card": "visa",
            "subscription": {"status": "past_due", "monthly_usd": price},
            "failed_invoice": {"amount_usd": price, "days_ago": 1, "decline_code": "insufficient_funds"},
        }
    elif arch == "hard_decline":
        world |= {
            "card": "expired",
            "subscription": {"status": "past_due", "monthly_usd": price},
            "failed_invoice": {"amount_usd": price, "days_ago": 0, "decline_code": "expired_card"},
        }
    elif arch == "fraud_decline":
        world |= {
            "card": "declined_generic",
            "subscription": {"status": "past_due", "monthly_usd": price},
            "failed_invoice": {"amount_usd": price, "days_ago": 0, "decline_code": "stolen_card"},
        }
    elif arch == "expired_link":
        world |= {
            "subscription": {"status": "past_due", "monthly_usd": price},
            "expired_invoice_link": True,
            "failed_invoice": {"amount_usd": price, "days_ago": 9, "decline_code": "insufficient_funds"},
        }
    elif arch == "duplicate":
        d = rng.randint(1, 5)
        world["charges"] = [{"amount_usd": price, "days_ago": d}, {"amount_usd": price, "days_ago": d}]
    elif arch == "overage":
        usage["last_30d"] = int(limit * rng.uniform(1.3, 2.0))
        world["charges"] = [
            {"amount_usd": round(price * rng.uniform(1.8, 2.8), 2), "days_ago": rng.randint(1, 6)}
        ]
    elif arch == "big_refund":
        world["charges"] = [{"amount_usd": price * 12, "days_ago": rng.randint(2, 10)}]
    elif arch == "small_refund":
        world["charges"] = [{"amount_usd": price, "days_ago": rng.randint(2, 20)}]
        if plan in ("starter", "pro"):
            world["charges"][0]["amount_usd"] = min(price, 40)
    elif arch == "refund_pending":
        world["refunds"] = [{"amount_usd": min(price, 20), "days_ago": 3, "status": "pending"}]
    elif arch == "dispute":
        world["dispute_open"] = True
    elif arch == "expiring_card":
        world["card"] = "visa"
        world["customer"]["card_expiring"] = True
    return world


@dataclass
class Trigger:
    kind: str  # contact | selfheal | stripe_event
    customer_index: int
    intent: str | None = None
    action: str | None = None
    event_type: str | None = None
    contact_id: str = ""


def plan_month(rng: random.Random, customers: int, contacts: int) -> tuple[list[str], list[Trigger]]:
    archetypes = rng.choices([a.name for a in ARCHETYPES], [a.weight for a in ARCHETYPES], k=customers)
    by_name = {a.name: a for a in ARCHETYPES}
    triggers: list[Trigger] = []
    for i, name in enumerate(archetypes):
        arch = by_name[name]
        if arch.stripe_event:
            triggers.append(Trigger("stripe_event", i, event_type=arch.stripe_event))
        if arch.selfheal:
            triggers.append(Trigger("selfheal", i, action=arch.selfheal))
    # contacts: problem customers write about their problem, the rest draw from the healthy mix
    pool = [
        i
        for i, n in enumerate(archetypes)
        if n not in ("healthy", "soft_decline", "hard_decline", "expiring_card", "recovered_card")
    ]
    healthy = [i for i, n in enumerate(archetypes) if n == "healthy"]
    rng.shuffle(pool)
    for i in pool[: max(0, contacts // 2)]:
        arch = by_name[archetypes[i]]
        intent = rng.choices([x for x, _ in arch.intents], [w for _, w in arch.intents])[0]
        triggers.append(Trigger("contact", i, intent=intent))
    mix = by_name["healthy"].intents
    while sum(t.kind == "contact" for t in triggers) < contacts and healthy:
        i = rng.choice(healthy)
        intent = rng.choices([x for x, _ in mix], [w for _, w in mix])[0]
        triggers.append(Trigger("contact", i, intent=intent))
    for i in healthy[: max(1, contacts // 20)]:
        triggers.append(Trigger("selfheal", i, action=rng.choice(["send_invoice", "update_billing_details"])))
    rng.shuffle(triggers)
    return archetypes, triggers


#: A clarifying question's outcome summary starts with this (services/router/handlers.py).
CLARIFY_PREFIX = CLARIFY_SUMMARY_PREFIX


def pick_choice(intent: str | None, offered: list[str]) -> str:
    """The demo customer's answer to a clarifying question: the ask they meant when it is offered, else a
    person."""
    return intent if intent is not None and intent in offered else "human"


def clarify_report(asked: int, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """How many unsure contacts a question settled: the answers resolved without a person."""
    resolved = sum(1 for o in answers if o["payload"]["resolved_by"] != "tier3")
    return {
        "questions_asked": asked,
        "answered": len(answers),
        "resolved_after_answer": resolved,
        "to_person_after_answer": len(answers) - resolved,
        "resolved_share_of_questions": round(resolved / asked, 4) if asked else 0.0,
    }


async def answer_questions(
    runner: Any, triggers: list[Trigger], outcomes: list[dict[str, Any]], timeout_s: float
) -> dict[str, Any]:
    """Each demo customer asked a clarifying question answers it in the same conversation (the choice of
    what they meant, or a person when it was not offered); the answers' outcomes are counted apart from
    the month's contacts."""
    by_id = {t.contact_id: t for t in triggers if t.kind == "contact"}
    questions = [
        o
        for o in outcomes
        if o.get("contact_id") in by_id and str(o["payload"].get("summary") or "").startswith(CLARIFY_PREFIX)
    ]
    reply_ids: list[str] = []
    for o in questions:
        t = by_id[o["contact_id"]]
        raw = await runner.db.fetchval(
            "SELECT choices FROM conversation_turns "
            "WHERE contact_id=$1 AND kind='clarifying_question' LIMIT 1",
            t.contact_id,
        )
        choices = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        value = pick_choice(t.intent, [c["value"] for c in choices])
        label = next((c["label"] for c in choices if c["value"] == value), value)
        reply_id = f"demo-r-{uuid.uuid4()}"
        customer_id = o["customer_id"]
        await publish(
            runner.broker,
            ContactReceivedV1.build(
                ContactReceivedPayload(
                    channel=Channel.CHAT,
                    text=label,
                    sender=Sender(kind="customer_session", subject=customer_id),
                    conversation_id=t.contact_id,
                    choice=value,
                ),
                contact_id=reply_id,
                customer_id=customer_id,
            ),
        )
        reply_ids.append(reply_id)
    rows: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while reply_ids and time.monotonic() < deadline:
        rows = await runner.db.fetch(
            "SELECT message FROM outcomes WHERE contact_id = ANY($1::text[])", reply_ids
        )
        if len(rows) >= len(reply_ids):
            break
        await asyncio.sleep(0.5)
    return clarify_report(len(questions), [dict(r["message"]) for r in rows])


#: What a demo customer writes back when the fix did not work for them.
NOT_FIXED = "That didn't work, it's still not fixed."


def customer_reaction(rng: random.Random, outcome: dict[str, Any]) -> tuple[bool, int | None, bool | None]:
    """What a demo customer does after an automated answer: (writes "that didn't work", csat, solved).
    A simulated customer: about one in fourteen says it did not work, and under half rate the answer."""
    if outcome["payload"]["resolved_by"] == "tier3":
        return False, None, None  # a person holds it: rated when the person answers, not here
    if rng.random() < 0.07:
        return True, rng.choice([1, 2, 2, 3]), False
    if rng.random() < 0.45:
        return False, rng.choices([5, 4, 3, 2, 1], weights=[55, 28, 10, 4, 3])[0], rng.random() < 0.9
    return False, None, None


async def converse(
    runner: Any,
    settings: Any,
    tier1_url: str,
    triggers: list[Trigger],
    outcomes: list[dict[str, Any]],
    rng: random.Random,
    timeout_s: float,
) -> list[str]:
    """The month's customers react to their answers through the real doors: some reply "that didn't work"
    in the same conversation (a new contact), some rate the answer in the chat widget's rating door
    (CSAT 1-5 and "did this solve it?"). Returns the follow-up contacts, once each has its outcome."""
    from tierline.tokens import issue_customer_token

    keys = settings.customer_token_keyset()
    contacts = {t.contact_id for t in triggers if t.kind == "contact"}
    follow_ups: list[str] = []
    for o in outcomes:
        if o.get("contact_id") not in contacts or str(o["payload"].get("summary") or "").startswith(
            CLARIFY_PREFIX
        ):
            continue
        not_fixed, csat, solved = customer_reaction(rng, o)
        cid, contact_id = o["customer_id"], o["contact_id"]
        if csat is not None or solved is not None:
            token = issue_customer_token(keys, cid, 600)
            res = await runner.http.post(
                f"{tier1_url}/v1/chat/ratings",
                json={
                    "conversation_id": contact_id,
                    "contact_id": contact_id,
                    "csat": csat,
                    "solved": solved,
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            if res.status_code >= 400:
                log.warning("demo.rating_refused", status=res.status_code, body=res.text[:200])
        if not_fixed:
            follow_up = f"demo-f-{uuid.uuid4()}"
            await publish(
                runner.broker,
                ContactReceivedV1.build(
                    ContactReceivedPayload(
                        channel=Channel.CHAT,
                        text=NOT_FIXED,
                        sender=Sender(kind="customer_session", subject=cid),
                        conversation_id=contact_id,
                    ),
                    contact_id=follow_up,
                    customer_id=cid,
                ),
            )
            follow_ups.append(follow_up)
    deadline = time.monotonic() + timeout_s
    while follow_ups and time.monotonic() < deadline:
        done = await runner.db.fetchval(
            "SELECT count(*) FROM outcomes WHERE contact_id = ANY($1::text[])", follow_ups
        )
        if done >= len(follow_ups):
            break
        await asyncio.sleep(0.5)
    return follow_ups


def month_report(outcomes: list[dict[str, Any]], expected: int, costs: CostModel) -> dict[str, Any]:
    n = len(outcomes)
    tiers: dict[str, int] = {}
    latency: dict[str, list[float]] = {}
    reasons: dict[str, int] = {}
    cost = recovered = refunded = 0.0
    for o in outcomes:
        p = o["payload"]
        tier = p["resolved_by"]
        tiers[tier] = tiers.get(tier, 0) + 1
        latency.setdefault(tier, []).append(float(p.get("latency_ms") or 0))
        if p.get("escalation_reason"):
            reasons[p["escalation_reason"]] = reasons.get(p["escalation_reason"], 0) + 1
        cost += float(p.get("cost_usd") or 0)
        recovered += float(p.get("recovered_usd") or 0)
        refunded += float(p.get("refund_usd") or 0)
    automated = n - tiers.get("tier3", 0)
    baseline = n * costs.tier3
    return {
        "contacts": expected,
        "outcomes": n,
        "dead_ends": expected - n,
        "tier_mix": {t: {"count": c, "share": round(c / n, 4) if n else 0} for t, c in sorted(tiers.items())},
        "automated_resolution_rate": round(automated / n, 4) if n else 0.0,
        "cost_usd_month": round(cost, 2),
        "cost_per_contact_usd": round(cost / n, 4) if n else 0.0,
        "all_human_baseline_usd_month": round(baseline, 2),
        "saving_vs_baseline": round(1 - cost / baseline, 4) if baseline else 0.0,
        "recovered_revenue_usd": round(recovered, 2),
        "refunded_usd": round(refunded, 2),
        "time_to_resolution_ms": {
            t: {"p50": percentile(v, 50), "p99": percentile(v, 99), "mean": round(statistics.fmean(v), 1)}
            for t, v in sorted(latency.items())
        },
        "escalation_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
    }


def print_report(console: Console, report: dict[str, Any]) -> None:
    t = Table(title="The month, by tier")
    for col in ("tier", "contacts", "share", "p50 ms", "p99 ms"):
        t.add_column(col, justify="right" if col != "tier" else "left")
    for tier, row in report["tier_mix"].items():
        lat = report["time_to_resolution_ms"].get(tier, {})
        t.add_row(
            tier,
            str(row["count"]),
            f"{row['share'] * 100:.1f}%",
            f"{lat.get('p50', 0):.0f}",
            f"{lat.get('p99', 0):.0f}",
        )
    console.print(t)
    m = Table(title="Money")
    m.add_column("figure")
    m.add_column("value", justify="right")
    m.add_row("automated resolution rate", f"{report['automated_resolution_rate'] * 100:.1f}%")
    m.add_row("cost this month", f"${report['cost_usd_month']:,.2f}")
    m.add_row("cost per contact", f"${report['cost_per_contact_usd']:.3f}")
    m.add_row("all-human baseline", f"${report['all_human_baseline_usd_month']:,.2f}")
    m.add_row("saving vs baseline", f"{report['saving_vs_baseline'] * 100:.1f}%")
    m.add_row("recovered revenue (tier 0/1 payment fixes)", f"${report['recovered_revenue_usd']:,.2f}")
    m.add_row("refunded", f"${report['refunded_usd']:,.2f}")
    m.add_row("dead ends", str(report["dead_ends"]))
    console.print(m)
    sup = report.get("support")
    if sup:
        f = Table(title="What the customer saw (conversations; ratings from simulated customers)")
        f.add_column("figure")
        f.add_column("value", justify="right")
        fr = sup["first_response_ms"]
        f.add_row("first response p50 / p99", f"{fr['p50'] / 1000:.1f} s / {fr['p99'] / 1000:.1f} s")
        f.add_row(
            "automated first response p50 / p99 (target < 30 s)",
            f"{fr['automated_p50'] / 1000:.1f} s / {fr['automated_p99'] / 1000:.1f} s",
        )
        f.add_row("automated answers within 30 s", f"{fr['automated_within_target'] * 100:.1f}%")
        csat = sup["csat"]
        if csat["mean"] is not None:
            f.add_row("CSAT (1-5)", f"{csat['mean']:.2f} from {csat['ratings']} ratings")
        if csat["solved_share"] is not None:
            f.add_row("'did this solve it?' yes", f"{csat['solved_share'] * 100:.1f}%")
        if sup["first_contact_resolution"] is not None:
            f.add_row("resolved on first contact", f"{sup['first_contact_resolution'] * 100:.1f}%")
        f.add_row("replies 'that didn't work'", str(report.get("follow_ups_not_fixed", 0)))
        console.print(f)
    q = report.get("clarifying_questions")
    if q:
        c = Table(title="Clarifying questions (unsure contacts asked one question)")
        c.add_column("figure")
        c.add_column("value", justify="right")
        c.add_row("questions asked", str(q["questions_asked"]))
        c.add_row("answered (the ask meant, or a person)", str(q["answered"]))
        c.add_row("resolved after the answer, no person", str(q["resolved_after_answer"]))
        c.add_row("to a person after the answer", str(q["to_person_after_answer"]))
        console.print(c)
    r = Table(title="Escalation reasons")
    r.add_column("reason")
    r.add_column("count", justify="right")
    for reason, count in report["escalation_reasons"].items():
        r.add_row(reason, str(count))
    console.print(r)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    tiers = list(report["tier_mix"])
    a.bar(
        tiers,
        [report["tier_mix"][t]["count"] for t in tiers],
        color=["#2e7d32", "#1565c0", "#6a1b9a", "#c62828"][: len(tiers)],
    )
    a.set_title(f"Tier mix ({report['outcomes']} contacts)")
    a.set_ylabel("contacts")
    b.bar(
        ["tierline", "all-human"],
        [report["cost_usd_month"], report["all_human_baseline_usd_month"]],
        color=["#2e7d32", "#9e9e9e"],
    )
    b.set_title(f"Cost this month (saving {report['saving_vs_baseline'] * 100:.0f}%)")
    b.set_ylabel("USD")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def replay(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    from tierline.settings import InfraSettings
    from tierline_tools.scenarios.runner import ScenarioRunner
    from tierline_tools.stack import manager
    from tierline_tools.world import WorldSpec, build_world, world_event

    cfg = manager.default_config(Path(args.data_dir) if args.data_dir else InfraSettings().data_dir)
    settings = cfg.settings()
    rng = random.Random(args.seed)
    archetypes, triggers = plan_month(rng, args.customers, args.contacts)
    run_id = uuid.uuid4().hex[:6]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    async with ScenarioRunner(
        settings, ingress_url=f"http://127.0.0.1:{cfg.service_ports['tier0_prevent']}", timeout_s=args.timeout
    ) as runner:
        built: dict[int, Any] = {}
        needed = sorted(
            {t.customer_index for t in triggers} | set(range(min(args.customers, len(archetypes))))
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("building customers in Stripe", total=len(needed))
            sem = asyncio.Semaphore(args.concurrency)

            async def build(i: int) -> None:
                async with sem:
                    spec = WorldSpec.model_validate(world_for(archetypes[i], rng, i))
                    built[i] = await build_world(spec, runner.actions, label=f"demo{run_id}-{i}")
                    progress.advance(task)

            await asyncio.gather(*(build(i) for i in needed))
            usage_total = sum(len(b.usage_events) for b in built.values())
            task = progress.add_task("metering a month of usage", total=usage_total)
            for chunk_start in range(0, len(needed), 50):
                chunk = needed[chunk_start : chunk_start + 50]
                counts = await asyncio.gather(
                    *(runner.publish_usage(built[i].customer_id, built[i].usage_events) for i in chunk)
                )
                progress.advance(task, sum(counts))
            pending = [e for b in built.values() for e in b.pending_events]
            task = progress.add_task("disputes through the webhook ingress", total=len(pending))
            for event in pending:
                await runner.send_webhook(event)
                progress.advance(task)

            task = progress.add_task("replaying the month", total=len(triggers))
            t_start = time.monotonic()

            async def fire(t: Trigger) -> None:
                async with sem:
                    b = built[t.customer_index]
                    cid = b.customer_id
                    if t.kind == "contact":
                        t.contact_id = f"demo-c-{uuid.uuid4()}"
                        amount = b.spec.charges[0].amount_usd if b.spec.charges else None
                        text = contact_text(t.intent or "out_of_scope", rng, amount)
                        channel = Channel.EMAIL if rng.random() < 0.3 else Channel.CHAT
                        await publish(
                            runner.broker,
                            ContactReceivedV1.build(
                                ContactReceivedPayload(
                                    channel=channel,
                                    text=text,
                                    sender=Sender(kind="customer_session", subject=cid),
                                ),
                                contact_id=t.contact_id,
                                customer_id=cid,
                            ),
                        )
                    elif t.kind == "selfheal":
                        t.contact_id = f"demo-s-{uuid.uuid4()}"
                        params = (
                            {"billing_email": f"finance@customer{t.customer_index}.example"}
                            if t.action == "update_billing_details"
                            else {}
                        )
                        await publish(
                            runner.broker,
                            SelfhealRequestedV1.build(
                                SelfhealRequestedPayload(
                                    action=Action(t.action or "send_invoice"),
                                    params=params,
                                    source="dashboard",
                                    sender=Sender(kind="customer_session", subject=cid),
                                ),
                                contact_id=t.contact_id,
                                customer_id=cid,
                            ),
                        )
                    else:
                        event = await world_event({"type": t.event_type}, b)
                        t.contact_id = f"stripe:{event['id']}"
                        await runner.send_webhook(event)
                    progress.advance(task)

            await asyncio.gather(*(fire(t) for t in triggers))
            task = progress.add_task("waiting for every outcome", total=len(triggers))
            ids = [t.contact_id for t in triggers]
            deadline = time.monotonic() + args.timeout
            rows: list[Any] = []
            while time.monotonic() < deadline:
                rows = await runner.db.fetch(
                    "SELECT message FROM outcomes WHERE contact_id = ANY($1::text[])", ids
                )
                progress.update(task, completed=len(rows))
                if len(rows) >= len(ids):
                    break
                await asyncio.sleep(0.5)
            elapsed = time.monotonic() - t_start
            outcomes = [dict(r["message"]) for r in rows]
            clarify = await answer_questions(runner, triggers, outcomes, args.timeout)
            task = progress.add_task("customers react (follow-ups, ratings)", total=None)
            follow_ups = await converse(
                runner,
                settings,
                f"http://127.0.0.1:{cfg.service_ports['tier1_selfheal']}",
                triggers,
                outcomes,
                rng,
                args.timeout,
            )
            progress.update(task, total=1, completed=1)
            support = await conversation_metrics(runner.db, contact_ids=ids)
    report = month_report(outcomes, len(triggers), CostModel())
    report["clarifying_questions"] = clarify
    report["follow_ups_not_fixed"] = len(follow_ups)
    report["support"] = support
    report["customers"] = len(built)
    report["replay_seconds"] = round(elapsed, 1)
    report["triggers"] = {
        k: sum(t.kind == k for t in triggers) for k in ("contact", "selfheal", "stripe_event")
    }
    return report


def demo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tierline demo")
    parser.add_argument(
        "--customers",
        type=int,
        default=400,
        help="customers built in the Stripe emulator (1,000 with --contacts 600 takes about 5 minutes here)",
    )
    parser.add_argument("--contacts", type=int, default=300, help="chat and email contacts in the month")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--out-dir", type=Path, default=Path(".tierline/demo"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    console = Console()
    from tierline.settings import InfraSettings
    from tierline_tools.stack import manager

    t0 = time.monotonic()
    cfg = manager.default_config(Path(args.data_dir) if args.data_dir else InfraSettings().data_dir)
    if not all(h.ok for h in manager.status(cfg)):
        console.print("[bold]starting the embedded stack[/bold] (tierline up) ...")
        seconds = manager.up(cfg)
        console.print(f"stack ready in {seconds:.1f}s")
    report = asyncio.run(replay(args, console))
    report["total_seconds"] = round(time.monotonic() - t0, 1)
    print_report(console, report)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "month.json").write_text(json.dumps(report, indent=2))
    plot(report, args.out_dir / "month.png")
    console.print(
        f"wrote {args.out_dir / 'month.json'} and {args.out_dir / 'month.png'} "
        f"({report['total_seconds']:.0f}s in all)"
    )
    return 0
