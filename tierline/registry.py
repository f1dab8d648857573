"""Where each deployable service is built: ``tierline serve NAME``, the AsyncAPI document and the
in-process stack all build services from here (services are imported by name, never by the shared code).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: service name -> module with create_service(settings)
SERVICE_MODULES: dict[str, str] = {
    "router": "services.router.app",
    "tier0_prevent": "services.tier0_prevent.app",
    "tier1_selfheal": "services.tier1_selfheal.app",
    "tier2_agent": "services.tier2_agent.app",
    "tier3_handoff": "services.tier3_handoff.app",
    "diagnostics": "services.diagnostics.app",
    "notifier": "services.notifier.app",
    "analytics_sink": "services.analytics.app",
}


def load_service_factory(name: str) -> Callable[..., Any]:
    if name not in SERVICE_MODULES:
        raise SystemExit(f"unknown service {name!r}; choose from {', '.join(SERVICE_MODULES)}")
    return importlib.import_module(SERVICE_MODULES[name]).create_service  # type: ignore[no-any-return]
