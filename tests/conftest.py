"""Session fixtures: the real components, started once on free loopback ports.

Integration tests share one Tansu broker, one PostgreSQL (one database), one localstripe, one SMTP
sink and ONE chDB path (chDB allows one data path per process) for the whole session; tests isolate
themselves with unique customer ids, contact ids and consumer groups.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent.parent
# ../shared beside the checkout when present (CI), else the copies the repo ships in data/
SHARED = (
    REPO_ROOT.parent / "shared"
    if (REPO_ROOT.parent / "shared" / "data" / "scenarios" / "public.jsonl").exists()
    else REPO_ROOT
)
TEST_OUTPUT = REPO_ROOT / "test-output"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "/integration/" in path and not any(m.name == "integration" for m in item.iter_markers()):
            item.add_marker(pytest.mark.integration)
        if "/unit/" in path and not any(m.name == "unit" for m in item.iter_markers()):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT


@pytest.fixture(scope="session")
def stack() -> Iterator[object]:
    """Tansu + PostgreSQL + localstripe + SMTP sink, topics created, migrations applied.

    The data directory lives outside pytest's temp tree: PostgreSQL runs as a separate system user
    when we are root, and opening the path for it would loosen the permissions pytest insists on.
    """
    import shutil
    import tempfile

    from tierline_tools.stack.manager import StackConfig, down, prepare, start_components

    root = Path(tempfile.mkdtemp(prefix="tierline-test-stack-"))
    cfg = StackConfig.for_tests(root)
    try:
        start_components(cfg, fsync=False)
        asyncio.run(prepare(cfg))
        yield cfg
    finally:
        down(cfg)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chDB data path this test process may open."""
    return tmp_path_factory.mktemp("clickhouse")


@pytest.fixture(scope="session")
def infra(stack: object, chdb_path: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    """InfraSettings pointing at the session stack (built explicitly, not from the environment)."""
    from tierline.settings import InfraSettings

    env = stack.env()  # type: ignore[attr-defined]
    return InfraSettings(
        data_dir=Path(env["TIERLINE_DATA_DIR"]),
        kafka_bootstrap=env["TIERLINE_KAFKA_BOOTSTRAP"],
        postgres_dsn=env["TIERLINE_POSTGRES_DSN"],
        stripe_api_base=env["TIERLINE_STRIPE_API_BASE"],
        smtp_port=int(env["TIERLINE_SMTP_PORT"]),
        smtp_inbound_port=int(env["TIERLINE_SMTP_INBOUND_PORT"]),
        clickhouse_dsn=f"chdb://{chdb_path}",
        qdrant_path=tmp_path_factory.mktemp("qdrant"),
        diagnostics_url=env["TIERLINE_DIAGNOSTICS_URL"],
        public_base_url=env["TIERLINE_PUBLIC_BASE_URL"],
        product_api_url=env["TIERLINE_PRODUCT_API_URL"],  # the reference product, when a test starts it
    )


@pytest.fixture(scope="session")
async def pg_pool(infra: object) -> AsyncIterator[object]:
    from tierline.db import create_pool

    pool = await create_pool(infra.postgres_dsn)  # type: ignore[attr-defined]
    yield pool
    await pool.close()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for ids, so tests sharing the session stack never collide."""
    return uuid.uuid4().hex[:10]
