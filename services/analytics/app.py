"""Wiring of the analytics service (`tierline serve analytics_sink`): the analyst stream into ClickHouse
and its HTTP door.

Consumes outcomes, audit records and case resolutions into its own ClickHouse store
(``InfraSettings.resolved_analytics_clickhouse_dsn``: the server in production, its own chDB path in the
embedded stack), runs the daily drift check, and serves ``/v1/analytics/*`` (`tierline report`,
`tierline audit verify`) with the service token.
"""

from __future__ import annotations

from services.analytics.domain import ChainKeys
from services.analytics.routes import analytics_routes
from services.analytics.sink import register_analytics_sink
from tierline.clickhouse import LazyClient, client_lock
from tierline.runtime import Service
from tierline.service_auth import protect_routes
from tierline.settings import DEFAULT_PORTS, InfraSettings

#: the deployable's name (consumer groups `tierline.analytics_sink.analytics.*`, deploy/, the stack)
NAME = "analytics_sink"


def create_service(settings: InfraSettings) -> Service:
    service = Service.create(
        NAME, settings, http_port=settings.http_port or DEFAULT_PORTS[NAME], needs_postgres=False
    )
    dsn = settings.resolved_analytics_clickhouse_dsn()
    keys = ChainKeys.parse(settings.audit_chain_keys.get_secret_value())  # HMAC-keyed audit chain
    register_analytics_sink(service, LazyClient(dsn), lock=client_lock(dsn), chain_keys=keys)
    service.routes.extend(  # internal API: `tierline report` / `audit verify` send the service token
        protect_routes(
            analytics_routes(LazyClient(dsn), lock=client_lock(dsn), chain_keys=keys),
            settings.service_token.get_secret_value(),
        )
    )
    return service
