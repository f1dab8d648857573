"""Email over SMTP with the standard library (in a thread; aiosmtplib is not a dependency)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid


class SmtpMailer:
    def __init__(self, host: str, port: int, *, sender: str, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s

    async def send(
        self,
        *,
        to: str,
        subject: str,
        body: str,
        dedupe_key: str,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Deliver one message; returns its Message-ID.

        The Message-ID is derived from the dedupe key, so receivers can dedupe.
        """
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(idstring=dedupe_key.replace("@", "_")[:60], domain="tierline.local")
        msg["X-Tierline-Dedupe-Key"] = dedupe_key
        for name, value in (headers or {}).items():
            msg[name] = value
        msg.set_content(body)

        def deliver() -> None:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.send_message(msg)

        await asyncio.to_thread(deliver)
        return str(msg["Message-ID"])
