"""What the notifier needs from outside: a mailer and a place to keep attachments."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from services.notifier.domain import Attachment


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver one message or raise ``adapters.smtp.DeliveryFailed``."""


class AttachmentStore(Protocol):
    def keep(self, attachment: Attachment) -> str:
        """Store the file (never parsed); returns where, relative to the data directory."""
