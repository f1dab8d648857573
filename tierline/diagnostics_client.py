"""How a stage asks for a Billing Diagnosis: one Protocol, an in-process and an HTTP implementation.

Shared plumbing: every stage (router, tiers 0-3) uses the HTTP client against the diagnostics service's
``/v1/customers/{id}/diagnosis``; the diagnostics service wraps its own diagnostician in-process. The
errors are the diagnosis API's contract, raised on both sides.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from schemas import Envelope
from schemas.messages import DiagnosisView


class DiagnosticsError(Exception):
    """Base error of the Billing Diagnosis."""


class CustomerNotFound(DiagnosticsError, LookupError):
    def __init__(self, customer_id: str) -> None:
        super().__init__(f"no customer {customer_id!r} in the mirror, the subscription store or Stripe")
        self.customer_id = customer_id


class SourceUnavailable(DiagnosticsError):
    """A source (Stripe, Postgres, ClickHouse, the diagnostics service) could not be read."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source} unavailable: {detail}")
        self.source = source
        self.detail = detail


class DiagnosticsClient(Protocol):
    async def diagnose(
        self, customer_id: str, *, contact_id: str | None = None, cause: Envelope[Any] | None = None
    ) -> DiagnosisView: ...


class DiagnosticsUnavailable(SourceUnavailable):
    def __init__(self, detail: str) -> None:
        super().__init__("diagnostics", detail)


class InProcessDiagnostics:
    """Same process: calls the diagnostician directly (no HTTP hop)."""

    def __init__(self, diagnostician: Any) -> None:
        self.diagnostician = diagnostician

    async def diagnose(
        self, customer_id: str, *, contact_id: str | None = None, cause: Envelope[Any] | None = None
    ) -> DiagnosisView:
        result: DiagnosisView = await self.diagnostician.diagnose(
            customer_id, contact_id=contact_id, cause=cause
        )
        return result


class HttpDiagnostics:
    """Another process: ``GET {base_url}/v1/customers/{id}/diagnosis`` with the service token."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, transport=transport, headers=headers
        )

    async def diagnose(
        self, customer_id: str, *, contact_id: str | None = None, cause: Envelope[Any] | None = None
    ) -> DiagnosisView:
        headers = {}
        if contact_id or cause is not None:
            headers["x-contact-id"] = contact_id or (cause.contact_id if cause is not None else "")
        try:
            resp = await self._client.get(
                f"/v1/customers/{httpx.URL(customer_id).path}/diagnosis", headers=headers
            )
        except httpx.HTTPError as exc:
            raise DiagnosticsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 404:
            raise CustomerNotFound(customer_id)
        if resp.status_code != 200:
            raise DiagnosticsUnavailable(f"HTTP {resp.status_code}: {resp.text[:300]}")
        return DiagnosisView.model_validate_json(resp.content)

    async def usage(self, customer_id: str, days: int) -> dict[str, Any]:
        """``GET /v1/customers/{id}/usage?days=N``: the period's figures (with forecast) and daily rows."""
        try:
            resp = await self._client.get(
                f"/v1/customers/{httpx.URL(customer_id).path}/usage", params={"days": days}
            )
        except httpx.HTTPError as exc:
            raise DiagnosticsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 404:
            raise CustomerNotFound(customer_id)
        if resp.status_code != 200:
            raise DiagnosticsUnavailable(f"HTTP {resp.status_code}: {resp.text[:300]}")
        body: dict[str, Any] = resp.json()
        return body

    async def aclose(self) -> None:
        await self._client.aclose()
