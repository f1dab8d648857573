"""The Billing Diagnosis for Tier 0: the diagnostics service's client, or 'unavailable' (Tier 0 degrades)."""

from __future__ import annotations

from schemas.messages import DiagnosisView
from services.tier0_prevent.ports import Diagnostics
from tierline.settings import InfraSettings


class DiagnosticsUnavailable(Exception):  # noqa: N818
    pass


class NoDiagnostics:
    """Used until services/diagnostics/client.py exists: Tier 0 then decides from the event and the mirror."""

    async def diagnose(self, customer_id: str) -> DiagnosisView:
        raise DiagnosticsUnavailable("diagnostics client not installed")


def diagnostics_client(settings: InfraSettings) -> Diagnostics:
    try:
        from services.diagnostics.client import HttpDiagnostics  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return NoDiagnostics()
    return HttpDiagnostics(  # type: ignore[no-any-return]
        settings.diagnostics_url, token=settings.service_token.get_secret_value()
    )
