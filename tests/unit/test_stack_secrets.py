"""`tierline up`'s stack runs on secrets generated for its data dir, never on the printed built-ins;
tools beside it get them; the test stack keeps the built-ins."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tierline.settings import BUILTIN_SERVICE_TOKEN, BUILTIN_SESSION_SECRET, BUILTIN_WEBHOOK_SECRET
from tierline_tools.stack.manager import StackConfig, default_config

pytestmark = pytest.mark.unit


def test_given_a_new_data_dir_when_configured_then_random_secrets_kept_owner_only(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    cfg.save()
    settings = cfg.settings()
    assert settings.session_secret.get_secret_value() != BUILTIN_SESSION_SECRET
    assert settings.service_token.get_secret_value() != BUILTIN_SERVICE_TOKEN
    assert settings.webhook_secrets() != [BUILTIN_WEBHOOK_SECRET]
    assert settings.unsafe_defaults() == []
    assert stat.S_IMODE((tmp_path / "stack.json").stat().st_mode) == 0o600
    again = default_config(tmp_path)  # the same data dir keeps its secrets
    assert again.settings().session_secret.get_secret_value() == settings.session_secret.get_secret_value()
    other = default_config(tmp_path / "other")
    assert other.settings().service_token.get_secret_value() != settings.service_token.get_secret_value()


def test_given_the_test_stack_when_configured_then_it_uses_the_builtins(tmp_path: Path) -> None:
    settings = StackConfig.for_tests(tmp_path).settings()
    assert settings.session_secret.get_secret_value() == BUILTIN_SESSION_SECRET
    assert settings.kafka_bootstrap.startswith("127.0.0.1:")
