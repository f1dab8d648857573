"""Pure analytics decisions: the audit hash chain and drift detection (no ClickHouse, no broker)."""

from __future__ import annotations

import hashlib
import hmac
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


@dataclass(frozen=True)
class ChainKeys:
    """The keys of the audit chain (``TIERLINE_AUDIT_CHAIN_KEYS`` = ``kid:secret[,kid:secret…]``): the first
    signs new links, every one verifies (rotation: put the new key first, keep the old until its records
    are no longer verified). Someone who can write to ClickHouse but does not hold a key cannot rebuild a
    keyed chain after altering a record."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> ChainKeys:
        keys = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            kid, sep, secret = part.partition(":")
            if not sep or not kid or not secret or not kid.isalnum():
                raise ValueError("TIERLINE_AUDIT_CHAIN_KEYS: each key is kid:secret (kid letters and digits)")
            keys.append((kid, secret.encode()))
        return cls(tuple(keys))

    @property
    def signer(self) -> tuple[str, bytes] | None:
        return self.keys[0] if self.keys else None

    def get(self, kid: str) -> bytes | None:
        return next((key for k, key in self.keys if k == kid), None)


NO_KEYS = ChainKeys()


def chain_hash(prev_hash: str, record_json: str, keys: ChainKeys = NO_KEYS) -> str:
    """The link of a record: ``kid:HMAC-SHA256(key, prev + record)`` with the signing key, or a plain
    SHA-256 when the chain has no key (the embedded stack's chains are keyed: `tierline up` generates one)."""
    signer = keys.signer
    if signer is None:
        return hashlib.sha256((prev_hash + record_json).encode()).hexdigest()
    kid, key = signer
    return f"{kid}:{_mac(key, prev_hash, record_json)}"


def _mac(key: bytes, prev_hash: str, record_json: str) -> str:
    return hmac.new(key, (prev_hash + record_json).encode(), hashlib.sha256).hexdigest()


def link_problem(prev_hash: str, record_json: str, stored: str, keys: ChainKeys = NO_KEYS) -> str | None:
    """Why a stored link does not prove its record, or ``None`` when it does."""
    kid, sep, digest = stored.partition(":")
    if not sep:  # an unkeyed link
        if keys.signer is not None:
            return "unkeyed record in a keyed chain (rebuilt without the key?)"
        expected = hashlib.sha256((prev_hash + record_json).encode()).hexdigest()
        return None if hmac.compare_digest(expected, stored) else "record does not match its hash (altered)"
    key = keys.get(kid)
    if key is None:
        return f"record signed with key {kid!r}, which this verifier does not hold"
    if not hmac.compare_digest(_mac(key, prev_hash, record_json), digest):
        return "record does not match its hash (altered)"
    return None


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


def verify_chain(rows: Iterable[ChainRow], keys: ChainKeys = NO_KEYS) -> tuple[int, BrokenLink | None]:
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
        problem = link_problem(row.prev_hash, row.record, row.hash, keys)
        if problem is not None:
            return checked, BrokenLink(row.partition, row.offset, row.message_id, problem)
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
