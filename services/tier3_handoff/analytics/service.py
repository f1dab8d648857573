"""`tierline serve analytics_sink`: the analyst stream on its own, for a ClickHouse server deployment.

In the embedded stack the diagnostics process runs the same sink (it owns the chDB data path).
"""

from __future__ import annotations

from services.diagnostics.adapters.clickhouse import client_lock, get_client
from services.diagnostics.app import LazyClient
from services.tier3_handoff.analytics.routes import analytics_routes
from services.tier3_handoff.analytics.sink import register_analytics_sink
from tierline.runtime import Service
from tierline.service_auth import protect_routes
from tierline.settings import DEFAULT_PORTS, InfraSettings

NAME = "analytics_sink"


def create_service(settings: InfraSettings) -> Service:
    service = Service.create(
        NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME], needs_postgres=False
    )
    dsn = settings.resolved_clickhouse_dsn()
    register_analytics_sink(service, LazyClient(dsn), lock=client_lock(dsn))
    service.routes.extend(  # internal API: `tierline report` / `audit verify` send the service token
        protect_routes(
            analytics_routes(LazyClient(dsn), lock=client_lock(dsn)),
            settings.service_token.get_secret_value(),
        )
    )
    _ = get_client
    return service
