"""Keys and tokens: customer and agent tokens under different keys, each key named by a kid, rotated
without downtime; `tierline token` mints them from the stack's secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from services.tier1_selfheal.auth import CustomerKeys, InvalidSession, issue_session_token, verify_token
from services.tier3_handoff.auth import (
    InvalidAgentToken,
    KeySetVerifier,
    issue_agent_token,
    verify_agent_token,
)
from tierline.settings import BUILTIN_SESSION_SECRET, InfraSettings
from tierline.tokens import KeySet, TokenRefused, hkdf_sha256
from tierline_tools.stack.manager import StackConfig, default_config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
ROOT = "a-long-random-session-secret-for-these-unit-tests-0123456789"
OLD = "k1:old-agent-key-with-enough-length-0123456789"
NEW = "k2:new-agent-key-with-enough-length-0123456789"
EMULATOR = {"stripe_api_base": "http://127.0.0.1:18420"}


@pytest.fixture(autouse=True)
def no_tierline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("TIERLINE_")]:
        monkeypatch.delenv(name)


def settings(**fields: str) -> InfraSettings:
    return InfraSettings(**{**EMULATOR, "session_secret": ROOT, **fields})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- signing and kid
def test_given_a_key_set_when_signing_then_the_header_names_the_current_key_and_any_key_verifies() -> None:
    keys = KeySet.parse("agent", f"{NEW},{OLD}")
    token = keys.sign({"sub": "ana", "exp": int(time.time()) + 60})
    assert jwt.get_unverified_header(token)["kid"] == "k2"
    assert keys.decode(token)["sub"] == "ana"
    assert "old-agent-key" not in repr(keys)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (jwt.encode({"sub": "ana"}, "old-agent-key-with-enough-length-0123456789", algorithm="HS256"), "kid"),
        (KeySet.parse("agent", "k9:" + "x" * 40).sign({"sub": "ana"}), "'k9'"),
        # the header names k2 but the token was signed with another key
        (KeySet.parse("agent", "k2:" + "y" * 40).sign({"sub": "ana"}), "invalid token"),
        ("not-a-jwt", "invalid token"),
        ("", "no token"),
    ],
)
def test_given_a_token_without_a_known_kid_or_forged_when_decoded_then_refused(
    token: str, reason: str
) -> None:
    with pytest.raises(TokenRefused, match=reason):
        KeySet.parse("agent", f"{NEW},{OLD}").decode(token)


def test_given_rotation_when_new_key_added_then_old_tokens_verify_until_their_key_is_removed() -> None:
    before = settings(agent_token_keys=OLD)
    old_token = issue_agent_token(before.agent_token_keyset(), "ana", ["billing"])
    during = settings(agent_token_keys=f"{NEW},{OLD}")  # new key first: it signs; the old one still verifies
    new_token = issue_agent_token(during.agent_token_keyset(), "ana", ["billing"])
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    for token in (old_token, new_token):
        assert verify_agent_token(during.agent_token_keyset(), token).agent_id == "ana"
    after = settings(agent_token_keys=NEW)  # old key removed
    assert verify_agent_token(after.agent_token_keyset(), new_token).agent_id == "ana"
    with pytest.raises(InvalidAgentToken, match="'k1'"):
        verify_agent_token(after.agent_token_keyset(), old_token)


# ----------------------------------------------------------------------------- no cross use
@pytest.mark.parametrize(
    "fields",
    [
        {},  # both derived from the one session secret
        {"customer_token_keys": "c1:" + "c" * 40, "agent_token_keys": "a1:" + "a" * 40},
        # a careless operator gives both sets the same kid: the keys still differ, nothing crosses
        {"customer_token_keys": "k1:" + "c" * 40, "agent_token_keys": "k1:" + "a" * 40},
    ],
)
def test_given_customer_and_agent_tokens_when_used_at_the_other_door_then_refused(
    fields: dict[str, str],
) -> None:
    cfg = settings(**fields)
    customer_keys, agent_keys = CustomerKeys.from_settings(cfg), cfg.agent_token_keyset()
    assert cfg.customer_token_keyset().secrets().isdisjoint(agent_keys.secrets())
    customer = issue_session_token(cfg.customer_token_keyset(), "cus_A", 600)
    agent = issue_agent_token(agent_keys, "ana", ["billing"], roles=["approver"])
    assert verify_token(customer_keys, customer).subject == "cus_A"
    assert KeySetVerifier(agent_keys).verify(agent).agent_id == "ana"
    with pytest.raises(InvalidAgentToken):
        verify_agent_token(agent_keys, customer)
    with pytest.raises(InvalidSession):
        verify_token(customer_keys, agent)


def test_given_one_root_secret_when_deriving_then_keys_differ_per_purpose_and_per_secret() -> None:
    customer, agent = KeySet.derived("customer", ROOT), KeySet.derived("agent", ROOT)
    assert customer.current.secret != agent.current.secret
    assert customer.current.kid.startswith("customer-")
    assert agent.current.kid.startswith("agent-")
    assert KeySet.derived("agent", ROOT + "x").current.secret != agent.current.secret
    assert KeySet.derived("agent", ROOT) == agent  # deterministic: every replica derives the same key
    assert len(hkdf_sha256(b"root", b"info", 80)) == 80


def test_given_key_sets_that_share_a_key_or_are_malformed_when_configured_then_settings_refuse() -> None:
    with pytest.raises(ValidationError, match="share a key"):
        settings(customer_token_keys="c1:" + "s" * 40, agent_token_keys="a1:" + "s" * 40)
    for bad in ("k1", "k1:short", ":" + "s" * 40, f"{OLD},{OLD}"):
        with pytest.raises(ValidationError):
            settings(agent_token_keys=bad)


# ----------------------------------------------------------------------------- roles
def test_given_an_approver_token_when_verified_then_roles_come_back() -> None:
    keys = KeySet.parse("agent", NEW)
    lead = verify_agent_token(keys, issue_agent_token(keys, "lea", ["billing", "risk"], roles=["approver"]))
    assert (lead.roles, lead.approver, lead.queues) == (frozenset({"approver"}), True, {"billing", "risk"})
    assert not verify_agent_token(keys, issue_agent_token(keys, "ana", ["billing"])).approver
    with pytest.raises(ValueError, match="unknown roles"):
        issue_agent_token(keys, "ana", ["billing"], roles=["admin"])
    with pytest.raises(ValueError, match="queue"):
        issue_agent_token(keys, "ana", [])
    bad_roles = keys.sign(
        {
            "sub": "ana",
            "queues": ["billing"],
            "roles": "approver",
            "aud": "tierline-console",
            "exp": int(time.time()) + 60,
        }
    )
    with pytest.raises(InvalidAgentToken, match="roles"):
        verify_agent_token(keys, bad_roles)


# ----------------------------------------------------------------------------- the stack's keys
def test_given_a_new_stack_when_configured_then_it_generates_customer_and_agent_keys_with_kids(
    tmp_path: Path,
) -> None:
    cfg = default_config(tmp_path)
    s = cfg.settings()
    customer, agent = s.customer_token_keyset(), s.agent_token_keyset()
    assert customer.current.kid.startswith("c-")
    assert agent.current.kid.startswith("a-")
    assert customer.secrets().isdisjoint(agent.secrets())
    other = default_config(tmp_path / "other").settings()
    assert other.agent_token_keyset().secrets().isdisjoint(agent.secrets())


def test_given_the_test_stack_or_an_old_stack_json_when_configured_then_keys_are_derived(
    tmp_path: Path,
) -> None:
    test_stack = StackConfig.for_tests(tmp_path).settings()
    assert test_stack.session_secret.get_secret_value() == BUILTIN_SESSION_SECRET
    assert test_stack.agent_token_keyset() == KeySet.derived("agent", BUILTIN_SESSION_SECRET)
    old = StackConfig(data_dir=str(tmp_path), secrets={"TIERLINE_SESSION_SECRET": ROOT})
    assert old.settings().customer_token_keyset() == KeySet.derived("customer", ROOT)


# ----------------------------------------------------------------------------- the CLI
def tierline(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIERLINE_")}
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "tierline.cli", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_given_a_stack_when_minting_tokens_with_the_cli_then_its_keys_verify_them(tmp_path: Path) -> None:
    cfg = default_config(tmp_path)
    cfg.save()
    s = cfg.settings()
    customer = tierline("--data-dir", str(tmp_path), "token", "customer", "cus_42", "--ttl", "120")
    assert customer.returncode == 0, customer.stderr
    claims = verify_token(CustomerKeys.from_settings(s), customer.stdout.strip())
    assert claims.subject == "cus_42"
    assert 100 <= claims.expires_at - time.time() <= 121
    agent = tierline(
        "--data-dir", str(tmp_path), "token", "agent", "lea", "--queues", "billing, risk", "--approver"
    )
    assert agent.returncode == 0, agent.stderr
    lead = verify_agent_token(s.agent_token_keyset(), agent.stdout.strip())
    assert (lead.agent_id, lead.queues, lead.roles) == ("lea", {"billing", "risk"}, {"approver"})
    with pytest.raises(InvalidAgentToken):  # another stack's keys
        verify_agent_token(default_config(tmp_path / "other").settings().agent_token_keyset(), agent.stdout)


def test_given_builtin_secrets_outside_the_embedded_stack_when_minting_then_the_cli_refuses(
    tmp_path: Path,
) -> None:
    # no stack.json here and no emulator: real Stripe, with the session secret printed in settings.py
    done = tierline("--data-dir", str(tmp_path), "token", "agent", "ana", "--queues", "billing")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "TIERLINE_SESSION_SECRET" in json.loads(done.stderr.strip().splitlines()[-1])["error"]
    no_queue = tierline(
        "token", "agent", "ana", "--queues", ",", env={"TIERLINE_STRIPE_API_BASE": "http://127.0.0.1:1"}
    )
    assert no_queue.returncode == 2
    assert "queue" in no_queue.stderr


# ----------------------------------------------------------------------------- the doors
def test_given_the_console_and_meter_doors_when_each_kind_of_token_knocks_then_only_its_own_opens() -> None:
    from typing import Any

    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from services.tier1_selfheal.api import MeterDeps, meter_routes
    from services.tier3_handoff.console import console_routes

    cfg = settings(agent_token_keys=NEW)  # k1 (OLD) was removed from the agent keys
    unused: Any = None  # the sign-in doors use the keys only
    meter_deps = MeterDeps(unused, unused, unused, unused, unused, secret=CustomerKeys.from_settings(cfg))
    handoff: Any = lambda: None  # noqa: E731 - never called by /v1/console/me
    routes = [
        *console_routes(handoff, KeySetVerifier(cfg.agent_token_keyset())),
        *[r for r in meter_routes(lambda: meter_deps) if r.path == "/v1/session"],
    ]
    agent = issue_agent_token(cfg.agent_token_keyset(), "lea", ["billing"], roles=["approver"])
    removed = issue_agent_token(KeySet.parse("agent", OLD), "lea", ["billing"])
    customer = issue_session_token(cfg.customer_token_keyset(), "cus_A", 600)
    with TestClient(Starlette(routes=routes)) as http:

        def me(token: str) -> Any:
            return http.get("/v1/console/me", headers={"Authorization": f"Bearer {token}"})

        assert me(agent).json() == {"agent_id": "lea", "queues": ["billing"], "roles": ["approver"]}
        assert me(customer).status_code == 401
        assert me(removed).status_code == 401
        assert "'k1'" in me(removed).json()["detail"]
        assert http.post("/v1/session", json={"token": customer}).json()["customer_id"] == "cus_A"
        assert http.post("/v1/session", json={"token": agent}).status_code == 401
