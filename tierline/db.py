"""Postgres: one asyncpg pool per process, migrations applied in order, once."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset query (one more round trip per pool call).

    asyncpg still rolls back an open transaction on release. Nothing in tierline keeps session state on
    a pooled connection (advisory locks are transaction-scoped, no LISTEN, no SET), so there is nothing
    to reset; session-level locks (migrations) use a connection of their own.
    """
    return None


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) for every migration, ordered by file name."""
    root = resources.files("tierline") / "migrations"
    files = sorted((p for p in root.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(Path(p.name).stem, p.read_text()) for p in files]


class MigrationChanged(RuntimeError):
    """An applied migration's file is not what was applied: the schema and the code may disagree."""

    def __init__(self, changed: list[str]) -> None:
        self.changed = changed
        super().__init__(
            f"applied migration(s) changed since they were applied: {', '.join(changed)}. A migration "
            "is never edited once applied: restore the file and add a new, higher-numbered one"
        )


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def changed_migrations(applied: dict[str, str], files: list[tuple[str, str]]) -> list[str]:
    """Versions whose stored checksum differs from their file's (pure)."""
    return [
        f"{version} (applied {applied[version][:12]}, file {checksum(sql)[:12]})"
        for version, sql in files
        if version in applied and applied[version] != checksum(sql)
    ]


async def _applied(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    return {
        r["version"]: r["checksum"]
        for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
    }


async def verify_migrations(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Raise :class:`MigrationChanged` if an applied migration's file was edited since (every start)."""
    changed = changed_migrations(await _applied(conn), migration_files())
    if changed:
        raise MigrationChanged(changed)


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations under an advisory lock; returns the versions applied now.

    An applied migration whose file changed since stops it with :class:`MigrationChanged` (nothing new is
    applied on a schema that may not be what the files say).
    """
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(724051)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await verify_migrations(conn)
        done = await _applied(conn)
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    version,
                    checksum(sql),
                )
            applied.append(version)
            log.info("db.migration.applied", version=version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(724051)")
        await conn.close()
    return applied


def record_to_dict(record: Any) -> dict[str, Any]:
    return dict(record) if record is not None else {}
