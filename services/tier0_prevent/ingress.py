"""The Stripe webhook door: verify, de-duplicate, publish, and only then answer 2xx.

``verify_signature`` and ``parse_event`` are pure. ``BatchingIngestor`` turns concurrent requests into
small batches: one transaction inserts the batch's event ids into ``webhook_events`` (the dedupe), the
new events are published and acknowledged by the broker, rows whose publish failed are deleted, and
the transaction commits. A concurrent duplicate waits on the row lock and sees the outcome; a crash
before commit rolls everything back, so Stripe's retry is processed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from schemas import derived_id
from schemas.messages import StripeEventReceivedPayload, StripeEventReceivedV1
from services.tier0_prevent.domain import charge_of, customer_of
from tierline.http import InvalidJson, PayloadTooLarge, read_body
from tierline.http import parse_json as parse_bounded_json

log = structlog.get_logger(__name__)


# ----------------------------------------------------------------------------- typed rejections
class WebhookRejected(Exception):
    """A request we answer 400 to, with no effect."""

    code = "rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SignatureMissing(WebhookRejected):
    code = "signature_missing"


class SignatureMalformed(WebhookRejected):
    code = "signature_malformed"


class SignatureMismatch(WebhookRejected):
    code = "signature_mismatch"


class TimestampOutsideTolerance(WebhookRejected):
    code = "timestamp_outside_tolerance"


class MalformedEvent(WebhookRejected):
    code = "malformed_event"


#: Stripe's events nest a few levels (expanded objects); anything near this is not an event.
MAX_EVENT_DEPTH = 64
_EVENT_ID = re.compile(r"evt_[A-Za-z0-9_\-]{1,176}")
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")


class PublishFailed(Exception):
    """The broker did not acknowledge: answer 503 so Stripe retries."""


# ----------------------------------------------------------------------------- pure verification
def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The v1 signature Stripe computes: HMAC-SHA256 of ``"{t}.{body}"`` keyed with the endpoint secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    v1: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise SignatureMalformed("Stripe-Signature timestamp is not an integer") from exc
        elif key == "v1" and value:
            v1.append(value.strip())
    if timestamp is None:
        raise SignatureMalformed("Stripe-Signature has no t= timestamp")
    if not v1:
        raise SignatureMalformed("Stripe-Signature has no v1= signature")
    return timestamp, v1


def verify_signature(
    payload: bytes, header: str | None, secrets: list[str], *, tolerance_s: int, now: float | None = None
) -> int:
    """Return the signed timestamp, or raise a :class:`WebhookRejected`.

    Any of ``secrets`` may have signed it (rotation); every comparison is constant-time.
    """
    if not header:
        raise SignatureMissing("missing Stripe-Signature header")
    timestamp, candidates = parse_signature_header(header)
    matched = False
    for secret in secrets:
        expected = sign(payload, secret, timestamp)
        for candidate in candidates:
            # no early exit: the time spent does not depend on which secret or candidate matched
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureMismatch("no v1 signature matches a configured endpoint secret")
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise TimestampOutsideTolerance(
            f"timestamp is {int(now - timestamp)}s away (tolerance {tolerance_s}s)"
        )
    return timestamp


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int
    livemode: bool
    api_version: str | None
    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None

    @property
    def object_id(self) -> str | None:
        value = self.object.get("id")
        return value if isinstance(value, str) else None


def parse_event(payload: bytes) -> StripeEvent:
    """The fields Tier 0 relies on, checked; anything else stays as Stripe sent it."""
    try:
        # bounded depth, no NUL or lone surrogate anywhere (the broker and the stores refuse those)
        body = parse_bounded_json(payload, max_depth=MAX_EVENT_DEPTH, expect=dict)
    except InvalidJson as exc:
        raise MalformedEvent(str(exc.detail)) from exc
    event_id, event_type, created = body.get("id"), body.get("type"), body.get("created")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise MalformedEvent("id must be a Stripe event id (evt_...)")
    if not isinstance(event_type, str) or len(event_type) > 100 or not _EVENT_TYPE.fullmatch(event_type):
        raise MalformedEvent("type is missing")
    if isinstance(created, bool) or not isinstance(created, int):
        raise MalformedEvent("created must be an integer timestamp")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise MalformedEvent("data.object is missing")
    previous = data.get("previous_attributes")
    api_version = body.get("api_version")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created,
        livemode=bool(body.get("livemode", False)),
        api_version=api_version if isinstance(api_version, str) else None,
        object=data["object"],
        previous_attributes=previous if isinstance(previous, dict) else None,
    )


def event_message(event: StripeEvent, customer_id: str) -> StripeEventReceivedV1:
    """The envelope for a verified event; its id is derived from the event id (replay-stable)."""
    return StripeEventReceivedV1.build(
        StripeEventReceivedPayload(
            event_id=event.id,
            event_type=event.type,
            created=event.created,
            livemode=event.livemode,
            api_version=event.api_version,
            object=event.object,
            previous_attributes=event.previous_attributes,
        ),
        contact_id=f"stripe:{event.id}",
        customer_id=customer_id,
        message_id=derived_id("stripe-event", event.id),
    )


# ----------------------------------------------------------------------------- dedupe + publish
Publisher = Callable[[StripeEventReceivedV1], Awaitable[None]]


@dataclass
class _Pending:
    event: StripeEvent
    future: asyncio.Future[bool]  # True = accepted (published now), False = duplicate


class BatchingIngestor:
    """De-duplicates and publishes verified events in natural batches (no added waiting)."""

    def __init__(
        self, pool: asyncpg.Pool, publish: Publisher, *, batch_max: int = 256, workers: int = 4
    ) -> None:
        self.pool = pool
        self.publish = publish
        self.batch_max = batch_max
        self.workers = workers
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run(), name=f"ingest-{i}") for i in range(self.workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down
                await task
        self._tasks.clear()

    async def ingest(self, event: StripeEvent) -> bool:
        """True when the event was new and is now published (broker-acked); False for a duplicate."""
        if not self._tasks:
            await self.start()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, future))
        return await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process(batch)
            except Exception as exc:  # noqa: BLE001 - each waiter gets the error
                log.warning(
                    "tier0.ingress.batch_failed", size=len(batch), error=f"{type(exc).__name__}: {exc}"
                )
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(PublishFailed(f"{type(exc).__name__}: {exc}"))

    async def _process(self, batch: list[_Pending]) -> None:
        first_of: dict[str, _Pending] = {}
        repeats: list[_Pending] = []
        for item in batch:
            if item.event.id in first_of:
                repeats.append(item)
            else:
                first_of[item.event.id] = item
        events = [p.event for p in first_of.values()]
        async with self.pool.acquire() as conn, conn.transaction():
            customers = await self._customers(conn, events)
            rows = await conn.fetch(
                """INSERT INTO webhook_events (event_id, event_type, customer_id)
                   SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                   ON CONFLICT (event_id) DO NOTHING RETURNING event_id""",
                [e.id for e in events],
                [e.type for e in events],
                [customers[e.id] for e in events],
            )
            new_ids = {r["event_id"] for r in rows}
            fresh = [first_of[i] for i in first_of if i in new_ids]
            results = await asyncio.gather(
                *(self.publish(event_message(p.event, customers[p.event.id])) for p in fresh),
                return_exceptions=True,
            )
            failed = [p for p, r in zip(fresh, results, strict=True) if isinstance(r, BaseException)]
            if failed:
                await conn.execute(
                    "DELETE FROM webhook_events WHERE event_id = ANY($1::text[])",
                    [p.event.id for p in failed],
                )
        # committed: answer the waiters
        for p, r in zip(fresh, results, strict=True):
            if isinstance(r, BaseException):
                log.warning(
                    "tier0.ingress.publish_failed", event_id=p.event.id, error=f"{type(r).__name__}: {r}"
                )
                p.future.set_exception(PublishFailed(f"{type(r).__name__}: {r}"))
            else:
                p.future.set_result(True)
        for event_id, p in first_of.items():
            if event_id not in new_ids:
                p.future.set_result(False)
        for p in repeats:
            p.future.set_result(False)

    @staticmethod
    async def _customers(conn: asyncpg.Connection, events: list[StripeEvent]) -> dict[str, str]:
        """Partition key per event: the customer.

        For charge-bound objects (disputes), the charge's customer.
        """
        found: dict[str, str | None] = {e.id: customer_of(e.type, e.object) for e in events}
        by_charge = {e.id: charge_of(e.object) for e in events if found[e.id] is None and charge_of(e.object)}
        if by_charge:
            rows = await conn.fetch(
                "SELECT id, customer_id FROM stripe_charges WHERE id = ANY($1::text[])",
                list(set(by_charge.values())),
            )
            owners = {r["id"]: r["customer_id"] for r in rows}
            for event_id, charge in by_charge.items():
                found[event_id] = owners.get(charge)
        # No customer (account-level objects): key by the object so the event still travels in order.
        # A key that is not an id (anything a sender put in metadata) falls back to the event itself.
        return {e.id: _partition_key(found[e.id], e) for e in events}


# ----------------------------------------------------------------------------- the HTTP door
class WebhookIngress:
    def __init__(
        self,
        ingestor: BatchingIngestor,
        secrets: Callable[[], list[str]],
        *,
        tolerance_s: int = 300,
        max_body_bytes: int = 512 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ingestor = ingestor
        self.secrets = secrets
        self.tolerance_s = tolerance_s
        self.max_body_bytes = max_body_bytes
        self.clock = clock

    def route(self, path: str = "/stripe/webhook") -> Route:
        return Route(path, self.endpoint, methods=["POST"])

    async def endpoint(self, request: Request) -> Response:
        try:
            # refused on its Content-Length, or as soon as it streams past the limit: never read whole
            body = await read_body(request, self.max_body_bytes)
        except PayloadTooLarge as exc:
            log.warning("tier0.webhook.rejected", reason=exc.code, detail=exc.detail)
            return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=413)
        status, answer = await self.handle(body, request.headers.get("stripe-signature"))
        return JSONResponse(answer, status_code=status)

    async def handle(self, body: bytes, signature: str | None) -> tuple[int, dict[str, Any]]:
        if len(body) > self.max_body_bytes:
            detail = f"the body is larger than {self.max_body_bytes} bytes"
            log.warning("tier0.webhook.rejected", reason="payload_too_large", detail=detail)
            return 413, {"error": "payload_too_large", "detail": detail}
        try:
            verify_signature(body, signature, self.secrets(), tolerance_s=self.tolerance_s, now=self.clock())
            event = parse_event(body)
        except WebhookRejected as exc:
            log.warning("tier0.webhook.rejected", reason=exc.code, detail=exc.detail)
            return 400, {"error": exc.code, "detail": exc.detail}
        try:
            accepted = await self.ingestor.ingest(event)
        except PublishFailed as exc:
            log.error("tier0.webhook.unavailable", event_id=event.id, error=str(exc)[:300])
            return 503, {"error": "unavailable", "detail": "event not recorded; retry later", "id": event.id}
        if not accepted:
            log.info("tier0.webhook.duplicate", event_id=event.id, event_type=event.type)
            return 200, {"received": True, "duplicate": True, "id": event.id}
        return 200, {"received": True, "duplicate": False, "id": event.id}


def _partition_key(customer_id: str | None, event: StripeEvent) -> str:
    """The customer, else the object, else the event: always a key an envelope can carry (<= 200)."""
    for key in (customer_id, f"stripe:{event.object_id}" if event.object_id else None):
        if key and len(key) <= 200 and key.isprintable():
            return key
    return f"stripe:{event.id}"
