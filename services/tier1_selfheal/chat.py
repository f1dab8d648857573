"""The chat widget's HTTP door: the embeddable page, messages in, the conversation's turns out (SSE).

A message is published as ``contact.received.v1`` (channel chat, sender the session's customer) and
nothing else is done here: the router stores the customer's turn, and every answer reaches the
conversation through ``tierline.conversations.say``. The stream reads the stored turns, so a reload, a
reconnect (``Last-Event-ID``) and a second tab all see the same thread. Customer session auth exactly as
the Health Meter (``auth.py``); another customer's conversation is a 404, never shown.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from schemas import Envelope, derived_id, utcnow
from schemas.messages import (
    ContactReceivedPayload,
    ContactReceivedV1,
    ConversationRatedPayload,
    ConversationRatedV1,
    Sender,
)
from schemas.vocab import Channel
from services.tier1_selfheal import chat_domain as chat
from services.tier1_selfheal.auth import (
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from services.tier1_selfheal.ports import ChatStore
from tierline.conversations import Conversation, ConversationMismatch
from tierline.http import read_json

log = structlog.get_logger(__name__)


@dataclass
class ChatDeps:
    store: ChatStore
    publish: Callable[[Envelope[Any]], Awaitable[None]]
    secret: CustomerKeys
    poll_s: float = 0.3
    heartbeat_s: float = 15.0
    #: a stream ends after this long; the browser reconnects with Last-Event-ID (bounds a stuck stream)
    stream_max_s: float = 600.0
    #: who may embed /chat in a frame (CSP frame-ancestors); the page holds no credential of its own
    frame_ancestors: str = "*"


class ChatError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


NOT_FOUND = ChatError(404, "conversation_not_found", "no such conversation")


def _read_static(name: str) -> str:
    return (resources.files("services.tier1_selfheal") / "static" / name).read_text(encoding="utf-8")


def new_conversation_id(customer_id: str, request_id: str | None) -> str:
    """A retried first message (same request id) names the same conversation."""
    if request_id is None:
        return chat.new_conversation_id()
    return f"chat_{derived_id('chat-conversation', customer_id, request_id).hex}"


def chat_routes(get_deps: Callable[[], ChatDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def guarded(
        endpoint: Callable[[Request, ChatDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except ChatError as exc:
                return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)
            except chat.InvalidChatRequest as exc:
                return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=422)
            except InvalidSession as exc:
                return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)

        return wrapper

    def session(request: Request, deps: ChatDeps) -> TokenClaims:
        return verify_token(
            deps.secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,)
        )

    async def own(deps: ChatDeps, conversation_id: str, customer_id: str) -> Conversation:
        """The customer's own conversation; an unknown one and another customer's look the same (404)."""
        conversation = await deps.store.get(conversation_id)
        if conversation is None or conversation.customer_id != customer_id:
            if conversation is not None:
                log.warning("chat.cross_customer_denied", conversation_id=conversation_id)
            raise NOT_FOUND
        return conversation

    async def post_message(request: Request, deps: ChatDeps) -> Response:
        claims = session(request, deps)
        message = chat.parse_message(await read_json(request))
        customer_id = claims.subject
        if message.conversation_id is not None:
            conversation_id = (await own(deps, message.conversation_id, customer_id)).conversation_id
        else:  # a first message: the conversation exists, as this customer's, before the router reads it
            conversation_id = new_conversation_id(customer_id, message.request_id)
            try:
                await deps.store.open(conversation_id, customer_id)
            except ConversationMismatch as exc:
                raise NOT_FOUND from exc
        contact_id = chat.chat_contact_id(customer_id, message.request_id or uuid.uuid4().hex)
        envelope = ContactReceivedV1.build(
            ContactReceivedPayload(
                channel=Channel.CHAT,
                text=message.text,
                sender=Sender(kind="customer_session", subject=customer_id),
                received_at=utcnow(),
                conversation_id=conversation_id,
                choice=message.choice,
            ),
            contact_id=contact_id,
            customer_id=customer_id,
            message_id=chat.chat_message_id(contact_id),
        )
        await deps.publish(envelope)
        log.info(
            "chat.message.received",
            conversation_id=conversation_id,
            contact_id=contact_id,
            choice=message.choice,
            chars=len(message.text),
        )
        return JSONResponse(
            {
                "conversation_id": conversation_id,
                "contact_id": contact_id,
                "message_id": str(envelope.message_id),
                "stream_url": f"/v1/chat/stream?conversation_id={conversation_id}",
            },
            status_code=202,
        )

    async def get_conversation(request: Request, deps: ChatDeps) -> Response:
        claims = session(request, deps)
        conversation_id = str(request.path_params["conversation_id"])
        if not chat.CONVERSATION_ID.fullmatch(conversation_id):  # an id in a path: a bad one is not found
            raise NOT_FOUND
        conversation = await own(deps, conversation_id, claims.subject)
        turns = await deps.store.turns(conversation_id)
        return JSONResponse(
            {
                "conversation_id": conversation_id,
                "channel": conversation.channel.value,
                "status": conversation.status,
                "turns": [chat.turn_json(t) for t in turns],
            }
        )

    async def list_conversations(request: Request, deps: ChatDeps) -> Response:
        """The customer's recent chat conversations (a new tab, or a frame without storage, resumes one)."""
        claims = session(request, deps)
        recent = await deps.store.recent(claims.subject)
        return JSONResponse(
            {
                "conversations": [
                    {"conversation_id": c.conversation_id, "status": c.status}
                    for c in recent
                    if c.customer_id == claims.subject
                ]
            }
        )

    async def get_stream(request: Request, deps: ChatDeps) -> Response:
        claims = session(request, deps)
        conversation_id = chat.conversation_id_of(request.query_params.get("conversation_id"), required=True)
        assert conversation_id is not None
        await own(deps, conversation_id, claims.subject)
        after = chat.resume_after(request.headers.get("last-event-id"), request.query_params.get("after"))
        log.info("chat.stream.opened", conversation_id=conversation_id, after=after)
        return StreamingResponse(
            stream(request, deps, conversation_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def stream(
        request: Request, deps: ChatDeps, conversation_id: str, after: int
    ) -> AsyncIterator[bytes]:
        """The turns after ``after``, then each new one as it is stored (polled), with heartbeats; ends when
        the client goes away or after ``stream_max_s`` (the browser reconnects where it left off)."""
        started = last_beat = time.monotonic()
        last = after
        sent = 0
        yield b"retry: 2000\n: connected\n\n"
        try:
            while not await request.is_disconnected():
                for turn in await deps.store.turns(conversation_id, after_seq=last):
                    yield chat.sse_event(turn)
                    last, sent = turn.seq, sent + 1
                now = time.monotonic()
                if now - started >= deps.stream_max_s:
                    break
                if now - last_beat >= deps.heartbeat_s:
                    yield b": heartbeat\n\n"
                    last_beat = now
                await asyncio.sleep(deps.poll_s)
        finally:
            log.info("chat.stream.closed", conversation_id=conversation_id, sent=sent, last_seq=last)

    async def post_rating(request: Request, deps: ChatDeps) -> Response:
        claims = session(request, deps)
        rating = chat.parse_rating(await read_json(request))
        await own(deps, rating.conversation_id, claims.subject)
        if not await deps.store.has_contact(rating.conversation_id, rating.contact_id):
            raise ChatError(404, "contact_not_found", "no such message in this conversation")
        await deps.store.rate(rating.conversation_id, rating.contact_id, rating.csat, rating.solved)
        await deps.publish(  # the learning loop and the report read ratings from the topic (analytics)
            ConversationRatedV1.build(
                ConversationRatedPayload(
                    conversation_id=rating.conversation_id,
                    csat=rating.csat,
                    solved=rating.solved,
                    channel=Channel.CHAT,
                ),
                contact_id=rating.contact_id,
                customer_id=claims.subject,
                message_id=derived_id(
                    "chat-rating",
                    rating.conversation_id,
                    rating.contact_id,
                    str(rating.csat),
                    str(rating.solved),
                ),
            )
        )
        log.info(
            "chat.answer.rated",
            conversation_id=rating.conversation_id,
            contact_id=rating.contact_id,
            csat=rating.csat,
            solved=rating.solved,
        )
        return JSONResponse(
            {
                "conversation_id": rating.conversation_id,
                "contact_id": rating.contact_id,
                "csat": rating.csat,
                "solved": rating.solved,
            }
        )

    async def page(request: Request) -> Response:
        deps = get_deps()
        return HTMLResponse(
            _read_static("chat.html"),
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                f"frame-ancestors {deps.frame_ancestors}",
            },
        )

    async def embed_script(request: Request) -> Response:
        return Response(
            _read_static("chat_embed.js"),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=300"},
        )

    return [
        Route("/chat", page, methods=["GET"]),
        Route("/chat/embed.js", embed_script, methods=["GET"]),
        Route("/v1/chat/messages", guarded(post_message), methods=["POST"]),
        Route("/v1/chat/stream", guarded(get_stream), methods=["GET"]),
        Route("/v1/chat/conversations", guarded(list_conversations), methods=["GET"]),
        Route("/v1/chat/conversations/{conversation_id}", guarded(get_conversation), methods=["GET"]),
        Route("/v1/chat/ratings", guarded(post_rating), methods=["POST"]),
    ]
