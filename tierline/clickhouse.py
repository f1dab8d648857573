"""The ClickHouse client of a process (chDB embedded or a ClickHouse server over HTTP, same client).

chDB opens one data path per process: :func:`get_client` returns the process's one client per DSN, and
:func:`client_lock` serialises calls on it (chDB sessions are not safe for concurrent use). Services
sharing a process (the in-process test pipeline) share the client of a DSN through this registry.
"""

from __future__ import annotations

import threading
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

_CLIENTS: dict[str, Client] = {}
_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY_LOCK = threading.Lock()


def get_client(dsn: str) -> Client:
    """The one ClickHouse client of this process for ``dsn`` (chDB: one data path per process)."""
    with _REGISTRY_LOCK:
        client = _CLIENTS.get(dsn)
        if client is None:
            client = clickhouse_connect.get_client(dsn=dsn)
            _CLIENTS[dsn] = client
            _LOCKS.setdefault(dsn, threading.Lock())
        return client


def client_lock(dsn: str) -> threading.Lock:
    """Serialises calls on the shared client (chDB sessions are not safe for concurrent use).

    Opens nothing: a service is built with its lock and opens the engine on first use."""
    with _REGISTRY_LOCK:
        return _LOCKS.setdefault(dsn, threading.Lock())


class LazyClient:
    """Opens the process's ClickHouse client on first use (building a service opens nothing)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __getattr__(self, name: str) -> Any:
        return getattr(get_client(self.dsn), name)
