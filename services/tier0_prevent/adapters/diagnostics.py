"""The Billing Diagnosis for Tier 0: the diagnostics service's HTTP client (shared plumbing).

When the diagnostics service does not answer, the client raises DiagnosticsUnavailable and Tier 0
decides from the event and the mirror.
"""

from __future__ import annotations

from services.tier0_prevent.ports import Diagnostics
from tierline.diagnostics_client import HttpDiagnostics
from tierline.settings import InfraSettings


def diagnostics_client(settings: InfraSettings) -> Diagnostics:
    return HttpDiagnostics(settings.diagnostics_url, token=settings.service_token.get_secret_value())
