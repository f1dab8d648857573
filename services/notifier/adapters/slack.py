"""Slack incoming webhooks: one POST of the message JSON; transient failures (connection errors, 429,
5xx) are retried with backoff, then :class:`SlackFailed` is raised (the consumer redelivers the event)."""

from __future__ import annotations

from typing import Any

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

log = structlog.get_logger(__name__)


class SlackFailed(Exception):
    def __init__(self, detail: str, *, transient: bool) -> None:
        super().__init__(detail)
        self.detail, self.transient = detail, transient


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, SlackFailed) and exc.transient


class SlackWebhook:
    """Posts to one incoming-webhook URL (the URL is the credential: it is never logged)."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, attempts: int = 3, backoff_s: float = 0.5
    ) -> None:
        self._url = url
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s
        self.sent = 0

    def __repr__(self) -> str:
        return "SlackWebhook(url=***)"

    async def _post_once(self, client: httpx.AsyncClient, message: dict[str, Any]) -> None:
        try:
            response = await client.post(self._url, json=message)
        except httpx.HTTPError as exc:
            raise SlackFailed(f"{type(exc).__name__}", transient=True) from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise SlackFailed(f"HTTP {response.status_code}", transient=True)
        if response.status_code >= 400:
            raise SlackFailed(f"HTTP {response.status_code}: {response.text[:200]}", transient=False)

    async def post(self, message: dict[str, Any]) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff_s, max=8),
                retry=retry_if_exception(_transient),
                reraise=True,
            ):
                with attempt:
                    await self._post_once(client, message)
        self.sent += 1
