"""The subject of a new email counts as the customer's words for routing (issue 20: "email subject unused");
a reply's or forward's subject names an earlier topic and is left out."""

from __future__ import annotations

import pytest

from schemas import Channel
from schemas.messages import ContactReceivedPayload, ContactReceivedV1, Sender
from services.router.handlers import customer_words
from tierline.textprep import clean_text

pytestmark = pytest.mark.unit

BODY = "Hi,\n\nplease see the subject.\n\nThanks,\nMaria"


def email(text: str, subject: str | None) -> ContactReceivedV1:
    return ContactReceivedV1.build(
        ContactReceivedPayload(
            channel=Channel.EMAIL,
            text=text,
            sender=Sender(kind="email", email="maria@acme.example"),
            subject_line=subject,
        ),
        contact_id="ct_subject_1",
        customer_id="cus_subject1",
    )


def test_given_a_new_email_whose_subject_holds_the_ask_when_read_then_the_subject_is_read_first() -> None:
    words = customer_words(email(BODY, "Invoice for March needed"))

    assert words.startswith("Invoice for March needed.")
    assert "invoice for march" in clean_text(words).lower()


@pytest.mark.parametrize("subject", ["Re: charged twice", "RE: charged twice", "Fwd: refund", "AW: Rechnung"])
def test_given_a_reply_or_forward_when_read_then_its_subject_is_left_out(subject: str) -> None:
    assert customer_words(email(BODY, subject)) == BODY


@pytest.mark.parametrize("subject", [None, "", "   "])
def test_given_no_subject_when_read_then_the_text_alone(subject: str | None) -> None:
    assert customer_words(email(BODY, subject)) == BODY


def test_given_a_subject_the_text_repeats_when_read_then_it_is_not_read_twice() -> None:
    text = "Cancel my subscription please, we are closing the company."
    assert customer_words(email(text, "cancel my subscription")) == text


def test_given_a_subject_ending_in_a_question_mark_when_read_then_no_extra_full_stop() -> None:
    assert customer_words(email(BODY, "Can I get my invoice?")).startswith("Can I get my invoice?\n\n")
