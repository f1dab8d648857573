"""Tier 0 settings: one pydantic-settings class (env prefix TIERLINE_TIER0_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Tier0Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_TIER0_", extra="ignore")

    # webhook ingress
    signature_tolerance_s: int = Field(
        default=300, ge=1, description="max age of a Stripe-Signature timestamp"
    )
    max_body_bytes: int = 512 * 1024
    ingest_batch_max: int = Field(default=256, ge=1, description="events per dedupe/publish batch")
    ingest_workers: int = Field(default=4, ge=1, description="concurrent dedupe/publish batches")
    pool_max_size: int = 20
    # dunning
    dunning_offsets_days: list[float] = Field(default_factory=lambda: [1.0, 3.0, 7.0, 14.0])
    dunning_max_attempts: int = Field(
        default=4,
        ge=0,
        description="the longest schedule; the policy's retry.max_attempts.automatic caps it (shipped: 3)",
    )
    dunning_poll_s: float = 30.0
    dunning_claim_batch: int = 20
    dunning_lease_s: float = 600.0
    # proactive nudges
    expiry_window_days: int = 30
    expiry_scan_interval_s: float = 86_400.0
    return_url: str | None = Field(default=None, description="where the update-card page returns to")
    # the forecast-over-limit nudge (issue 21): usage events mark customers; a sweep reads their forecasts
    forecast_nudge_enabled: bool = True
    forecast_threshold: float = Field(
        default=1.0, gt=0, le=2, description="nudge when the forecast passes limit x this (1.0: the limit)"
    )
    forecast_sweep_interval_s: float = Field(
        default=60.0, ge=60, description="how often the sweep wakes (at most once a minute)"
    )
    forecast_settle_s: float = Field(
        default=120.0, ge=0, description="keep reading a customer this long after their last usage event"
    )
    usage_page_url: str | None = Field(default=None, description="the usage page (default /billing/usage)")
