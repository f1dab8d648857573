"""Malformed HTTP input on every door of the services that have one: never a 5xx, every 4xx in JSON.

The services run in-process on the session stack (real broker, Postgres, chDB, the Stripe emulator);
requests go over loopback with a fixed seed, a few in flight, with and without valid credentials so
the code past authentication is reached.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest

from services.tier1_selfheal.auth import (
    PAY_INVOICE_PURPOSE,
    UPDATE_CARD_PURPOSE,
    issue_session_token,
)
from services.tier3_handoff.auth import issue_agent_token
from tierline.tokens import KeySet
from tierline_tools.stack.inproc import start_pipeline, stop_pipeline
from tierline_tools.world import sign_payload

pytestmark = pytest.mark.integration

SEED = 20240616
REQUESTS = 3_600
IN_FLIGHT = 4
HTTP_SERVICES = ("diagnostics", "analytics_sink", "tier3_handoff", "tier1_selfheal", "tier0_prevent")
WEBHOOK_LIMIT = 512 * 1024  # the webhook door's own limit (WebhookIngress.max_body_bytes)


@pytest.fixture(scope="module")
async def doors(stack: Any, infra: Any) -> AsyncIterator[dict[str, str]]:
    services = await start_pipeline(infra, stack.service_ports, services=HTTP_SERVICES)
    try:
        yield {name: f"http://127.0.0.1:{stack.service_ports[name]}" for name in HTTP_SERVICES}
    finally:
        await stop_pipeline(services)


# ----------------------------------------------------------------------------- what to send
@dataclass(frozen=True)
class Door:
    service: str
    methods: tuple[str, ...]
    path: str  # with {param} placeholders
    auth: str  # "customer", "link", "agent", "service", "webhook" or "none"
    takes_json: bool = False


DOORS = (
    Door("tier0_prevent", ("POST",), "/stripe/webhook", "webhook", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/", "none"),
    Door("tier1_selfheal", ("GET",), "/health-meter", "none"),
    Door("tier1_selfheal", ("GET",), "/update-card", "none"),
    Door("tier1_selfheal", ("GET",), "/pay/{invoice_id}", "none"),
    Door("tier1_selfheal", ("POST", "DELETE"), "/v1/session", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/v1/health-meter", "customer"),
    Door("tier1_selfheal", ("POST",), "/v1/health-meter/fixes", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/v1/health-meter/contacts/{contact_id}", "customer"),
    Door("tier1_selfheal", ("POST",), "/v1/health-meter/human", "customer", takes_json=True),
    Door("tier1_selfheal", ("POST",), "/v1/update-card", "link", takes_json=True),
    Door("tier1_selfheal", ("GET", "POST"), "/v1/pay/{invoice_id}", "link", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/v1/links/contacts/{contact_id}", "link"),
    Door("tier1_selfheal", ("GET",), "/chat", "none"),
    Door("tier1_selfheal", ("POST",), "/v1/chat/messages", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/v1/chat/stream", "customer"),
    Door("tier1_selfheal", ("GET",), "/v1/chat/conversations", "customer"),
    Door("tier1_selfheal", ("GET",), "/v1/chat/conversations/{conversation_id}", "customer"),
    Door("tier1_selfheal", ("POST",), "/v1/chat/ratings", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/billing", "none"),
    Door("tier1_selfheal", ("GET",), "/billing/invoices", "none"),
    Door("tier1_selfheal", ("GET",), "/v1/portal/invoices", "customer"),
    Door("tier1_selfheal", ("GET",), "/v1/portal/invoices/{invoice_id}", "customer"),
    Door("tier1_selfheal", ("POST",), "/v1/portal/invoices/{invoice_id}/resend", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/invoices/{invoice_id}.pdf", "link"),
    Door("tier1_selfheal", ("GET",), "/invoices/{invoice_id}", "link"),
    Door("tier1_selfheal", ("GET",), "/receipts/{charge_id}", "link"),
    # the portal's usage, plan and "my requests" doors (issue 21)
    *(
        Door("tier1_selfheal", ("GET",), p, "none")
        for p in ("/billing/usage", "/billing/plan", "/billing/requests")
    ),
    Door("tier1_selfheal", ("GET",), "/v1/portal/usage", "customer"),
    Door("tier1_selfheal", ("GET",), "/v1/portal/usage.csv", "customer"),
    Door("tier1_selfheal", ("GET", "POST"), "/v1/portal/plan", "customer", takes_json=True),
    Door("tier1_selfheal", ("POST",), "/v1/portal/plan/preview", "customer", takes_json=True),
    Door("tier1_selfheal", ("POST",), "/v1/portal/plan/cancel", "customer", takes_json=True),
    Door("tier1_selfheal", ("GET",), "/v1/portal/requests", "customer"),
    # the portal's billing details and card doors (issue 21)
    Door("tier1_selfheal", ("GET",), "/billing/details", "none"),
    Door("tier1_selfheal", ("GET",), "/billing/card", "none"),
    Door("tier1_selfheal", ("GET", "PUT"), "/v1/portal/billing-details", "customer", takes_json=True),
    Door("tier1_selfheal", ("POST",), "/v1/portal/card/setup", "link", takes_json=True),
    Door("tier1_selfheal", ("POST",), "/v1/portal/card", "link", takes_json=True),
    Door("tier3_handoff", ("GET",), "/", "none"),
    Door("tier3_handoff", ("GET",), "/console", "none"),
    Door("tier3_handoff", ("GET",), "/v1/console/me", "agent"),
    Door("tier3_handoff", ("GET",), "/v1/cases", "agent"),
    Door("tier3_handoff", ("GET",), "/v1/cases/{case_id}", "agent"),
    Door("tier3_handoff", ("POST",), "/v1/cases/{case_id}/claim", "agent"),
    Door("tier3_handoff", ("POST",), "/v1/cases/{case_id}/actions", "agent", takes_json=True),
    Door("tier3_handoff", ("POST",), "/v1/cases/{case_id}/resolve", "agent", takes_json=True),
    Door("diagnostics", ("GET",), "/v1/customers/{customer_id}/diagnosis", "service"),
    Door("diagnostics", ("GET",), "/v1/customers/{customer_id}/usage", "service"),
    Door("diagnostics", ("GET",), "/openapi.json", "none"),
    Door("analytics_sink", ("GET",), "/v1/analytics/report", "service"),
    Door("analytics_sink", ("GET",), "/v1/analytics/audit/verify", "service"),
    *(Door(s, ("GET",), p, "none") for s in HTTP_SERVICES for p in ("/livez", "/healthz", "/readyz")),
)

#: Path parameter values: raw text is percent-encoded; values starting with "%" are sent as they are.
BAD_TEXT = (
    "\x00",
    "cus_\x00abc",
    "case_\x00",
    "in_\x01\x02\x1f",
    "\x7f",
    "a\nb",
    "\u202e\u200b",
    "\U0001f4a3",
    "x" * 5_000,
    "9" * 400,
    "' OR 1=1 --",
    "..",
    "%2e%2e%2f%2e%2e",
    "%FF%FE%FD",
    "%C0%80",
    "%ED%A0%80",
    "%00",
    " ",
    "-1",
)
QUERY_KEYS = ("customer_id", "token", "queue", "status", "days", "start", "end", "x")


def _well_formed(name: str, rng: random.Random) -> str:
    hexes = uuid.UUID(int=rng.getrandbits(128)).hex
    return {
        "customer_id": f"cus_fuzz{hexes[:12]}",
        "contact_id": f"sh_{hexes}",
        "conversation_id": f"chat_{hexes}",
        "case_id": f"case_{hexes[:20]}",
        "invoice_id": f"in_fuzz{hexes[:14]}",
        "charge_id": f"ch_fuzz{hexes[:14]}",
    }[name]


def _deep(depth: int, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def json_body(rng: random.Random) -> tuple[bytes, str | None]:
    """A body and its content type: junk, non-objects, deep, huge, odd types, or a plausible object."""
    kind = rng.randrange(16)
    ctype: str | None = "application/json"
    if kind == 0:
        body = _deep(50_000, rng)
    elif kind == 1:
        body = _deep(rng.choice((100, 1_000, 5_000)), rng)
    elif kind == 2:
        body = json.dumps(rng.choice(([1, 2], "text", 42, None, True, 1.5, [], [{}]))).encode()
    elif kind == 3:
        body = b""
    elif kind == 4:
        body = b"\xff\xfe\x00{\x80}"
    elif kind == 5:
        body = b'{"action": "note", "note": "\\u0000", "resolution_note": "\\ud800"}'
    elif kind == 6:
        body = b"{not json"
    elif kind == 7:
        body, ctype = b"action=retry_payment", rng.choice(("application/x-www-form-urlencoded", "text/plain"))
    elif kind == 8:
        body = json.dumps({"x": "y" * rng.choice((10_000, 300_000))}).encode()
    elif kind == 9:
        body = b'{"a": NaN, "b": Infinity, "n": 1' + b"0" * 5_000 + b"}"
    elif kind == 10:
        body = json.dumps({"action": rng.choice(("retry_payment", "escalate", "refund", "x" * 300, None, 7))})
        body = body.encode()
    elif kind == 11:
        body = json.dumps(
            {
                "action": rng.choice(("note", "refund", "retry_payment", ["x"], {"a": 1})),
                "note": rng.choice(("ok", 5, None, ["x"], "\x00")),
                "resolution_note": rng.choice(("done", "", 7, {"a": 1}, "\x00", "x" * 20_000)),
                "publish_article": rng.choice((True, False, "yes", 1)),
                "title": rng.choice(("t", 5, None)),
                "body": rng.choice(("b", [1], None)),
                "tags": rng.choice((["a"], "abc", 5, [None, {}], None)),
                "amount_usd": rng.choice((5, -1, 1e308, "5", None, 10**30)),
                "params": rng.choice(({}, [], "x", {"invoice_id": "\x00"}, {"invoice_id": 5})),
                "request_id": rng.choice(("r" * 10, "\x00" * 10, 5, None, "x" * 500)),
                "customer_id": rng.choice((None, "", "cus_other", 5, ["x"])),
                "token": rng.choice(("x", None, 5, "a.b.c")),
                "card": rng.choice((None, "x", {"number": "4242" * 4, "exp_month": "x", "cvc": 5})),
                "payment_method": rng.choice((None, "pm_\x00", "pm_" + "x" * 300, 5)),
            }
        ).encode()
    elif kind == 12:
        body, ctype = (
            b'{"action": "note"}',
            rng.choice((None, "text/html", "application/json; charset=latin-1")),
        )
    elif kind == 13:
        body = json.dumps({"\x00": 1, "k": "\udc80"}).encode()
    elif kind == 14:
        body = b'"' + b"\\" * 1001 + b'"'
    else:
        body = json.dumps({"id": "evt_" + "x" * rng.choice((5, 500)), "type": "a", "created": 1}).encode()
    return body, ctype


def webhook_event(rng: random.Random) -> bytes:
    """A Stripe-shaped event with hostile fields (signed by the caller, so parsing is reached)."""
    obj = rng.choice(
        (
            {"id": "in_\x00", "object": "invoice", "customer": "cus_\x00"},
            {"id": "x" * 1_000, "object": "invoice", "customer": "c" * 1_000},
            {"id": "ch_1", "object": "charge", "customer": {"id": 5}},
            {"id": "cus_1", "object": "customer", "metadata": {"tl_customer": "\udc80" * 3}},
            {"object": "dispute", "charge": "ch_\x00"},
            {"id": None, "object": None, "customer": ["cus_1"]},
        )
    )
    event = {
        "id": rng.choice((f"evt_{uuid.UUID(int=rng.getrandbits(128)).hex}", "evt_\x00", "evt_" + "é" * 170)),
        "object": "event",
        "type": rng.choice(("invoice.payment_failed", "customer.updated", "charge.dispute.created", "x\x00")),
        "created": rng.choice((int(time.time()), 10**40, -1)),
        "livemode": rng.choice((False, "no", None)),
        "api_version": rng.choice(("2024-06-20", None, 5)),
        "data": {"object": obj, "previous_attributes": rng.choice((None, [], {"a": "\x00"}))},
    }
    return json.dumps(event).encode()


@dataclass
class Credentials:
    secret: str  # the link secret (update-card / pay links)
    webhook_secret: str
    service_token: str | None
    customer_keys: KeySet
    agent_keys: KeySet
    customer: str = field(default_factory=lambda: f"cus_fuzz{uuid.uuid4().hex[:10]}")

    def headers(self, door: Door, rng: random.Random, path: str) -> dict[str, str]:
        if rng.random() < 0.2:  # no or bad credentials
            return rng.choice(({}, {"authorization": "Bearer x.y.z"}, {"authorization": "Basic ===="}))
        if door.auth == "customer":
            return {"authorization": f"Bearer {issue_session_token(self.customer_keys, self.customer, 600)}"}
        if door.auth == "link":
            invoice = path.split("/pay/")[-1] if "/pay/" in path else f"in_fuzz{rng.getrandbits(32)}"
            purpose = rng.choice((UPDATE_CARD_PURPOSE, PAY_INVOICE_PURPOSE))
            subject = self.customer if purpose == UPDATE_CARD_PURPOSE else invoice
            now = int(time.time())
            token = jwt.encode(
                {"sub": subject, "purpose": purpose, "iat": now, "exp": now + 600}, self.secret, "HS256"
            )
            return {"authorization": f"Bearer {token}"}
        if door.auth == "agent":
            queues = ["billing", "billing_high", "disputes", "fraud", "refunds", "general", "\x00"]
            return {"authorization": f"Bearer {issue_agent_token(self.agent_keys, 'agent-fuzz', queues)}"}
        if door.auth == "service" and self.service_token:
            return {"authorization": f"Bearer {self.service_token}"}
        return {}


def service_token(infra: Any) -> str | None:
    """The diagnostics service credential, when the settings carry one (sent as its client does)."""
    for name in ("diagnostics_token", "service_token", "diagnostics_service_token"):
        value = getattr(infra, name, None)
        if value is not None:
            return str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    return None


@dataclass
class Shot:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    chunked: bool = False

    def describe(self) -> str:
        return f"{self.method} {self.url[:120]} body={len(self.body or b'')}B chunked={self.chunked}"


def plan(doors: dict[str, str], creds: Credentials, rng: random.Random) -> Iterator[Shot]:
    for _ in range(REQUESTS):
        door = rng.choice(DOORS)
        path = door.path
        for name in ("customer_id", "contact_id", "case_id", "invoice_id", "charge_id"):
            if "{" + name + "}" in path:
                if rng.random() < 0.7:
                    raw = rng.choice(BAD_TEXT)
                    value = raw if raw.startswith("%") else quote(raw, safe="")
                else:
                    value = _well_formed(name, rng)
                path = path.replace("{" + name + "}", value)
        if rng.random() < 0.35:
            key = rng.choice(QUERY_KEYS)
            raw = rng.choice((*BAD_TEXT, "2024-13-45", "1" * 5_000, "open,\x00", "billing"))
            path += f"?{key}={raw if raw.startswith('%') else quote(raw, safe='')}"
        method = rng.choice(door.methods) if rng.random() < 0.85 else rng.choice(("PUT", "PATCH", "DELETE"))
        headers = creds.headers(door, rng, path)
        body: bytes | None = None
        chunked = False
        roll = rng.random()
        if roll < 0.03:
            body, chunked = b"x" * rng.choice((600 * 1024, 3 * 1024 * 1024)), True
            headers["content-type"] = "application/json"
        elif roll < 0.05:
            body = b"[" * (2 * 1024 * 1024)
            headers["content-type"] = "application/json"
        elif door.takes_json or rng.random() < 0.1:
            if door.auth == "webhook" and rng.random() < 0.6:
                body, ctype = webhook_event(rng), "application/json"
            else:
                body, ctype = json_body(rng)
            if ctype is not None:
                headers["content-type"] = ctype
        if door.auth == "webhook" and body is not None and rng.random() < 0.8:
            headers["stripe-signature"] = sign_payload(body, creds.webhook_secret, int(time.time()))
        yield Shot(method, doors[door.service] + path, headers, body, chunked)


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 64 * 1024):
        yield body[i : i + 64 * 1024]


@dataclass
class Tally:
    server_errors: list[str] = field(default_factory=list)
    not_json: list[str] = field(default_factory=list)
    transport: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


async def fire(client: httpx.AsyncClient, shot: Shot, tally: Tally) -> None:
    content: Any = _chunks(shot.body) if shot.chunked and shot.body is not None else shot.body
    try:
        resp = await client.request(shot.method, shot.url, headers=shot.headers, content=content)
    except httpx.TransportError as exc:
        tally.transport.append(f"{shot.describe()}: {type(exc).__name__}")
        return
    tally.statuses[resp.status_code] = tally.statuses.get(resp.status_code, 0) + 1
    if resp.status_code >= 500:
        tally.server_errors.append(f"{resp.status_code} {shot.describe()}: {resp.text[:160]!r}")
    elif resp.status_code >= 400:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("error"), str):
            tally.not_json.append(f"{resp.status_code} {shot.describe()}: {resp.text[:80]!r}")


# ----------------------------------------------------------------------------- the tests
async def test_given_every_http_door_when_3600_malformed_requests_arrive_then_no_5xx_and_json_4xx(
    doors: dict[str, str], infra: Any
) -> None:
    creds = Credentials(
        secret=infra.session_secret.get_secret_value(),
        webhook_secret=infra.webhook_secrets()[0],
        customer_keys=infra.customer_token_keyset(),
        agent_keys=infra.agent_token_keyset(),
        service_token=service_token(infra),
    )
    rng = random.Random(SEED)
    shots = list(plan(doors, creds, rng))
    tally = Tally()
    slots = asyncio.Semaphore(IN_FLIGHT)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(shot: Shot) -> None:
            async with slots:
                await fire(client, shot, tally)

        await asyncio.gather(*(one(s) for s in shots))

    assert len(shots) == REQUESTS
    assert not tally.server_errors, (
        f"{len(tally.server_errors)} x 5xx of {REQUESTS} (statuses {sorted(tally.statuses.items())}); "
        f"first: {tally.server_errors[:8]}"
    )
    assert not tally.not_json, f"{len(tally.not_json)} x 4xx without a JSON error body: {tally.not_json[:8]}"
    assert not tally.transport, f"{len(tally.transport)} requests got no answer: {tally.transport[:8]}"


def _raw_request(url: str, head: str, chunks: Iterator[bytes]) -> tuple[int, dict[str, Any]]:
    """Send ``head`` then ``chunks`` on a plain socket, stopping as soon as the server answers.

    Returns the status and the JSON body of the answer.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(head.encode("latin-1"))
        answer = b""
        for chunk in chunks:
            sock.setblocking(False)
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
            if answer:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        head_part, _, body = answer.partition(b"\r\n\r\n")
        length = 0
        for line in head_part.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            data = sock.recv(65536)
            if not data:
                break
            body += data
    status = int(head_part.split(b" ", 2)[1])
    return status, json.loads(body) if body else {}


async def test_given_the_webhook_door_when_a_100mb_body_is_declared_then_413_before_any_byte_is_read(
    doors: dict[str, str],
) -> None:
    url = doors["tier0_prevent"]
    head = (
        "POST /stripe/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: t=1,v1=x\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    )
    status, body = await asyncio.to_thread(_raw_request, url, head, iter(()))
    assert (status, body.get("error")) == (413, "payload_too_large")


async def test_given_the_webhook_door_when_a_chunked_body_streams_past_the_limit_then_413(
    doors: dict[str, str],
) -> None:
    url = doors["tier0_prevent"]
    head = (
        "POST /stripe/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Stripe-Signature: t=1,v1=x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 16 * 1024
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # twice the limit, then the last chunk: the door must stop reading and answer 413 on its own
    frames = [frame] * (2 * WEBHOOK_LIMIT // len(piece)) + [b"0\r\n\r\n"]
    status, body = await asyncio.to_thread(_raw_request, url, head, iter(frames))
    assert (status, body.get("error")) == (413, "payload_too_large")
