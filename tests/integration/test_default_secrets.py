"""`tierline serve` refuses the built-in secrets outside the embedded stack (a real process, real stack)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration

BUILTINS = (
    "TIERLINE_STRIPE_API_KEY",
    "TIERLINE_STRIPE_WEBHOOK_SECRETS",
    "TIERLINE_SESSION_SECRET",
    "TIERLINE_SERVICE_TOKEN",
)
OWN = {
    "TIERLINE_STRIPE_API_KEY": "rk_live_0123456789abcdefghij",
    "TIERLINE_STRIPE_WEBHOOK_SECRETS": "whsec_0123456789abcdefghij",
    "TIERLINE_SESSION_SECRET": "session-0123456789abcdefghijklmnopqrstuvwxyz",
}


def production_env(stack: Any, **extra: str) -> dict[str, str]:
    """The session stack's broker and Postgres, but real Stripe (no API base) and a container bind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERLINE_")}
    env.update(stack.env())
    del env["TIERLINE_STRIPE_API_BASE"]  # unset = the real Stripe API
    env.update(TIERLINE_HTTP_HOST="0.0.0.0", PYTHONUNBUFFERED="1", **extra)  # noqa: S104
    return env


def serve(service: str, env: dict[str, str], port: int) -> subprocess.CompletedProcess[str]:
    # without the refusal the service would start and serve until killed: the timeout ends that run
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tierline.cli", "serve", service, "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_given_real_stripe_and_the_built_in_secrets_when_diagnostics_is_served_then_it_refuses(
    stack: Any,
) -> None:
    """Given real-Stripe settings with every built-in secret, When `tierline serve diagnostics` runs,
    Then it exits non-zero at once, naming every variable to set, and serves nothing."""
    from tierline_tools.stack.procs import free_port

    port = free_port()
    done = serve("diagnostics", production_env(stack), port)

    assert done.returncode != 0, done.stdout + done.stderr
    assert "diagnostics: refusing to start with the built-in secrets" in done.stderr
    for name in BUILTINS:
        assert name in done.stderr


def test_given_production_missing_only_the_service_token_when_served_then_exactly_it_is_named(
    stack: Any,
) -> None:
    """Given every secret set but TIERLINE_SERVICE_TOKEN, When `tierline serve router` runs, Then it
    refuses naming that one variable only."""
    from tierline_tools.stack.procs import free_port

    done = serve("router", production_env(stack, **OWN), free_port())

    assert done.returncode != 0, done.stdout + done.stderr
    assert "router: refusing to start" in done.stderr
    assert "TIERLINE_SERVICE_TOKEN" in done.stderr
    assert not any(name in done.stderr for name in OWN)
