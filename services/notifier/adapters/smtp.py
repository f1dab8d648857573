"""Outbound mail over SMTP with aiosmtplib: one connection kept open and reused across mails (reconnected
when the server drops it), transient failures retried with backoff, permanent ones raised at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

import aiosmtplib
import structlog

from services.notifier.domain import backoff_delays, is_permanent_smtp_code

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class DeliveryFailed(Exception):
    """A mail that could not be delivered: ``permanent`` (the server refused it: 5xx) or retries spent."""

    def __init__(self, detail: str, *, permanent: bool, code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.code = code


def _code(exc: BaseException) -> int | None:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        return max(codes) if codes else None
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) and code > 0 else None


class SmtpMailer:
    """Sends through one reused SMTP connection (mails are serialized on it; a relay takes them in
    order)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float = 10.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool | None = False,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.username = username
        self.password = password
        self.start_tls = start_tls
        self.sleep = sleep
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()
        self.connections_opened = 0  # reuse is observable (tests, /healthz)
        self.sent = 0

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout_s,
            start_tls=self.start_tls,
            username=self.username,
            password=self.password,
        )
        await client.connect()
        self._client = client
        self.connections_opened += 1
        return client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection: nothing to keep
                log.debug("notifier.smtp.close_failed", error=type(exc).__name__)

    async def _send_once(self, message: EmailMessage) -> None:
        """One try; a connection the server closed while idle is reopened once without counting a try."""
        for reopen in (True, False):
            client = await self._connected()
            try:
                await client.send_message(message)
                return
            except aiosmtplib.SMTPServerDisconnected:
                await self._drop()
                if not reopen:
                    raise

    async def send(self, message: EmailMessage) -> None:
        """Deliver one message or raise :class:`DeliveryFailed`."""
        delays = backoff_delays(self.attempts, self.backoff_s, self.backoff_max_s)
        async with self._lock:
            for attempt in range(1, self.attempts + 1):
                try:
                    await self._send_once(message)
                    self.sent += 1
                    return
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    code = _code(exc)
                    detail = f"{type(exc).__name__}: {exc}"[:500]
                    if is_permanent_smtp_code(code):
                        await self._reset_after_refusal()
                        raise DeliveryFailed(detail, permanent=True, code=code) from exc
                    await self._drop()
                    log.warning(
                        "notifier.smtp.retrying", attempt=attempt, of=self.attempts, code=code, error=detail
                    )
                    if attempt == self.attempts:
                        raise DeliveryFailed(
                            f"gave up after {self.attempts} tries: {detail}", permanent=False, code=code
                        ) from exc
                    await self.sleep(delays[attempt - 1])

    async def _reset_after_refusal(self) -> None:
        """After a refused mail the session is mid-transaction: RSET it (or drop it) for the next mail."""
        if self._client is None:
            return
        try:
            await self._client.rset()
        except Exception:  # noqa: BLE001 - a connection we cannot reset is opened afresh next time
            await self._drop()

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except Exception:  # noqa: BLE001 - closing anyway
                    client.close()
