"""Infrastructure settings shared by every service. Only settings classes read the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPIC_PARTITIONS = 4


class InfraSettings(BaseSettings):
    """Where the components are. Every address is configurable: embedded defaults or production."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    data_dir: Path = Field(default=Path(".tierline"), description="embedded stack data root")
    kafka_bootstrap: str = "127.0.0.1:19092"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:15432/tierline"
    clickhouse_dsn: str = Field(default="", description="chdb://PATH (embedded) or http://host:8123 (server)")
    qdrant_path: Path | None = None
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; overrides qdrant_path")
    stripe_api_base: str | None = Field(
        default=None,
        description="Stripe API base: unset = real Stripe; the embedded stack sets the emulator's",
    )
    stripe_api_key: SecretStr = SecretStr("sk_test_tierline_local")
    stripe_webhook_secrets: str = Field(
        default="whsec_tierline_local", description="comma-separated; two at once during rotation"
    )
    session_secret: SecretStr = SecretStr(
        "tierline-local-session-secret-for-the-embedded-stack-only-change-me-in-production"
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 18025
    public_base_url: str = "http://127.0.0.1:8101"
    diagnostics_url: str = "http://127.0.0.1:8104"
    http_port: int | None = Field(default=None, description="this service's HTTP port (health, API, pages)")
    http_host: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 inside a container")
    log_json: bool | None = None
    broker_join_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="how long a service waits for its consumer groups to form before it rejoins them",
    )
    broker_join_attempts: int = Field(default=3, ge=1)

    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or (self.data_dir / "qdrant")

    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secrets.split(",") if s.strip()]

    @property
    def emulated_stripe(self) -> bool:
        return bool(self.stripe_api_base)


#: Default HTTP ports of the embedded stack (each service also serves /healthz there).
DEFAULT_PORTS: dict[str, int] = {
    "tier0_prevent": 8100,
    "tier1_selfheal": 8101,
    "router": 8102,
    "tier3_handoff": 8103,
    "diagnostics": 8104,
    "tier2_agent": 8105,
    "notifier": 8106,
    "analytics_sink": 8107,
}
