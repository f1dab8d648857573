"""`tierline report [--start D --end D] [--json] [--plot FILE.png] [--url URL] [--clickhouse-dsn DSN]`.

Asks the running analytics service (which owns the analyst tables) over HTTP; when nothing answers there,
opens ClickHouse itself. Rich tables on a terminal, JSON with --json, a PNG of tier mix and resolution rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from services.analytics.store import DEFAULT_DATABASE
from tierline.service_auth import bearer_headers


def fetch_report(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    params = {k: v for k, v in {"start": args.start, "end": args.end}.items() if v}
    if not args.local:
        try:
            res = httpx.get(
                f"{args.url.rstrip('/')}/v1/analytics/report",
                params=params,
                headers=bearer_headers(args.service_token),
                timeout=30,
            )
            if res.status_code == 200:
                return res.json(), f"via {args.url}"
            raise SystemExit(f"report: {args.url} answered {res.status_code}: {res.text[:500]}")
        except httpx.ConnectError:
            pass  # nothing serves the analytics API: open ClickHouse here
    import clickhouse_connect

    from services.analytics.queries import build_report
    from services.analytics.routes import default_period
    from services.analytics.store import AnalyticsStore

    client = clickhouse_connect.get_client(dsn=args.clickhouse_dsn)
    start, end = default_period(args.start, args.end)
    return build_report(AnalyticsStore(client, args.database), start, end), f"from {args.clickhouse_dsn}"


def _tooling(module: str) -> Any:
    """Tables and plots come with the tooling extra; the production image has `--json` only."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SystemExit(
            f"{module.split('.')[0]} is not installed: tables and plots need "
            "`pip install 'tierline[tooling]'`; `tierline report --json` works without it"
        ) from exc


def render_tables(report: dict[str, Any], source: str) -> None:
    Console = _tooling("rich.console").Console  # noqa: N806 - a class
    Table = _tooling("rich.table").Table  # noqa: N806 - a class

    console = Console()
    t = report["totals"]
    console.print(
        f"[bold]tierline report[/] {report['period']['start']} → {report['period']['end']} ({source})"
    )
    summary = Table(title="Totals")
    for col in ("contacts", "automated rate", "cost", "cost / contact", "recovered", "repeat rate 7d"):
        summary.add_column(col, justify="right")
    summary.add_row(
        str(t["contacts"]),
        f"{t['automated_rate']:.1%}",
        f"${t['cost_usd']:,.2f}",
        f"${t['cost_per_contact_usd']:.2f}",
        f"${t['recovered_usd']:,.2f}",
        f"{t['repeat_contact_rate_7d']:.1%}",
    )
    console.print(summary)

    def table(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
        tab = Table(title=title)
        for c in cols:
            tab.add_column(
                c, justify="left" if c in {"tier", "intent", "reason", "month", "day"} else "right"
            )
        for r in rows:
            tab.add_row(*[f"{r[c]:.1%}" if c.endswith(("rate", "share")) else str(r[c]) for c in cols])
        console.print(tab)

    table("Resolution by tier", report["resolution_by_tier"], ["tier", "contacts", "share"])
    table(
        "Resolution by intent",
        report["resolution_by_intent"],
        ["intent", "contacts", "automated", "automated_rate"],
    )
    table(
        "Resolution by day",
        report["resolution_by_day"],
        ["day", "contacts", "tier0", "tier1", "tier2", "tier3", "automated_rate"],
    )
    table(
        "Cost per month", report["cost_by_month"], ["month", "contacts", "cost_usd", "cost_per_contact_usd"]
    )
    table(
        "Recovered revenue (tier 0/1 payment fixes)",
        report["recovered_revenue"],
        ["tier", "recoveries", "recovered_usd"],
    )
    table("Escalation reasons", report["escalation_reasons"], ["reason", "escalations", "share"])
    console.print(stopped_line(report))
    asked = (report.get("clarifying_questions") or {}).get("asked", 0)
    console.print(f"clarifying questions asked: {asked}")
    deflection = report.get("deflection_by_workflow") or []
    if deflection:
        table(
            "Deflection per workflow (done in the portal or by a fix vs reached a person)",
            [{**r, "change": "-" if r["change"] is None else f"{r['change']:+.1%}"} for r in deflection],
            ["workflow", "month", "contacts", "portal", "fixed", "person", "deflection_rate", "change"],
        )
    for line in support_lines(report):
        console.print(line)
    gaps = report.get("knowledge_gaps") or []
    if gaps:
        table(
            "Knowledge gaps (reached a person unplanned, or rated low): articles to write",
            gaps,
            ["intent", "contacts", "gaps", "gap_rate", "suggested_article"],
        )
        for gap in gaps[:5]:
            for example in gap["examples"]:
                console.print(f"  {gap['intent']}: “{example}”")
    experiments = report.get("experiments") or []
    if experiments:
        table(
            "Answer template experiments",
            [{**r, "csat_mean": "-" if r["csat_mean"] is None else r["csat_mean"]} for r in experiments],
            ["experiment", "variant", "answers", "ratings", "csat_mean", "resolution_rate"],
        )


def support_lines(report: dict[str, Any]) -> list[str]:
    """What a support team is judged by, in a few lines (also printed by the demo)."""
    support = report.get("support")
    if not support:
        return []
    fr = support["first_response_ms"]
    csat = support["csat"]
    fcr = support["first_contact_resolution"]
    ttr = support["time_to_resolution"]
    effort = support["effort"]["customer_messages_per_conversation"]
    return [
        f"first response: p50 {fr['p50'] / 1000:.1f} s, p99 {fr['p99'] / 1000:.1f} s over {fr['count']} "
        f"contacts; automated p50 {fr['automated_p50'] / 1000:.1f} s, "
        f"p99 {fr['automated_p99'] / 1000:.1f} s, {fr['automated_within_target']:.0%} within "
        f"{fr['target_ms'] / 1000:.0f} s; unanswered {fr['unanswered']}",
        "time to resolution: "
        + ", ".join(
            f"{tier} p50 {v['p50_ms'] / 1000:.1f} s ({v['resolved']})"
            + (f", {v['open']} open" if "open" in v else "")
            for tier, v in ttr.items()
        ),
        f"CSAT: {csat['mean'] if csat['mean'] is not None else '-'} from {csat['ratings']} ratings"
        + (f" ({csat['satisfied_share']:.0%} 4-5)" if csat["satisfied_share"] is not None else "")
        + (
            f"; solved {csat['solved_share']:.0%} of {csat['solved_answers']}"
            if csat["solved_share"] is not None
            else ""
        )
        + f"; first-contact resolution {'-' if fcr is None else f'{fcr:.0%}'} of {support['conversations']} "
        f"conversations; effort {'-' if effort is None else effort} customer messages per conversation",
    ]


def stopped_line(report: dict[str, Any]) -> str:
    """``answers stopped by the quality check: N (amount 2, id 1)`` — with the LLM on, its hallucinations."""
    stopped = report.get("answers_stopped") or {"total": 0, "by_cause": {}}
    causes = ", ".join(f"{cause} {n}" for cause, n in stopped["by_cause"].items())
    return f"answers stopped by the quality check: {stopped['total']}" + (f" ({causes})" if causes else "")


def plot(report: dict[str, Any], out: Path) -> None:
    _tooling("matplotlib").use("Agg")
    plt = _tooling("matplotlib.pyplot")

    days = report["resolution_by_day"]
    x = [d["day"] for d in days]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    bottom = [0] * len(days)
    for tier in ("tier0", "tier1", "tier2", "tier3"):
        values = [d[tier] for d in days]
        ax1.bar(x, values, bottom=bottom, label=tier)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax1.set_ylabel("contacts")
    ax1.set_title("Tier mix per day")
    ax1.legend()
    ax2.plot(x, [d["automated_rate"] * 100 for d in days], marker="o")
    ax2.set_ylabel("automated resolution %")
    ax2.set_ylim(0, 100)
    ax2.set_title("Automated resolution rate")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    from tierline.settings import InfraSettings

    infra = InfraSettings()
    p = argparse.ArgumentParser(prog="tierline report", description=__doc__)
    p.add_argument("--start", help="first day (YYYY-MM-DD), default 30 days before --end")
    p.add_argument("--end", help="last day (YYYY-MM-DD), default today (UTC)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", type=Path, help="write tier mix and resolution rate over time to a PNG")
    p.add_argument("--url", default=infra.analytics_url, help="the process serving /v1/analytics")
    p.add_argument("--clickhouse-dsn", default=infra.resolved_analytics_clickhouse_dsn())
    p.add_argument("--database", default=DEFAULT_DATABASE)
    p.add_argument("--local", action="store_true", help="skip HTTP, open ClickHouse directly")
    # the analytics API's credential comes from TIERLINE_SERVICE_TOKEN, never from argv (ps shows argv)
    p.set_defaults(service_token=infra.service_token.get_secret_value())
    return p


def report_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report, source = fetch_report(args)
    if args.plot:
        plot(report, args.plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render_tables(report, source)
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(report_main())
