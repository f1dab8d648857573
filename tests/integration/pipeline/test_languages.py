"""Other languages through the real doors: Spanish, German, French and Portuguese contacts are read and
answered in their language; any other language goes to a person with the language in the packet.

The router reads es/de/fr/pt through the billing glossary (``services.router.intent.glossary``) in
front of the intent model, so these rows hold with the shared model; retraining with
``multilingual_examples.csv`` makes the model itself more confident on them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tierline.language import detect_language
from tierline_tools.scenarios.model import Scenario, check
from tierline_tools.scenarios.runner import ScenarioRunner, run_all

pytestmark = pytest.mark.integration

SOFT_DECLINE = {
    "customer": {"plan": "pro"},
    "card": "visa",
    "subscription": {"status": "past_due", "monthly_usd": 49},
    "failed_invoice": {"amount_usd": 49, "days_ago": 1, "decline_code": "insufficient_funds"},
}
EXPIRED_CARD = {
    "customer": {"plan": "starter"},
    "card": "expired",
    "subscription": {"status": "past_due", "monthly_usd": 19},
    "failed_invoice": {"amount_usd": 19, "days_ago": 1, "decline_code": "expired_card"},
}
PAID_LAST_MONTH = {"customer": {"plan": "pro"}, "charges": [{"amount_usd": 49, "days_ago": 12}]}

ROWS: list[dict[str, Any]] = [
    {
        "id": "lang-es-soft-decline",
        "world": SOFT_DECLINE,
        "contact": {
            "channel": "chat",
            "text": "Hola, mi tarjeta fue rechazada al pagar la suscripción. "
            "¿Pueden intentar el cobro otra vez?",
        },
        "expect": {
            "resolved_by": ["tier1", "tier2"],
            "actions_include": ["retry_payment"],
            "actions_exclude": ["refund", "escalate"],
        },
    },
    {
        "id": "lang-es-expired-card",
        "world": EXPIRED_CARD,
        "contact": {
            "channel": "email",
            "text": "Buenos días: el pago de este mes no pasó, la tarjeta fue rechazada.",
        },
        "expect": {
            "resolved_by": ["tier1", "tier2"],
            "actions_include": ["send_update_card_link"],
            "actions_exclude": ["retry_payment", "refund", "escalate"],
        },
    },
    {
        "id": "lang-de-invoice",
        "world": PAID_LAST_MONTH,
        "contact": {
            "channel": "email",
            "text": "Guten Tag, könnten Sie mir bitte die Rechnung für den letzten Monat schicken? Danke!",
        },
        "expect": {
            "resolved_by": ["tier1", "tier2"],
            "actions_include": ["send_invoice"],
            "actions_exclude": ["refund", "escalate"],
        },
    },
    {
        "id": "lang-pt-invoice",
        "world": PAID_LAST_MONTH,
        "contact": {"channel": "chat", "text": "Olá, vocês podem me enviar a fatura do mês passado?"},
        "expect": {
            "resolved_by": ["tier1", "tier2"],
            "actions_include": ["send_invoice"],
            "actions_exclude": ["refund", "escalate"],
        },
    },
    {
        "id": "lang-ja-declined",
        "world": SOFT_DECLINE,
        "contact": {
            "channel": "chat",
            "text": "カードが拒否されました。もう一度支払いを試してもらえますか？",
        },
        "expect": {
            "resolved_by": "tier3",
            "escalation_reason_any": ["out_of_scope"],
            "actions_exclude": ["retry_payment", "refund", "send_update_card_link"],
        },
    },
]
EXPECTED_LANGUAGE = {
    "lang-es-soft-decline": "es",
    "lang-es-expired-card": "es",
    "lang-de-invoice": "de",
    "lang-pt-invoice": "pt",
}


@pytest.fixture(scope="module")
async def runner(stack: Any, infra: Any, pipeline: list[Any]) -> AsyncIterator[ScenarioRunner]:
    ingress = f"http://127.0.0.1:{stack.service_ports['tier0_prevent']}"
    async with ScenarioRunner(infra, ingress_url=ingress, timeout_s=60) as r:
        yield r


async def test_given_contacts_in_other_languages_when_run_through_the_doors_then_each_is_handled_in_kind(
    runner: ScenarioRunner,
) -> None:
    scenarios = [Scenario.model_validate(row) for row in ROWS]

    results = await run_all(runner, scenarios, concurrency=3)

    by_id = {r.id: r for r in results}
    failures = {
        s.id: (check(s, r), r.model_dump()) for s, r in zip(scenarios, results, strict=True) if check(s, r)
    }
    assert not failures, failures

    # answered in the customer's language
    for scenario_id, language in EXPECTED_LANGUAGE.items():
        contact_id = by_id[scenario_id].contact_id
        assert contact_id is not None
        outcome = await runner.wait_outcome(contact_id)
        assert outcome is not None
        summary = outcome["payload"]["summary"]
        assert detect_language(summary).code == language, (scenario_id, summary)

    # a language tierline does not read: a person, with the language in the packet
    japanese = by_id["lang-ja-declined"].contact_id
    packet = await runner.db.fetchval("SELECT packet FROM cases WHERE contact_id=$1", japanese)
    assert packet is not None
    packet = json.loads(packet) if isinstance(packet, str) else dict(packet)
    assert packet["language"] == "ja"
    assert "Japanese" in packet["suggested_next_step"]
