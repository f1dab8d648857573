"""Infrastructure settings shared by every service. Only settings classes read the environment."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tierline.tokens import AGENT_PURPOSE, CUSTOMER_PURPOSE, KeySet

TOPIC_PARTITIONS = 4

#: The secrets printed below. Good for the embedded stack only: anyone who reads this file knows them.
BUILTIN_STRIPE_API_KEY = "sk_test_tierline_local"
BUILTIN_WEBHOOK_SECRET = "whsec_tierline_local"  # noqa: S105 - public on purpose, refused off loopback
BUILTIN_SESSION_SECRET = "tierline-local-session-secret-for-the-embedded-stack-only-change-me-in-production"  # noqa: S105, E501
BUILTIN_SERVICE_TOKEN = "tierline-local-service-token-for-the-embedded-stack-only"  # noqa: S105
BUILTIN_PRODUCT_API_TOKEN = "tierline-local-product-token-for-the-reference-product-only"  # noqa: S105
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


class DefaultSecretsRefused(RuntimeError):
    """A service would use a built-in secret against something other than the embedded emulators."""

    def __init__(self, service: str, variables: list[str], where: str) -> None:
        self.service = service
        self.variables = variables
        super().__init__(
            f"{service}: refusing to start with the built-in secrets printed in tierline/settings.py "
            f"outside the embedded stack ({where}). Set {', '.join(variables)} to your own values "
            "(a long random string each; Stripe's keys from its dashboard)."
        )


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and localhost; not 0.0.0.0, not a name that could resolve elsewhere."""
    if not host:
        return False
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class InfraSettings(BaseSettings):
    """Where the components are. Every address is configurable: embedded defaults or production."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    data_dir: Path = Field(default=Path(".tierline"), description="embedded stack data root")
    kafka_bootstrap: str = "127.0.0.1:19092"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:15432/tierline"
    clickhouse_dsn: str = Field(default="", description="chdb://PATH (embedded) or http://host:8123 (server)")
    analytics_clickhouse_dsn: str = Field(
        default="",
        description="the analyst tables' ClickHouse (the analytics service's): TIERLINE_CLICKHOUSE_DSN "
        "when unset and that is set, else its own embedded chDB path (chDB: one process per path)",
    )
    qdrant_path: Path | None = None
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; overrides qdrant_path")
    stripe_api_base: str | None = Field(
        default=None,
        description="Stripe API base: unset = real Stripe; the embedded stack sets the emulator's",
    )
    stripe_api_key: SecretStr = SecretStr(BUILTIN_STRIPE_API_KEY)
    stripe_webhook_secrets: str = Field(
        default=BUILTIN_WEBHOOK_SECRET, description="comma-separated; two at once during rotation"
    )
    session_secret: SecretStr = SecretStr(BUILTIN_SESSION_SECRET)
    customer_token_keys: SecretStr = Field(
        default=SecretStr(""),
        description="customer session keys, kid:secret,... (first signs); empty = derived per purpose",
    )
    agent_token_keys: SecretStr = Field(
        default=SecretStr(""),
        description="console agent keys, kid:secret,... (first signs); empty = derived per purpose",
    )
    service_token: SecretStr = Field(
        default=SecretStr(BUILTIN_SERVICE_TOKEN),
        description="bearer credential of the internal HTTP APIs (diagnostics, analytics)",
    )
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 18025
    smtp_inbound_port: int | None = Field(
        default=18026,
        description="the support address's SMTP door, served by the notifier (0: any free port; "
        "unset: no SMTP door, the inbound webhook only)",
    )
    public_base_url: str = "http://127.0.0.1:8101"
    diagnostics_url: str = "http://127.0.0.1:8104"
    analytics_url: str = Field(
        default="http://127.0.0.1:8107", description="the analytics API (`tierline report`, `audit verify`)"
    )
    product_api_url: str = Field(
        default="http://127.0.0.1:8108",
        description="the SaaS product's API the product connector calls (default: the reference product)",
    )
    product_api_token: SecretStr = Field(
        default=SecretStr(BUILTIN_PRODUCT_API_TOKEN),
        description="bearer credential of the product's API (the connector sends it; the reference "
        "product checks it)",
    )
    audit_chain_keys: SecretStr = Field(
        default=SecretStr(""),
        description="kid:secret[,kid:secret…]: HMAC keys of the audit hash chain, the first signs, all "
        "verify (rotation); unset: an unkeyed SHA-256 chain (`tierline up` generates a key)",
    )
    product_actions_path: Path | None = Field(
        default=None,
        description="the operator's product connector YAML; unset: tierline/billing/product_actions.yaml",
    )
    http_port: int | None = Field(default=None, description="this service's HTTP port (health, API, pages)")
    metrics_port: int | None = Field(
        default=None, description="where a service without an HTTP port serves /metrics (none: not served)"
    )
    http_host: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 inside a container")
    log_json: bool | None = None
    broker_join_timeout_s: float = Field(
        default=90.0,
        gt=0,
        description="how long a service waits for its consumer groups to form before it rejoins them",
    )
    broker_join_attempts: int = Field(default=3, ge=1)
    consumer_stall_after_s: float = Field(
        default=120.0,
        gt=0,
        description="a consumer on the same offset this long makes /healthz report degraded, naming it",
    )

    def resolved_clickhouse_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    def resolved_analytics_clickhouse_dsn(self) -> str:
        """The analytics service's store: its own setting, else the usage store's server (or the one chDB
        path a process was given, as the in-process test pipeline is), else its own embedded chDB path."""
        return (
            self.analytics_clickhouse_dsn
            or self.clickhouse_dsn
            or f"chdb://{(self.data_dir / 'analytics').resolve()}"
        )

    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path or (self.data_dir / "qdrant")

    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secrets.split(",") if s.strip()]

    def customer_token_keyset(self) -> KeySet:
        """Keys of customer session tokens (Health Meter): configured, or derived for this purpose."""
        return self._token_keyset(CUSTOMER_PURPOSE, self.customer_token_keys)

    def agent_token_keyset(self) -> KeySet:
        """Keys of agent tokens (Tier 3 console): configured, or derived for this purpose."""
        return self._token_keyset(AGENT_PURPOSE, self.agent_token_keys)

    def _token_keyset(self, purpose: str, configured: SecretStr) -> KeySet:
        spec = configured.get_secret_value()
        if spec.strip():
            return KeySet.parse(purpose, spec)
        return KeySet.derived(purpose, self.session_secret.get_secret_value())

    @model_validator(mode="after")
    def _token_keys_apart(self) -> InfraSettings:
        """Customer and agent tokens never share a key (parsing here also rejects a malformed set)."""
        shared = self.customer_token_keyset().secrets() & self.agent_token_keyset().secrets()
        if shared:
            raise ValueError("TIERLINE_CUSTOMER_TOKEN_KEYS and TIERLINE_AGENT_TOKEN_KEYS share a key")
        return self

    @property
    def emulated_stripe(self) -> bool:
        return bool(self.stripe_api_base)

    def embedded(self) -> bool:
        """The embedded stack: Stripe is a loopback emulator with a test key, HTTP bound to loopback."""
        key = self.stripe_api_key.get_secret_value()
        stripe_host = urlsplit(self.stripe_api_base).hostname if self.stripe_api_base else None
        return (
            is_loopback(stripe_host) and not key.startswith(LIVE_KEY_PREFIXES) and is_loopback(self.http_host)
        )

    def unsafe_defaults(self) -> list[str]:
        """The variables still holding a built-in secret, when these settings are not the embedded stack."""
        if self.embedded():
            return []
        in_use = {
            "TIERLINE_STRIPE_API_KEY": self.stripe_api_key.get_secret_value() == BUILTIN_STRIPE_API_KEY,
            "TIERLINE_STRIPE_WEBHOOK_SECRETS": BUILTIN_WEBHOOK_SECRET in self.webhook_secrets(),
            "TIERLINE_SESSION_SECRET": self.session_secret.get_secret_value() == BUILTIN_SESSION_SECRET,
            "TIERLINE_SERVICE_TOKEN": self.service_token.get_secret_value() == BUILTIN_SERVICE_TOKEN,
        }
        return [name for name, builtin in in_use.items() if builtin]

    def refuse_unsafe_defaults(self, service: str) -> None:
        """Raise :class:`DefaultSecretsRefused` naming every variable to set, if any built-in is unsafe."""
        unsafe = self.unsafe_defaults()
        if unsafe:
            stripe = f"Stripe at {self.stripe_api_base}" if self.stripe_api_base else "real Stripe"
            raise DefaultSecretsRefused(service, unsafe, f"{stripe}, HTTP bound to {self.http_host}")


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
    "product": 8108,
}


class TracingSettings(BaseSettings):
    """Traces are exported only when an OTLP endpoint is configured (the standard OpenTelemetry
    variables, or ``TIERLINE_OTLP_ENDPOINT``); without one no span is ever built."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore", populate_by_name=True)

    otlp_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices(
            "TIERLINE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OTLP/HTTP traces endpoint (http://collector:4318/v1/traces); empty: no tracing",
    )
    trace_sample_ratio: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="share of new traces (a contact at its door) recorded; hops follow their parent",
    )
