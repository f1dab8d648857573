"""The support figures' arithmetic (tierline/conversation_metrics.py), on plain rows."""

from __future__ import annotations

import pytest

from tierline.conversation_metrics import percentile, summarise

pytestmark = pytest.mark.unit


def test_given_no_rows_when_summarised_then_every_figure_is_empty_not_an_error() -> None:
    figures = summarise([], [], [])
    assert figures["first_response_ms"]["count"] == 0
    assert figures["csat"]["mean"] is None
    assert figures["first_contact_resolution"] is None


def test_given_first_responses_when_summarised_then_human_replies_do_not_count_as_automated() -> None:
    rows = [
        ("answer", 800.0),
        ("fix_confirmation", 1200.0),
        ("human_reply", 3_600_000.0),
        ("answer", 45_000.0),
    ]
    figures = summarise(rows, [], [])["first_response_ms"]
    assert figures["count"] == 4
    assert figures["p99"] == 3_600_000.0
    assert figures["automated_p99"] == 45_000.0
    assert figures["automated_within_target"] == pytest.approx(2 / 3, abs=1e-4)


def test_given_ratings_when_summarised_then_csat_and_solved_share_are_over_rated_answers_only() -> None:
    figures = summarise([], [(5, True), (4, None), (2, False), (None, True)], [])["csat"]
    assert figures["ratings"] == 3
    assert figures["mean"] == pytest.approx(11 / 3, abs=0.01)
    assert figures["satisfied_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert figures["solved_share"] == pytest.approx(2 / 3, abs=1e-4)


def test_given_conversations_when_summarised_then_fcr_needs_one_message_and_no_person() -> None:
    conversations = [
        (1, "tier2", None),  # answered once, never came back: resolved on first contact
        (1, "tier1", True),
        (2, "tier2", None),  # came back: not first-contact
        (1, "tier3", None),  # a person: not automated
        (1, "tier2", False),  # said it did not solve it
        (1, None, None),  # no outcome yet
    ]
    figures = summarise([], [], conversations)
    assert figures["first_contact_resolution"] == pytest.approx(2 / 6, abs=1e-4)
    assert figures["customer_messages_per_conversation"] == pytest.approx(7 / 6, abs=0.01)


def test_given_values_when_percentile_then_nearest_rank() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
