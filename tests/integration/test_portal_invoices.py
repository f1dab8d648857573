"""The portal's invoices and every emailed link (issue 21), on the real broker, Postgres, Stripe emulator and
mail sink: tier 1 serves on the stack's public address, the notifier sends through the sink, and the test
reads each mail (invoice, receipt, update-card) and follows every link in it with a plain HTTP client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pypdf import PdfReader

from schemas import Action, Tier
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1
from services.diagnostics.adapters.clickhouse import UsageStore
from services.diagnostics.adapters.stripe_reader import StripeLiveReader
from services.diagnostics.handlers import Diagnostician
from services.diagnostics.settings import DiagnosticsSettings
from services.notifier.app import create_service as create_notifier
from services.notifier.settings import NotifierSettings
from services.tier1_selfheal.app import create_service
from services.tier1_selfheal.auth import issue_session_token
from tierline.actions import ActionContext
from tierline.billing.mirror import MirrorStore
from tierline.diagnostics_client import InProcessDiagnostics
from tierline.stripe_adapter import StripeActions, receipt_url
from tierline_tools.world import BuiltWorld, build_world

pytestmark = pytest.mark.integration

VAT_ID = "DE136695976"
COMPANY = "Acme Analytics GmbH"
URL = re.compile(r"https?://[^\s<>\"')]+")


@pytest.fixture(scope="module")
async def portal(stack: Any, infra: Any, pg_pool: Any) -> AsyncIterator[Any]:
    """Tier 1 on the stack's public address (where the emailed links point) and the notifier."""
    usage = UsageStore(infra.resolved_clickhouse_dsn())
    await usage.ensure_schema()
    reader = StripeLiveReader(infra.stripe_api_key.get_secret_value(), infra.stripe_api_base, emulated=True)
    diagnostics = InProcessDiagnostics(
        Diagnostician(
            MirrorStore(pg_pool), reader, usage, None, DiagnosticsSettings(mirror_max_age_s=0, audit=False)
        )
    )
    tier1 = create_service(
        infra.model_copy(update={"http_port": stack.service_ports["tier1_selfheal"]}), diagnostics=diagnostics
    )
    notifier = create_notifier(
        infra.model_copy(update={"http_port": stack.service_ports["notifier"]}),
        notifier=NotifierSettings(notify_max_per_customer=50, inbound_enabled=False),
    )
    await tier1.start()
    await notifier.start()
    await asyncio.sleep(4)  # consumer groups settle before the first request
    tier1.state["base_url"] = infra.public_base_url.rstrip("/")
    try:
        yield tier1
    finally:
        await notifier.stop()
        await tier1.stop()


async def customer(infra: Any, tag: str, who: str) -> BuiltWorld:
    """Given a customer with a paid $49 invoice, a bare $20 payment (no invoice: a receipt), a company name,
    an address and a VAT id on file."""
    stripe = StripeActions(infra)
    world = await build_world(
        {
            "customer": {"email": f"{who}-{tag}@invoices.tierline.test", "plan": "pro"},
            "charges": [{"amount_usd": 49, "days_ago": 5}, {"amount_usd": 20, "days_ago": 12}],
        },
        stripe,
        label=f"inv-{who}-{tag}",
    )
    await stripe.update_customer(
        world.customer_id,
        idempotency_key=f"inv-{who}-{tag}-details",
        name=COMPANY if who == "ana" else "Bravo Ltd",
        address={"line1": "Hauptstraße 5", "postal_code": "10115", "city": "Berlin", "country": "DE"},
    )
    await stripe.add_tax_id(world.customer_id, "eu_vat", VAT_ID, f"inv-{who}-{tag}-vat")
    return world


@pytest.fixture(scope="module")
async def worlds(infra: Any, portal: Any) -> dict[str, BuiltWorld]:
    tag = uuid.uuid4().hex[:8]
    return {"ana": await customer(infra, tag, "ana"), "ben": await customer(infra, tag, "ben")}


def session(infra: Any, customer_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_session_token(infra.customer_token_keyset(), customer_id, 600)}"}


def paid_invoice(world: BuiltWorld) -> str:
    assert world.initial_invoice_id
    return world.initial_invoice_id


def bare_charge(world: BuiltWorld) -> str:
    return world.charge_ids[1]  # the $20 payment without an invoice


# ----------------------------------------------------------------------------- the mail sink
def mails_to(stack: Any, address: str) -> list[EmailMessage]:
    box = Path(stack.smtp().maildir)
    out = []
    for path in sorted(box.glob("*.json")) if box.exists() else []:
        record = json.loads(path.read_text())
        if address in record["rcpt_tos"]:
            parsed = message_from_string(record["data"], policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
    return out


async def wait_mails(stack: Any, address: str, count: int, timeout: float = 90.0) -> list[EmailMessage]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = mails_to(stack, address)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"{address} got {len(mails_to(stack, address))} mails, expected {count}")


def links_in(mail: EmailMessage) -> set[str]:
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    return {u.rstrip(".,;") for u in URL.findall(str(body.get_content()))}


def context(world: BuiltWorld, contact_id: str) -> ActionContext:
    cause = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(action=Action.SEND_INVOICE, source="api"),
        contact_id=contact_id,
        customer_id=world.customer_id,
    )
    return ActionContext(
        contact_id=contact_id,
        customer_id=world.customer_id,
        tier=Tier.TIER1,
        actor="selfheal",
        actor_id="test",
        cause=cause,
    )


async def resolved(http: httpx.AsyncClient, status_url: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        r = await http.get(status_url, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending":
            return r.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.3)
    raise AssertionError(f"{status_url} still pending")


def token_claims(url: str) -> dict[str, Any]:
    token = parse_qs(urlsplit(url).query)["token"][0]
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- tests
async def test_given_invoice_receipt_and_update_card_mails_when_each_link_is_followed_then_each_opens(
    portal: Any, worlds: dict[str, BuiltWorld], stack: Any, infra: Any
) -> None:
    ana = worlds["ana"]
    base = portal.state["base_url"]
    actions = portal.state["deps"].actions
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        # When the customer clicks "Email it to me" on the invoices page
        r = await http.post(
            f"/v1/portal/invoices/{paid_invoice(ana)}/resend",
            headers=session(infra, ana.customer_id),
            json={"request_id": f"rq-{uuid.uuid4().hex}"},
        )
        assert r.status_code == 202, r.text
        status = await resolved(http, r.json()["status_url"], session(infra, ana.customer_id))
        assert status["status"] == "resolved", status
        # ...and the stack emails the receipt of the bare payment and an update-card link (as tier 0 does)
        receipt_ctx = context(ana, f"t-receipt-{uuid.uuid4().hex[:10]}")
        await actions.diagnosis(
            receipt_ctx
        )  # the payment reaches the mirror, as any contact's diagnosis does
        sent = await actions.send_invoice(receipt_ctx, bare_charge(ana))
        assert sent.ok, sent.detail
        card = await actions.send_update_card_link(
            context(ana, f"t-card-{uuid.uuid4().hex[:10]}"), return_url=f"{base}/billing"
        )
        assert card.ok, card.detail

        # Then three mails arrive, and every link in them opens something real
        mails = await wait_mails(stack, ana.email or "", 3)
        links = set().union(*(links_in(m) for m in mails))
        return_urls = {token_claims(u)["return_url"] for u in links if "/update-card" in u}
        kinds: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=60) as anonymous:  # no session: the link alone must open it
            for url in sorted(links | return_urls):
                assert url.startswith(base), url
                resp = await anonymous.get(url)
                assert resp.status_code == 200, (url, resp.status_code, resp.text[:300])
                path = urlsplit(url).path
                if path.endswith(".pdf"):
                    kinds["pdf"] = url
                    assert resp.headers["content-type"] == "application/pdf"
                    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(resp.content)).pages)
                    wanted = (COMPANY, "Hauptstraße 5", "10115 Berlin", str(ana.email), VAT_ID, "$49.00")
                    for expected in (*wanted, paid_invoice(ana), "Status: Paid"):
                        assert expected in text, (expected, text)
                else:
                    assert resp.headers["content-type"].startswith("text/html"), url
                    kind = path.split("/")[1]
                    kinds[kind] = url
                    if kind == "invoices":
                        for expected in (COMPANY, VAT_ID, "$49.00"):
                            assert expected in resp.text, expected
                    if kind == "receipts":
                        for expected in ("$20.00", bare_charge(ana)):
                            assert expected in resp.text, expected
    assert set(kinds) == {"pdf", "invoices", "receipts", "update-card", "billing"}, kinds


async def test_given_two_customers_when_one_uses_its_session_or_links_on_the_others_documents_then_403(
    portal: Any, worlds: dict[str, BuiltWorld], infra: Any
) -> None:
    ana, ben = worlds["ana"], worlds["ben"]
    secret = infra.session_secret.get_secret_value()
    ben_doc = await StripeActions(infra).send_invoice(paid_invoice(ben))  # Ben's emailed links
    ben_invoice_token = parse_qs(urlsplit(ben_doc.pdf_url).query)["token"][0]
    ben_receipt_token = parse_qs(urlsplit(receipt_url("http://x", secret, bare_charge(ben))).query)["token"][
        0
    ]
    inv, charge = paid_invoice(ana), bare_charge(ana)
    async with httpx.AsyncClient(base_url=portal.state["base_url"], timeout=60) as http:
        ben_session = session(infra, ben.customer_id)
        # Ben's own documents open for him (the refusals below are about whose they are)
        assert (await http.get(f"/invoices/{paid_invoice(ben)}.pdf", headers=ben_session)).status_code == 200
        assert (await http.get(f"/invoices/{paid_invoice(ben)}?token={ben_invoice_token}")).status_code == 200
        assert (await http.get(f"/receipts/{bare_charge(ben)}?token={ben_receipt_token}")).status_code == 200
        refused = {
            "GET /v1/portal/invoices/{inv}": await http.get(
                f"/v1/portal/invoices/{inv}", headers=ben_session
            ),
            "POST resend": await http.post(
                f"/v1/portal/invoices/{inv}/resend",
                headers=ben_session,
                json={"request_id": "rq-crosstenant"},
            ),
            "PDF by session": await http.get(f"/invoices/{inv}.pdf", headers=ben_session),
            "page by session": await http.get(f"/invoices/{inv}", headers=ben_session),
            "receipt by session": await http.get(f"/receipts/{charge}", headers=ben_session),
            "PDF by Ben's link": await http.get(f"/invoices/{inv}.pdf?token={ben_invoice_token}"),
            "page by Ben's link": await http.get(f"/invoices/{inv}?token={ben_invoice_token}"),
            "receipt by Ben's link": await http.get(f"/receipts/{charge}?token={ben_receipt_token}"),
        }
        assert {k: r.status_code for k, r in refused.items()} == dict.fromkeys(refused, 403)
        # and Ben's list holds only his own invoices
        listed = (await http.get("/v1/portal/invoices", headers=ben_session)).json()["invoices"]
        assert {i["invoice_id"] for i in listed} >= {paid_invoice(ben)}
        assert not {i["invoice_id"] for i in listed} & set(ana.invoice_ids)


async def test_given_resend_clicked_twice_with_one_click_id_then_one_contact_and_one_ledgered_send(
    portal: Any, worlds: dict[str, BuiltWorld], infra: Any, pg_pool: Any
) -> None:
    ana = worlds["ana"]
    headers = session(infra, ana.customer_id)
    click = {"request_id": f"rq-{uuid.uuid4().hex}"}
    async with httpx.AsyncClient(base_url=portal.state["base_url"], timeout=60) as http:
        listed = (await http.get("/v1/portal/invoices", headers=headers)).json()["invoices"]
        shown = next(i for i in listed if i["invoice_id"] == paid_invoice(ana))
        assert (shown["status"], shown["total"], shown["tax"]) == ("paid", 49.0, 0.0)
        assert shown["pdf_url"] == f"/invoices/{paid_invoice(ana)}.pdf"
        first = await http.post(shown["resend_url"], headers=headers, json=click)
        second = await http.post(shown["resend_url"], headers=headers, json=click)
        assert (first.status_code, second.status_code) == (202, 202)
        assert first.json()["contact_id"] == second.json()["contact_id"]
        assert second.json()["duplicate"] is True
        await resolved(http, first.json()["status_url"], headers)
    rows = await pg_pool.fetch(
        "SELECT status FROM action_ledger WHERE contact_id=$1 AND action='send_invoice'",
        first.json()["contact_id"],
    )
    assert [r["status"] for r in rows] == ["succeeded"]
