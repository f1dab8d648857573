"""Issue 20 through the real doors: "the invoice for <month>" sends that month's invoice, not the latest;
billing-details changes in plain words reach Stripe; an invalid VAT number gets a question, no update.

Scenario rows in the public format on the real stack (broker, Postgres, chDB, Qdrant local, the Stripe
emulator), every service in-process (the package's shared pipeline).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tierline_tools.scenarios.model import Scenario, ScenarioResult, check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
NOW = datetime.now(UTC)


def _month(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%B %Y")


# The subscription's invoice 5 days ago (the latest), payments 40 and 75 days ago: always three
# different calendar months (35 days apart).
HISTORY = {
    "customer": {"plan": "pro"},
    "charges": [
        {"amount_usd": 49, "days_ago": 5},
        {"amount_usd": 49, "days_ago": 40},
        {"amount_usd": 49, "days_ago": 75},
    ],
}

ROWS: list[dict[str, Any]] = [
    {
        "id": f"period-one-{RUN}",
        "world": HISTORY,
        "contact": {"channel": "chat", "text": f"Hi, could you send me the invoice for {_month(40)}?"},
        "expect": {"resolved_by": ["tier1", "tier2"], "actions_include": ["send_invoice"]},
    },
    {
        "id": f"period-two-{RUN}",
        "world": HISTORY,
        "contact": {
            "channel": "email",
            "text": f"Hello,\n\nOur accountant needs the invoices for {_month(75).split()[0]} and "
            f"{_month(40)}.\n\nThanks,\nMia\nBrightlabs GmbH | +49 30 1234567",
        },
        "expect": {"resolved_by": ["tier1", "tier2"], "actions_include": ["send_invoice"]},
    },
    {
        "id": f"period-none-{RUN}",
        "world": HISTORY,
        "contact": {"channel": "chat", "text": f"please send me the invoice for {_month(200)}"},
        "expect": {"resolved_by": "tier2", "actions_exclude": ["send_invoice", "escalate"]},
    },
    {
        "id": f"details-acme-{RUN}",
        "world": {"customer": {"plan": "pro", "country": "DE"}},
        "contact": {"channel": "chat", "text": "please put Acme GmbH, VAT DE136695976 on our invoices"},
        "expect": {"resolved_by": ["tier1", "tier2"], "actions_include": ["update_billing_details"]},
    },
    {
        "id": f"details-bad-vat-{RUN}",
        "world": {"customer": {"plan": "pro", "country": "DE"}},
        "contact": {"channel": "chat", "text": "please put Acme GmbH, VAT DE123456789 on our invoices"},
        "expect": {"resolved_by": "tier2", "actions_exclude": ["update_billing_details", "escalate"]},
    },
]


@pytest.fixture(scope="module")
async def runner(stack: Any, infra: Any, pipeline: list[Any]) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=90) as r:
        yield r


@pytest.fixture(scope="module")
async def results(runner: ScenarioRunner) -> dict[str, tuple[Scenario, ScenarioResult]]:
    scenarios = [Scenario.model_validate(row) for row in ROWS]
    done = await run_all(runner, scenarios, concurrency=3)
    return {s.id.rsplit("-", 1)[0]: (s, r) for s, r in zip(scenarios, done, strict=True)}


async def _sent_months(runner: ScenarioRunner, contact_id: str | None) -> list[str]:
    """The months of the documents each send_invoice of the contact sent (from the ledger and the mirror)."""
    rows = await runner.db.fetch(
        """SELECT coalesce(i.created, c.created) AS created
             FROM action_ledger l
             LEFT JOIN stripe_invoices i ON i.id = l.target
             LEFT JOIN stripe_charges c ON c.id = l.target
            WHERE l.contact_id = $1 AND l.action = 'send_invoice' AND l.status = 'succeeded'
            ORDER BY created""",
        contact_id,
    )
    return [r["created"].astimezone(UTC).strftime("%B %Y") for r in rows]


async def _customer_of(runner: ScenarioRunner, contact_id: str | None) -> str:
    customer = await runner.db.fetchval("SELECT customer_id FROM contacts WHERE contact_id=$1", contact_id)
    assert isinstance(customer, str)
    return customer


@pytest.mark.parametrize("key", [row["id"].rsplit("-", 1)[0] for row in ROWS])
async def test_given_a_period_or_details_ask_when_run_through_the_doors_then_the_expectations_hold(
    results: dict[str, tuple[Scenario, ScenarioResult]], key: str
) -> None:
    scenario, result = results[key]
    assert check(scenario, result) == [], result.model_dump()


async def test_given_a_month_that_is_not_the_latest_when_asked_then_that_months_invoice_is_sent(
    runner: ScenarioRunner, results: dict[str, tuple[Scenario, ScenarioResult]]
) -> None:
    _, result = results["period-one"]

    assert await _sent_months(runner, result.contact_id) == [_month(40)]  # not the latest, of _month(5)


async def test_given_two_months_when_asked_then_each_months_invoice_is_sent(
    runner: ScenarioRunner, results: dict[str, tuple[Scenario, ScenarioResult]]
) -> None:
    _, result = results["period-two"]

    assert await _sent_months(runner, result.contact_id) == [_month(75), _month(40)]


async def test_given_a_company_and_vat_in_plain_words_when_run_then_stripe_has_both(
    runner: ScenarioRunner, results: dict[str, tuple[Scenario, ScenarioResult]]
) -> None:
    _, result = results["details-acme"]
    customer_id = await _customer_of(runner, result.contact_id)

    customer = await runner.actions.get_customer(customer_id)
    tax = await runner.actions.raw_get(f"/v1/customers/{customer_id}/tax_ids")
    assert customer["name"] == "Acme GmbH"
    assert [(t["type"], t["value"]) for t in tax["data"]] == [("eu_vat", "DE136695976")]


async def test_given_a_vat_number_failing_its_check_digits_when_run_then_nothing_changes(
    runner: ScenarioRunner, results: dict[str, tuple[Scenario, ScenarioResult]]
) -> None:
    _, result = results["details-bad-vat"]
    customer_id = await _customer_of(runner, result.contact_id)

    customer = await runner.actions.get_customer(customer_id)
    tax = await runner.actions.raw_get(f"/v1/customers/{customer_id}/tax_ids")
    assert customer["name"] != "Acme GmbH"
    assert tax["data"] == []
