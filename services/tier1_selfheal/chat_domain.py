"""The chat widget's decisions, pure: what a valid message or rating is, the ids a message gets, and how a
turn is framed on the Server-Sent Events stream. No I/O here (the HTTP door is ``chat.py``)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas import derived_id

if TYPE_CHECKING:  # a stored turn is read, never fetched, here
    from tierline.conversations import StoredTurn

#: The longest message a customer may type into the widget (characters, after trimming).
MAX_TEXT_CHARS = 4000
MAX_CHOICE_CHARS = 200
#: Conversation ids are contact-id shaped (``chat_<hex>`` from the widget, a contact id from other doors).
CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}")
REQUEST_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")
#: The turns after which the widget offers a rating: something that tried to solve the ask.
RATEABLE_KINDS = frozenset({"answer", "fix_confirmation", "human_reply", "resolution"})


class InvalidChatRequest(ValueError):
    """A chat body the door refuses (HTTP 422), with a code and a sentence for the customer."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class ChatMessage:
    text: str
    conversation_id: str | None
    choice: str | None
    request_id: str | None


@dataclass(frozen=True)
class Rating:
    conversation_id: str
    contact_id: str
    csat: int | None
    solved: bool | None


def _optional_str(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidChatRequest(f"invalid_{name}", f"{name} must be a string")
    if len(value) > limit:
        raise InvalidChatRequest(f"invalid_{name}", f"{name} must be at most {limit} characters")
    return value


def conversation_id_of(value: Any, *, required: bool = False) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidChatRequest("invalid_conversation_id", "conversation_id is required")
        return None
    if not isinstance(value, str) or not CONVERSATION_ID.fullmatch(value):
        raise InvalidChatRequest("invalid_conversation_id", "conversation_id has the wrong format")
    return value


def parse_message(body: dict[str, Any]) -> ChatMessage:
    """``{text, conversation_id?, choice?, request_id?}``: text required, trimmed, at most 4000 characters."""
    unknown = set(body) - {"text", "conversation_id", "choice", "request_id"}
    if unknown:
        raise InvalidChatRequest("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    text = body.get("text")
    if not isinstance(text, str):
        raise InvalidChatRequest("invalid_text", "text must be a string")
    text = text.strip()
    if not text:
        raise InvalidChatRequest("empty_text", "write a message first")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidChatRequest(
            "text_too_long",
            f"a message may be at most {MAX_TEXT_CHARS} characters (this one has {len(text)})",
        )
    request_id = _optional_str(body, "request_id", 100)
    if request_id is not None and not REQUEST_ID.fullmatch(request_id):
        raise InvalidChatRequest("invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
    return ChatMessage(
        text=text,
        conversation_id=conversation_id_of(body.get("conversation_id")),
        choice=_optional_str(body, "choice", MAX_CHOICE_CHARS),
        request_id=request_id,
    )


def parse_rating(body: dict[str, Any]) -> Rating:
    """``{conversation_id, contact_id, csat?, solved?}``: csat a whole number 1-5, solved a boolean, at
    least one of them."""
    unknown = set(body) - {"conversation_id", "contact_id", "csat", "solved"}
    if unknown:
        raise InvalidChatRequest("unknown_field", f"unknown field(s): {', '.join(sorted(unknown))}")
    conversation_id = conversation_id_of(body.get("conversation_id"), required=True)
    assert conversation_id is not None
    contact_id = body.get("contact_id")
    if not isinstance(contact_id, str) or not CONVERSATION_ID.fullmatch(contact_id):
        raise InvalidChatRequest("invalid_contact_id", "contact_id is required and must be a contact id")
    csat = body.get("csat")
    if csat is not None and (isinstance(csat, bool) or not isinstance(csat, int) or not 1 <= csat <= 5):
        raise InvalidChatRequest("invalid_csat", "csat must be a whole number from 1 to 5")
    solved = body.get("solved")
    if solved is not None and not isinstance(solved, bool):
        raise InvalidChatRequest("invalid_solved", "solved must be true or false")
    if csat is None and solved is None:
        raise InvalidChatRequest("empty_rating", "give csat (1-5), solved (true/false) or both")
    return Rating(conversation_id=conversation_id, contact_id=contact_id, csat=csat, solved=solved)


def new_conversation_id() -> str:
    return f"chat_{uuid.uuid4().hex}"


def chat_contact_id(customer_id: str, request_id: str) -> str:
    """The same message (same request id) names the same contact: a double send is one message."""
    return f"chat_{derived_id('chat-message', customer_id, request_id).hex}"


def chat_message_id(contact_id: str) -> uuid.UUID:
    return derived_id("chat-contact-received", contact_id)


def turn_json(turn: StoredTurn) -> dict[str, Any]:
    """A turn as the widget sees it (no internal delivery or email fields)."""
    return {
        "seq": turn.seq,
        "turn_id": str(turn.turn_id),
        "role": turn.role,
        "kind": turn.kind,
        "author": turn.author if turn.role != "agent" else "billing team",
        "text": turn.text,
        "contact_id": turn.contact_id,
        "choices": turn.choices,
        "rateable": turn.kind in RATEABLE_KINDS and turn.role != "customer",
        "created_at": turn.created_at.isoformat(),
    }


def sse_event(turn: StoredTurn) -> bytes:
    """One turn as an SSE event: its seq is the event id, so a reconnect resumes with Last-Event-ID."""
    data = json.dumps(turn_json(turn), separators=(",", ":"), ensure_ascii=False)
    return f"id: {turn.seq}\nevent: turn\ndata: {data}\n\n".encode()


def resume_after(last_event_id: str | None, after: str | None) -> int:
    """Where a stream starts: Last-Event-ID (a reconnect) wins over ``?after=``; anything else is 0."""
    for value in (last_event_id, after):
        if value is not None and value.strip().isdigit() and len(value.strip()) <= 18:
            return int(value.strip())
    return 0
