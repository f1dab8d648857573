"""The loopback object store's pure parts: key names, S3 conditions, ranges, listing and its XML,
and the on-disk store (atomic conditional writes, the index rebuilt from disk)."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET  # noqa: S405 - parses our own output

import pytest

from tierline_tools.stack.objectstore import (
    S3_NS,
    ObjectMeta,
    ObjectStore,
    Request,
    S3App,
    S3Error,
    check_read,
    check_write,
    decode_aws_chunked,
    decode_key,
    decode_token,
    encode_key,
    list_page,
    list_xml,
    parse_range,
)

NS = {"s3": S3_NS}


def _meta(keys: list[str]) -> dict[str, ObjectMeta]:
    return {k: ObjectMeta(len(k), 1_796_298_123.5, f'"{i:032x}"') for i, k in enumerate(keys)}


@pytest.mark.parametrize(
    "key",
    [
        "clusters/tansu_cluster/topics/t/partitions/0000000001/records/00000000000000000007.batch",
        "a b/ü/%2F/..",
        ".",
        "..",
        "",
        "%E",
    ],
)
def test_given_any_key_when_encoded_then_it_is_one_flat_file_name_that_decodes_back(key: str) -> None:
    name = encode_key(key)
    assert "/" not in name
    assert name not in ("", ".", "..")
    assert decode_key(name) == key


def test_given_a_key_longer_than_a_file_name_when_encoded_then_s3_key_too_long() -> None:
    with pytest.raises(S3Error) as err:
        encode_key("k" * 300)
    assert (err.value.status, err.value.code) == (400, "KeyTooLongError")


def test_given_no_object_when_put_if_none_match_star_then_allowed_and_when_one_exists_then_412() -> None:
    check_write(None, None, "*")
    with pytest.raises(S3Error) as err:
        check_write('"abc"', None, "*")
    assert err.value.status == 412


def test_given_an_object_when_put_if_match_its_etag_then_allowed_and_any_other_etag_then_412() -> None:
    check_write('"abc"', '"abc"', None)
    check_write('"abc"', "abc", None)  # unquoted, as some clients send it
    check_write('"abc"', '"x", "abc"', None)
    with pytest.raises(S3Error) as err:
        check_write('"abc"', '"abd"', None)
    assert (err.value.status, err.value.code) == (412, "PreconditionFailed")


def test_given_no_object_when_put_if_match_then_412_as_real_s3() -> None:
    for header in ('"abc"', "*"):
        with pytest.raises(S3Error) as err:
            check_write(None, header, None)
        assert err.value.status == 412


def test_given_an_object_when_read_with_conditions_then_304_on_if_none_match_and_412_on_if_match() -> None:
    assert check_read('"abc"', None, '"abc"') is True
    assert check_read('"abc"', None, '"old"') is False
    assert check_read('"abc"', '"abc"', None) is False
    with pytest.raises(S3Error) as err:
        check_read('"abc"', '"old"', None)
    assert err.value.status == 412


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-3", (0, 3)),
        ("bytes=5-", (5, 9)),
        ("bytes=-4", (6, 9)),
        ("bytes=8-100", (8, 9)),
    ],
)
def test_given_a_range_header_when_parsed_then_inclusive_bounds(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert parse_range(header, 10) == expected


def test_given_a_range_past_the_end_when_parsed_then_416() -> None:
    with pytest.raises(S3Error) as err:
        parse_range("bytes=10-", 10)
    assert err.value.status == 416


def test_given_sorted_keys_when_listed_by_prefix_then_only_those_keys_in_order() -> None:
    keys = sorted(["p/0/records/01", "p/0/records/00", "p/0/watermark.json", "p/1/records/00", "q"])
    page = list_page(keys, _meta(keys), prefix="p/0/records/")
    assert [k for k, _ in page.keys] == ["p/0/records/00", "p/0/records/01"]
    assert not page.truncated
    assert page.next_token is None


def test_given_more_keys_than_max_when_listed_page_by_page_then_every_key_once() -> None:
    keys = sorted(f"r/{i:05d}" for i in range(25))
    meta = _meta(keys)
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = list_page(keys, meta, prefix="r/", start_after=token, max_keys=10)
        seen += [k for k, _ in page.keys]
        if not page.truncated:
            break
        assert page.next_token is not None
        token = page.next_token
    assert seen == keys


def test_given_a_delimiter_when_listed_then_common_prefixes_roll_up_and_pages_resume_after_them() -> None:
    keys = sorted(["a/1", "a/2", "b/1", "c", "d/1", "d/2"])
    meta = _meta(keys)
    first = list_page(keys, meta, delimiter="/", max_keys=2)
    assert (first.prefixes, [k for k, _ in first.keys], first.truncated) == (["a/", "b/"], [], True)
    assert first.next_token is not None
    second = list_page(keys, meta, delimiter="/", start_after=first.next_token, max_keys=2)
    assert (second.prefixes, [k for k, _ in second.keys], second.truncated) == (["d/"], ["c"], False)


def test_given_a_page_when_rendered_then_list_objects_v2_xml_that_s3_clients_parse() -> None:
    keys = ["k/<1>&", "k/2", "k/3"]
    page = list_page(keys, _meta(keys), prefix="k/", max_keys=2)
    root = ET.fromstring(list_xml("tansu", page, prefix="k/", delimiter="", max_keys=2))  # noqa: S314
    assert root.tag == f"{{{S3_NS}}}ListBucketResult"
    assert [e.text for e in root.findall("s3:Contents/s3:Key", NS)] == ["k/<1>&", "k/2"]
    assert root.findtext("s3:IsTruncated", namespaces=NS) == "true"
    assert root.findtext("s3:KeyCount", namespaces=NS) == "2"
    assert decode_token(root.findtext("s3:NextContinuationToken", namespaces=NS) or "") == "k/2"
    first = root.find("s3:Contents", NS)
    assert first is not None
    assert first.findtext("s3:LastModified", namespaces=NS) == "2026-12-03T11:42:03.500Z"
    assert first.findtext("s3:Size", namespaces=NS) == str(len("k/<1>&"))
    assert (first.findtext("s3:ETag", namespaces=NS) or "").startswith('"')


def test_given_an_aws_chunked_body_when_decoded_then_the_payload() -> None:
    body = (
        b"5;chunk-signature=ab\r\nhello\r\n3;chunk-signature=cd\r\n!!!\r\n"
        b"0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
    )
    assert decode_aws_chunked(body) == b"hello!!!"


def test_given_a_store_when_puts_carry_the_same_etag_then_only_the_first_wins(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    store.create_bucket("tansu")
    base = store.put("tansu", "watermark.json", b"0", if_none_match="*")
    store.put("tansu", "watermark.json", b"1", if_match=base.etag)
    for value in (b"2", b"3"):
        with pytest.raises(S3Error) as err:
            store.put("tansu", "watermark.json", value, if_match=base.etag)
        assert err.value.status == 412
    assert store.read("tansu", "watermark.json") == b"1"


def test_given_objects_written_when_the_store_is_opened_again_then_the_same_keys_etags_and_bytes(
    tmp_path: Path,
) -> None:
    store = ObjectStore(tmp_path)
    store.create_bucket("tansu")
    written = {key: store.put("tansu", key, key.encode() * 3) for key in ("b/1", "a/2", "a/1", "..")}
    store.delete("tansu", "b/1")
    (tmp_path / "tmp" / "half-written").write_bytes(b"torn")  # a crash between write and rename

    again = ObjectStore(tmp_path)
    bucket = again.bucket("tansu")
    assert bucket.keys == ["..", "a/1", "a/2"]
    for key in bucket.keys:
        assert again.head("tansu", key).etag == written[key].etag
        assert again.read("tansu", key) == key.encode() * 3
    assert not list((tmp_path / "tmp").iterdir())


def test_given_the_app_when_get_with_matching_if_none_match_then_304_with_etag(tmp_path: Path) -> None:
    app = S3App(ObjectStore(tmp_path))
    app.handle(Request("PUT", "/tansu", {}, {}, b""))
    put = app.handle(Request("PUT", "/tansu/meta.json", {}, {"if-none-match": "*"}, b"{}"))
    etag = dict(put.headers)["ETag"]
    again = app.handle(Request("PUT", "/tansu/meta.json", {}, {"if-none-match": "*"}, b"{}"))
    assert (put.status, again.status) == (200, 412)
    assert b"<Code>PreconditionFailed</Code>" in again.body
    cached = app.handle(Request("GET", "/tansu/meta.json", {}, {"if-none-match": etag}, b""))
    assert (cached.status, dict(cached.headers)["ETag"], cached.body) == (304, etag, b"")
    got = app.handle(Request("GET", "/tansu/meta.json", {}, {}, b""))
    assert (got.status, got.body) == (200, b"{}")
    assert {"ETag", "Last-Modified"} <= set(dict(got.headers))
    missing = app.handle(Request("GET", "/tansu/nope.json", {}, {}, b""))
    assert (missing.status, b"<Code>NoSuchKey</Code>" in missing.body) == (404, True)
    no_bucket = app.handle(Request("GET", "/other/x", {}, {}, b""))
    assert no_bucket.status == 404


def test_given_a_listed_object_when_it_is_overwritten_or_deleted_then_the_next_listing_shows_it(
    tmp_path: Path,
) -> None:
    app = S3App(ObjectStore(tmp_path))
    app.handle(Request("PUT", "/tansu", {}, {}, b""))
    app.handle(Request("PUT", "/tansu/r/1", {}, {}, b"one"))
    app.handle(Request("PUT", "/tansu/r/2", {}, {}, b"two"))
    listing = {"list-type": "2", "prefix": "r/"}

    def etags() -> dict[str, str]:
        root = ET.fromstring(app.handle(Request("GET", "/tansu", listing, {}, b"")).body)  # noqa: S314
        return {
            c.findtext("s3:Key", namespaces=NS) or "": c.findtext("s3:ETag", namespaces=NS) or ""
            for c in root.findall("s3:Contents", NS)
        }

    before = etags()
    new = dict(app.handle(Request("PUT", "/tansu/r/1", {}, {}, b"uno")).headers)["ETag"]
    app.handle(Request("DELETE", "/tansu/r/2", {}, {}, b""))
    assert before["r/1"] != new
    assert etags() == {"r/1": new}
