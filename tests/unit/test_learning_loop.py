"""Issue 19's learning loop and support figures, without a broker or a database: the A/B split of an answer
template, the support figures of `tierline report`, the knowledge gaps it ranks and the per-variant
comparison; the chat ratings door publishes `conversation.rated.v1` for them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from schemas.messages import ConversationRatedV1
from schemas.vocab import Intent
from services.analytics.learning import (
    SupportContact,
    article_title,
    common_phrasing,
    contact_from_row,
    experiment_results,
    knowledge_gaps,
    learning_report,
    support_figures,
)
from services.analytics.report import support_lines
from services.tier1_selfheal.chat import ChatDeps
from tests.unit.test_chat_api import KEYS, FakeChatStore, Published, app_for, auth
from tests.unit.test_planner import FakeBilling, ask, run
from tierline.answer_check import ToolFact, check_answer, facts_from
from tierline.experiments import UPDATE_CARD_LINK_ANSWER, UnknownExperiment, choose_answer, parse_experiments

pytestmark = pytest.mark.unit

ALICE, BOB = "cus_alice", "cus_bob"


def contact(contact_id: str, **fields: Any) -> SupportContact:
    base: dict[str, Any] = {
        "conversation_id": contact_id,
        "text": "",
        "at": f"2026-12-03 10:00:{contact_id[-2:]}",
    }
    return SupportContact(contact_id=contact_id, **{**base, **fields})


# ------------------------------------------------------------------------------------------- A/B split
def test_given_a_customer_when_the_variant_is_chosen_again_then_it_is_the_same_every_time() -> None:
    first = UPDATE_CARD_LINK_ANSWER.variant_for("cus_0042")

    assert all(UPDATE_CARD_LINK_ANSWER.variant_for("cus_0042") == first for _ in range(20))
    # pinned: a change of the hash would move customers between variants in the middle of an experiment
    assert [UPDATE_CARD_LINK_ANSWER.variant_for(f"cus_{i:04d}")[0] for i in range(8)] == PINNED_SPLIT


PINNED_SPLIT = ["A", "A", "B", "A", "A", "A", "B", "A"]


def test_given_many_customers_when_split_then_both_variants_get_about_half() -> None:
    counts = Counter(UPDATE_CARD_LINK_ANSWER.variant_for(f"cus_{i:05d}")[0] for i in range(2000))

    assert set(counts) == {"A", "B"}
    assert 0.45 < counts["A"] / 2000 < 0.55


def test_given_the_control_answer_when_an_experiment_runs_then_the_variant_text_and_label_come_back() -> None:
    customer = next(
        f"cus_{i}" for i in range(100) if UPDATE_CARD_LINK_ANSWER.variant_for(f"cus_{i}")[0] == "B"
    )
    control = UPDATE_CARD_LINK_ANSWER.control

    said, label = choose_answer(
        (UPDATE_CARD_LINK_ANSWER,), customer, f"{control} I've also emailed the invoice."
    )

    assert label == "update_card_link_answer:B"
    assert said == f"{dict(UPDATE_CARD_LINK_ANSWER.variants)['B']} I've also emailed the invoice."


def test_given_the_executors_own_message_when_an_experiment_runs_then_it_is_replaced_too() -> None:
    said, label = choose_answer((UPDATE_CARD_LINK_ANSWER,), "cus_0002", "An update-card link was sent.")

    assert (said, label) == (dict(UPDATE_CARD_LINK_ANSWER.variants)["B"], "update_card_link_answer:B")
    assert choose_answer((UPDATE_CARD_LINK_ANSWER,), "cus_0000", "An update-card link was sent.") == (
        UPDATE_CARD_LINK_ANSWER.control,
        "update_card_link_answer:A",
    )


def test_given_another_answer_or_no_experiment_when_chosen_then_the_answer_is_left_alone() -> None:
    control = UPDATE_CARD_LINK_ANSWER.control

    assert choose_answer((UPDATE_CARD_LINK_ANSWER,), ALICE, "Your refund is on its way.") == (
        "Your refund is on its way.",
        None,
    )
    assert choose_answer((), ALICE, control) == (control, None)


def test_given_the_setting_when_parsed_then_default_off_names_on_and_an_unknown_name_refused() -> None:
    assert parse_experiments("") == ()
    assert parse_experiments(" update_card_link_answer , update_card_link_answer") == (
        UPDATE_CARD_LINK_ANSWER,
    )
    with pytest.raises(UnknownExperiment, match="no_such_test"):
        parse_experiments("no_such_test")


async def test_given_a_hard_decline_when_the_planner_answers_then_its_answer_is_the_experiments_control() -> (
    None
):
    world = FakeBilling(failed_invoice={"id": "in_9", "decline_code": "expired_card"})

    result = await run(world, ask("card payment failed", Intent.PAYMENT_FAILED))

    assert result.final_answer == UPDATE_CARD_LINK_ANSWER.control
    assert choose_answer(parse_experiments("update_card_link_answer"), "cus_0002", result.final_answer) == (
        dict(UPDATE_CARD_LINK_ANSWER.variants)["B"],
        "update_card_link_answer:B",
    )


@pytest.mark.parametrize("variant", ["A", "B"])
def test_given_each_variant_when_the_quality_check_reads_it_then_it_passes_on_the_link_facts(
    variant: str,
) -> None:
    facts = facts_from(None, [ToolFact(tool="send_update_card_link", ok=True, args={}, data={"sent": True})])

    assert check_answer(dict(UPDATE_CARD_LINK_ANSWER.variants)[variant], facts).ok


# ------------------------------------------------------------------------------------- support figures
def test_given_automated_and_human_first_responses_when_summed_then_both_split_and_target_counted() -> None:
    contacts = [
        contact(
            "c01", first_kind="answer", first_response_ms=2_000, resolved_by="tier2", resolution_ms=2_000
        ),
        contact("c02", first_kind="clarifying_question", first_response_ms=40_000),
        contact("c03", first_kind="human_reply", first_response_ms=600_000, resolved_by="tier3"),
        contact("c04"),
    ]

    fr = support_figures(contacts)["first_response_ms"]

    assert fr["count"] == 3
    assert fr["automated_p50"] in (2_000, 40_000)
    assert fr["automated_p99"] == 40_000
    assert fr["p99"] == 600_000
    assert fr["automated_within_target"] == 0.5
    assert fr["unanswered"] == 1


def test_given_outcomes_of_each_tier_when_summed_then_tier3_waits_for_the_case_and_counts_open() -> None:
    contacts = [
        contact("c01", resolved_by="tier1", resolution_ms=1_000),
        contact("c02", resolved_by="tier2", resolution_ms=3_000),
        contact("c03", resolved_by="tier2", resolution_ms=5_000),
        contact("c04", resolved_by="tier3", resolution_ms=3_600_000),
        contact("c05", resolved_by="tier3", resolution_ms=None),
    ]

    ttr = support_figures(contacts)["time_to_resolution"]

    assert ttr["tier1"] == {"resolved": 1, "p50_ms": 1_000, "p90_ms": 1_000}
    assert ttr["tier2"]["resolved"] == 2
    assert ttr["tier2"]["p90_ms"] == 5_000
    assert ttr["tier3"] == {"resolved": 1, "p50_ms": 3_600_000, "p90_ms": 3_600_000, "open": 1}
    assert ttr["tier0"]["resolved"] == 0


def test_given_a_clarifying_question_when_summed_then_it_is_a_first_response_but_no_resolution() -> None:
    contacts = [
        contact(
            "c01",
            first_kind="clarifying_question",
            first_response_ms=900,
            resolved_by="tier2",
            resolution_ms=900,
        ),
        contact(
            "c02", first_kind="answer", first_response_ms=1_500, resolved_by="tier2", resolution_ms=1_500
        ),
    ]

    figures = support_figures(contacts)

    assert figures["first_response_ms"]["count"] == 2
    assert figures["time_to_resolution"]["tier2"]["resolved"] == 1
    assert figures["time_to_resolution"]["tier2"]["p50_ms"] == 1_500
    assert figures["clarifying_questions"] == 1
    assert figures["first_contact_resolution"] == 0.5  # the unanswered question resolved nothing


def test_given_ratings_and_threads_when_summed_then_csat_solved_fcr_and_effort_follow() -> None:
    contacts = [
        contact("c01", resolved_by="tier2", csat=5, solved=True),
        contact("c02", resolved_by="tier2", csat=2, solved=False),
        contact("c03", conversation_id="t3", resolved_by="tier2", thread_messages=2),
        contact("c04", conversation_id="t3", resolved_by="tier3", thread_messages=2, first_in_thread=False),
        contact("c05", resolved_by="tier3", escalation_reason="fraud"),
    ]

    figures = support_figures(contacts)

    assert figures["csat"]["mean"] == 3.5
    assert figures["csat"]["satisfied_share"] == 0.5
    assert figures["csat"]["solved_share"] == 0.5
    assert figures["conversations"] == 4
    assert figures["first_contact_resolution"] == 0.25  # only c01: c02 unsolved, t3 needed two, c05 a person
    assert figures["effort"]["customer_messages_per_conversation"] == 1.25


def test_given_store_rows_with_sentinels_when_read_then_missing_values_are_none() -> None:
    row = {
        "contact_id": "c1",
        "conversation_id": "c1",
        "text": "hi",
        "at": "2026-12-03 10:00:00.000",
        "answered": 0,
        "first_kind": "",
        "first_response_ms": -17_000_000,
        "has_outcome": 1,
        "resolved_by": "tier3",
        "intent": "",
        "escalation_reason": "low_confidence",
        "variant": "",
        "outcome_ms": 900,
        "case_resolved": 0,
        "case_ms": -17_000_000,
        "csat_n": 0,
        "csat": 0,
        "solved_n": 1,
        "solved": 0,
        "thread_messages": 1,
        "first_in_thread": 1,
    }

    c = contact_from_row(row)

    assert (c.first_kind, c.first_response_ms, c.resolution_ms, c.csat, c.solved) == (
        None,
        None,
        None,
        None,
        False,
    )
    assert (c.intent, c.variant, c.resolved_by) == (None, None, "tier3")


# ----------------------------------------------------------------------------------------- knowledge gaps
def test_given_contacts_when_gaps_are_ranked_then_unplanned_handoffs_and_low_ratings_count() -> None:
    contacts = [
        contact(
            "c01",
            intent="invoice_request",
            resolved_by="tier3",
            escalation_reason="low_confidence",
            text="Where can I download the VAT invoice for October?",
        ),
        contact(
            "c02",
            intent="invoice_request",
            resolved_by="tier2",
            csat=1,
            text="I need the VAT invoice with our company number on it",
        ),
        contact("c03", intent="invoice_request", resolved_by="tier2", csat=5, text="thanks, got the invoice"),
        contact(
            "c04",
            intent="payment_methods_question",
            resolved_by="tier2",
            solved=False,
            text="Can I pay by bank transfer instead?",
        ),
        contact(
            "c05",
            intent="fraud_compromised",
            resolved_by="tier3",
            escalation_reason="fraud",
            text="someone used my card",
        ),
        contact(
            "c06",
            intent="refund_request",
            resolved_by="tier3",
            escalation_reason="refund_over_policy",
            text="refund me $900",
        ),
        contact("c07", intent="plan_change", resolved_by="tier2", text="upgrade me to pro"),
    ]

    gaps = knowledge_gaps(contacts)

    assert [g["intent"] for g in gaps] == ["invoice_request", "payment_methods_question"]
    invoice = gaps[0]
    assert (invoice["contacts"], invoice["gaps"], invoice["reached_person"], invoice["low_rated"]) == (
        3,
        2,
        1,
        1,
    )
    assert invoice["gap_rate"] == 0.6667
    assert invoice["phrasing"] == "vat invoice"
    assert invoice["suggested_article"] == "Invoice request: “vat invoice”"
    assert invoice["examples"] == [
        "I need the VAT invoice with our company number on it",
        "Where can I download the VAT invoice for October?",
    ]


def test_given_texts_without_a_shared_pair_when_phrased_then_the_commonest_word_is_used() -> None:
    assert common_phrasing(["card declined in Spain", "why was my card refused"]) == "card"
    assert common_phrasing([]) == ""
    assert article_title("", "") == "Unclassified"


def test_given_two_variants_when_compared_then_csat_solved_and_resolution_are_per_variant() -> None:
    v = "update_card_link_answer:"
    contacts = [
        contact("c01", variant=v + "A", resolved_by="tier2", csat=3),
        contact("c02", variant=v + "A", resolved_by="tier2", conversation_id="t2", at="2026-12-03 10:00:02"),
        contact("c03", conversation_id="t2", at="2026-12-03 10:05:00", text="that didn't work"),
        contact("c04", variant=v + "B", resolved_by="tier2", csat=5, solved=True),
        contact("c05", variant=v + "B", resolved_by="tier2", csat=4, solved=False),
        contact("c06", resolved_by="tier2"),
    ]

    rows = experiment_results(contacts)

    assert rows == [
        {
            "experiment": "update_card_link_answer",
            "variant": "A",
            "answers": 2,
            "ratings": 1,
            "csat_mean": 3.0,
            "solved_share": None,
            "resolved": 1,
            "resolution_rate": 0.5,
        },
        {
            "experiment": "update_card_link_answer",
            "variant": "B",
            "answers": 2,
            "ratings": 2,
            "csat_mean": 4.5,
            "solved_share": 0.5,
            "resolved": 1,
            "resolution_rate": 0.5,
        },
    ]


def test_given_no_contacts_when_reported_then_the_sections_are_empty_and_the_lines_still_print() -> None:
    report = learning_report([])

    assert report["knowledge_gaps"] == []
    assert report["experiments"] == []
    assert report["support"]["csat"]["mean"] is None
    lines = support_lines(report)
    assert lines[0].startswith("first response: p50 0.0 s")
    assert "CSAT: - from 0 ratings" in lines[2]


# -------------------------------------------------------------------------------------- the ratings door
@pytest.fixture
def chat() -> tuple[FakeChatStore, Published, ChatDeps]:
    store, published = FakeChatStore(), Published()
    return store, published, ChatDeps(store=store, publish=published, secret=KEYS, poll_s=0.01)


async def test_given_an_answer_when_the_customer_rates_it_then_conversation_rated_is_published(
    chat: tuple[FakeChatStore, Published, ChatDeps],
) -> None:
    store, published, deps = chat
    await store.open("chat_r1", ALICE)
    store.add_turn("chat_r1", "assistant", "answer", "Done.", "c-r-1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(deps)), base_url="http://t"
    ) as client:
        body = {"conversation_id": "chat_r1", "contact_id": "c-r-1", "csat": 4, "solved": True}
        first = await client.post("/v1/chat/ratings", json=body, headers=auth(ALICE))
        again = await client.post("/v1/chat/ratings", json=body, headers=auth(ALICE))

    assert first.status_code == again.status_code == 200
    rated = [m for m in published.messages if isinstance(m, ConversationRatedV1)]
    assert len(rated) == 2
    assert rated[0].message_id == rated[1].message_id  # a retried rating is the same message
    assert (rated[0].contact_id, rated[0].customer_id) == ("c-r-1", ALICE)
    assert (rated[0].payload.conversation_id, rated[0].payload.csat, rated[0].payload.solved) == (
        "chat_r1",
        4,
        True,
    )


async def test_given_another_customers_answer_when_rated_then_404_and_nothing_published(
    chat: tuple[FakeChatStore, Published, ChatDeps],
) -> None:
    store, published, deps = chat
    await store.open("chat_r2", ALICE)
    store.add_turn("chat_r2", "assistant", "answer", "Done.", "c-r-2")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_for(deps)), base_url="http://t"
    ) as client:
        resp = await client.post(
            "/v1/chat/ratings",
            json={"conversation_id": "chat_r2", "contact_id": "c-r-2", "csat": 1},
            headers=auth(BOB),
        )

    assert resp.status_code == 404
    assert published.messages == []
