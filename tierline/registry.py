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
#: Not tierline's own: the reference SaaS product the demo and tests act on through the product connector
#: (``tierline serve product``; started by ``tierline up``, never deployed with tierline).
REFERENCE_SERVICE_MODULES: dict[str, str] = {"product": "services.product.app"}


def load_service_factory(name: str) -> Callable[..., Any]:
    modules = {**SERVICE_MODULES, **REFERENCE_SERVICE_MODULES}
    if name not in modules:
        raise SystemExit(f"unknown service {name!r}; choose from {', '.join(modules)}")
    return importlib.import_module(modules[name]).create_service  # type: ignore[no-any-return]
