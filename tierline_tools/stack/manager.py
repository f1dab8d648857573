"""`tierline up / status / down`: the whole embedded stack, every address configurable."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierline.settings import DEFAULT_PORTS, InfraSettings
from tierline_tools.stack.components import (
    EmbeddedPostgres,
    Health,
    LocalStripe,
    MailSink,
    ObjectStoreS3,
    TansuBroker,
)
from tierline_tools.stack.procs import Managed, free_port, port_open

#: Start order matters: diagnostics answers the others. Diagnostics (usage) and analytics_sink (the
#: analyst tables) each own a chDB path (chDB: one process per path): `.tierline/clickhouse`, `/analytics`.
SERVICES: tuple[str, ...] = (
    "diagnostics",
    "analytics_sink",
    "tier3_handoff",
    "tier2_agent",
    "tier1_selfheal",
    "tier0_prevent",
    "router",
    "notifier",
)
#: Started after the pipeline: the reference SaaS product the product connector acts on (no consumers).
REFERENCE_SERVICES: tuple[str, ...] = ("product",)


@dataclass
class StackConfig:
    data_dir: str
    kafka_port: int = 19092
    postgres_port: int = 15432
    stripe_port: int = 18420
    smtp_port: int = 18025
    #: the support address's SMTP door (served by the notifier service, not a stack component)
    smtp_inbound_port: int = 18026
    s3_port: int = 19000
    #: Tansu keeps its log on our loopback S3 object store (files in ``<data_dir>/broker-log``), so a
    #: broker restart, or a whole ``tierline down``/``up``, loses nothing it acknowledged.
    #: ``tierline up --memory`` and the test stack (``for_tests``) keep it in the broker's memory.
    durable_broker: bool = True
    #: secrets generated for this data dir (`tierline up`): the embedded stack never runs on the values
    #: printed in tierline/settings.py. Empty for the test stack, which uses the built-ins.
    secrets: dict[str, str] = field(default_factory=dict)
    service_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))

    @property
    def root(self) -> Path:
        return Path(self.data_dir)

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def save(self) -> None:
        """Write stack.json, readable by its owner only (it holds the stack's generated secrets)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "stack.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)

    @classmethod
    def load(cls, data_dir: Path) -> StackConfig | None:
        path = data_dir / "stack.json"
        if not path.exists():
            return None
        cfg = cls(**json.loads(path.read_text()))
        cfg.service_ports = {**DEFAULT_PORTS, **cfg.service_ports}  # a service added since it was written
        return cfg

    @classmethod
    def for_tests(cls, data_dir: Path) -> StackConfig:
        return cls(
            data_dir=str(data_dir),
            kafka_port=free_port(),
            postgres_port=free_port(),
            stripe_port=free_port(),
            smtp_port=free_port(),
            smtp_inbound_port=free_port(),
            s3_port=free_port(),
            durable_broker=False,
            service_ports={name: free_port() for name in DEFAULT_PORTS},
        )

    # components ---------------------------------------------------------------------------------
    def s3(self) -> ObjectStoreS3:
        return ObjectStoreS3(self.run_dir, self.root, self.s3_port)

    def kafka(self) -> TansuBroker:
        if self.durable_broker:
            s3 = self.s3()
            return TansuBroker(
                self.run_dir, self.kafka_port, storage_url=f"s3://{s3.bucket}/", extra_env=s3.tansu_env()
            )
        return TansuBroker(self.run_dir, self.kafka_port)

    def postgres(self, fsync: bool = True) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.root, self.postgres_port, fsync=fsync)

    def stripe(self) -> LocalStripe:
        return LocalStripe(self.run_dir, self.root, self.stripe_port)

    def smtp(self) -> MailSink:
        return MailSink(self.run_dir, self.root, self.smtp_port)

    def env(self) -> dict[str, str]:
        """The TIERLINE_* environment that points services at this stack."""
        return {
            "TIERLINE_DATA_DIR": str(self.root.resolve()),
            "TIERLINE_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "TIERLINE_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{self.postgres_port}/tierline",
            "TIERLINE_STRIPE_API_BASE": f"http://127.0.0.1:{self.stripe_port}",
            "TIERLINE_SMTP_PORT": str(self.smtp_port),
            "TIERLINE_SMTP_INBOUND_PORT": str(self.smtp_inbound_port),
            "TIERLINE_DIAGNOSTICS_URL": f"http://127.0.0.1:{self.service_ports['diagnostics']}",
            "TIERLINE_ANALYTICS_URL": f"http://127.0.0.1:{self.service_ports['analytics_sink']}",
            "TIERLINE_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.service_ports['tier1_selfheal']}",
            "TIERLINE_PRODUCT_API_URL": f"http://127.0.0.1:{self.service_ports.get('product', 8108)}",
            **self.secrets,
        }

    def settings(self, **overrides: Any) -> InfraSettings:
        """Settings pointing at this stack (its addresses and secrets), for tools running beside it."""
        fields = {name.removeprefix("TIERLINE_").lower(): value for name, value in self.env().items()}
        return InfraSettings(**{**fields, **overrides})

    def service_proc(self, name: str) -> Managed:
        return Managed(f"svc-{name}", self.run_dir)


def start_broker(cfg: StackConfig) -> None:
    """Start the broker if it is not running: on the same storage as before (S3 first when durable).

    After a kill -9 of the broker, this is what ``tierline up`` does: only the broker starts again, on
    the log it kept; the running services' clients reconnect to it.
    """
    if cfg.durable_broker:
        cfg.s3().start()
    cfg.kafka().start()


def start_components(cfg: StackConfig, *, fsync: bool = True) -> None:
    cfg.save()
    start_broker(cfg)
    cfg.postgres(fsync=fsync).start()
    cfg.stripe().start()
    cfg.smtp().start()


async def prepare(cfg: StackConfig) -> None:
    """Topics with partitions, and the Postgres schema."""
    from tierline.db import migrate
    from tierline.messaging import ensure_topics
    from tierline.settings import TOPIC_PARTITIONS

    env = cfg.env()
    for attempt in range(20):
        try:
            await ensure_topics(env["TIERLINE_KAFKA_BOOTSTRAP"], TOPIC_PARTITIONS)
            break
        except Exception:
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
    await migrate(env["TIERLINE_POSTGRES_DSN"])


def start_services(cfg: StackConfig, services: tuple[str, ...] = SERVICES, timeout: float = 180) -> None:
    env = cfg.env()
    for name in services:
        proc = cfg.service_proc(name)
        if proc.running():
            continue
        proc.spawn(
            [sys.executable, "-m", "tierline.cli", "serve", name, "--port", str(cfg.service_ports[name])],
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        if name == "diagnostics":  # the others call it: wait until it answers
            _wait_service(cfg, name, timeout)
    for name in services:
        _wait_service(cfg, name, timeout)


def _wait_service(cfg: StackConfig, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = service_health(cfg, name)
        if health.ok:
            return
        if not cfg.service_proc(name).running():
            raise RuntimeError(f"service {name} exited at start:\n{cfg.service_proc(name).tail(30)}")
        time.sleep(0.3)
    raise TimeoutError(f"service {name} not healthy after {timeout:.0f}s: {service_health(cfg, name).detail}")


def service_health(cfg: StackConfig, name: str) -> Health:
    proc = cfg.service_proc(name)
    if not proc.running():
        return Health(name, False, "process not running")
    port = cfg.service_ports[name]
    if not port_open(port):
        return Health(name, False, f"starting (port {port} not open yet)")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:  # noqa: S310
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
    except Exception as exc:  # noqa: BLE001
        return Health(name, False, f"health check failed: {exc}")
    bad = {k: v["detail"] for k, v in body.get("checks", {}).items() if not v.get("ok")}
    if bad:
        return Health(name, False, "; ".join(f"{k}: {v}" for k, v in bad.items()))
    return Health(name, True, f"healthy on :{port} ({', '.join(body.get('checks', {}))})")


def status(cfg: StackConfig) -> list[Health]:
    results = []
    comps: list[Any] = [cfg.kafka(), cfg.postgres(), cfg.stripe(), cfg.smtp()]
    if cfg.durable_broker:
        comps.insert(0, cfg.s3())
    for comp in comps:
        results.append(comp.health())
    for name in (*SERVICES, *REFERENCE_SERVICES):
        results.append(service_health(cfg, name))
    # chDB and Qdrant are embedded in their owning services: report what those say about them.
    by_service = {h.name: h for h in results}
    results.append(
        Health(
            "clickhouse",
            by_service["diagnostics"].ok,
            "chDB, owned by diagnostics: " + by_service["diagnostics"].detail,
        )
    )
    results.append(
        Health(
            "clickhouse-analytics",
            by_service["analytics_sink"].ok,
            "chDB, owned by analytics_sink: " + by_service["analytics_sink"].detail,
        )
    )
    results.append(
        Health(
            "qdrant",
            by_service["tier2_agent"].ok,
            "Qdrant local, owned by tier2_agent: " + by_service["tier2_agent"].detail,
        )
    )
    return results


def down(cfg: StackConfig) -> list[str]:
    stopped = []
    for name in reversed((*SERVICES, *REFERENCE_SERVICES)):
        if cfg.service_proc(name).stop():
            stopped.append(name)
    for comp in (cfg.smtp(), cfg.stripe(), cfg.kafka(), cfg.postgres(), cfg.s3()):
        if comp.stop():
            stopped.append(comp.name)
    return stopped


def up(cfg: StackConfig, *, with_services: bool = True) -> float:
    t0 = time.monotonic()
    start_components(cfg)
    asyncio.run(prepare(cfg))
    if with_services:
        start_services(cfg, (*SERVICES, *REFERENCE_SERVICES))
    return time.monotonic() - t0


def generate_secrets() -> dict[str, str]:
    """Fresh random secrets for a new embedded stack (link tokens, customer and agent token keys, each
    with its kid, service token, webhook signing). A stack.json written before the token keys existed
    keeps keys derived per purpose from its session secret."""
    return {
        "TIERLINE_SESSION_SECRET": secrets.token_urlsafe(48),
        "TIERLINE_CUSTOMER_TOKEN_KEYS": f"c-{secrets.token_hex(4)}:{secrets.token_urlsafe(48)}",
        "TIERLINE_AGENT_TOKEN_KEYS": f"a-{secrets.token_hex(4)}:{secrets.token_urlsafe(48)}",
        "TIERLINE_SERVICE_TOKEN": secrets.token_urlsafe(32),
        "TIERLINE_AUDIT_CHAIN_KEYS": f"k{secrets.token_hex(4)}:{secrets.token_urlsafe(32)}",
        "TIERLINE_STRIPE_WEBHOOK_SECRETS": f"whsec_{secrets.token_urlsafe(24)}",
    }


def default_config(data_dir: Path) -> StackConfig:
    existing = StackConfig.load(data_dir)
    if existing is not None:
        return existing
    cfg = StackConfig(data_dir=str(data_dir), secrets=generate_secrets())
    overrides = os.environ.get("TIERLINE_STACK_PORTS")
    if overrides:  # e.g. "kafka=29092,postgres=25432"
        for item in overrides.split(","):
            key, _, value = item.partition("=")
            setattr(cfg, f"{key.strip()}_port", int(value))
    return cfg
