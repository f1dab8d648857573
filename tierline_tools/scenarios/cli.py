"""`tierline eval FILE --out RESULTS.jsonl`: scenarios through the real doors of the embedded stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tierline_tools.scenarios.model import Scenario, ScenarioResult, check, summarize


def load_scenarios(path: Path) -> list[Scenario]:
    scenarios = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            scenarios.append(Scenario.model_validate_json(line))
        except ValueError as exc:
            raise SystemExit(f"{path}:{n}: not a valid scenario: {exc}") from exc
    return scenarios


def eval_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tierline eval")
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, default=Path("eval-results.jsonl"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a contact counts as a dead end"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--summary-out", type=Path, default=None)
    args = parser.parse_args(argv)
    scenarios = load_scenarios(args.file)

    from tierline.settings import InfraSettings
    from tierline_tools.stack import manager

    data_dir = args.data_dir or InfraSettings().data_dir
    cfg = manager.default_config(data_dir)
    if not all(h.ok for h in manager.status(cfg)):
        print("starting the embedded stack ...", file=sys.stderr)
        manager.up(cfg)
    settings = cfg.settings(data_dir=data_dir)
    ingress = f"http://127.0.0.1:{cfg.service_ports['tier0_prevent']}"
    results = asyncio.run(_run(settings, ingress, scenarios, args.timeout, args.concurrency))
    args.out.write_text("".join(r.model_dump_json() + "\n" for r in results))
    summary = summarize(scenarios, results)
    if args.summary_out:
        args.summary_out.write_text(json.dumps(summary, indent=2))
    _print(scenarios, results, summary)
    return 0


async def _run(
    settings: object,
    ingress: str,
    scenarios: list[Scenario],
    timeout: float,  # noqa: ASYNC109 - the per-scenario wait, handed to the runner (not this call's)
    concurrency: int,
) -> list[ScenarioResult]:
    from tierline_tools.scenarios.runner import ScenarioRunner, run_all

    async with ScenarioRunner(settings, ingress_url=ingress, timeout_s=timeout) as runner:  # type: ignore[arg-type]
        return await run_all(runner, scenarios, concurrency=concurrency)


def _print(scenarios: list[Scenario], results: list[ScenarioResult], summary: dict[str, Any]) -> None:
    by_id = {s.id: s for s in scenarios}
    for r in results:
        failures = check(by_id[r.id], r)
        mark = "PASS" if not failures else "FAIL"
        tier = r.resolved_by.value if r.resolved_by else "-"
        extra = f"  [{'; '.join(failures)}]" if failures else ""
        err = f"  error={r.error}" if r.error else ""
        print(
            f"{mark} {r.id:<28} {tier:<6} actions={','.join(r.actions) or '-'} refund=${r.refund_usd:.2f} "
            f"reason={r.escalation_reason or '-'} {r.latency_ms}ms{extra}{err}"
        )
    print(
        f"\npass rate {summary['passed']}/{summary['scenarios']} ({float(summary['pass_rate']) * 100:.0f}%), "
        f"tier mix {summary['tier_mix']}, policy violations {len(summary['policy_violations'])}, "
        f"dead ends {len(summary['dead_ends'])}"
    )
