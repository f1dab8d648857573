""" "Manage in Stripe" (issue 21) without a network: the adapter reads the real API's Customer Portal session
shape; the door creates one for the session's customer only (another customer's id is refused before any
call to Stripe) and maps Stripe's failures to clear answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from services.tier1_selfheal.auth import CustomerKeys, issue_session_token
from services.tier1_selfheal.portal_stripe import StripePortalDeps, stripe_portal_routes
from tierline.settings import InfraSettings
from tierline.stripe_adapter import PortalSession, StripeActions, StripeNotFound, StripeUnavailable

pytestmark = pytest.mark.unit

#: A session as Stripe's API reference documents ``POST /v1/billing_portal/sessions``'s answer.
REAL_SHAPE: dict[str, Any] = {
    "id": "bps_1MrSjzLkdIwHu7ixex0IvU9b",
    "object": "billing_portal.session",
    "configuration": "bpc_1MAhNDLkdIwHu7ixckACO1Jq",
    "created": 1680210639,
    "customer": "cus_NciAYcXfLnqBoz",
    "flow": None,
    "livemode": False,
    "locale": None,
    "on_behalf_of": None,
    "return_url": "https://example.com/account",
    "url": "https://billing.stripe.com/p/session/test_YWNjdF8xTTJKVGtMa2RJd0h1N2l4",
}


class FakeSessions:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[dict[str, Any]] = []

    async def create_async(self, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(params)
        return self.answer


class FakeV1:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.billing_portal = type("BillingPortal", (), {"sessions": FakeSessions(answer)})()


def adapter(tmp_path: Path, answer: dict[str, Any]) -> StripeActions:
    actions = StripeActions(InfraSettings(data_dir=tmp_path))
    actions.v1 = FakeV1(answer)
    return actions


async def test_given_the_real_apis_answer_when_a_portal_session_is_created_then_the_adapter_reads_it(
    tmp_path: Path,
) -> None:
    actions = adapter(tmp_path, REAL_SHAPE)

    session = await actions.customer_portal_session(
        "cus_NciAYcXfLnqBoz", "https://example.com/account", configuration="bpc_1MAhNDLkdIwHu7ixckACO1Jq"
    )

    assert session == PortalSession(
        id="bps_1MrSjzLkdIwHu7ixex0IvU9b",
        customer="cus_NciAYcXfLnqBoz",
        url=REAL_SHAPE["url"],
        return_url="https://example.com/account",
        configuration="bpc_1MAhNDLkdIwHu7ixckACO1Jq",
        created=1680210639,
    )
    assert actions.v1.billing_portal.sessions.asked == [
        {
            "customer": "cus_NciAYcXfLnqBoz",
            "return_url": "https://example.com/account",
            "configuration": "bpc_1MAhNDLkdIwHu7ixckACO1Jq",
        }
    ]


async def test_given_an_answer_without_a_url_when_a_portal_session_is_created_then_it_is_refused(
    tmp_path: Path,
) -> None:
    actions = adapter(tmp_path, {**REAL_SHAPE, "url": None})

    with pytest.raises(Exception, match="unexpected answer"):
        await actions.customer_portal_session("cus_x", "https://example.com/billing")


class FakePortal:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.asked: list[tuple[str, str, str | None]] = []

    async def customer_portal_session(
        self, customer_id: str, return_url: str, *, configuration: str | None = None
    ) -> PortalSession:
        self.asked.append((customer_id, return_url, configuration))
        if self.error is not None:
            raise self.error
        return PortalSession("bps_1", customer_id, "https://portal.test/p/1", return_url, configuration, 1)


def client(tmp_path: Path, portal: FakePortal) -> tuple[TestClient, CustomerKeys]:
    keys = CustomerKeys.from_settings(InfraSettings(data_dir=tmp_path))
    deps = StripePortalDeps(portal, keys, "https://billing.test/billing", "bpc_pinned")
    return TestClient(Starlette(routes=stripe_portal_routes(lambda: deps))), keys


def auth(keys: CustomerKeys, customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(keys.sessions, customer_id, 600)}"}


def test_given_a_session_when_manage_in_stripe_then_the_customers_portal_opens_with_the_pinned_configuration(
    tmp_path: Path,
) -> None:
    portal = FakePortal()
    http, keys = client(tmp_path, portal)

    resp = http.post("/v1/portal/stripe-session", json={}, headers=auth(keys, "cus_me"))

    assert resp.status_code == 200
    assert resp.json()["url"] == "https://portal.test/p/1"
    assert portal.asked == [("cus_me", "https://billing.test/billing", "bpc_pinned")]


def test_given_another_customers_id_when_manage_in_stripe_then_403_and_stripe_is_never_asked(
    tmp_path: Path,
) -> None:
    portal = FakePortal()
    http, keys = client(tmp_path, portal)

    me = auth(keys, "cus_me")
    body = http.post("/v1/portal/stripe-session", json={"customer_id": "cus_them"}, headers=me)
    query = http.post("/v1/portal/stripe-session?customer_id=cus_them", json={}, headers=me)
    anonymous = http.post("/v1/portal/stripe-session", json={})

    assert (body.status_code, query.status_code, anonymous.status_code) == (403, 403, 401)
    assert portal.asked == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (StripeNotFound("gone"), 404, "customer_not_found"),
        (StripeUnavailable("down"), 503, "stripe_unavailable"),
    ],
)
def test_given_stripe_failing_when_manage_in_stripe_then_a_clear_answer(
    tmp_path: Path, error: Exception, status: int, code: str
) -> None:
    http, keys = client(tmp_path, FakePortal(error))

    resp = http.post("/v1/portal/stripe-session", json={}, headers=auth(keys, "cus_me"))

    assert (resp.status_code, resp.json()["error"]) == (status, code)
