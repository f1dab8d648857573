"""Diagnostics settings (env prefix TIERLINE_DIAGNOSTICS_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DiagnosticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_DIAGNOSTICS_", extra="ignore")

    mirror_max_age_s: float = Field(
        default=6 * 3600, description="older mirror data triggers a live Stripe read"
    )
    stripe_timeout_s: float = 5.0
    usage_batch_size: int = Field(
        default=500, ge=1, description="max usage events written per ClickHouse insert"
    )
    usage_batch_timeout_ms: int = Field(default=500, ge=1, description="max wait to fill a usage batch")
    audit: bool = Field(default=True, description="publish every diagnosis to audit.event.recorded.v1")
