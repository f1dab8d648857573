"""The answer quality check (issue 19): every amount, date, id, plan and promise an automated answer makes
must come from the diagnosis, a tool result or a knowledge article; tier 2 rewrites or stops the rest, and
the report counts what was stopped, per cause."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import Action, EscalationReason
from schemas.messages import AgentRequestedPayload, DiagnosisView
from services.analytics.queries import answers_stopped
from services.analytics.report import stopped_line
from services.tier2_agent import quality
from services.tier2_agent.ports import ActionTaken, AgentResult, Escalation, ToolResult
from tierline.actions import ActionOutcome
from tierline.answer_check import Facts, ToolFact, check_answer, facts_from

DIAGNOSIS: dict[str, Any] = {
    "customer_id": "cus_Test0001",
    "status": "green",
    "root_cause": "healthy",
    "explanation": "Your Pro plan renewed on 03 Nov 2026 for $49.00.",
    "evidence": {
        "plan": {"tier": "pro", "name": "Pro", "monthly_usd": 49.0},
        "charges": [
            {
                "id": "ch_3Pq8aa11",
                "amount_usd": 49.0,
                "created_at": "2026-11-03T10:00:00+00:00",
                "refunded_usd": 0.0,
                "status": "succeeded",
                "invoice_id": "in_1Nov2026a",
            },
            {
                "id": "ch_2Oct2026b",
                "amount_usd": 138.5,
                "created_at": "2026-10-03T10:00:00+00:00",
                "refunded_usd": 0.0,
                "status": "succeeded",
                "invoice_id": "in_0Oct2026b",
            },
        ],
        "refunds": [],
    },
}
KNOWLEDGE = ToolFact(
    tool="search_knowledge",
    ok=True,
    data={
        "hits": [
            {
                "article_id": "kb-credits",
                "title": "Downgrades and credits",
                "text": "When you downgrade, unused time on the Business plan is credited to your next "
                "invoice. Annual plans cost $490 a year.",
                "score": 0.8,
            }
        ]
    },
)
REFUND_DONE = ToolFact(
    tool="refund",
    ok=True,
    args={"charge_id": "ch_3Pq8aa11", "amount_usd": 49.0, "reason": "duplicate"},
    data={"refund_id": "re_9xYz0001", "customer_message": "I've refunded $49.00 (ch_3Pq8aa11)."},
)
REFUND_DENIED = ToolFact(
    tool="refund",
    ok=False,
    args={"charge_id": "ch_3Pq8aa11", "amount_usd": 300.0, "reason": "requested_by_customer"},
    data={},
)
CUSTOMER = "Hi, why was I charged in November? Can I move to the business plan next month?"


def facts(*tools: ToolFact, diagnosis: dict[str, Any] | None = None, text: str = CUSTOMER) -> Facts:
    return facts_from(DIAGNOSIS if diagnosis is None else diagnosis, tools, customer_text=text)


@pytest.mark.parametrize(
    ("answer", "tools"),
    [
        ("Your Pro plan renewed on 3 November 2026 for $49.00 (charge ch_3Pq8aa11).", ()),
        ("The charge of $138.50 on 2026-10-03 is invoice in_0Oct2026b.", ()),
        ("The October 3 charge was 138,50 $.", ()),
        ("You're on the pro plan; you asked about the Business plan.", ()),  # the plan the customer named
        ("I've refunded $49.00 (ch_3Pq8aa11); it shows in 5-10 business days.", (REFUND_DONE,)),
        (
            "When you downgrade, unused time on the Business plan is credited to your next invoice.",
            (KNOWLEDGE,),
        ),  # copied from the article, promise and all
        ("Annual plans cost $490 a year [source: kb-credits].", (KNOWLEDGE,)),
        ("I've emailed you the invoice; it's also in your billing portal.", ()),
        ("Your card may be charged again next month.", ()),  # "may" is not a date
    ],
)
def test_given_an_answer_the_facts_back_when_checked_then_it_passes(
    answer: str, tools: tuple[ToolFact, ...]
) -> None:
    verdict = check_answer(answer, facts(*tools))
    assert verdict.ok, verdict.findings


@pytest.mark.parametrize(
    ("answer", "tools", "causes"),
    [
        ("Your plan renewed for $59.00.", (), ["amount"]),  # invented amount
        ("We charged you €1,249.99 on 3 November 2026.", (), ["amount"]),
        ("The charge ch_FAKE9999 is your renewal.", (), ["id"]),  # invented charge id
        ("I've sent invoice in_9Bogus77.", (), ["id"]),
        ("Your renewal was on 14 November 2026.", (), ["date"]),  # invented date
        ("The charge from 2026-09-28 is your renewal.", (), ["date"]),
        ("You're on the Enterprise plan.", (), ["plan"]),  # a plan nobody named
        ("We refunded the charge.", (), ["promise"]),  # no refund happened
        ("Your money will be refunded within 5 days.", (), ["promise"]),
        ("I've refunded $300.00.", (REFUND_DENIED,), ["amount", "promise"]),  # the refund was refused
        ("We've credited your account.", (), ["promise"]),
        ("I applied a credit of $20.00 to your next invoice.", (KNOWLEDGE,), ["amount", "promise"]),
        ("Hemos reembolsado el cargo.", (), ["promise"]),
        (
            "I've refunded $12.00 on 9 December 2026 for the Starter plan (ch_NOPE1234).",
            (),
            ["amount", "date", "id", "plan", "promise"],
        ),
    ],
)
def test_given_an_answer_with_invented_facts_when_checked_then_it_is_stopped_with_each_cause(
    answer: str, tools: tuple[ToolFact, ...], causes: list[str]
) -> None:
    verdict = check_answer(answer, facts(*tools))
    assert not verdict.ok
    assert verdict.causes == causes


def test_given_a_refund_on_record_when_the_answer_says_refunded_then_it_passes() -> None:
    diagnosis = {
        **DIAGNOSIS,
        "evidence": {
            **DIAGNOSIS["evidence"],
            "refunds": [
                {"id": "re_1Done001", "charge_id": "ch_3Pq8aa11", "amount_usd": 49.0, "status": "pending"}
            ],
        },
    }
    assert check_answer("Your $49.00 was refunded (re_1Done001).", facts(diagnosis=diagnosis)).ok
    assert not check_answer("Your $49.00 was refunded.", facts()).ok


def test_given_customer_words_when_checked_then_they_back_no_amount_id_or_promise() -> None:
    said = "Refund me $900 for ch_MINE0001, you already refunded it"
    verdict = check_answer("We refunded $900 for ch_MINE0001.", facts(text=said))
    assert verdict.causes == ["amount", "id", "promise"]


# --------------------------------------------------------------------------- what tier 2 does with it
def _payload(text: str = CUSTOMER) -> AgentRequestedPayload:
    return AgentRequestedPayload(text=text, diagnosis=DiagnosisView.model_validate(DIAGNOSIS))


def _result(answer: str, *taken: ActionTaken) -> AgentResult:
    return AgentResult(resolved=True, final_answer=answer, actions=list(taken))


SENT_INVOICE = ActionTaken(
    tool="send_invoice",
    args={"invoice_id": "in_1Nov2026a"},
    result=ToolResult(
        ok=True, terminal=True, data={"customer_message": "I've emailed you invoice in_1Nov2026a ($49.00)."}
    ),
)


def test_given_a_grounded_answer_when_decided_then_it_is_said_as_written() -> None:
    result = _result("I've emailed you invoice in_1Nov2026a ($49.00).", SENT_INVOICE)
    decision = quality.decide_answer(
        result.final_answer, quality.facts_for(_payload(), result), quality.template_answer(result)
    )
    assert not decision.stopped
    assert decision.outcome == "passed"
    assert decision.answer == result.final_answer


def test_given_an_invented_amount_after_an_action_when_decided_then_rewritten_from_the_tools_words() -> None:
    result = _result("I've emailed you the invoice for $59.00 and refunded the difference.", SENT_INVOICE)
    decision = quality.decide_answer(
        result.final_answer, quality.facts_for(_payload(), result), quality.template_answer(result)
    )
    assert decision.stopped
    assert decision.verdict.causes == ["amount", "promise"]
    assert decision.outcome == "rewritten"
    assert decision.answer == "I've emailed you invoice in_1Nov2026a ($49.00)."


def test_given_an_invented_answer_with_no_tool_words_when_decided_then_a_person_takes_it() -> None:
    result = _result("Your plan costs $79.00 on the Enterprise plan.")
    decision = quality.decide_answer(
        result.final_answer, quality.facts_for(_payload(), result), quality.template_answer(result)
    )
    assert decision.outcome == "to_person"
    assert decision.answer is None
    escalation = quality.stopped_escalation(decision)
    assert escalation.reason is EscalationReason.LOW_CONFIDENCE
    assert "amount '$79.00'" in escalation.note
    assert "plan 'enterprise'" in escalation.note


def test_given_further_asks_done_when_facts_are_gathered_then_their_results_back_the_answer() -> None:
    extra = ActionOutcome(
        action=Action.SEND_UPDATE_CARD_LINK,
        status="succeeded",
        data={"customer_message": "I've also emailed you a secure link (valid until 2026-12-10)."},
    )
    result = AgentResult(
        resolved=False,
        final_answer="",
        escalation=Escalation(reason=EscalationReason.LOW_CONFIDENCE, note="x"),
    )
    f = quality.facts_for(_payload(), result, [extra])
    assert check_answer("The link is valid until 10 December 2026.", f).ok
    assert quality.template_answer(result, [extra]) == extra.data["customer_message"]


# --------------------------------------------------------------------------- the report's count
def test_given_stopped_answers_in_the_audit_when_reported_then_counted_per_cause_and_outcome() -> None:
    rows = [
        {"target": "amount", "decision": "rewritten", "n": 3},
        {"target": "amount,promise", "decision": "to_person", "n": 2},
        {"target": "id", "decision": "to_person", "n": 1},
    ]
    summary = answers_stopped(rows)
    assert summary == {
        "total": 6,
        "by_cause": {"amount": 5, "promise": 2, "id": 1},
        "by_outcome": {"rewritten": 3, "to_person": 3},
    }
    line = stopped_line({"answers_stopped": summary})
    assert line == "answers stopped by the quality check: 6 (amount 5, promise 2, id 1)"
    assert stopped_line({}) == "answers stopped by the quality check: 0"


@pytest.mark.parametrize(
    ("customer", "ok"),
    [
        ("Hi, can I get the May invoice please", True),  # the month they asked about
        ("Can I get the invoice for last month?", True),  # a relative period: the answer names its month
        ("you may send me an invoice", False),  # "may" the verb names no month
    ],
)
def test_given_a_period_the_customer_named_when_the_answer_names_its_month_then_it_passes(
    customer: str, ok: bool
) -> None:
    answer = "I couldn't find an invoice for May 2026 on your account, so I haven't sent anything."
    assert check_answer(answer, facts(text=customer)).ok is ok
