from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tierline.settings import InfraSettings


class AgentSettings(InfraSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    openai_model: str = "gpt-4o-mini"
    openai_max_steps: int = 8
    openai_timeout_s: float = 20.0
    policy_file: str | None = None
    #: answer template A/B experiments to run, comma-separated (`tierline.experiments`); none by default
    experiments: str = ""


class OpenAISettings(BaseSettings):
    """The OpenAI SDK's own variables (no TIERLINE_ prefix)."""

    model_config = SettingsConfigDict(env_prefix="OPENAI_", extra="ignore")

    api_key: SecretStr | None = None
    base_url: str | None = Field(default=None)
