"""Pure analytics decisions: the audit hash chain and drift detection (no ClickHouse, no broker)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = ""


def canonical_json(record: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace: the same record always hashes the same."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def audit_record(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The audit record that is hashed: the envelope without the chain fields (the sink fills those)."""
    payload = {k: v for k, v in dict(envelope.get("payload") or {}).items() if k not in {"prev_hash", "hash"}}
    return {**{k: v for k, v in envelope.items() if k != "payload"}, "payload": payload}


def chain_hash(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256((prev_hash + record_json).encode()).hexdigest()


@dataclass(frozen=True)
class ChainRow:
    partition: int
    offset: int
    message_id: str
    record: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class BrokenLink:
    partition: int
    offset: int
    message_id: str
    problem: str


def verify_chain(rows: Iterable[ChainRow]) -> tuple[int, BrokenLink | None]:
    """Walk rows (ordered by partition, offset); return (rows checked, first broken link or None)."""
    checked = 0
    last: dict[int, str] = {}
    for row in rows:
        if row.prev_hash != last.get(row.partition, GENESIS):
            return checked, BrokenLink(
                row.partition,
                row.offset,
                row.message_id,
                "prev_hash does not match the previous record's hash",
            )
        if chain_hash(row.prev_hash, row.record) != row.hash:
            return checked, BrokenLink(
                row.partition, row.offset, row.message_id, "record does not match its hash (altered)"
            )
        last[row.partition] = row.hash
        checked += 1
    return checked, None


# --------------------------------------------------------------------------- drift
@dataclass(frozen=True)
class DriftFinding:
    dimension: str  # intent | root_cause
    key: str
    observed_share: float
    expected_share: float
    delta: float
    day_count: int
    day_total: int


@dataclass(frozen=True)
class DriftThresholds:
    min_share_delta: float = 0.15  # absolute change of share (0.15 = 15 points)
    min_day_total: int = 10  # ignore days with too few contacts
    min_baseline_total: int = 20  # need a trailing window to compare against


def detect_drift(
    dimension: str,
    day: Mapping[str, int],
    trailing: Mapping[str, int],
    thresholds: DriftThresholds | None = None,
) -> list[DriftFinding]:
    """Keys whose share of the day moved beyond the threshold against the trailing window's share."""
    th = thresholds or DriftThresholds()
    day_total, base_total = sum(day.values()), sum(trailing.values())
    if day_total < th.min_day_total or base_total < th.min_baseline_total:
        return []
    findings = []
    for key in sorted(set(day) | set(trailing)):
        observed = day.get(key, 0) / day_total
        expected = trailing.get(key, 0) / base_total
        if abs(observed - expected) >= th.min_share_delta:
            findings.append(
                DriftFinding(
                    dimension,
                    key,
                    round(observed, 4),
                    round(expected, 4),
                    round(observed - expected, 4),
                    day.get(key, 0),
                    day_total,
                )
            )
    return sorted(findings, key=lambda f: -abs(f.delta))
