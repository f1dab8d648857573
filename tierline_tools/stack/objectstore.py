"""A small loopback S3-compatible object server: the durable store under Tansu's log.

Tansu keeps its log on S3 through the `object_store` crate. What it calls, observed against moto
(2026-12-03, Tansu 0.6.0, object_store 0.13.2), path-style on one bucket:

- ``PUT /{bucket}/{key}`` with ``If-None-Match: *`` (create), ``If-Match: "<etag>"`` (compare-and-swap
  of watermarks, group state and cluster metadata), or unconditional (record batches, offsets);
  the answer must carry the new ``ETag``; a failed condition is ``412 Precondition Failed``.
- ``GET /{bucket}/{key}``, often with ``If-None-Match: "<etag>"`` (cache revalidation: ``304``);
  the answer must carry ``ETag``, ``Last-Modified`` and ``Content-Length``; a missing key is ``404``.
- ``GET /{bucket}?list-type=2&prefix=…/records/`` (ListObjectsV2, no delimiter, no start-after) on
  every fetch that has data to read.
- No multipart upload, no Range, no copy.

This server implements that, correctly for any S3 client, plus what is cheap around it (HEAD,
DELETE and DeleteObjects, Range, delimiter/continuation/start-after listing, bucket create/list).
Signatures (SigV4) are not checked: it binds loopback only. Objects are files on disk (one file per
object, its name the percent-encoded key), written to a temporary file and renamed into place, so a
reader sees the old or the new object, never a torn one, and the log survives the server, the
broker and a whole ``tierline down``/``up``. The index (key → size, mtime, ETag) is kept in memory:
this process is the only writer of its directory, and every request is served on one event loop with
no await between a condition's check and its write, so conditional writes are atomic.

Run: ``python -m tierline_tools.stack.objectstore --root DIR --port N [--bucket NAME] [--fsync]``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import email.utils
import hashlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from xml.etree import ElementTree as ET  # noqa: S405 - parses only DeleteObjects bodies from loopback
from xml.sax.saxutils import escape

import structlog

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
MAX_NAME = 255
MAX_BODY = 512 * 1024 * 1024
MAX_HEADER = 64 * 1024


class S3Error(Exception):
    """An S3 error answer: HTTP status, S3 error code, message."""

    def __init__(self, status: int, code: str, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.resource = resource

    def xml(self) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>"
            f"<Resource>{escape(self.resource)}</Resource><RequestId>tierline</RequestId></Error>"
        ).encode()


def precondition_failed(resource: str) -> S3Error:
    return S3Error(
        412, "PreconditionFailed", "At least one of the preconditions you specified did not hold", resource
    )


# pure parts ---------------------------------------------------------------------------------------


def encode_key(key: str) -> str:
    """The file name of an object: its key percent-encoded (``/`` too), so one flat directory holds any
    key without collisions or escapes from the directory."""
    name = quote(key, safe="")
    if name in ("", ".", ".."):
        name = "%E" + name  # never produced by quote(): '%' is always followed by two hex digits there
    if len(name.encode()) > MAX_NAME:
        raise S3Error(400, "KeyTooLongError", "Your key is too long", key)
    return name


def decode_key(name: str) -> str:
    if name in ("%E", "%E.", "%E.."):
        return name[2:]
    return unquote(name)


def _etags(header: str) -> list[str]:
    return [part.strip().removeprefix("W/") for part in header.split(",") if part.strip()]


def etag_matches(header: str, etag: str | None) -> bool:
    """RFC 9110 If-Match/If-None-Match list against the current ETag (None: no object)."""
    if etag is None:
        return False
    tags = _etags(header)
    return "*" in tags or etag in tags or etag.strip('"') in (t.strip('"') for t in tags)


def check_write(current_etag: str | None, if_match: str | None, if_none_match: str | None) -> None:
    """S3's conditional write: raise 412 when the condition does not hold on the current object.

    ``If-None-Match: *`` creates only if there is no object; ``If-Match: "<etag>"`` replaces only the
    object with that ETag (a missing object fails too); ``If-Match: *`` needs an object to exist.
    """
    if if_match is not None and not etag_matches(if_match, current_etag):
        raise precondition_failed("")
    if if_none_match is not None and etag_matches(if_none_match, current_etag):
        raise precondition_failed("")


def check_read(current_etag: str, if_match: str | None, if_none_match: str | None) -> bool:
    """S3's conditional read: 412 when If-Match fails; returns True for 304 Not Modified."""
    if if_match is not None and not etag_matches(if_match, current_etag):
        raise precondition_failed("")
    return if_none_match is not None and etag_matches(if_none_match, current_etag)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range → (first, last) inclusive; None for the whole object; 416 when unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # S3 ignores a range it does not support and answers the whole object
    first_s, _, last_s = header[len("bytes=") :].strip().partition("-")
    try:
        if first_s == "":
            suffix = int(last_s)
            if suffix == 0:
                raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
            return max(0, size - suffix), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
    return first, min(last, size - 1)


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def iso_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class ObjectMeta:
    size: int
    mtime: float
    etag: str  # quoted, as S3 sends it


@dataclass
class ListPage:
    keys: list[tuple[str, ObjectMeta]]
    prefixes: list[str]
    truncated: bool
    next_token: str | None


def list_page(
    keys: list[str],
    meta: dict[str, ObjectMeta],
    *,
    prefix: str = "",
    delimiter: str = "",
    start_after: str = "",
    max_keys: int = MAX_KEYS,
) -> ListPage:
    """ListObjectsV2 over a sorted key list: keys after ``start_after`` under ``prefix``, rolled up to
    common prefixes at ``delimiter``, at most ``max_keys`` entries (keys and prefixes together)."""
    i = bisect.bisect_right(keys, start_after) if start_after else bisect.bisect_left(keys, prefix)
    i = max(i, bisect.bisect_left(keys, prefix))
    out: list[tuple[str, ObjectMeta]] = []
    prefixes: list[str] = []
    last = ""
    while i < len(keys):
        key = keys[i]
        if not key.startswith(prefix):
            break
        if len(out) + len(prefixes) >= max_keys:
            return ListPage(out, prefixes, True, last)
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[: cut + len(delimiter)]
            prefixes.append(common)
            # a common prefix is one entry: skip every key under it, and resume after the last of them
            i = bisect.bisect_left(keys, common[:-1] + chr(ord(common[-1]) + 1), i)
            last = keys[i - 1]
            continue
        out.append((key, meta[key]))
        last = key
        i += 1
    return ListPage(out, prefixes, False, None)


def list_xml(
    bucket: str,
    page: ListPage,
    *,
    prefix: str,
    delimiter: str,
    max_keys: int,
    start_after: str = "",
    continuation_token: str = "",
    url_encode: bool = False,
    v2: bool = True,
    cache: dict[str, str] | None = None,
) -> bytes:
    """The ListObjectsV2 answer (``v2=False``: ListObjects v1, marker-style) for one page.

    ``cache`` keeps each object's ``<Contents>`` element between calls (the owner drops a key's entry
    when the object changes): Tansu lists a whole partition on every fetch that has data to read."""

    def enc(value: str) -> str:
        return escape(quote(value, safe="/") if url_encode else value)

    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{S3_NS}">',
        f"<Name>{escape(bucket)}</Name><Prefix>{enc(prefix)}</Prefix>",
        f"<KeyCount>{len(page.keys) + len(page.prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
    ]
    if delimiter:
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if url_encode:
        parts.append("<EncodingType>url</EncodingType>")
    if not v2:
        parts.append(f"<Marker>{enc(start_after)}</Marker>")
    elif start_after:
        parts.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
    if continuation_token:
        parts.append(f"<ContinuationToken>{escape(continuation_token)}</ContinuationToken>")
    parts.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if page.next_token is not None:
        if v2:
            parts.append(
                f"<NextContinuationToken>{escape(encode_token(page.next_token))}</NextContinuationToken>"
            )
        else:
            parts.append(f"<NextMarker>{enc(page.next_token)}</NextMarker>")
    for key, m in page.keys:
        entry = None if cache is None or url_encode else cache.get(key)
        if entry is None:
            entry = (
                f"<Contents><Key>{enc(key)}</Key><LastModified>{iso_date(m.mtime)}</LastModified>"
                f"<ETag>{escape(m.etag)}</ETag><Size>{m.size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            )
            if cache is not None and not url_encode:
                cache[key] = entry
        parts.append(entry)
    for common in page.prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def encode_token(last_key: str) -> str:
    return quote(last_key, safe="")


def decode_token(token: str) -> str:
    return unquote(token)


# the store ----------------------------------------------------------------------------------------


@dataclass
class Bucket:
    name: str
    path: Path
    keys: list[str] = field(default_factory=list)  # sorted
    meta: dict[str, ObjectMeta] = field(default_factory=dict)
    listing: dict[str, str] = field(default_factory=dict)  # key -> its <Contents> element


class ObjectStore:
    """Buckets as directories under ``root``, objects as files, the index in memory."""

    def __init__(self, root: Path, *, fsync: bool = False) -> None:
        self.root = root
        self.fsync = fsync
        self.tmp = root / "tmp"
        self.buckets: dict[str, Bucket] = {}
        (root / "buckets").mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        for stale in self.tmp.iterdir():  # half-written objects of a crashed process: never renamed in
            stale.unlink(missing_ok=True)
        for entry in sorted((root / "buckets").iterdir()):
            if entry.is_dir():
                self.buckets[entry.name] = self._load(entry)

    def _load(self, path: Path) -> Bucket:
        bucket = Bucket(path.name, path)
        for entry in os.scandir(path):
            if not entry.is_file():
                continue
            key = decode_key(entry.name)
            st = entry.stat()
            digest = hashlib.md5(Path(entry.path).read_bytes(), usedforsecurity=False).hexdigest()
            bucket.meta[key] = ObjectMeta(st.st_size, st.st_mtime, f'"{digest}"')
        bucket.keys = sorted(bucket.meta)
        return bucket

    # buckets
    def create_bucket(self, name: str) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise S3Error(400, "InvalidBucketName", "The specified bucket is not valid", name)
        if name not in self.buckets:
            path = self.root / "buckets" / name
            path.mkdir(exist_ok=True)
            self.buckets[name] = Bucket(name, path)

    def bucket(self, name: str) -> Bucket:
        try:
            return self.buckets[name]
        except KeyError:
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist", name) from None

    def delete_bucket(self, name: str) -> None:
        bucket = self.bucket(name)
        if bucket.keys:
            raise S3Error(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", name)
        bucket.path.rmdir()
        del self.buckets[name]

    # objects
    def head(self, bucket_name: str, key: str) -> ObjectMeta:
        meta = self.bucket(bucket_name).meta.get(key)
        if meta is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", key)
        return meta

    def read(self, bucket_name: str, key: str) -> bytes:
        path = self.bucket(bucket_name).path / encode_key(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", key) from None

    def put(
        self,
        bucket_name: str,
        key: str,
        body: bytes,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> ObjectMeta:
        """Write an object (atomically: temp file, then rename), if its conditions hold on the current one."""
        bucket = self.bucket(bucket_name)
        name = encode_key(key)
        current = bucket.meta.get(key)
        try:
            check_write(current.etag if current else None, if_match, if_none_match)
        except S3Error as exc:
            exc.resource = key
            raise
        tmp = self.tmp / uuid.uuid4().hex
        with tmp.open("wb") as out:
            out.write(body)
            if self.fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, bucket.path / name)
        if self.fsync:
            fd = os.open(bucket.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        meta = ObjectMeta(len(body), time.time(), f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"')
        if current is None:
            bisect.insort(bucket.keys, key)
        bucket.meta[key] = meta
        bucket.listing.pop(key, None)
        return meta

    def delete(self, bucket_name: str, key: str, *, if_match: str | None = None) -> None:
        bucket = self.bucket(bucket_name)
        current = bucket.meta.get(key)
        if if_match is not None:
            if current is None:
                raise S3Error(404, "NoSuchKey", "The specified key does not exist.", key)
            if not etag_matches(if_match, current.etag):
                raise precondition_failed(key)
        if current is None:
            return  # S3 answers 204 for a missing key too
        (bucket.path / encode_key(key)).unlink(missing_ok=True)
        del bucket.meta[key]
        bucket.listing.pop(key, None)
        del bucket.keys[bisect.bisect_left(bucket.keys, key)]


# HTTP ---------------------------------------------------------------------------------------------

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Payload Too Large",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
    501: "Not Implemented",
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def _object_headers(meta: ObjectMeta) -> list[tuple[str, str]]:
    return [
        ("ETag", meta.etag),
        ("Last-Modified", http_date(meta.mtime)),
        ("Accept-Ranges", "bytes"),
        ("Content-Type", "application/octet-stream"),
    ]


class S3App:
    """Routes one parsed request to the store; every answer is an S3 answer."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.requests: Counter[str] = Counter()  # by method

    def handle(self, req: Request) -> Response:
        self.requests[req.method] += 1
        try:
            return self._route(req)
        except S3Error as exc:
            if req.method == "HEAD":
                return Response(exc.status)
            return Response(exc.status, [("Content-Type", "application/xml")], exc.xml())

    def _route(self, req: Request) -> Response:
        bucket, _, key = req.path.lstrip("/").partition("/")
        if not bucket:
            if req.method == "GET":
                return self._list_buckets()
            raise S3Error(
                405, "MethodNotAllowed", "The specified method is not allowed against this resource"
            )
        if not key:
            return self._bucket_op(req, bucket)
        if any(q in req.query for q in ("uploads", "uploadId", "partNumber", "tagging", "acl")):
            raise S3Error(501, "NotImplemented", "Only plain object operations are implemented", key)
        if req.method in ("GET", "HEAD"):
            return self._get(req, bucket, key)
        if req.method == "PUT":
            if "x-amz-copy-source" in req.headers:
                raise S3Error(501, "NotImplemented", "CopyObject is not implemented", key)
            meta = self.store.put(
                bucket,
                key,
                req.body,
                if_match=req.headers.get("if-match"),
                if_none_match=req.headers.get("if-none-match"),
            )
            return Response(200, [("ETag", meta.etag)])
        if req.method == "DELETE":
            self.store.delete(bucket, key, if_match=req.headers.get("if-match"))
            return Response(204)
        raise S3Error(
            405, "MethodNotAllowed", "The specified method is not allowed against this resource", key
        )

    def _get(self, req: Request, bucket: str, key: str) -> Response:
        meta = self.store.head(bucket, key)
        try:
            not_modified = check_read(
                meta.etag, req.headers.get("if-match"), req.headers.get("if-none-match")
            )
        except S3Error as exc:
            exc.resource = key
            raise
        if not_modified:
            return Response(304, [("ETag", meta.etag), ("Last-Modified", http_date(meta.mtime))])
        span = parse_range(req.headers.get("range"), meta.size)
        headers = _object_headers(meta)
        if req.method == "HEAD":
            headers.append(("Content-Length", str(meta.size)))
            return Response(200, headers)
        body = self.store.read(bucket, key)
        if span is None:
            return Response(200, headers, body)
        first, last = span
        headers.append(("Content-Range", f"bytes {first}-{last}/{meta.size}"))
        return Response(206, headers, body[first : last + 1])

    def _bucket_op(self, req: Request, bucket: str) -> Response:
        if req.method == "PUT":
            self.store.create_bucket(bucket)
            return Response(200, [("Location", f"/{bucket}")])
        if req.method == "HEAD":
            self.store.bucket(bucket)
            return Response(200)
        if req.method == "DELETE":
            self.store.delete_bucket(bucket)
            return Response(204)
        if req.method == "POST" and "delete" in req.query:
            return self._delete_objects(bucket, req.body)
        if req.method == "GET":
            if "location" in req.query:
                self.store.bucket(bucket)
                body = f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{S3_NS}"/>'
                return Response(200, [("Content-Type", "application/xml")], body.encode())
            return self._list(req, bucket)
        raise S3Error(
            405, "MethodNotAllowed", "The specified method is not allowed against this resource", bucket
        )

    def _list(self, req: Request, bucket_name: str) -> Response:
        bucket = self.store.bucket(bucket_name)
        q = req.query
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        try:
            max_keys = min(MAX_KEYS, max(0, int(q.get("max-keys", MAX_KEYS))))
        except ValueError:
            raise S3Error(400, "InvalidArgument", "max-keys must be an integer") from None
        token = q.get("continuation-token", "") if v2 else ""
        start_after = decode_token(token) if token else q.get("start-after" if v2 else "marker", "")
        page = list_page(
            bucket.keys,
            bucket.meta,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=max_keys,
        )
        body = list_xml(
            bucket_name,
            page,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            start_after=q.get("start-after", "") if v2 else start_after,
            continuation_token=token,
            url_encode=q.get("encoding-type") == "url",
            v2=v2,
            cache=bucket.listing,
        )
        return Response(200, [("Content-Type", "application/xml")], body)

    def _delete_objects(self, bucket: str, body: bytes) -> Response:
        self.store.bucket(bucket)
        try:
            root = ET.fromstring(body)  # noqa: S314 - loopback client, bounded body
        except ET.ParseError:
            raise S3Error(400, "MalformedXML", "The XML you provided was not well-formed") from None
        quiet = False
        keys: list[str] = []
        for el in root.iter():
            tag = el.tag.rpartition("}")[2]
            if tag == "Quiet":
                quiet = (el.text or "").strip().lower() == "true"
            elif tag == "Key":
                keys.append(el.text or "")
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<DeleteResult xmlns="{S3_NS}">']
        for key in keys:
            try:
                self.store.delete(bucket, key)
            except S3Error as exc:
                parts.append(
                    f"<Error><Key>{escape(key)}</Key><Code>{exc.code}</Code><Message>{escape(exc.message)}</Message></Error>"
                )
                continue
            if not quiet:
                parts.append(f"<Deleted><Key>{escape(key)}</Key></Deleted>")
        parts.append("</DeleteResult>")
        return Response(200, [("Content-Type", "application/xml")], "".join(parts).encode())

    def _list_buckets(self) -> Response:
        names = "".join(
            f"<Bucket><Name>{escape(n)}</Name><CreationDate>{iso_date(b.path.stat().st_mtime)}</CreationDate></Bucket>"
            for n, b in sorted(self.store.buckets.items())
        )
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="{S3_NS}">'
            f"<Owner><ID>tierline</ID><DisplayName>tierline</DisplayName></Owner><Buckets>{names}</Buckets>"
            "</ListAllMyBucketsResult>"
        )
        return Response(200, [("Content-Type", "application/xml")], body.encode())


class BadRequest(Exception):
    pass


async def _read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> bytes:
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                break
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        length = int(headers.get("content-length", "0") or "0")
        if length < 0 or length > MAX_BODY:
            raise BadRequest("bad content-length")
        body = await reader.readexactly(length) if length else b""
    if "aws-chunked" in headers.get("content-encoding", "") or headers.get(
        "x-amz-content-sha256", ""
    ).startswith("STREAMING-"):
        body = decode_aws_chunked(body)
    return body


def decode_aws_chunked(body: bytes) -> bytes:
    """The payload of an ``aws-chunked`` body: ``<hex-size>[;chunk-signature=…]\\r\\n<data>\\r\\n``
    chunks, then a zero-size chunk and trailers."""
    out = []
    pos = 0
    while pos < len(body):
        eol = body.index(b"\r\n", pos)
        size = int(body[pos:eol].split(b";")[0].strip(), 16)
        pos = eol + 2
        if size == 0:
            break
        out.append(body[pos : pos + size])
        pos += size + 2
    return b"".join(out)


def _render(resp: Response, keep_alive: bool, head: bool) -> bytes:
    lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}"]
    names = {name.lower() for name, _ in resp.headers}
    lines += [f"{name}: {value}" for name, value in resp.headers]
    if "content-length" not in names and resp.status not in (204, 304):
        lines.append(f"Content-Length: {len(resp.body)}")
    lines.append("Server: tierline-objectstore")
    lines.append("x-amz-request-id: tierline")
    if not keep_alive:
        lines.append("Connection: close")
    head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head_bytes if head or resp.status in (204, 304) else head_bytes + resp.body


async def serve_connection(app: S3App, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                writer.write(_render(Response(400), False, False))
                return
            lines = raw.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                writer.write(_render(Response(400), False, False))
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            try:
                body = await _read_body(reader, writer, headers)
            except (BadRequest, ValueError):
                writer.write(_render(Response(400), False, False))
                return
            split = urlsplit(target)
            req = Request(
                method.upper(),
                unquote(split.path),
                dict(parse_qsl(split.query, keep_blank_values=True)),
                headers,
                body,
            )
            try:
                resp = app.handle(req)
            except Exception as exc:  # noqa: BLE001 - an unexpected failure answers 500, the server goes on
                structlog.get_logger("tierline.objectstore").exception(
                    "objectstore.request.failed", method=req.method, path=req.path
                )
                err = S3Error(500, "InternalError", f"{type(exc).__name__}: {exc}")
                resp = Response(500, [("Content-Type", "application/xml")], err.xml())
            writer.write(_render(resp, keep_alive, req.method == "HEAD"))
            await writer.drain()
            if not keep_alive:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(
    root: Path,
    host: str,
    port: int,
    buckets: Iterable[str] = (),
    *,
    fsync: bool = False,
    stats_every: float = 60.0,
) -> None:
    store = ObjectStore(root, fsync=fsync)
    for name in buckets:
        store.create_bucket(name)
    app = S3App(store)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(app, r, w), host, port, limit=MAX_HEADER, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log = structlog.get_logger("tierline.objectstore")
    log.info("objectstore.started", root=str(root), port=port, buckets=sorted(store.buckets), fsync=fsync)
    counter = asyncio.create_task(_count_requests(app, stats_every))
    async with server:
        await stop.wait()
    counter.cancel()
    log.info("objectstore.stopped", requests=sum(app.requests.values()))


async def _count_requests(app: S3App, every: float) -> None:
    """One log event a period with the request rate, by method (what Tansu costs the store)."""
    log = structlog.get_logger("tierline.objectstore")
    seen: Counter[str] = Counter()
    while True:
        await asyncio.sleep(every)
        delta = app.requests - seen
        seen = app.requests.copy()
        if delta:
            total = sum(delta.values())
            log.info(
                "objectstore.requests.counted",
                requests=total,
                per_s=round(total / every, 1),
                by_method=dict(delta),
                objects=sum(len(b.keys) for b in app.store.buckets.values()),
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tierline_tools.stack.objectstore", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--root", required=True, help="directory holding the buckets")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket at start")
    parser.add_argument("--fsync", action="store_true", help="fsync every object before it is visible")
    parser.add_argument("--stats-every", type=float, default=60.0, help="seconds between request-rate events")
    args = parser.parse_args(argv)
    from tierline.observability import configure_logging

    configure_logging("objectstore")
    asyncio.run(
        serve(
            Path(args.root), args.host, args.port, args.bucket, fsync=args.fsync, stats_every=args.stats_every
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
