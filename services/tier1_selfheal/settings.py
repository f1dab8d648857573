"""Tier 1 settings (the only place this service reads the environment)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tierline.settings import InfraSettings


class Tier1Settings(InfraSettings):
    """Infra settings plus Tier 1's own (env ``TIERLINE_TIER1_*``). ``http_port`` None = no HTTP door."""

    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    tier1_retention_offer: str = Field(
        default="Before you go: reply within 14 days and we'll take 20% off your next three months.",
        description="offered with a cancellation at period end; empty = none",
    )
    tier1_cookie_secure: bool = Field(default=False, description="mark the session cookie Secure (HTTPS)")
    tier1_diagnosis_timeout_s: float = 10.0
    tier1_session_ttl_s: int = 12 * 3600
    tier1_stripe_publishable_key: str | None = Field(
        default=None,
        description="Stripe publishable key (pk_...) for the card page's Stripe.js; on the emulator any pk_ "
        "works and a built-in one is used when unset",
    )
    tier1_chat_frame_ancestors: str = Field(
        default="*",
        description="CSP frame-ancestors of the chat widget (/chat): the sites that may embed it, e.g. "
        "'https://app.example.com'; the page holds no credential of its own (the host page hands it one)",
    )
    # the product's own sign-in: its JWTs, verified against its JWKS URL (tierline/jwks.py); unset = off
    tier1_jwks_url: str | None = Field(default=None, description="the product's JWKS URL (RS256/ES256 keys)")
    tier1_jwks_issuer: str | None = Field(default=None, description="the exact `iss` of the product's tokens")
    tier1_jwks_audience: str | None = Field(default=None, description="the exact `aud` they must carry")
    tier1_jwks_customer_claim: str = Field(
        default="stripe_customer_id", description="the claim naming the Stripe customer id (cus_...)"
    )
    tier1_stripe_portal_configuration: str | None = Field(
        default=None,
        description="the Stripe Customer Portal configuration (bpc_...) that 'Manage in Stripe' opens; "
        "unset: the account's default",
    )
    tier1_jwks_leeway_s: float = Field(default=30.0, ge=0, le=300, description="allowed clock skew")
