"""All services in this process (tests, benchmarks): the same objects `tierline serve` runs."""

from __future__ import annotations

from typing import Any

from tierline.runtime import Service
from tierline.settings import InfraSettings

PIPELINE = (
    "diagnostics",
    "analytics_sink",
    "tier3_handoff",
    "tier2_agent",
    "tier1_selfheal",
    "tier0_prevent",
    "router",
    "notifier",
)


async def start_pipeline(
    infra: InfraSettings,
    ports: dict[str, int],
    services: tuple[str, ...] = PIPELINE,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[Service]:
    from tierline.registry import load_service_factory

    started: list[Service] = []
    try:
        for name in services:
            settings = infra.model_copy(update={"http_port": ports.get(name)})
            service = load_service_factory(name)(settings, **(overrides or {}).get(name, {}))
            await service.start()  # bounded: a consumer group that does not form is rejoined
            started.append(service)
    except BaseException:
        await stop_pipeline(started)
        raise
    return started


async def stop_pipeline(services: list[Service]) -> None:
    for service in reversed(services):
        await service.stop()
