"""Tier 3 handoff settings (the only place this service reads the environment)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Tier3Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_TIER3_", extra="ignore")

    sla_check_interval_s: float = 30.0
    ops_email: str = "tier3-leads@tierline.local"
    token_ttl_s: int = 12 * 3600
    console_base_url: str = "http://127.0.0.1:8103/console"
    #: dead letters of one (topic, error kind) within this long of the last one count into its open case
    dead_letter_burst_window_s: float = 3600.0
