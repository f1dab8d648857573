"""The customer's words are a ceiling (issue 18): what money action a text asks for, and what follows.

Table-driven: many phrasings, messy emails whose signatures carry numbers that are not amounts; then the
resolution against charge records, the ceiling on a model's refund, the refund-history fact, and the
offline planner and LLM loop acting (or not) on what was asked.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.vocab import EscalationReason, Intent
from services.tier2_agent.ports import AgentResult
from tierline.billing.asks import (
    ChargeRef,
    HandOff,
    Money,
    Period,
    RefundPlan,
    ceiling_refusal,
    customer_words,
    parse_ask,
    resolve_refund,
)
from tierline.billing.policy import ChargeFacts, PolicyEngine, RefundFact

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

SIGNATURE = (
    "\n\nBest regards,\nDana Whitfield\nHead of Finance, Lumen Analytics\n"
    "1450 Harbor Blvd, Suite 300, Oakland CA 94607\nPhone: +1 (510) 555-0148\n"
    "Order #88412 · Invoice INV-2026-0917\n"
)
QUOTED = (
    "\n\nOn Tue, Dec 1, 2026 at 9:14 AM Billing Support <billing@example.com> wrote:\n"
    "> We could refund $500 as a goodwill gesture.\n> Thanks,\n> The billing team\n"
)


def usd(value: str) -> Money:
    return Money(Decimal(value), "USD")


# (text, kind, amounts asked, amounts naming a charge, fraction, period, about another party)
Row = tuple[str, str, list[str], list[str], str | None, Period | None, bool]
ROWS: list[Row] = [
    # ---- plain refunds, no amount
    ("Please refund my last payment", "refund", [], [], None, None, False),
    ("I want my money back", "refund", [], [], None, None, False),
    ("Could you reimburse me for this?", "refund", [], [], None, None, False),
    # ---- amounts in every common format
    ("I want $150 as compensation for the outage", "refund", ["$150.00"], [], None, None, False),
    (
        "I bought the annual plan by mistake, I want the $228 back",
        "refund",
        ["$228.00"],
        [],
        None,
        None,
        False,
    ),
    ("refund 49$ please", "refund", ["$49.00"], [], None, None, False),
    ("Refund USD 49 to my card", "refund", ["$49.00"], [], None, None, False),
    ("Please refund 20 usd", "refund", ["$20.00"], [], None, None, False),
    ("I'd like 49.00 dollars back", "refund", ["$49.00"], [], None, None, False),
    ("please refund me forty dollars", "refund", ["$40.00"], [], None, None, False),
    ("a refund of twenty-five bucks would be fair", "refund", ["$25.00"], [], None, None, False),
    ("Refund $1,250.50 please", "refund", ["$1250.50"], [], None, None, False),
    ("Refund US$ 12.5 for the outage", "refund", ["$12.50"], [], None, None, False),
    ("Please refund €40", "refund", ["40.00 EUR"], [], None, None, False),
    ("refund 40 EUR", "refund", ["40.00 EUR"], [], None, None, False),
    ("Bitte 40,50 € zurück, refund please", "refund", ["40.50 EUR"], [], None, None, False),
    ("I want £30 back", "refund", ["30.00 GBP"], [], None, None, False),
    ("refund 30 pounds", "refund", ["30.00 GBP"], [], None, None, False),
    ("Please refund CA$49", "refund", ["49.00 CAD"], [], None, None, False),
    # ---- fractions
    ("Can I have half of this month back?", "refund", [], [], "0.5", Period("this_month"), False),
    ("refund 50% of my last invoice", "refund", [], [], "0.5", None, False),
    ("please refund a quarter of the charge", "refund", [], [], "0.25", None, False),
    ("I'd like 25 percent refunded", "refund", [], [], "0.25", None, False),
    # ---- a charge or a period named
    ("refund the $40 add-on", "refund", [], ["$40.00"], None, None, False),
    ("You charged me $49 twice, refund it", "refund", [], ["$49.00"], None, None, False),
    ("Refund my payment of $49", "refund", [], ["$49.00"], None, None, False),
    ("I pay $49/month; please refund half", "refund", [], ["$49.00"], "0.5", None, False),
    ("refund my September payment", "refund", [], [], None, Period("month", 9), False),
    ("Please refund the charge from October", "refund", [], [], None, Period("month", 10), False),
    ("I may need a refund for the March charge", "refund", [], [], None, Period("month", 3), False),
    ("please refund last month's payment", "refund", [], [], None, Period("last_month"), False),
    ("refund this month please", "refund", [], [], None, Period("this_month"), False),
    (
        "I've been a customer for the last 24 months, refund this month",
        "refund",
        [],
        [],
        None,
        Period("this_month"),
        False,
    ),
    # ---- several months
    ("Refund the last 24 months please", "multi_refund", [], [], None, None, False),
    ("refund all my payments since we signed up", "multi_refund", [], [], None, None, False),
    ("I want 3 months' worth refunded", "multi_refund", [], [], None, None, False),
    ("Please refund every charge on my account", "multi_refund", [], [], None, None, False),
    # ---- not a refund
    ("please give me a credit instead", "credit", [], [], None, None, False),
    ("Could you add $20 of account credit?", "credit", ["$20.00"], [], None, None, False),
    ("Can I get a coupon for next month?", "coupon", [], [], None, None, False),
    ("Do you have a promo code for loyal customers?", "coupon", [], [], None, None, False),
    ("can I get 20% off next month?", "discount", [], [], None, None, False),
    ("I'd like a discount on the renewal", "discount", [], [], None, None, False),
    ("Please downgrade me to starter and refund the difference", "downgrade", [], [], None, None, False),
    ("switch me to the starter plan", "downgrade", [], [], None, None, False),
    ("upgrade us to enterprise, you promised it for free", "upgrade", [], [], None, None, False),
    ("please cancel my subscription", "cancel", [], [], None, None, False),
    ("I'd like a refund, not a credit.", "refund", [], [], None, None, False),
    ("My credit card was charged twice, refund one", "refund", [], [], None, None, False),
    ("I want a credit rather than a refund", "credit", [], [], None, None, False),
    # ---- another account or person
    ("Please refund my colleague's subscription", "refund", [], [], None, None, True),
    ("refund my friend's payment of $49", "refund", [], ["$49.00"], None, None, True),
    ("cancel the subscription for customer cus_Q7x2LmN9", "cancel", [], [], None, None, True),
    ("please refund the payment on jane@otherco.io", "refund", [], [], None, None, True),
    ("I'm writing on behalf of my boss, refund his account", "refund", [], [], None, None, True),
    ("refund the charge on our other account", "refund", [], [], None, None, True),
    # ---- not asks at all
    (
        "Why is my bill almost three times higher this month?",
        "other",
        [],
        [],
        None,
        Period("this_month"),
        False,
    ),
    ("Call me back at 415 555 0199 about the invoice", "other", [], [], None, None, False),
]


@pytest.mark.parametrize(("text", "kind", "asked", "named", "fraction", "period", "other"), ROWS)
def test_given_a_phrasing_when_parsed_then_the_ask_is_read(
    text: str,
    kind: str,
    asked: list[str],
    named: list[str],
    fraction: str | None,
    period: Period | None,
    other: bool,
) -> None:
    ask = parse_ask(text)
    assert ask.kind == kind
    assert [str(m) for m in ask.amounts] == asked
    assert [str(m) for m in ask.charge_amounts] == named
    if fraction is None:
        assert ask.fraction is None
    else:
        assert ask.fraction == Decimal(fraction)
    assert ask.period == period
    assert (ask.other_party is not None) is other


def test_the_table_has_at_least_forty_rows() -> None:
    assert len(ROWS) >= 40


# --------------------------------------------------------------------------- messy emails

EMAILS: list[tuple[str, str, list[str]]] = [
    ("Hi team,\n\nPlease refund $20 of last month's charge." + SIGNATURE, "refund", ["$20.00"]),
    ("Hello,\nplease refund my last payment." + SIGNATURE, "refund", []),
    ("Hi, refund me please." + QUOTED, "refund", []),
    ("Hi,\nI'd rather have a credit." + QUOTED + SIGNATURE, "credit", []),
    (
        "Hey,\nCan I get half of this month back?\n\nThanks,\nSam\n+44 20 7946 0958\n221B Baker Street",
        "refund",
        [],
    ),
    ("refund please\n-- \nJo Park | 500 Market St #12 | tel 555-0100 | $ACME ticker", "refund", []),
    ("Refund USD 19 please\n\nSent from my iPhone\n\nOn Mon someone wrote:\n> $999", "refund", ["$19.00"]),
    ("Refund it.\n> Original: you owe me $300\n> call 555 0101", "refund", []),
]


@pytest.mark.parametrize(("text", "kind", "asked"), EMAILS)
def test_given_an_email_with_signature_and_quotes_when_parsed_then_only_new_words_count(
    text: str, kind: str, asked: list[str]
) -> None:
    ask = parse_ask(text)
    assert ask.kind == kind
    assert [str(m) for m in ask.amounts] == asked
    assert ask.charge_amounts == ()
    assert "555" not in ask.words
    assert "Suite" not in ask.words


def test_given_a_quoted_reply_when_reading_the_words_then_the_quote_and_signature_are_gone() -> None:
    words = customer_words("Please refund $20." + SIGNATURE + QUOTED)
    assert words == "Please refund $20."


def test_given_the_senders_own_email_and_id_when_parsed_then_they_are_not_another_party() -> None:
    ask = parse_ask(
        "refund cus_Own12345 please, reply to me@acme.io",
        own_customer_id="cus_Own12345",
        own_emails={"Me@Acme.io"},
    )
    assert ask.other_party is None


# --------------------------------------------------------------------------- resolution


def charges(*specs: tuple[str, float, int, float]) -> list[ChargeRef]:
    """(id, amount, days ago, refunded), newest first."""
    return [
        ChargeRef(cid, Decimal(str(a)), Decimal(str(a - r)), NOW - timedelta(days=d))
        for cid, a, d, r in specs
    ]


MONTHLY = charges(("ch_dec", 49.0, 1, 0.0), ("ch_nov", 49.0, 30, 0.0), ("ch_sep", 49.0, 80, 0.0))

RESOLUTIONS: list[tuple[str, RefundPlan | EscalationReason]] = [
    ("Please refund my last payment", RefundPlan("ch_dec", Decimal("49.00"), False, False)),
    ("Can I have half of this month back?", RefundPlan("ch_dec", Decimal("24.50"), True, True)),
    ("please refund $20", RefundPlan("ch_dec", Decimal("20.00"), True, False)),
    ("I want $150 as compensation", RefundPlan("ch_dec", Decimal("150.00"), True, False)),
    ("please refund last month's payment", RefundPlan("ch_nov", Decimal("49.00"), False, True)),
    ("refund my September payment", RefundPlan("ch_sep", Decimal("49.00"), False, True)),
    ("refund the $49 charge", RefundPlan("ch_dec", Decimal("49.00"), False, True)),
    ("refund my August payment", EscalationReason.LOW_CONFIDENCE),
    ("refund the $40 add-on", EscalationReason.LOW_CONFIDENCE),
    ("please give me a credit instead", EscalationReason.POLICY_DENIED),
    ("Can I get a coupon?", EscalationReason.POLICY_DENIED),
    ("can I get 20% off next month?", EscalationReason.POLICY_DENIED),
    ("downgrade me and refund the difference", EscalationReason.POLICY_DENIED),
    ("Refund the last 24 months please", EscalationReason.REFUND_OVER_POLICY),
    ("refund my friend's payment", EscalationReason.POLICY_DENIED),
    ("refund customer cus_Other999's last charge", EscalationReason.POLICY_DENIED),
    ("Please refund €40", EscalationReason.LOW_CONFIDENCE),
    ("refund $20 or maybe $30", EscalationReason.LOW_CONFIDENCE),
    ("please cancel my subscription", EscalationReason.LOW_CONFIDENCE),
    ("The plan costs $49 but I was charged $59, refund the difference", EscalationReason.LOW_CONFIDENCE),
    ("I'd like a prorated refund for the unused days", EscalationReason.LOW_CONFIDENCE),
]


@pytest.mark.parametrize(("text", "expected"), RESOLUTIONS)
def test_given_an_ask_and_charges_when_resolved_then_the_refund_is_what_was_asked_or_a_person(
    text: str, expected: RefundPlan | EscalationReason
) -> None:
    plan = resolve_refund(parse_ask(text), MONTHLY, NOW)
    if isinstance(expected, RefundPlan):
        assert plan == expected
    else:
        assert isinstance(plan, HandOff)
        assert plan.reason is expected


def test_given_a_named_charge_with_nothing_left_when_resolved_then_a_person_decides() -> None:
    refunded = charges(("ch_dec", 49.0, 1, 49.0), ("ch_nov", 49.0, 30, 0.0))
    plan = resolve_refund(parse_ask("refund this month"), refunded, NOW)
    assert isinstance(plan, HandOff)
    assert plan.reason is EscalationReason.REFUND_OVER_POLICY


def test_given_no_named_charge_when_the_newest_is_refunded_then_the_next_refundable_one_is_used() -> None:
    refunded = charges(("ch_dec", 49.0, 1, 49.0), ("ch_nov", 49.0, 30, 0.0))
    assert resolve_refund(parse_ask("refund me"), refunded, NOW) == RefundPlan(
        "ch_nov", Decimal("49.00"), False, False
    )


# --------------------------------------------------------------------------- the ceiling on a model's call

CEILINGS: list[tuple[str, str, float, EscalationReason | None]] = [
    ("Please refund my last payment", "ch_dec", 49.0, None),
    ("Please refund my last payment", "ch_dec", 20.0, None),  # less than all, nothing named: allowed
    ("Can I have half of this month back?", "ch_dec", 24.5, None),
    ("Can I have half of this month back?", "ch_dec", 49.0, EscalationReason.POLICY_DENIED),
    ("please refund $20", "ch_dec", 49.0, EscalationReason.POLICY_DENIED),
    ("please refund $20", "ch_dec", 10.0, EscalationReason.POLICY_DENIED),  # never a smaller one instead
    ("please refund last month's payment", "ch_dec", 49.0, EscalationReason.POLICY_DENIED),
    ("please refund last month's payment", "ch_nov", 49.0, None),
    ("please give me a credit instead", "ch_dec", 49.0, EscalationReason.POLICY_DENIED),
    ("refund my colleague's payment", "ch_dec", 49.0, EscalationReason.POLICY_DENIED),
    ("Refund the last 24 months please", "ch_dec", 49.0, EscalationReason.REFUND_OVER_POLICY),
]


@pytest.mark.parametrize(("text", "charge_id", "amount", "refused"), CEILINGS)
def test_given_a_models_refund_when_checked_against_the_words_then_only_what_was_asked_passes(
    text: str, charge_id: str, amount: float, refused: EscalationReason | None
) -> None:
    plan = resolve_refund(parse_ask(text), MONTHLY, NOW, default_charge_id=charge_id)
    verdict = ceiling_refusal(plan, charge_id, amount)
    assert (verdict.reason if verdict else None) is refused


# --------------------------------------------------------------------------- the refund-history fact


def facts(*specs: tuple[str, float, int]) -> list[ChargeFacts]:
    return [
        ChargeFacts(id=cid, customer_id="cus_1", amount_usd=a, created_at=NOW - timedelta(hours=h))
        for cid, a, h in specs
    ]


def refund(rid: str, charge_id: str, days: float, status: str = "succeeded") -> RefundFact:
    return RefundFact(id=rid, charge_id=charge_id, created_at=NOW - timedelta(days=days), status=status)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_yaml()


def test_given_a_refund_by_the_team_in_stripe_when_counting_then_it_counts(engine: PolicyEngine) -> None:
    history = engine.refund_history([refund("re_team", "ch_old", 30)], facts(("ch_old", 49, 32 * 24)), NOW)
    assert history == (1, NOW - timedelta(days=30))


def test_given_the_same_refund_in_mirror_and_ledger_when_counting_then_it_counts_once(
    engine: PolicyEngine,
) -> None:
    mirrored, ledgered = refund("re_1", "ch_a", 5), refund("re_1", "ch_a", 5)
    unmirrored = refund("re_2", "ch_b", 1)
    count, last = engine.refund_history([mirrored, ledgered, unmirrored], [], NOW)
    assert (count, last) == (2, NOW - timedelta(days=1))


@pytest.mark.parametrize(("status", "counted"), [("pending", 1), ("failed", 0), ("canceled", 0)])
def test_given_a_refund_status_when_counting_then_pending_counts_failed_does_not(
    engine: PolicyEngine, status: str, counted: int
) -> None:
    assert engine.refund_history([refund("re_1", "ch_a", 3, status)], [], NOW)[0] == counted


def test_given_a_refund_outside_the_window_when_counting_then_it_does_not_count(engine: PolicyEngine) -> None:
    assert engine.refund_history([refund("re_1", "ch_a", 91)], [], NOW) == (0, None)


def test_given_a_refund_of_a_verified_duplicate_when_counting_then_it_does_not_count(
    engine: PolicyEngine,
) -> None:
    pair = facts(("ch_twin", 49, 24), ("ch_orig", 49, 30), ("ch_other", 19, 24 * 20))
    of_duplicate = refund("re_dup", "ch_twin", 0.5)
    of_original = refund("re_orig", "ch_orig", 0.5)
    assert engine.refund_history([of_duplicate], pair, NOW) == (0, None)
    assert engine.refund_history([of_original], pair, NOW)[0] == 1  # the older one is no duplicate


# --------------------------------------------------------------------------- the planner and the LLM loop


async def plan_for(text: str, intent: Intent, **world: Any) -> tuple[AgentResult, Any]:
    from tests.unit.test_planner import FakeBilling, ask, run

    billing = FakeBilling(**world)
    return await run(billing, ask(text, intent)), billing


async def test_given_half_of_this_month_when_planning_then_exactly_half_is_refunded() -> None:
    result, world = await plan_for(
        "Can I have half of this month back?", Intent.REFUND_REQUEST, charges=[(49.0, 3)]
    )
    assert result.resolved
    assert world.refunds == [("ch_000", 24.5, "requested_by_customer")]
    assert "$24.50" in result.final_answer


async def test_given_a_smaller_amount_asked_when_planning_then_that_amount_is_refunded() -> None:
    result, world = await plan_for("please refund $20 of it", Intent.REFUND_REQUEST, charges=[(49.0, 3)])
    assert result.resolved
    assert world.refunds == [("ch_000", 20.0, "requested_by_customer")]


async def test_given_150_as_compensation_on_a_49_charge_when_planning_then_a_person_decides() -> None:
    result, world = await plan_for(
        "I want $150 as compensation for the outage", Intent.REFUND_REQUEST, charges=[(49.0, 3)]
    )
    assert world.refunds == []
    assert result.escalation is not None
    assert result.escalation.reason is EscalationReason.REFUND_OVER_POLICY


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("please give me a credit instead", EscalationReason.POLICY_DENIED),
        ("Can I get a coupon for next month?", EscalationReason.POLICY_DENIED),
        ("downgrade me to starter and refund the difference", EscalationReason.POLICY_DENIED),
        ("Refund the last 24 months please", EscalationReason.REFUND_OVER_POLICY),
        ("refund my colleague's payment", EscalationReason.POLICY_DENIED),
        ("refund the payment of customer cus_Other999", EscalationReason.POLICY_DENIED),
        ("Please refund €40", EscalationReason.LOW_CONFIDENCE),
    ],
)
async def test_given_an_ask_that_is_no_refund_of_the_last_charge_when_planning_then_nothing_is_refunded(
    text: str, reason: EscalationReason
) -> None:
    result, world = await plan_for(text, Intent.REFUND_REQUEST, charges=[(49.0, 3)])
    assert world.refunds == []
    assert "refund" not in world.calls
    assert result.escalation is not None
    assert result.escalation.reason is reason


async def test_given_a_duplicate_claim_about_a_friend_when_planning_then_nothing_is_refunded() -> None:
    result, world = await plan_for(
        "my friend's card was charged twice, refund her",
        Intent.DUPLICATE_CHARGE,
        charges=[(49.0, 1), (49.0, 1)],
    )
    assert world.refunds == []
    assert result.escalation is not None


async def test_given_the_model_raises_the_amount_when_the_loop_runs_then_the_refund_is_refused() -> None:
    """The LLM path: "$20 back" asked, the model proposes $49: refused before the tools, a person decides."""
    from tests.unit.test_agent_loop import FakeTools, ScriptedLLM, completion, make_loop, request_for

    llm = ScriptedLLM(
        [
            completion(
                tool_calls=[
                    (
                        "refund",
                        json.dumps(
                            {"charge_id": "ch_new", "amount_usd": 49.0, "reason": "requested_by_customer"}
                        ),
                    )
                ]
            ),
            completion(content="never reached"),
        ]
    )
    tools = FakeTools()

    result = await make_loop(llm).run(
        request_for("please refund $20 of my payment", Intent.REFUND_REQUEST), tools
    )

    assert tools.refunds == []
    assert result.escalation is not None
    assert result.escalation.reason is EscalationReason.POLICY_DENIED
    assert any("refund_not_asked" in (a.result.error or "") for a in result.actions)


async def test_given_the_model_refunds_what_was_asked_when_the_loop_runs_then_it_is_executed() -> None:
    from tests.unit.test_agent_loop import FakeTools, ScriptedLLM, completion, make_loop, request_for

    llm = ScriptedLLM(
        [
            completion(
                tool_calls=[
                    (
                        "refund",
                        json.dumps(
                            {"charge_id": "ch_new", "amount_usd": 20.0, "reason": "requested_by_customer"}
                        ),
                    )
                ]
            ),
            completion(content="Refunded $20."),
        ]
    )
    tools = FakeTools()

    result = await make_loop(llm).run(
        request_for("please refund $20 of my payment", Intent.REFUND_REQUEST), tools
    )

    assert result.resolved
    assert tools.refunds == [("ch_new", 20.0)]
