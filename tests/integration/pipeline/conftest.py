"""Modules that need the whole pipeline share one: started once for this package, stopped after its last
test, before any other module starts services of its own in the same consumer groups.

A pipeline start costs 2-4 minutes here (every service joins its consumer groups on Tansu), so one start
per module made the suite half an hour longer. Tests here keep to their own customers and keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tierline_tools.stack.inproc import start_pipeline, stop_pipeline


@pytest.fixture(scope="package")
async def pipeline(stack: Any, infra: Any) -> AsyncIterator[list[Any]]:
    services = await start_pipeline(infra, stack.service_ports)
    yield services
    await stop_pipeline(services)
