"""Running one service: its broker, its Postgres pool, its HTTP door, in one event loop.

``services/<name>/app.py`` exposes ``create_service(settings) -> Service``; ``tierline serve <name>``
runs it until SIGTERM. Tests start the same objects in-process against the real components.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
import uvicorn
from faststream.kafka import KafkaBroker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tierline import http as http_guard
from tierline import metrics
from tierline.db import create_pool, verify_migrations
from tierline.http_contracts import openapi_document
from tierline.messaging import DeadLetterRouter, make_broker
from tierline.settings import InfraSettings

log = structlog.get_logger(__name__)

Hook = Callable[["Service"], Awaitable[None]]
HealthCheck = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass
class Service:
    """One deployable unit: consumers on a broker, an optional HTTP app, start/stop hooks."""

    name: str
    settings: InfraSettings
    broker: KafkaBroker
    dead_letters: DeadLetterRouter
    http_port: int | None = None
    routes: list[Any] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    background: list[Callable[[Service], Coroutine[Any, Any, None]]] = field(default_factory=list)
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    needs_postgres: bool = True
    pool: asyncpg.Pool | None = None
    state: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _server: uvicorn.Server | None = None
    started: bool = False

    @classmethod
    def create(cls, name: str, settings: InfraSettings, **kwargs: Any) -> Service:
        dead_letters = DeadLetterRouter(name)
        broker = make_broker(settings.kafka_bootstrap, name, dead_letters)
        return cls(name=name, settings=settings, broker=broker, dead_letters=dead_letters, **kwargs)

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, f"{self.name}: Postgres pool not started"
        return self.pool

    def documents_publishing(self, *models: type[Any]) -> None:
        """Declare what this service publishes, so the generated AsyncAPI document shows it."""
        for model in models:
            self.broker.publisher(model.TOPIC, schema=model, title=f"{self.name}:{model.TOPIC}")

    def asgi(self) -> Starlette:
        """The HTTP door: every body bounded, every error answered in JSON (``tierline.http``)."""
        return Starlette(
            routes=[
                *self.routes,
                Route("/openapi.json", self._openapi),
                Route("/livez", self._livez),
                Route("/metrics", metrics.metrics_response),
                Route("/healthz", self._healthz),
                Route("/readyz", self._healthz),
            ],
            middleware=http_guard.middleware(),
            exception_handlers=http_guard.exception_handlers(),
        )

    def openapi(self) -> dict[str, Any]:
        """This service's OpenAPI document, generated from its routes and their contracts (public)."""
        return openapi_document(
            self.asgi().routes,
            title=f"tierline {self.name}",
            description=f"The HTTP door of tierline's {self.name} service (generated from its routes).",
        )

    async def _openapi(self, request: Request) -> JSONResponse:
        """This document: the service's routes, their bodies and credentials (no secrets)."""
        if "openapi" not in self.state:  # the routes are fixed once the door serves: generated once
            self.state["openapi"] = self.openapi()
        return JSONResponse(self.state["openapi"])

    async def _livez(self, request: Request) -> JSONResponse:
        """Liveness: the process and its event loop answer (dependencies are readiness, not liveness)."""
        return JSONResponse({"service": self.name, "ok": self.started})

    async def _healthz(self, request: Request) -> JSONResponse:
        results = await self.check_health()
        ok = all(r["ok"] for r in results.values())
        status = "ok" if ok else "degraded"
        return JSONResponse(
            {"service": self.name, "ok": ok, "status": status, "checks": results},
            status_code=200 if ok else 503,
        )

    async def check_health(self) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        try:
            ok = await asyncio.wait_for(self.broker.ping(timeout=2.0), 3.0)
            results["kafka"] = {"ok": bool(ok), "detail": "broker reachable" if ok else "broker ping failed"}
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            results["kafka"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.fetchval("SELECT 1"), 3.0)
                results["postgres"] = {"ok": True, "detail": "query ok"}
            except Exception as exc:  # noqa: BLE001
                results["postgres"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
        stalled = self.dead_letters.progress.stalled(self.settings.consumer_stall_after_s)
        results["consumers"] = {
            "ok": not stalled,
            "detail": "; ".join(stalled) if stalled else "every consumer moving",
            "dead_letters_recorded": self.dead_letters.recorded,
        }
        for name, check in self.health_checks.items():
            try:
                ok, detail = await asyncio.wait_for(check(), 5.0)
            except Exception as exc:  # noqa: BLE001
                ok, detail = False, f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": ok, "detail": detail}
        return results

    async def start(self, *, serve_http: bool = True) -> None:
        # before connecting to anything: built-in secrets only ever face the embedded emulators
        self.settings.refuse_unsafe_defaults(self.name)
        if self.needs_postgres:
            self.pool = await create_pool(self.settings.postgres_dsn)
            try:
                await verify_migrations(self.pool)  # an edited migration file stops the start
            except BaseException:
                await self.pool.close()
                self.pool = None
                raise
            try:  # retry counts that survive a restart (a message that crashes the process)
                await self.dead_letters.attach(self.pool)
            except Exception as exc:  # noqa: BLE001 - counted in memory, as without Postgres
                log.warning("service.attempts_in_memory", service=self.name, error=f"{type(exc).__name__}")
        for hook in self.on_start:
            await hook(self)
        await self._start_broker()
        for job in self.background:
            self._tasks.append(asyncio.create_task(job(self), name=f"{self.name}:{job.__name__}"))
        metrics.CONSUMER_LAG.watch(self.name, self.broker)
        # a service without an HTTP door still serves /metrics, alone, on its metrics port if one is set
        port = self.http_port if self.http_port is not None else self.settings.metrics_port
        if serve_http and port is not None:
            config = uvicorn.Config(
                self.asgi() if self.http_port is not None else metrics.metrics_app(),
                host=self.settings.http_host,
                port=port,
                log_level="warning",
                lifespan="off",
            )
            self._server = uvicorn.Server(config)
            self._tasks.append(asyncio.create_task(self._server.serve(), name=f"{self.name}:http"))
            for _ in range(100):
                if self._server.started:
                    break
                await asyncio.sleep(0.05)
        self.started = True
        log.info("service.started", service=self.name, http_port=self.http_port)

    async def _start_broker(self) -> None:
        """Start the consumers; a group that does not form in time is left and joined again.

        A consumer's start waits for its partition assignment, so a join round the broker never
        completes would hang the service for good. Each attempt is bounded; after the last, the start
        fails with the reason and where every task was waiting. (The stall seen with Tansu — a group
        whose members read different topics — came back on every rejoin; one topic per group is what
        avoids it.)
        """
        timeout = self.settings.broker_join_timeout_s
        attempts = self.settings.broker_join_attempts
        for attempt in range(1, attempts + 1):
            try:
                await asyncio.wait_for(self.broker.start(), timeout)
                return
            except TimeoutError:
                log.warning(
                    "service.broker_join_timeout",
                    service=self.name,
                    attempt=attempt,
                    timeout_s=timeout,
                    waiting_in=awaiting_tasks(),
                )
                with contextlib.suppress(Exception):
                    await self.broker.stop()
        raise TimeoutError(f"{self.name}: consumer groups did not form in {attempts} x {timeout:.0f} s")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            if task.get_name().endswith(":http"):
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, 5)
            else:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        metrics.CONSUMER_LAG.unwatch(self.name)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for hook in self.on_stop:
            with contextlib.suppress(Exception):
                await hook(self)
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        self.started = False
        log.info("service.stopped", service=self.name)

    async def run_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        await stop.wait()
        await self.stop()


def awaiting_tasks() -> list[str]:
    """Where each task of the running loop waits (module:line, outermost first): for a start that hangs."""
    out = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        frames = []
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        out.append(f"{task.get_name()}: " + " > ".join(frames))
    return out
