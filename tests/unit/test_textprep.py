"""Email normalisation: the customer's new words survive, quotes / signatures / greetings do not."""

from __future__ import annotations

import pytest

from tierline.textprep import clean_text, split_asks

pytestmark = pytest.mark.unit

# (id, raw message, words that must be kept, words that must be gone)
EMAILS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "gmail_reply_with_signature",
        "Hi team,\n\nCould you please send me the invoice for last month? Our accountant needs it.\n\n"
        "Thanks,\nMaria\n\nMaria Lopez | Finance Manager | Acme Ltd\n+1 (555) 123-4567\nwww.acme.com\n\n"
        "On Mon, Nov 3, 2026 at 9:14 AM Tierline Support <support@tierline.io> wrote:\n"
        "> Hello Maria, your payment was received.\n> Best, Support",
        ["send me the invoice for last month", "accountant needs it"],
        ["Hi team", "Maria", "555", "acme.com", "payment was received", "wrote"],
    ),
    (
        "gmail_attribution_wrapped_over_two_lines",
        "My card was declined this morning, can you retry?\n\n"
        "On Tue, Nov 4, 2026 at 10:02 AM Tierline Billing <\nbilling@tierline.io> wrote:\n"
        "> Your payment of $49.00 failed.",
        ["card was declined this morning", "retry"],
        ["$49.00 failed", "wrote"],
    ),
    (
        "outlook_original_message",
        "I need last month's invoice for our records.\n\n-----Original Message-----\n"
        "From: Tierline <billing@tierline.io>\nSent: Monday, November 3, 2026 9:00 AM\n"
        "To: ap@acme.com\nSubject: Your receipt\n\nThanks for your payment of $99.",
        ["last month's invoice for our records"],
        ["Original Message", "Thanks for your payment", "ap@acme.com"],
    ),
    (
        "outlook_header_block_without_separator",
        "Why can't I log in?\n\nFrom: billing@tierline.io\nSent: 3 November 2026 10:00\nTo: me\n"
        "Subject: Payment failed\n\nWe could not charge your card.",
        ["Why can't I log in?"],
        ["We could not charge", "Subject"],
    ),
    (
        "outlook_underscore_separator",
        "Please cancel my subscription at the end of the month.\n\n________________________________\n"
        "From: Tierline Support\nSent: Friday\nSubject: RE: plan\n\nHi, happy to help with your plan.",
        ["cancel my subscription at the end of the month"],
        ["happy to help", "From:"],
    ),
    (
        "apple_mail_sent_from_iphone",
        "My card expired, please send me a link to update it.\n\nSent from my iPhone\n\n"
        "> On Nov 2, 2026, at 08:00, Tierline <billing@tierline.io> wrote:\n> Your card expires soon.",
        ["card expired, please send me a link to update it"],
        ["iPhone", "expires soon"],
    ),
    (
        "sent_from_iphone_on_the_same_line",
        "Hi, my card got declined again. Sent from my iPhone",
        ["my card got declined again."],
        ["iPhone", "Hi,"],
    ),
    (
        "dash_dash_signature",
        "Hey there! Can u resend the receipt pls?\n\n-- \nJohn Doe\nCEO, Foo Inc.\nTel: +44 20 7946 0958",
        ["Can u resend the receipt pls?"],
        ["Hey there", "John", "CEO", "7946"],
    ),
    (
        "legal_disclaimer",
        "We were charged twice for November, please refund one of them.\n\nKind regards\nAna\n\n"
        "CONFIDENTIALITY NOTICE: This email and any attachments are confidential and intended solely "
        "for the addressee. If you have received this email in error please notify the sender.",
        ["charged twice for November", "refund one of them"],
        ["CONFIDENTIALITY", "addressee", "Kind regards", "Ana"],
    ),
    (
        "disclaimer_without_sign_off",
        "Please send the October invoice to ap@acme.com.\n\n"
        "This e-mail message is confidential and intended only for the named recipient.",
        ["send the October invoice to ap@acme.com"],
        ["intended only for the named recipient"],
    ),
    (
        "html_email_with_gmail_quote",
        '<div dir="ltr"><p>Hello,</p><p>Please update my card&nbsp;details, the old one expired.</p>'
        '<div class="gmail_quote"><div class="gmail_attr">On Tue wrote:</div>'
        "<blockquote>Your invoice is ready</blockquote></div></div>",
        ["Please update my card details, the old one expired."],
        ["<p>", "&nbsp;", "invoice is ready", "Hello"],
    ),
    (
        "html_with_blockquote_and_br",
        "Can you tell me why my bill is so high this month?<br><br>Cheers,<br>Sam<br>"
        "<blockquote type='cite'>Your bill: $412.00</blockquote>",
        ["why my bill is so high this month?"],
        ["Cheers", "Sam", "$412.00", "<br>"],
    ),
    (
        "one_line_with_trailing_sign_off_and_name",
        "Please send the invoice. Thanks, John",
        ["Please send the invoice."],
        ["John"],
    ),
    (
        "greeting_on_same_line_as_ask",
        "Hello support, I was charged twice for my subscription this month.",
        ["I was charged twice for my subscription this month."],
        ["Hello support"],
    ),
    (
        "dear_greeting_and_pleasantry",
        "Dear Tierline team,\n\nI hope you are well. My payment keeps failing even though my card is "
        "valid.\n\nBest regards,\nPeter Smith\nHead of Operations\nSmith & Co",
        ["My payment keeps failing even though my card is valid."],
        ["Dear", "hope you are well", "Peter", "Head of Operations"],
    ),
    (
        "typos_and_lowercase_no_punctuation",
        "hi\ni got charged twise this month can u fix it\nthx\nbob",
        ["i got charged twise this month can u fix it"],
        ["thx", "bob"],
    ),
    (
        "french_reply",
        "Bonjour,\nPouvez-vous m'envoyer la facture du mois dernier ?\nCordialement,\nJean Dupont\n\n"
        "Le lun. 3 nov. 2026 à 10:00, Support <support@tierline.io> a écrit :\n> Votre paiement a échoué.",
        ["Pouvez-vous m'envoyer la facture du mois dernier ?"],
        ["Bonjour", "Cordialement", "Jean", "paiement a échoué"],
    ),
    (
        "german_reply",
        "Hallo,\n\nmeine Zahlung wurde abgelehnt. Können Sie es erneut versuchen?\n\n"
        "Mit freundlichen Grüßen\nKlaus Müller\n\n"
        "Am Mo., 3. Nov. 2026 um 10:00 Uhr schrieb Tierline <billing@tierline.io>:\n> Ihre Rechnung",
        ["meine Zahlung wurde abgelehnt", "erneut versuchen"],
        ["Hallo", "Klaus", "Ihre Rechnung", "schrieb"],
    ),
    (
        "spanish_reply",
        "Hola,\nNecesito la factura de octubre por favor.\nSaludos\nLucía\n\n"
        "El lun, 3 nov 2026 a las 10:00, Tierline (<billing@tierline.io>) escribió:\n> Su pago falló",
        ["Necesito la factura de octubre por favor."],
        ["Hola", "Lucía", "Su pago", "escribió"],
    ),
    (
        "portuguese_reply",
        "Olá,\nmeu cartão foi recusado, podem tentar de novo?\nObrigado\n\n"
        "Em seg., 3 de nov. de 2026 às 10:00, Tierline <billing@tierline.io> escreveu:\n> Fatura",
        ["meu cartão foi recusado, podem tentar de novo?"],
        ["Olá", "Obrigado", "escreveu"],
    ),
    (
        "inline_quoted_lines_interleaved",
        "> Can you confirm which card you want to use?\nThe Visa ending 4242 please.\n"
        "> And should we retry now?\nYes, retry the payment now.",
        ["The Visa ending 4242 please.", "Yes, retry the payment now."],
        ["Can you confirm", "should we retry"],
    ),
    (
        "forwarded_message",
        "FYI, this charge looks wrong to me, what is it for?\n\n---------- Forwarded message ---------\n"
        "From: Stripe <receipts@stripe.com>\nDate: Mon, Nov 3, 2026\nSubject: Receipt\n\nAmount: $240.00",
        ["this charge looks wrong to me, what is it for?"],
        ["Forwarded", "$240.00", "receipts@stripe.com"],
    ),
    (
        "address_block_signature",
        "Please change the billing address on our invoices.\n\nRegards,\nAcme Corp\n"
        "123 Main Street, Suite 400\nAustin, TX 78701",
        ["change the billing address on our invoices"],
        ["Main Street", "78701", "Regards"],
    ),
    (
        "signature_without_sign_off",
        "How do I download my invoices?\n\nJane Roe\nAccounts Payable Manager\n+1 415 555 0101\n"
        "jane.roe@example.com",
        ["How do I download my invoices?"],
        ["Jane Roe", "Manager", "0101", "jane.roe@example.com"],
    ),
    (
        "thanks_in_advance_pleasantry",
        "Hi there,\nCan you send me a new card link and last month's invoice? Thanks in advance!\n\n"
        "Cheers\nMo",
        ["send me a new card link and last month's invoice?"],
        ["Thanks in advance", "Cheers", "Hi there"],
    ),
    (
        "bulleted_asks",
        "Hi,\n\nTwo things:\n- send me a link to update my card\n- resend last month's invoice\n\n"
        "Thanks!\nLee",
        ["send me a link to update my card", "resend last month's invoice"],
        ["Thanks", "Lee", "- send"],
    ),
    (
        "windows_line_endings_and_nbsp",
        "Hi,\r\n\r\nMy\u00a0account\u00a0is locked.\r\n\r\nBest,\r\nKim\r\n",
        ["My account is locked."],
        ["Best", "Kim", "\r", "\u00a0"],
    ),
    (
        "email_address_in_angle_brackets_is_kept",
        "Hi,\nPlease send future invoices to <ap@acme.com> instead.\nThanks",
        ["Please send future invoices to <ap@acme.com> instead."],
        ["Hi,"],
    ),
    (
        "important_in_the_customer_words_is_not_a_disclaimer",
        "Hi,\nIMPORTANT: our card was charged twice this month.\nPlease fix it.\nThanks",
        ["IMPORTANT: our card was charged twice this month.", "Please fix it."],
        ["Thanks"],
    ),
    (
        "a_last_line_naming_a_title_in_a_sentence_is_kept",
        "Hello,\nMy card was declined.\nI am the Owner of this account and I need the invoice too",
        ["I am the Owner of this account and I need the invoice too", "My card was declined."],
        ["Hello"],
    ),
    (
        "texting_style_typos_and_abbreviated_sign_off",
        "Hi Support Team,\n\nhope ur well\n\ncould u pls send me the invoce for septmber?\n\nthnx\nRaj",
        ["could u pls send me the invoce for septmber?"],
        ["hope ur well", "thnx", "Raj", "Support Team"],
    ),
    (
        "greeting_word_opening_a_content_line_is_kept",
        "Hi my card was declined\nplease help",
        ["my card was declined please help"],
        [],
    ),
    (
        "formal_letter",
        "Dear Sir/Madam,\n\nKindly send the invoice for October 2026.\n\nYours faithfully,\nA. Kumar",
        ["Kindly send the invoice for October 2026."],
        ["Dear", "faithfully", "Kumar"],
    ),
    (
        "thanks_line_in_the_middle_keeps_what_follows",
        "My card was declined.\nThanks for looking into it\nAlso send the invoice",
        ["My card was declined.", "Thanks for looking into it", "Also send the invoice"],
        [],
    ),
    (
        "thanks_opening_is_content_not_a_sign_off",
        "Thanks for the quick reply yesterday, but my card still fails when I pay the invoice.",
        ["Thanks for the quick reply yesterday, but my card still fails when I pay the invoice."],
        [],
    ),
]


@pytest.mark.parametrize(("raw", "kept", "gone"), [e[1:] for e in EMAILS], ids=[e[0] for e in EMAILS])
def test_given_messy_email_when_cleaned_then_new_words_stay_and_the_rest_goes(
    raw: str, kept: list[str], gone: list[str]
) -> None:
    cleaned = clean_text(raw)
    for words in kept:
        assert words in cleaned, (words, cleaned)
    for words in gone:
        assert words not in cleaned, (words, cleaned)
    assert "  " not in cleaned
    assert "\n" not in cleaned


def test_given_at_least_25_realistic_emails_when_counted_then_the_table_is_large_enough() -> None:
    assert len(EMAILS) >= 25


@pytest.mark.parametrize(
    "raw",
    [
        "Thanks",
        "Hi team,",
        "Best regards,\nAna",
        "-- \nJohn",
        "> only a quoted line",
        "Sent from my iPhone",
        "On Mon, Nov 3, 2026 at 9:14 AM Support <s@t.io> wrote:\n> hello",
    ],
)
def test_given_text_that_is_only_boilerplate_when_cleaned_then_some_of_its_words_come_back(raw: str) -> None:
    cleaned = clean_text(raw)
    assert cleaned, raw
    assert cleaned.split()[0] in raw


@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "...", "!!!"])
def test_given_text_without_words_when_cleaned_then_it_stays_without_words(raw: str) -> None:
    assert clean_text(raw) == " ".join(raw.split())


def test_given_a_plain_chat_message_when_cleaned_then_it_is_unchanged() -> None:
    text = "I was charged twice for my subscription this month."
    assert clean_text(text) == text
    assert clean_text(clean_text(text)) == text


def test_given_two_asks_joined_by_and_when_split_then_each_is_its_own_piece() -> None:
    pieces = split_asks("send me a new card link and last month's invoice")
    assert "send me a new card link" in pieces
    assert "last month's invoice" in pieces


def test_given_two_sentences_when_split_then_each_sentence_is_a_piece() -> None:
    pieces = split_asks("My card expired. Also, please resend the October invoice.")
    assert "My card expired." in pieces
    assert any("resend the October invoice" in p for p in pieces)


def test_given_one_ask_when_split_then_nothing_to_split() -> None:
    assert split_asks("Please send me last month's invoice.") == []
    assert split_asks("") == []


def test_given_a_short_tail_after_and_when_split_then_it_stays_with_its_clause() -> None:
    pieces = split_asks("I was charged and refunded")
    assert pieces == []


def test_given_a_long_message_when_split_then_pieces_are_bounded() -> None:
    text = " ".join(f"Sentence number {i} asks something." for i in range(30))
    assert len(split_asks(text)) <= 8


def test_given_a_huge_pathological_text_when_cleaned_then_it_returns() -> None:
    raw = ("On " + "x" * 5000 + "\n") * 50 + ("> " * 2000) + "-" * 10000 + "<" * 10000
    assert isinstance(clean_text(raw), str)
