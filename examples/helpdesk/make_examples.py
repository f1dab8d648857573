# ruff: noqa: E501 - one example text a line
"""The helpdesk exports of examples/helpdesk (texts written for tierline's audit-inbox, no real customer's).

    python examples/helpdesk/make_examples.py                # the three example files, beside this script
    python examples/helpdesk/make_examples.py --large 2000 /tmp/inbox-2000.csv   # a Zendesk-like file for timing

The large file repeats the example texts with a varying greeting, sign-off and quoted thread, so the
cleaning and the classifier see messy e-mails; it measures speed, not accuracy.
"""

import argparse
import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent
BASE = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)

ZENDESK = [
    # (subject, description, hours to solve or None for open)
    (
        "Card declined??",
        "Hi,\nmy card got declined again this morning and now the dashboard says past due. What do I do?\n\nThanks,\nMarta\nHead of Ops, Brightline Labs\n+1 415 555 0132",
        5,
    ),
    (
        "Payment failed",
        "hey our payment failed, the bank says nothing wrong on their side. can you retry it?",
        3,
    ),
    (
        "Re: Your payment did not go through",
        "ok I updated nothing yet, where do I put the new card?\n\nOn Tue, Oct 6, 2026 at 9:12 AM Billing <billing@example.com> wrote:\n> Your payment of $49.00 did not go through.\n> Please update your card.",
        20,
    ),
    (
        "invoice for september",
        "Can you send me the invoice for September? Our accountant needs it by Friday.\n\nSent from my iPhone",
        2,
    ),
    (
        "Need last months invoice",
        "Hello team, I hope you are well. Please send over last month's invoice as a PDF, the download link in the email is broken.\n\nBest regards,\nJonas Weber\nFinance",
        4,
    ),
    (
        "VAT invoice",
        "We need an invoice with our VAT number DE123456789 on it, the one we got shows no VAT id.",
        30,
    ),
    (
        "Charged twice",
        "You charged me twice for October!! two charges of $99 on my statement, one has to go back",
        26,
    ),
    (
        "double charge on my card",
        "I see the same subscription charge two times on the 3rd, please refund the duplicate",
        40,
    ),
    (
        "What is this charge",
        "There is a $240 charge from you on my card that I don't recognise. We are on the $49 plan. What is it?",
        31,
    ),
    (
        "Why is my bill so high",
        "our bill jumped from 49 to 180 this month, nobody changed anything. why??",
        28,
    ),
    (
        "unexpected overage",
        "Got billed for overage on API calls, we thought the plan was unlimited. Please explain the usage charges.",
        22,
    ),
    (
        "Refund please",
        "I forgot to cancel before the renewal and was charged for a full year. I want a refund, we haven't used it at all.",
        52,
    ),
    ("refund request", "please refund my last payment, the product did not work for us", 47),
    (
        "Where is my refund",
        "You said on the 2nd that the refund was processed but I still don't see it on my card. When will it arrive?",
        12,
    ),
    ("refund status?", "any update on the refund from last week? still nothing in my bank account", 9),
    (
        "Cancel my subscription",
        "Please cancel my subscription at the end of this billing period. We're moving to another tool.\n\n--\nPriya Raman\nCTO, Tinkerbox",
        6,
    ),
    ("cancel", "how do i cancel my account?? i can't find the button", 3),
    ("Downgrade", "We'd like to downgrade from Pro to Starter from next month, fewer seats needed.", 8),
    ("upgrade plan", "Can we upgrade to the annual plan and get the discount?", 7),
    (
        "Change billing email",
        "Please send invoices to accounts@tinkerbox.io from now on instead of my personal address.",
        10,
    ),
    (
        "new company name",
        "We renamed the company to Northwind Analytics GmbH, please use the new name on future invoices.",
        16,
    ),
    (
        "Update address",
        "Our office moved. New billing address: Kastanienallee 12, 10435 Berlin. Please update it.",
        14,
    ),
    (
        "Payment methods",
        "Do you accept SEPA direct debit or only credit cards? Can we pay by bank transfer?",
        11,
    ),
    ("pay by invoice", "is it possible to pay yearly by wire transfer instead of card?", 13),
    (
        "Card expiring",
        "My card expires at the end of the month. How do I add the new one before the next charge?",
        5,
    ),
    ("Payment pending", "The payment shows as pending for 3 days now, is it going through or not?", 15),
    (
        "Fraud",
        "Someone used our account to buy seats we never ordered, I think our login was stolen. Please lock the account.",
        60,
    ),
    ("Speak to a human", "I don't want the bot, let me talk to a real person about my account please", 9),
    (
        "Export not working",
        "The CSV export in the reports tab spins forever and never downloads. Chrome on Mac.",
        70,
    ),
    (
        "How do I add a teammate",
        "How can I invite a colleague to our workspace? I don't see the invite option.",
        4,
    ),
    (
        "API rate limit",
        "We keep hitting 429 errors on the /v2/events endpoint since yesterday, can you raise our limit?",
        35,
    ),
    (
        "Password reset email never arrives",
        "I requested a password reset three times and no email came. Checked spam.",
        6,
    ),
    ("Feature request", "Would love a dark mode for the dashboard. Any plans?", None),
    ("SSO setup", "How do we configure SAML SSO with Okta? The docs page 404s.", 48),
    (
        "Mi tarjeta fue rechazada",
        "Hola, mi tarjeta fue rechazada y no puedo pagar la factura. ¿Qué hago?\n\nSaludos,\nLucía",
        18,
    ),
    (
        "Rechnung Oktober",
        "Hallo, bitte senden Sie mir die Rechnung für Oktober.\n\nMit freundlichen Grüßen\nKlaus Becker",
        7,
    ),
    (
        "<b>Invoice link expired</b>",
        "<p>The link to pay the invoice says it has <b>expired</b>. Can you send a new one?</p><p>Thanks</p>",
        2,
    ),
    (
        "Re: Re: charged after cancelling",
        "I cancelled in August and you still charged me in September and October. I want that money back.\n\n-----Original Message-----\nFrom: Billing\nSent: Monday\nSubject: Re: charged after cancelling\nWe are looking into it.",
        75,
    ),
    (
        "Webhook retries",
        "Our webhook endpoint was down for an hour, will you retry the failed deliveries?",
        20,
    ),
    ("Invoice copy", "could you resend invoice INV-2026-0931? I deleted the email by mistake", 1),
]

HELPSCOUT = [
    (
        "Declined payment",
        "My payment was declined but I have enough money on the card. Can you try again?",
        4,
    ),
    ("card declined", "Card declined when renewing. Bank says you need to retry.", 6),
    ("Invoice needed", "Hi! Could you please send me the invoice for our last payment? Thanks a lot, Ana", 3),
    ("Invoices for Q3", "We need all invoices for July, August and September for our audit.", 10),
    ("receipt", "where can I download receipts for my payments?", 2),
    ("Charged twice this month", "I was billed two times this month for the same plan. Please fix.", 30),
    ("Unknown charge", "What is the $19.99 charge from you on the 14th? I didn't buy anything.", 26),
    ("Bill higher than expected", "Why is this invoice higher than usual? We didn't add seats.", 20),
    ("Refund", "I'd like a refund for the annual renewal, I meant to cancel.", 50),
    ("refund not received", "Still waiting on my refund from 10 days ago, where is it?", 12),
    (
        "Cancel subscription",
        "Please cancel our plan, we are closing the business. Thank you for everything.",
        5,
    ),
    ("Cancel please", "I want to cancel immediately and delete my card details", 8),
    ("Switch plans", "How do I switch from monthly to yearly billing?", 6),
    ("more seats", "We need to go up to the Team plan with 15 seats.", 5),
    ("Update card", "Where do I update my credit card? Old one expired.", 2),
    ("New card", "my card is expiring next week, want to change it before the payment", 3),
    ("Billing email", "Change the billing contact to finance@acme.example please", 9),
    (
        "Company details",
        "Please put our new VAT id FR40303265045 and company name on invoices from now on.",
        18,
    ),
    ("Payment options", "Can I pay with PayPal?", 7),
    ("Pending charge", "The charge is still pending on my statement, did it go through?", 14),
    ("hacked", "I think my account was hacked, there are payments I did not make. Urgent!", 55),
    ("agent please", "I'd like to speak with someone from your billing team, not a chatbot.", 10),
    ("Login problem", "I can't log in since the update, it says invalid session.", 9),
    ("Bug in charts", "The usage chart shows zero for yesterday but we sent thousands of events.", 40),
    ("Onboarding help", "Can someone walk us through setting up the integration with Salesforce?", 72),
    ("Delete my data", "Please delete all data about me under GDPR.", 90),
    ("Partnership", "We are an agency and would like to become a reseller. Who should I talk to?", None),
    ("Fatura", "Olá, preciso da fatura de outubro, por favor. Obrigado, João", 6),
    (
        "Carte refusée",
        "Bonjour, ma carte a été refusée pour le paiement. Pouvez-vous réessayer ? Cordialement, Julien",
        8,
    ),
    (
        "Re: your trial",
        "Thanks, but how do I actually upgrade after the trial ends?\n\n> Your trial ends in 3 days.\n> Upgrade anytime.",
        4,
    ),
    ("payment failed again", "paymnet failed agian, this is the 3rd time, pls fix or i'll cancel", 16),
    ("Need a W-9", "Our vendor onboarding needs your W-9 form, can you send it?", 24),
]

GENERIC = [
    ("card declined", "my card keeps getting declined", 2),
    ("invoice", "send me the invoice for last month please", 1),
    ("refund", "I want my money back for this month", 30),
    ("cancel", "cancel my subscription please", 3),
    ("charged twice", "there are two identical charges on my card", 20),
    ("how to export", "how do I export my data to Excel?", 5),
    ("app crashes", "the mobile app crashes when I open settings", 44),
    ("plan change", "move us to the starter plan next month", 4),
]


def stamp(dt: datetime, style: str) -> str:
    if style == "zendesk":
        return dt.strftime("%Y-%m-%d %H:%M:%S +0000")
    if style == "helpscout":
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return dt.strftime("%Y-%m-%d %H:%M")


def write_zendesk() -> None:
    with (OUT / "zendesk_tickets.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "Id",
                "Requester",
                "Requester email",
                "Subject",
                "Description",
                "Status",
                "Priority",
                "Via",
                "Ticket type",
                "Tags",
                "Created at",
                "Updated at",
                "Solved at",
            ]
        )
        for i, (subject, body, hours) in enumerate(ZENDESK):
            created = BASE + timedelta(hours=7 * i + 3)
            solved = created + timedelta(hours=hours, minutes=13 * (i % 4)) if hours is not None else None
            w.writerow(
                [
                    4100 + i,
                    f"Customer {i}",
                    f"customer{i}@example.com",
                    subject,
                    body,
                    "Solved" if solved else "Open",
                    "Normal",
                    "Email",
                    "Question",
                    "billing",
                    stamp(created, "zendesk"),
                    stamp(solved or created, "zendesk"),
                    stamp(solved, "zendesk") if solved else "",
                ]
            )


def write_helpscout() -> None:
    with (OUT / "helpscout_conversations.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "Conversation ID",
                "Number",
                "Customer Name",
                "Customer Email",
                "Mailbox",
                "Subject",
                "Preview",
                "Status",
                "Tags",
                "Assigned To",
                "Created At",
                "Closed At",
            ]
        )
        for i, (subject, body, hours) in enumerate(HELPSCOUT):
            created = BASE + timedelta(hours=9 * i + 1)
            closed = created + timedelta(hours=hours, minutes=7 * (i % 5)) if hours is not None else None
            w.writerow(
                [
                    98000 + i,
                    500 + i,
                    f"Customer {i}",
                    f"hs{i}@example.org",
                    "Support",
                    subject,
                    body,
                    "closed" if closed else "active",
                    "",
                    "Sam",
                    stamp(created, "helpscout"),
                    stamp(closed, "helpscout") if closed else "",
                ]
            )


def write_generic() -> None:
    with (OUT / "generic_tickets.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["subject", "body", "created", "resolved"])
        for i, (subject, body, hours) in enumerate(GENERIC):
            created = BASE + timedelta(days=i)
            w.writerow(
                [subject, body, stamp(created, "generic"), stamp(created + timedelta(hours=hours), "generic")]
            )


GREETINGS = ("", "Hi,\n", "Hello team,\n\n", "hey\n", "Dear support,\n\n")
SIGN_OFFS = (
    "",
    "\n\nThanks,\nAlex",
    "\n\nBest regards,\nKim Lee\nAccounts Payable | Orbit Tools Ltd\nTel +44 20 7946 0000",
    "\n\nSent from my iPhone",
    "\n\n--\nR. Diaz\nwww.example.net",
)
QUOTES = (
    "",
    "\n\nOn Mon, Oct 5, 2026 at 10:02 AM Support <support@example.com> wrote:\n> Thanks for reaching out.\n> We'll get back to you.",
)


def write_large(n: int, path: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    pool = ZENDESK + HELPSCOUT + GENERIC
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Id", "Requester", "Subject", "Description", "Status", "Created at", "Solved at"])
        for i in range(n):
            subject, body, hours = pool[i % len(pool)]
            text = rng.choice(GREETINGS) + body + rng.choice(SIGN_OFFS) + rng.choice(QUOTES)
            created = BASE + timedelta(minutes=37 * i)
            solved = (
                created + timedelta(hours=hours, minutes=rng.randrange(60)) if hours is not None else None
            )
            w.writerow(
                [
                    10_000 + i,
                    f"Customer {i}",
                    subject,
                    text,
                    "Solved" if solved else "Open",
                    stamp(created, "zendesk"),
                    stamp(solved, "zendesk") if solved else "",
                ]
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--large", type=int, default=0, help="write this many tickets to OUT instead")
    parser.add_argument("out", nargs="?", type=Path, default=None)
    args = parser.parse_args()
    if args.large:
        write_large(args.large, args.out or Path(f"inbox-{args.large}.csv"))
    else:
        write_zendesk()
        write_helpscout()
        write_generic()
