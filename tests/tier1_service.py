"""Tier 1 started alone on the test stack, with an in-process diagnostics over the real mirror, live Stripe
reads and chDB usage: what the browser tests of its pages need."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.tier1_selfheal.app import create_service
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline_tools.stack.procs import free_port


@asynccontextmanager
async def started_tier1(infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    svc = create_service(infra.model_copy(update={"http_port": free_port()}), diagnostics=diagnostics)
    await svc.start()
    await asyncio.sleep(4)  # consumer group join
    try:
        yield svc
    finally:
        await svc.stop()
