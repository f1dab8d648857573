from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from tierline.settings import InfraSettings


class RouterSettings(InfraSettings):
    model_config = SettingsConfigDict(env_prefix="TIERLINE_", extra="ignore")

    intent_model_dir: Path | None = None
    repeat_contact_window_days: int = 7
