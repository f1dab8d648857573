"""The loopback object store as a process, over real HTTP: S3's conditional writes hold under races
(what Tansu's compare-and-swap of watermarks and group state relies on), and objects outlive the
process (kill -9, then start again on the same directory).

It needs none of the session stack: it starts its own store on a free port.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET  # noqa: S405 - parses our own store's answers

import httpx
import pytest

from tierline_tools.stack.components import ObjectStoreS3
from tierline_tools.stack.objectstore import S3_NS
from tierline_tools.stack.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WRITERS = 8
INCREMENTS = 10


@pytest.fixture
def store() -> Iterator[ObjectStoreS3]:
    root = Path(tempfile.mkdtemp(prefix="tierline-test-objectstore-"))
    s3 = ObjectStoreS3(root / "run", root, free_port())
    try:
        s3.start()
        yield s3
    finally:
        s3.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _increment(endpoint: str, key: str, times: int) -> int:
    """One writer: read the counter, write it + 1 only if nobody wrote since (If-Match), else re-read."""
    conflicts = 0
    async with httpx.AsyncClient(base_url=endpoint, timeout=30) as client:
        done = 0
        while done < times:
            got = await client.get(key)
            assert got.status_code == 200, got.text
            value = int(got.content) + 1
            put = await client.put(
                key, content=str(value).encode(), headers={"If-Match": got.headers["ETag"]}
            )
            if put.status_code == 412:
                conflicts += 1
                continue
            assert put.status_code == 200, put.text
            done += 1
    return conflicts


async def test_given_writers_racing_with_if_match_when_each_increments_a_counter_then_no_update_is_lost(
    store: ObjectStoreS3,
) -> None:
    """Given one counter object, When 8 writers on their own connections each add 1 ten times with
    read + conditional write (retrying on 412), Then the counter is exactly 80."""
    base = f"{store.endpoint}/{store.bucket}/"
    async with httpx.AsyncClient(base_url=base) as client:
        created = await client.put("counter", content=b"0", headers={"If-None-Match": "*"})
        assert created.status_code == 200
    conflicts = await asyncio.gather(*(_increment(base, "counter", INCREMENTS) for _ in range(WRITERS)))
    async with httpx.AsyncClient(base_url=base) as client:
        final = await client.get("counter")
    assert int(final.content) == WRITERS * INCREMENTS
    assert sum(conflicts) > 0, "the writers never raced: the test did not exercise the condition"


async def test_given_racing_creators_with_if_none_match_when_they_put_one_key_then_exactly_one_succeeds(
    store: ObjectStoreS3,
) -> None:
    """Given 20 clients, When each creates the same key with If-None-Match: *, Then one gets 200, the
    other 19 get 412 PreconditionFailed, and the object holds the winner's bytes."""
    base = f"{store.endpoint}/{store.bucket}/"

    async def create(i: int) -> tuple[int, bytes]:
        async with httpx.AsyncClient(base_url=base) as client:
            resp = await client.put("meta.json", content=b"%d" % i, headers={"If-None-Match": "*"})
            return resp.status_code, resp.content

    answers = await asyncio.gather(*(create(i) for i in range(20)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [412] * 19
    assert all(b"<Code>PreconditionFailed</Code>" in body for status, body in answers if status == 412)
    winner = next(i for i, (status, _) in enumerate(answers) if status == 200)
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("meta.json")).content == b"%d" % winner


async def test_given_objects_when_the_store_is_killed_and_started_again_then_same_bytes_etags_and_listing(
    store: ObjectStoreS3,
) -> None:
    """Given 1,500 record batches and a watermark, When the store is killed with SIGKILL and started
    again on its directory, Then GET answers the same bytes and ETags, a conditional write on the old
    ETag still succeeds, and ListObjectsV2 pages through every key in order."""
    base = f"{store.endpoint}/{store.bucket}/"
    prefix = "clusters/c/topics/t/partitions/0000000000/records/"
    keys = [f"{prefix}{i:020d}.batch" for i in range(1500)]
    async with httpx.AsyncClient(base_url=base) as client:
        for key in keys:
            assert (await client.put(key, content=key.encode())).status_code == 200
        mark = await client.put("watermark.json", content=b'{"high":1500}', headers={"If-None-Match": "*"})
    etag = mark.headers["ETag"]

    assert store.proc.kill()
    assert not store.health().ok
    store.start()
    assert store.health().ok

    listed: list[str] = []
    async with httpx.AsyncClient(base_url=base) as client:
        got = await client.get("watermark.json")
        assert (got.status_code, got.headers["ETag"], got.content) == (200, etag, b'{"high":1500}')
        cached = await client.get("watermark.json", headers={"If-None-Match": etag})
        assert cached.status_code == 304
        swapped = await client.put("watermark.json", content=b'{"high":1501}', headers={"If-Match": etag})
        assert swapped.status_code == 200
        params = {"list-type": "2", "prefix": prefix}
        for _ in range(5):
            page = await client.get(f"{store.endpoint}/{store.bucket}", params=params)
            root = ET.fromstring(page.content)  # noqa: S314
            listed += [e.text or "" for e in root.iter(f"{{{S3_NS}}}Key")]
            token = root.findtext(f"{{{S3_NS}}}NextContinuationToken")
            if token is None:
                break
            params = {**params, "continuation-token": token}
    assert listed == keys
