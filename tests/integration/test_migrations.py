"""Migrations you can trust: an applied migration whose file changed stops `migrate` and every service
start with the reason, on a real PostgreSQL database of its own."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from tierline.db import MigrationChanged, migrate, migration_files
from tierline.runtime import Service

pytestmark = pytest.mark.integration


async def test_given_an_applied_migration_changed_when_migrating_or_starting_then_both_stop_naming_it(
    stack: Any, infra: Any
) -> None:
    database = f"migrations_{uuid.uuid4().hex[:8]}"
    stack.postgres().create_database(database)
    dsn = f"postgresql://postgres@127.0.0.1:{stack.postgres_port}/{database}"
    applied = await migrate(dsn)
    assert applied == [version for version, _ in migration_files()]
    assert await migrate(dsn) == []  # applied once
    service = Service.create("router", infra.model_copy(update={"postgres_dsn": dsn}))
    await service.start(serve_http=False)  # unchanged files: starts
    await service.stop()

    # what an edited file looks like from the database: its checksum no longer matches
    version = migration_files()[1][0]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = $1", version)
    finally:
        await conn.close()

    with pytest.raises(MigrationChanged, match=version):
        await migrate(dsn)
    service = Service.create("router", infra.model_copy(update={"postgres_dsn": dsn}))
    with pytest.raises(MigrationChanged, match=version):
        await service.start(serve_http=False)
    assert service.pool is None
