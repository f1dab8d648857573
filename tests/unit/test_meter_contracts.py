"""The Health Meter API (services/tier1_selfheal/api.py) under its typed contract: the customer session and
the signed links are auth dependencies, a malformed body is a 422 naming the field before anything is
recorded, another customer's ids stay refused, and the answers have the models' shape."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from schemas.messages import DiagnosisView
from schemas.vocab import HealthStatus, RootCause
from services.tier1_selfheal.api import MeterDeps, diagnosis_json, meter_routes
from services.tier1_selfheal.auth import PAY_INVOICE_PURPOSE, CustomerKeys, issue_session_token
from services.tier1_selfheal.ports import InvoiceView
from tierline import http as http_guard
from tierline.http_contracts import openapi_document
from tierline.stripe_adapter import sign_link_token
from tierline.tokens import KeySet

pytestmark = pytest.mark.unit

SESSIONS = KeySet.single("customer", "c1", "unit-test-customer-key-with-enough-length")
LINK_SECRET = "unit-test-link-secret-with-enough-length"  # noqa: S105 - test-only key
KEYS = CustomerKeys(sessions=SESSIONS, link_secret=LINK_SECRET)
ALICE, BOB = "cus_alice", "cus_bob"


class Untouched:
    """A dependency these requests must never reach."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"reached {name}")


class Diagnostics:
    async def diagnose(self, customer_id: str, **_: Any) -> DiagnosisView:
        return DIAGNOSIS.model_copy(update={"customer_id": customer_id})


class Cards:
    async def invoice(self, invoice_id: str) -> InvoiceView:
        return InvoiceView(invoice_id, BOB, "open", 49.0, "usd")


DIAGNOSIS = DiagnosisView(
    customer_id=ALICE,
    status=HealthStatus.RED,
    root_cause=RootCause.CARD_EXPIRED,
    explanation="Your card expired.",
    self_serve_eligible=True,
    evidence={
        "invoice": {"id": "in_1", "status": "open", "amount_due_usd": 49, "decline_code": "expired_card"},
        "payment_method": {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2020},
    },
)


def documented(path: str, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operation the generated document gives this route, and the document."""
    doc = openapi_document(meter_routes(lambda: Untouched()), title="meter")  # type: ignore[arg-type, return-value]
    return doc["paths"][path][method], doc


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    deps = MeterDeps(
        pool=Untouched(),  # type: ignore[arg-type]
        broker=Untouched(),  # type: ignore[arg-type]
        diagnostics=Diagnostics(),  # type: ignore[arg-type]
        cards=Cards(),  # type: ignore[arg-type]
        requests=Untouched(),  # type: ignore[arg-type]
        secret=KEYS,
    )
    app = Starlette(
        routes=meter_routes(lambda: deps),
        middleware=http_guard.middleware(),
        exception_handlers=http_guard.exception_handlers(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://meter.test") as c:
        yield c


def session(customer_id: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(SESSIONS, customer_id, ttl_s=600)}"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/health-meter/fixes", {"action": "retry_payment", "params": "all"}, "body.params"),
        ("/v1/health-meter/fixes", {"action": "print_money"}, "body.action"),
        ("/v1/health-meter/fixes", {"action": "retry_payment", "label": 5}, "body.label"),
        (
            "/v1/health-meter/fixes",
            {"action": "retry_payment", "conversation_id": ["c"]},
            "body.conversation_id",
        ),
        ("/v1/health-meter/human", {"text": {"a": 1}}, "body.text"),
        ("/v1/health-meter/human", {"request_id": "x"}, "body.request_id"),
        ("/v1/session", {"token": 12}, "body.token"),
    ],
)
async def test_given_a_malformed_body_when_posted_then_422_names_the_field_and_nothing_is_recorded(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    resp = await client.post(path, json=body, headers=session())

    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "invalid_request"
    assert [f["field"] for f in resp.json()["fields"]] == [field]


async def test_given_no_session_then_401_even_for_a_malformed_body(client: httpx.AsyncClient) -> None:
    resp = await client.post("/v1/health-meter/fixes", json={"action": 5})

    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthenticated"
    op, _ = documented("/v1/health-meter/fixes", "post")
    assert op["security"] == [{"customerSession": []}, {"sessionCookie": []}]


async def test_given_a_session_when_reading_the_meter_then_the_model_shape_and_another_customer_403(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/v1/health-meter", headers=session())

    assert resp.status_code == 200
    assert resp.json() == diagnosis_json(DIAGNOSIS)
    op, doc = documented("/v1/health-meter", "get")
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(doc["components"]["schemas"][ref]["properties"]) == set(resp.json())
    assert resp.json()["card"] == {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2020}
    other = await client.get(f"/v1/health-meter?customer_id={BOB}", headers=session())
    assert (other.status_code, other.json()["error"]) == (403, "forbidden")


async def test_given_another_customers_id_in_a_fix_then_403_before_anything_is_recorded(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(
        "/v1/health-meter/fixes", json={"action": "retry_payment", "customer_id": BOB}, headers=session()
    )

    assert resp.status_code == 403
    assert "403" in documented("/v1/health-meter/fixes", "post")[0]["responses"]


async def test_given_a_pay_link_for_another_invoice_then_403_and_a_session_for_another_customer_403(
    client: httpx.AsyncClient,
) -> None:
    link = sign_link_token(
        LINK_SECRET, purpose=PAY_INVOICE_PURPOSE, subject="in_other", expires_at=int(time.time()) + 600
    )
    assert (await client.get(f"/v1/pay/in_1?token={link}")).status_code == 403
    # alice's session on bob's invoice
    assert (await client.get("/v1/pay/in_1", headers=session())).status_code == 403
    # bob's own invoice through his session
    mine = await client.get("/v1/pay/in_1", headers=session(BOB))
    assert mine.json() == {"invoice_id": "in_1", "status": "open", "amount_due_usd": 49.0, "currency": "usd"}
    op, doc = documented("/v1/pay/{invoice_id}", "get")
    assert op["security"] == [{"customerSession": []}, {"linkToken": []}]
    assert doc["components"]["securitySchemes"]["linkToken"] == {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the signed token of an emailed pay / update-card link",
    }
