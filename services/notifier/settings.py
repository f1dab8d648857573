"""Notifier settings: one pydantic-settings class (env prefix TIERLINE_NOTIFIER_)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_NOTIFIER_", extra="ignore")

    # outbound
    mail_from: str = Field(default="billing@tierline.local", description="From of every mail sent")
    support_address: str = Field(
        default="support@tierline.local", description="the address customers write to (Reply-To of replies)"
    )
    message_id_domain: str = "tierline.local"
    notify_max_per_customer: int = Field(default=3, ge=0, description="notices per customer per window")
    notify_window_hours: float = 24.0
    smtp_timeout_s: float = 10.0
    send_attempts: int = Field(default=4, ge=1, description="tries of one mail on transient failures")
    send_backoff_s: float = Field(default=0.5, ge=0, description="first wait between tries (doubles)")
    send_backoff_max_s: float = 8.0
    # inbound
    inbound_enabled: bool = Field(default=True, description="run the SMTP door for the support address")
    inbound_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="larger mail is refused with 552 at SMTP time"
    )
    unknown_sender_reply_hours: float = Field(
        default=24.0, description="at most one 'we could not match your address' reply per address per window"
    )
    # account changes (billing.change.recorded.v1): who hears of each kind of change
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="the support team's Slack incoming-webhook URL; unset = no Slack messages"
    )
    slack_timeout_s: float = Field(default=5.0, gt=0)
    change_channels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per kind of change (billing_email, company_details, tax_id, plan, cancellation, card) "
        'the channels, e.g. {"plan": ["slack"]}; a kind not named gets ["email", "slack"]; [] = none',
    )
