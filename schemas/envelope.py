"""The versioned envelope every message on every topic travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

P = TypeVar("P", bound=BaseModel)

#: Namespace for deterministic message ids: the same cause always yields the same id, so a
#: redelivered input produces byte-identical outputs that downstream consumers de-duplicate.
MESSAGE_NAMESPACE = uuid.UUID("6f1c3a52-6a8e-4d0b-9a57-2d8f3b4c1e90")


def derived_id(*parts: object) -> uuid.UUID:
    """A stable id from the parts that cause a message (e.g. the input message id and a role)."""
    return uuid.uuid5(MESSAGE_NAMESPACE, "|".join(str(p) for p in parts))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[P]):
    """Common header + typed payload. Subclasses pin ``TOPIC`` and the payload type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TOPIC: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utcnow)
    contact_id: str = Field(min_length=1, max_length=200, description="correlation id: the contact")
    customer_id: str = Field(min_length=1, max_length=200, description="partition key")
    causation_id: uuid.UUID | None = Field(default=None, description="message id that caused this one")
    payload: P

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        """A topic's envelope version is fixed: new optional fields keep it, a breaking change is a new
        topic (``.v2``). A version this code does not know is refused, never read as this one."""
        if version != cls.SCHEMA_VERSION:
            raise ValueError(
                f"unknown schema version {version}: this consumer reads version {cls.SCHEMA_VERSION} "
                f"of {cls.TOPIC or 'this topic'} (a breaking change needs a new topic)"
            )
        return version

    @classmethod
    def build(
        cls,
        payload: P,
        *,
        contact_id: str,
        customer_id: str,
        cause: Envelope[Any] | None = None,
        role: str = "",
        message_id: uuid.UUID | None = None,
        occurred_at: datetime | None = None,
    ) -> Self:
        """Build a message; when ``cause`` is given, the id is derived from it (replay-stable)."""
        if message_id is None:
            message_id = derived_id(cause.message_id, cls.TOPIC, role) if cause is not None else uuid.uuid4()
        return cls(
            message_id=message_id,
            type=cls.TOPIC,
            schema_version=cls.SCHEMA_VERSION,
            occurred_at=occurred_at or utcnow(),
            contact_id=contact_id,
            customer_id=customer_id,
            causation_id=cause.message_id if cause is not None else None,
            payload=payload,
        )

    def key(self) -> bytes:
        return self.customer_id.encode()
