"""Built-in secrets face only the embedded emulators: the rule, the refusal at start, the API credential."""

from __future__ import annotations

import os
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tierline.runtime import Service
from tierline.service_auth import bearer_headers, protect_routes, require_service_token
from tierline.settings import DefaultSecretsRefused, InfraSettings

pytestmark = pytest.mark.unit

ALL_BUILTINS = [
    "TIERLINE_STRIPE_API_KEY",
    "TIERLINE_STRIPE_WEBHOOK_SECRETS",
    "TIERLINE_SESSION_SECRET",
    "TIERLINE_SERVICE_TOKEN",
]
OWN_SECRETS: dict[str, Any] = {
    "stripe_api_key": "rk_live_0123456789abcdef",
    "stripe_webhook_secrets": "whsec_0123456789abcdef",
    "session_secret": "a-long-random-session-secret-0123456789",
    "service_token": "a-long-random-service-token-0123456789",
}
EMULATOR = "http://127.0.0.1:18420"


@pytest.fixture(autouse=True)
def no_tierline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings under test are built explicitly: nothing from this machine's environment."""
    for name in [n for n in os.environ if n.startswith("TIERLINE_")]:
        monkeypatch.delenv(name)


def settings(**values: Any) -> InfraSettings:
    return InfraSettings(**values)


# --------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(
    "base", [EMULATOR, "http://localhost:18420", "http://[::1]:18420", "http://127.0.0.2:1"]
)
def test_given_the_embedded_stack_when_checked_then_the_built_ins_are_allowed(base: str) -> None:
    """Given a loopback Stripe emulator, a test key and loopback HTTP, When checked, Then nothing unsafe."""
    assert settings(stripe_api_base=base).unsafe_defaults() == []
    settings(stripe_api_base=base).refuse_unsafe_defaults("router")  # does not raise


def test_given_no_stripe_base_when_checked_then_every_built_in_is_named() -> None:
    """Given the defaults (real Stripe), When checked, Then all four built-in secrets are listed."""
    assert settings().unsafe_defaults() == ALL_BUILTINS


@pytest.mark.parametrize(
    "base", ["https://api.stripe.com", "http://localstripe:8420", "http://10.0.0.5:8420", "http://0.0.0.0:1"]
)
def test_given_stripe_off_loopback_when_checked_then_every_built_in_is_named(base: str) -> None:
    """Given a Stripe base that is not a loopback emulator, When checked, Then the built-ins are unsafe."""
    assert settings(stripe_api_base=base).unsafe_defaults() == ALL_BUILTINS


def test_given_a_live_key_against_a_loopback_base_when_checked_then_it_is_not_embedded() -> None:
    """Given a live key pointed at loopback, When checked, Then the other built-ins are still refused."""
    unsafe = settings(stripe_api_base=EMULATOR, stripe_api_key="sk_live_0123456789abcdef").unsafe_defaults()
    assert unsafe == ALL_BUILTINS[1:]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "tier1.internal"])  # noqa: S104
def test_given_a_public_bind_with_the_emulator_when_checked_then_the_built_ins_are_refused(host: str) -> None:
    """Given the emulator but HTTP bound off loopback, When checked, Then the built-ins guard nothing."""
    assert settings(stripe_api_base=EMULATOR, http_host=host).unsafe_defaults() == ALL_BUILTINS


def test_given_own_secrets_everywhere_when_checked_then_production_may_start() -> None:
    """Given every secret set, real Stripe and a public bind, When checked, Then nothing is unsafe."""
    prod = settings(http_host="0.0.0.0", **OWN_SECRETS)  # noqa: S104
    assert prod.unsafe_defaults() == []
    prod.refuse_unsafe_defaults("tier1_selfheal")


@pytest.mark.parametrize(
    "missing", ["stripe_api_key", "stripe_webhook_secrets", "session_secret", "service_token"]
)
def test_given_one_built_in_left_in_production_when_checked_then_exactly_it_is_named(missing: str) -> None:
    """Given production with one secret left at its built-in, When checked, Then that variable is named."""
    values = {k: v for k, v in OWN_SECRETS.items() if k != missing}
    assert settings(**values).unsafe_defaults() == [f"TIERLINE_{missing.upper()}"]


def test_given_rotation_with_the_built_in_webhook_secret_when_checked_then_it_is_refused() -> None:
    """Given the built-in webhook secret as one of two during a rotation, When checked, Then refused."""
    values = {**OWN_SECRETS, "stripe_webhook_secrets": "whsec_0123456789abcdef,whsec_tierline_local"}
    assert settings(**values).unsafe_defaults() == ["TIERLINE_STRIPE_WEBHOOK_SECRETS"]


def test_given_unsafe_settings_when_refused_then_the_message_names_service_variables_and_why() -> None:
    """Given real Stripe with the built-ins, When refused, Then the error says who, what to set, and why."""
    with pytest.raises(DefaultSecretsRefused) as caught:
        settings(http_host="0.0.0.0").refuse_unsafe_defaults("diagnostics")  # noqa: S104
    message = str(caught.value)
    assert message.startswith("diagnostics: refusing to start with the built-in secrets")
    for name in ALL_BUILTINS:
        assert name in message
    assert "real Stripe, HTTP bound to 0.0.0.0" in message
    assert isinstance(caught.value, RuntimeError)  # `tierline` prints RuntimeErrors and exits 1


# --------------------------------------------------------------------------- the refusal at start
async def test_given_built_ins_and_real_stripe_when_a_service_starts_then_it_refuses_before_connecting():  # noqa: ANN201
    """Given real-Stripe settings with the built-ins, When Service.start runs, Then it raises before any
    connection (the Postgres DSN and broker point at closed ports: reaching them would fail otherwise)."""
    unsafe = settings(kafka_bootstrap="127.0.0.1:9", postgres_dsn="postgresql://nobody@127.0.0.1:9/none")
    svc = Service.create("router", unsafe)

    with pytest.raises(DefaultSecretsRefused, match="TIERLINE_SESSION_SECRET"):
        await svc.start(serve_http=False)

    assert svc.pool is None
    assert svc.started is False


def test_given_built_ins_when_serve_runs_then_it_prints_the_refusal_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given no secrets in the environment and no Stripe base, When `tierline serve router` runs, Then
    it exits 1 with the message, without building the service."""
    from tierline import cli, observability

    monkeypatch.setattr(observability, "configure_logging", lambda *a, **k: None)  # keep pytest's streams

    def must_not_build(name: str) -> Any:
        raise AssertionError(f"{name} was built despite the built-in secrets")

    monkeypatch.setattr(cli, "load_service_factory", must_not_build)
    assert cli.main(["serve", "router"]) == 1
    err = capsys.readouterr().err
    assert "router: refusing to start with the built-in secrets" in err
    assert "TIERLINE_SERVICE_TOKEN" in err


# --------------------------------------------------------------------------- the API credential
async def _customer_data(request: Request) -> JSONResponse:
    return JSONResponse({"customer_id": request.path_params["customer_id"]})


def test_given_a_guarded_route_when_called_then_only_the_service_token_opens_it() -> None:
    """Given a route behind the service token, When called without, with a wrong or with the right
    token, Then 401 with a JSON body twice, then the answer."""
    token = "s3rvice-token"  # noqa: S105
    app = Starlette(
        routes=[Route("/v1/customers/{customer_id}/x", require_service_token(token, _customer_data))]
    )
    with TestClient(app) as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token}):
            refused = http.get("/v1/customers/cus_1/x", headers=headers)
            assert refused.status_code == 401
            assert refused.json()["error"] == "unauthorized"
            assert refused.headers["www-authenticate"].startswith("Bearer")
        allowed = http.get("/v1/customers/cus_1/x", headers=bearer_headers(token))
        assert (allowed.status_code, allowed.json()) == (200, {"customer_id": "cus_1"})


def test_given_routes_when_protected_then_paths_and_methods_are_kept() -> None:
    """Given plain routes, When protected, Then the same paths and methods answer, behind the token."""
    routes = [Route("/v1/customers/{customer_id}/x", _customer_data, methods=["GET"])]
    (guarded,) = protect_routes(routes, "t")
    assert (guarded.path, guarded.methods) == (routes[0].path, routes[0].methods)
    with TestClient(Starlette(routes=[guarded])) as http:
        assert http.get("/v1/customers/c/x").status_code == 401
        assert http.get("/v1/customers/c/x", headers=bearer_headers("t")).status_code == 200
        assert http.post("/v1/customers/c/x", headers=bearer_headers("t")).status_code == 405


def test_given_an_empty_token_when_guarding_then_it_is_refused() -> None:
    """Given an empty service token, When a route is guarded with it, Then configuration fails loudly."""
    with pytest.raises(ValueError, match="empty service token"):
        require_service_token("", _customer_data)
