"""The chat widget's HTTP door with an in-memory conversation store: session auth, clear 4xx on bad bodies,
another customer's conversation is a 404, messages become contact.received.v1 (channel chat), the SSE
stream replays and resumes by seq, ends on disconnect, and ratings are validated and upserted."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from schemas import Envelope
from schemas.messages import ContactReceivedV1
from schemas.vocab import Channel, Intent
from services.router.domain import HUMAN_CHOICE, MessageReading, reading_for_choice
from services.tier1_selfheal import chat_domain
from services.tier1_selfheal.auth import CustomerKeys, issue_session_token
from services.tier1_selfheal.chat import ChatDeps, chat_routes
from tierline import http as http_guard
from tierline.conversations import Conversation, ConversationMismatch, StoredTurn
from tierline.tokens import KeySet

pytestmark = pytest.mark.unit

SESSIONS = KeySet.single("customer", "c1", "unit-test-customer-key-with-enough-length")
KEYS = CustomerKeys(sessions=SESSIONS, link_secret="unit-test-link-secret-with-enough-length")  # noqa: S106
ALICE, BOB = "cus_alice", "cus_bob"


class FakeChatStore:
    """Conversations, turns and ratings in memory, with the same ownership rule as Postgres."""

    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.turn_log: dict[str, list[StoredTurn]] = {}
        self.ratings: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq = 0

    async def get(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    async def open(self, conversation_id: str, customer_id: str) -> Conversation:
        found = self.conversations.setdefault(
            conversation_id, Conversation(conversation_id, customer_id, Channel.CHAT, "open")
        )
        if found.customer_id != customer_id:
            raise ConversationMismatch(conversation_id)
        return found

    def add_turn(self, conversation_id: str, role: str, kind: str, text: str, contact_id: str) -> StoredTurn:
        self.seq += 1
        turn = StoredTurn(
            turn_id=uuid.uuid4(),
            seq=self.seq,
            role=role,
            kind=kind,
            author="tier2_agent" if role != "customer" else "customer",
            text=text,
            contact_id=contact_id,
            choices=[],
            created_at=datetime(2026, 12, 3, tzinfo=UTC),
        )
        self.turn_log.setdefault(conversation_id, []).append(turn)
        return turn

    async def turns(self, conversation_id: str, *, after_seq: int = 0) -> list[StoredTurn]:
        return [t for t in self.turn_log.get(conversation_id, []) if t.seq > after_seq]

    async def recent(self, customer_id: str, *, limit: int = 5) -> list[Conversation]:
        mine = [c for c in self.conversations.values() if c.customer_id == customer_id]
        return list(reversed(mine))[:limit]

    async def has_contact(self, conversation_id: str, contact_id: str) -> bool:
        return any(t.contact_id == contact_id for t in self.turn_log.get(conversation_id, []))

    async def rate(
        self, conversation_id: str, contact_id: str, csat: int | None, solved: bool | None
    ) -> None:
        row = self.ratings.setdefault((conversation_id, contact_id), {"csat": None, "solved": None})
        row["csat"] = csat if csat is not None else row["csat"]
        row["solved"] = solved if solved is not None else row["solved"]


class Published:
    def __init__(self) -> None:
        self.messages: list[Envelope[Any]] = []

    async def __call__(self, message: Envelope[Any]) -> None:
        self.messages.append(message)


@pytest.fixture
def store() -> FakeChatStore:
    return FakeChatStore()


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def deps(store: FakeChatStore, published: Published) -> ChatDeps:
    return ChatDeps(
        store=store, publish=published, secret=KEYS, poll_s=0.01, heartbeat_s=0.0, stream_max_s=0.05
    )


def app_for(deps: ChatDeps) -> Starlette:
    return Starlette(
        routes=chat_routes(lambda: deps),
        middleware=http_guard.middleware(),
        exception_handlers=http_guard.exception_handlers(),
    )


@pytest.fixture
async def client(deps: ChatDeps) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app_for(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as c:
        yield c


def auth(customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(SESSIONS, customer_id, 600)}"}


def events(body: str) -> list[dict[str, Any]]:
    """The ``turn`` events of an SSE body, with their ids."""
    out = []
    for block in body.split("\n\n"):
        lines = block.split("\n")
        if "event: turn" not in lines:
            continue
        data = json.loads(next(line[6:] for line in lines if line.startswith("data: ")))
        data["_id"] = next(line[4:] for line in lines if line.startswith("id: "))
        out.append(data)
    return out


# ---------------------------------------------------------------------------------------------- auth
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/messages"),
        ("GET", "/v1/chat/stream?conversation_id=chat_x"),
        ("GET", "/v1/chat/conversations/chat_x"),
        ("POST", "/v1/chat/ratings"),
    ],
)
async def test_given_no_or_forged_session_when_calling_chat_then_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    forged = issue_session_token(KeySet.single("customer", "c1", "x" * 40), ALICE)
    for headers in ({}, {"Authorization": f"Bearer {forged}"}):
        resp = await client.request(method, path, json={"text": "hi"}, headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthenticated"


# ---------------------------------------------------------------------------------------------- messages
async def test_given_first_message_when_posted_then_new_conversation_and_contact_received_on_chat(
    client: httpx.AsyncClient, store: FakeChatStore, published: Published
) -> None:
    # When Alice writes her first message
    resp = await client.post(
        "/v1/chat/messages", json={"text": "  why was I charged twice?  "}, headers=auth(ALICE)
    )
    # Then a new conversation of hers is returned, and one contact.received.v1 carries it (channel chat)
    assert resp.status_code == 202
    body = resp.json()
    conversation_id = body["conversation_id"]
    assert conversation_id.startswith("chat_")
    assert store.conversations[conversation_id].customer_id == ALICE
    assert store.turn_log == {}  # the router stores the turn, not the door
    [msg] = published.messages
    assert isinstance(msg, ContactReceivedV1)
    assert (msg.contact_id, msg.customer_id) == (body["contact_id"], ALICE)
    assert msg.payload.channel is Channel.CHAT
    assert msg.payload.text == "why was I charged twice?"
    assert msg.payload.conversation_id == conversation_id
    assert (msg.payload.sender.kind, msg.payload.sender.subject) == ("customer_session", ALICE)
    assert msg.payload.choice is None


async def test_given_same_request_id_when_posted_twice_then_same_contact_and_message_id(
    client: httpx.AsyncClient, published: Published
) -> None:
    body = {"text": "send me my invoice", "request_id": "msg-0001-abcd"}
    first = (await client.post("/v1/chat/messages", json=body, headers=auth(ALICE))).json()
    second = (await client.post("/v1/chat/messages", json=body, headers=auth(ALICE))).json()
    assert first == second
    assert published.messages[0].message_id == published.messages[1].message_id


async def test_given_a_choice_when_posted_in_own_conversation_then_it_rides_on_the_message(
    client: httpx.AsyncClient, store: FakeChatStore, published: Published
) -> None:
    await store.open("chat_alice1", ALICE)
    resp = await client.post(
        "/v1/chat/messages",
        json={"text": "Talk to a human", "choice": "human", "conversation_id": "chat_alice1"},
        headers=auth(ALICE),
    )
    assert resp.status_code == 202
    assert resp.json()["conversation_id"] == "chat_alice1"
    assert published.messages[0].payload.choice == "human"
    assert published.messages[0].payload.conversation_id == "chat_alice1"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_text"),
        ({"text": 42}, "invalid_text"),
        ({"text": "   "}, "empty_text"),
        ({"text": "x" * 4001}, "text_too_long"),
        ({"text": "hi", "choice": 7}, "invalid_choice"),
        ({"text": "hi", "choice": "c" * 201}, "invalid_choice"),
        ({"text": "hi", "conversation_id": "../etc"}, "invalid_conversation_id"),
        ({"text": "hi", "conversation_id": ["chat_x"]}, "invalid_conversation_id"),
        ({"text": "hi", "request_id": "short"}, "invalid_request_id"),
        ({"text": "hi", "customer_id": BOB}, "unknown_field"),
    ],
)
async def test_given_bad_body_when_posting_a_message_then_422_with_a_clear_error(
    client: httpx.AsyncClient, published: Published, body: dict[str, Any], code: str
) -> None:
    resp = await client.post("/v1/chat/messages", json=body, headers=auth(ALICE))
    assert resp.status_code == 422
    assert resp.json()["error"] == code
    assert resp.json()["detail"]
    assert published.messages == []


async def test_given_not_json_when_posting_a_message_then_4xx_json(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/chat/messages", content=b"text=hi", headers={**auth(ALICE), "Content-Type": "text/plain"}
    )
    assert resp.status_code == 415
    resp = await client.post(
        "/v1/chat/messages", content=b"[1,2]", headers={**auth(ALICE), "Content-Type": "application/json"}
    )
    assert resp.status_code == 400


async def test_given_bobs_conversation_when_alice_uses_it_then_404_everywhere_and_nothing_published(
    client: httpx.AsyncClient, store: FakeChatStore, published: Published
) -> None:
    # Given Bob's conversation with an answer in it
    await store.open("chat_bob1", BOB)
    store.add_turn("chat_bob1", "customer", "message", "my card number ends 4242", "c-bob-1")
    store.add_turn("chat_bob1", "assistant", "answer", "Bob's private answer", "c-bob-1")
    alice = auth(ALICE)
    # When Alice writes into it, reads it, streams it or rates it
    answers = [
        await client.post(
            "/v1/chat/messages", json={"text": "hi", "conversation_id": "chat_bob1"}, headers=alice
        ),
        await client.get("/v1/chat/conversations/chat_bob1", headers=alice),
        await client.get("/v1/chat/stream?conversation_id=chat_bob1", headers=alice),
        await client.post(
            "/v1/chat/ratings",
            json={"conversation_id": "chat_bob1", "contact_id": "c-bob-1", "csat": 1},
            headers=alice,
        ),
        # and an id that does not exist answers the same
        await client.get("/v1/chat/conversations/chat_nobody", headers=alice),
    ]
    # Then every answer is the same 404, none shows Bob's words, and nothing was published or rated
    for resp in answers:
        assert resp.status_code == 404, resp.text
        assert resp.json()["error"] == "conversation_not_found"
        assert "private" not in resp.text
    assert published.messages == []
    assert store.ratings == {}


# ---------------------------------------------------------------------------------------------- reading
async def test_given_own_conversation_when_fetched_then_turns_in_order_with_rateable_answers(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_a2", ALICE)
    store.add_turn("chat_a2", "customer", "message", "invoice please", "c-a-1")
    store.add_turn("chat_a2", "assistant", "answer", "Here is your invoice.", "c-a-1")
    resp = await client.get("/v1/chat/conversations/chat_a2", headers=auth(ALICE))
    assert resp.status_code == 200
    body = resp.json()
    assert (body["conversation_id"], body["channel"], body["status"]) == ("chat_a2", "chat", "open")
    assert [(t["role"], t["text"], t["rateable"]) for t in body["turns"]] == [
        ("customer", "invoice please", False),
        ("assistant", "Here is your invoice.", True),
    ]


async def test_given_two_customers_when_listing_conversations_then_each_sees_only_their_own(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_old", ALICE)
    await store.open("chat_bobs", BOB)
    await store.open("chat_new", ALICE)
    resp = await client.get("/v1/chat/conversations", headers=auth(ALICE))
    assert resp.status_code == 200
    assert [c["conversation_id"] for c in resp.json()["conversations"]] == ["chat_new", "chat_old"]
    assert (await client.get("/v1/chat/conversations")).status_code == 401


async def test_given_turns_when_streamed_then_each_is_an_event_with_its_seq_as_id(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_a3", ALICE)
    first = store.add_turn("chat_a3", "customer", "message", "is my payment through?", "c-a-3")
    second = store.add_turn("chat_a3", "system", "handoff_status", "A person will answer by 17:00.", "c-a-3")
    resp = await client.get("/v1/chat/stream?conversation_id=chat_a3", headers=auth(ALICE))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-store"
    got = events(resp.text)
    assert [(e["_id"], e["kind"], e["text"]) for e in got] == [
        (str(first.seq), "message", "is my payment through?"),
        (str(second.seq), "handoff_status", "A person will answer by 17:00."),
    ]
    assert resp.text.startswith("retry: ")
    assert ": heartbeat" in resp.text  # heartbeat comments keep proxies from closing an idle stream


async def test_given_last_event_id_when_reconnecting_then_only_later_turns_are_sent(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_a4", ALICE)
    seen = store.add_turn("chat_a4", "customer", "message", "one", "c-a-4")
    store.add_turn("chat_a4", "assistant", "answer", "two", "c-a-4")
    resumed = await client.get(
        "/v1/chat/stream?conversation_id=chat_a4&after=0",
        headers={**auth(ALICE), "Last-Event-ID": str(seen.seq)},
    )
    assert [e["text"] for e in events(resumed.text)] == ["two"]
    by_query = await client.get(
        f"/v1/chat/stream?conversation_id=chat_a4&after={seen.seq}", headers=auth(ALICE)
    )
    assert [e["text"] for e in events(by_query.text)] == ["two"]


async def test_given_a_turn_stored_while_streaming_when_polled_then_it_arrives_live(
    deps: ChatDeps, store: FakeChatStore
) -> None:
    # Given an open stream on an empty conversation (long enough to see a turn stored after it opened)
    await store.open("chat_a5", ALICE)
    deps.stream_max_s = 30.0
    token = issue_session_token(SESSIONS, ALICE, 600)
    sent: list[bytes] = []
    disconnect, opened = asyncio.Event(), asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))
            if b"connected" in message.get("body", b""):
                opened.set()
            if b"answer arrived" in message.get("body", b""):
                disconnect.set()  # the client goes away once it has what it waited for
        else:
            sent.append(b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/chat/stream",
        "raw_path": b"/v1/chat/stream",
        "query_string": b"conversation_id=chat_a5",
        "headers": [(b"host", b"chat.test"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("chat.test", 80),
    }
    task = asyncio.create_task(app_for(deps)(scope, receive, send))
    await asyncio.wait_for(opened.wait(), 10)
    # When an answer is stored after the stream opened
    store.add_turn("chat_a5", "assistant", "answer", "answer arrived", "c-a-5")
    # Then the stream sends it, and ends cleanly once the client disconnects (the request completes)
    await asyncio.wait_for(task, 10)  # a hang guard, not a timing assertion
    assert any(b"answer arrived" in chunk for chunk in sent)


# ---------------------------------------------------------------------------------------------- ratings
async def test_given_an_answer_when_rated_twice_then_one_row_keeps_both_fields(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_a6", ALICE)
    store.add_turn("chat_a6", "assistant", "answer", "Your refund is on its way.", "c-a-6")
    headers = auth(ALICE)
    first = await client.post(
        "/v1/chat/ratings",
        json={"conversation_id": "chat_a6", "contact_id": "c-a-6", "csat": 4},
        headers=headers,
    )
    second = await client.post(
        "/v1/chat/ratings",
        json={"conversation_id": "chat_a6", "contact_id": "c-a-6", "solved": True},
        headers=headers,
    )
    assert first.status_code == second.status_code == 200
    assert store.ratings == {("chat_a6", "c-a-6"): {"csat": 4, "solved": True}}


async def test_given_a_contact_of_another_conversation_when_rated_then_404(
    client: httpx.AsyncClient, store: FakeChatStore
) -> None:
    await store.open("chat_a7", ALICE)
    resp = await client.post(
        "/v1/chat/ratings",
        json={"conversation_id": "chat_a7", "contact_id": "c-elsewhere", "csat": 5},
        headers=auth(ALICE),
    )
    assert resp.status_code == 404
    assert resp.json()["error"] == "contact_not_found"
    assert store.ratings == {}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"contact_id": "c-1", "csat": 3}, "invalid_conversation_id"),
        ({"conversation_id": "chat_a", "csat": 3}, "invalid_contact_id"),
        ({"conversation_id": "chat_a", "contact_id": "c-1"}, "empty_rating"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": 0}, "invalid_csat"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": 6}, "invalid_csat"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": 4.5}, "invalid_csat"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": "5"}, "invalid_csat"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": True}, "invalid_csat"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "solved": "yes"}, "invalid_solved"),
        ({"conversation_id": "chat_a", "contact_id": "c-1", "csat": 3, "note": "x"}, "unknown_field"),
    ],
)
async def test_given_bad_rating_when_posted_then_422(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    resp = await client.post("/v1/chat/ratings", json=body, headers=auth(ALICE))
    assert resp.status_code == 422
    assert resp.json()["error"] == code


# ---------------------------------------------------------------------------------------------- page
async def test_given_the_widget_when_served_then_framable_per_setting_and_embed_script_points_at_it(
    client: httpx.AsyncClient, deps: ChatDeps
) -> None:
    deps.frame_ancestors = "https://app.example.com"
    page = await client.get("/chat")
    assert page.status_code == 200
    assert "frame-ancestors https://app.example.com" in page.headers["content-security-policy"]
    assert "x-frame-options" not in page.headers
    assert 'id="chat-input"' in page.text
    assert "/v1/chat/stream" in page.text
    script = await client.get("/chat/embed.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert '"/chat"' in script.text


# ---------------------------------------------------------------------------------------------- domain
def test_given_last_event_id_and_after_when_resuming_then_header_wins_and_junk_is_zero() -> None:
    assert chat_domain.resume_after("7", "3") == 7
    assert chat_domain.resume_after(None, "3") == 3
    assert chat_domain.resume_after("abc", None) == 0
    assert chat_domain.resume_after("9" * 40, None) == 0  # not a seq Postgres can hold


def test_given_human_choice_when_the_router_reads_then_customer_asked_for_a_person() -> None:
    text_reading = MessageReading(intent=Intent.INVOICE_REQUEST, confidence=0.4)
    assert reading_for_choice(text_reading, None) is text_reading
    assert reading_for_choice(text_reading, "invoice_request") is text_reading
    chosen = reading_for_choice(text_reading, HUMAN_CHOICE)
    assert (chosen.intent, chosen.confidence) == (Intent.HUMAN_AGENT, 1.0)


async def test_given_a_malformed_conversation_id_in_the_path_when_fetched_then_404(
    client: httpx.AsyncClient,
) -> None:
    for bad in ("-dash-first", "a%20b", "x" * 201, "%00"):
        resp = await client.get(f"/v1/chat/conversations/{bad}", headers=auth(ALICE))
        assert resp.status_code == 404
        assert resp.json()["error"] == "conversation_not_found"
