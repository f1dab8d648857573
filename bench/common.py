"""Shared helpers for benchmarks: one JSON line per figure, and a stack of their own."""

from __future__ import annotations

import json
import sys
from typing import Any


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    *,
    higher_is_better: bool = True,
    target: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Print one figure. ``ratio`` is value/baseline (or baseline/value when lower is better)."""
    ratio = None
    if baseline:
        ratio = round(value / baseline if higher_is_better else baseline / value if value else 0.0, 4)
    row: dict[str, Any] = {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
    }
    if target is not None:
        row["target"] = target
        row["meets_target"] = value >= target if higher_is_better else value <= target
    row.update(extra)
    print(json.dumps(row), flush=True)
    sys.stdout.flush()
    return row


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1)))))
    return float(ordered[k])
