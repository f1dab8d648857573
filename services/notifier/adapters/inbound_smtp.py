"""The support address's SMTP door: aiosmtpd serving in the notifier's own event loop (so the handler
shares its Postgres pool and broker). A mail over the size limit is refused with 552 by aiosmtpd itself
(at MAIL FROM when the client declares its SIZE, else while DATA streams)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP

log = structlog.get_logger(__name__)

#: What the door does with one accepted mail: (raw bytes, SMTP envelope sender) -> nothing; raising
#: makes the door answer 451 so the sending server tries again later.
Receive = Callable[[bytes, str | None], Awaitable[Any]]


class _Handler:
    def __init__(self, receive: Receive) -> None:
        self.receive = receive

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        try:
            await self.receive(raw, envelope.mail_from)
        except Exception as exc:  # noqa: BLE001 - the sender's server retries a 4xx; nothing is lost
            log.exception("email.inbound.failed", error=type(exc).__name__)
            return "451 4.3.0 Temporary failure, please try again later"
        return "250 2.0.0 Message accepted"


class InboundSmtpDoor:
    def __init__(self, receive: Receive, *, host: str, port: int, max_bytes: int) -> None:
        self.handler = _Handler(receive)
        self.host = host
        self.port = port
        self.max_bytes = max_bytes
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            return SMTP(
                self.handler,
                data_size_limit=self.max_bytes,
                hostname="tierline.local",
                ident="tierline support door",
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(factory, host=self.host, port=self.port)
        sockets = list(self._server.sockets or ())
        if sockets:
            self.port = int(sockets[0].getsockname()[1])  # port 0: the one the OS chose
        log.info("email.inbound.listening", host=self.host, port=self.port, max_bytes=self.max_bytes)

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
