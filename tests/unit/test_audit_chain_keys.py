"""The keyed audit chain (issue 24, tamper evidence against insiders): links are HMACs under a key only the
sink holds, so someone who can write to ClickHouse cannot rebuild the chain after altering a record;
keys rotate (the first signs, all verify)."""

from __future__ import annotations

import pytest

from services.analytics.domain import (
    GENESIS,
    NO_KEYS,
    ChainKeys,
    ChainRow,
    audit_record,
    canonical_json,
    chain_hash,
    verify_chain,
)

pytestmark = pytest.mark.unit

K1 = ChainKeys.parse("k1:first-secret")
K2_THEN_K1 = ChainKeys.parse("k2:second-secret, k1:first-secret")


def chain(n: int, keys: ChainKeys, *, start: int = 0, prev: str = GENESIS) -> list[ChainRow]:
    rows = []
    for i in range(start, start + n):
        record = canonical_json(
            audit_record({"message_id": f"m{i}", "payload": {"action": "refund", "n": i}})
        )
        link = chain_hash(prev, record, keys)
        rows.append(ChainRow(0, i, f"m{i}", record, prev, link))
        prev = link
    return rows


def rebuilt(rows: list[ChainRow], keys: ChainKeys, index: int, record: str) -> list[ChainRow]:
    """An insider alters record ``index`` and recomputes every link from there with ``keys``."""
    out = rows[:index]
    prev = rows[index - 1].hash if index else GENESIS
    for row in rows[index:]:
        text = record if row.offset == rows[index].offset else row.record
        link = chain_hash(prev, text, keys)
        out.append(ChainRow(row.partition, row.offset, row.message_id, text, prev, link))
        prev = link
    return out


def test_given_a_keyed_chain_when_verified_with_its_key_then_ok_and_links_name_the_key() -> None:
    rows = chain(4, K1)

    assert verify_chain(rows, K1) == (4, None)
    assert all(r.hash.startswith("k1:") for r in rows)


@pytest.mark.parametrize(
    ("insider_keys", "problem"),
    [
        (NO_KEYS, "unkeyed record in a keyed chain"),
        (ChainKeys.parse("k1:a-guess"), "does not match its hash"),
        (ChainKeys.parse("k9:own-key"), "key 'k9'"),
    ],
)
def test_given_a_keyed_chain_when_an_insider_rebuilds_it_without_the_key_then_the_altered_link_is_found(
    insider_keys: ChainKeys, problem: str
) -> None:
    rows = chain(5, K1)
    altered = rows[2].record.replace('"n":2', '"n":9')

    checked, broken = verify_chain(rebuilt(rows, insider_keys, 2, altered), K1)

    assert checked == 2
    assert broken is not None
    assert broken.offset == 2
    assert problem in broken.problem


def test_given_an_unkeyed_chain_rebuilt_after_an_edit_when_verified_unkeyed_then_it_passes() -> None:
    # why the key matters: without one, a rebuilt chain is indistinguishable from an honest one
    rows = chain(5, NO_KEYS)
    forged = rebuilt(rows, NO_KEYS, 2, rows[2].record.replace('"n":2', '"n":9'))

    assert verify_chain(forged, NO_KEYS) == (5, None)


def test_given_a_rotation_when_the_new_key_signs_then_both_verify_until_the_old_is_dropped() -> None:
    old = chain(3, K1)
    new = chain(2, K2_THEN_K1, start=3, prev=old[-1].hash)

    assert new[0].hash.startswith("k2:")
    assert verify_chain(old + new, K2_THEN_K1) == (5, None)
    checked, broken = verify_chain(old + new, ChainKeys.parse("k2:second-secret"))
    assert checked == 0
    assert broken is not None
    assert "key 'k1'" in broken.problem


@pytest.mark.parametrize("spec", ["nokid", ":secret", "k1:", "k 1:secret"])
def test_given_a_malformed_key_spec_when_parsed_then_a_clear_error(spec: str) -> None:
    with pytest.raises(ValueError, match="kid:secret"):
        ChainKeys.parse(spec)


def test_given_no_key_spec_when_parsed_then_an_unkeyed_chain() -> None:
    assert ChainKeys.parse("").signer is None
    assert ChainKeys.parse(" , ").signer is None
