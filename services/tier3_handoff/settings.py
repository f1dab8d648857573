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
    #: the company's identity provider (OIDC): its JWTs, verified against its JWKS (unset = tierline's
    #: own agent tokens only; both work side by side)
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    #: claims → agent: the agent's name, its queues (a list, or a space/comma separated string) and its
    #: groups/roles; the approver role is given by membership of ``oidc_approver_group``
    oidc_agent_claim: str = "preferred_username"
    oidc_queues_claim: str = "tierline_queues"
    oidc_roles_claim: str = "groups"
    oidc_approver_group: str = "billing-approvers"
    oidc_leeway_s: float = 30.0
