"""`make bench`: every benchmark of the project, one JSON line per figure, then a table."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCHES = [
    "bench.bench_classifier",
    "bench.bench_intent_heldout",
    "bench.bench_diagnostics",
    "bench.bench_ingress",
    "bench.bench_tier0_burst",
    "bench.bench_pipeline",
]


def bench_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tierline bench")
    parser.add_argument("--only", nargs="*", default=None, help="module names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench-results.jsonl"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes (development)")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    rows: list[dict[str, object]] = []
    env = {**os.environ, "PYTHONPATH": str(root)}
    if args.quick:
        env["TIERLINE_BENCH_QUICK"] = "1"
    for module in BENCHES:
        if args.only and not any(module.endswith(o) for o in args.only):
            continue
        if not (root / (module.replace(".", "/") + ".py")).exists():
            print(json.dumps({"name": module, "error": "benchmark module missing"}), flush=True)
            continue
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=root, env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            print(line, flush=True)
            try:
                rows.append({"bench": module.split(".")[-1], **json.loads(line)})
            except json.JSONDecodeError:
                pass
        code = proc.wait()
        if code != 0:
            rows.append({"bench": module, "name": f"{module} exit code", "value": code, "unit": "error"})
        print(f"# {module} finished in {time.monotonic() - t0:.0f}s (exit {code})", file=sys.stderr)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = Table(title="tierline benchmarks (this machine)")
    for col in ("bench", "figure", "value", "unit", "baseline", "ratio", "target"):
        table.add_column(col)
    for r in rows:
        target = r.get("target")
        meets = r.get("meets_target")
        mark = "" if meets is None else (" ✓" if meets else " ✗")
        table.add_row(
            str(r.get("bench", "")),
            str(r.get("name", "")),
            str(r.get("value", "")),
            str(r.get("unit", "")),
            str(r.get("baseline", "") or ""),
            str(r.get("ratio", "") or ""),
            f"{target}{mark}" if target is not None else "",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
