"""Contact texts for the demo's synthetic month, written apart from the router's training examples
(templates × fillers, so the router sees phrasings it was not trained on)."""

from __future__ import annotations

import random

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
OPENERS = ["", "Hi, ", "Hello team, ", "Hey there. ", "Good morning, ", "Quick question: ", "Urgent: "]

TEMPLATES: dict[str, list[str]] = {
    "payment_failed": [
        "{o}our subscription renewal didn't go through and the dashboard shows past due",
        "{o}the {month} payment bounced, what do I need to do so we don't lose access?",
        "{o}your system says our card was rejected when the plan renewed",
        "{o}billing failed on our workspace this morning, can you try it again",
    ],
    "card_expiring": [
        "{o}the company card on file runs out at the end of the month, where do I put the new one?",
        "{o}we got a reminder that our card is about to lapse, how do I swap it",
    ],
    "payment_pending": [
        "{o}the latest charge has been sitting as processing for days, is it going through?",
        "{o}my payment still says pending in the portal, should I pay again?",
    ],
    "unrecognized_charge": [
        "{o}there is a charge from you on our statement that nobody here recognises",
        "{o}what is this {amount} payment to your company? I don't remember signing up for anything",
    ],
    "unexpected_charge": [
        "{o}our invoice jumped way up this cycle, we didn't add anything, why?",
        "{o}why did you bill us {amount} when the plan is much cheaper",
        "{o}the bill for {month} is nearly double the usual, please explain the extra",
    ],
    "duplicate_charge": [
        "{o}I see the same subscription payment taken two times on the card",
        "{o}you billed us twice for {month}, same amount on the same day",
        "{o}there are two identical charges from you this week, one should be reversed",
    ],
    "refund_request": [
        "{o}we upgraded by accident and want that money back please",
        "{o}please return the {amount} you took, we stopped using the product",
        "{o}I'd like a refund for the last payment, it was a mistake",
    ],
    "refund_status": [
        "{o}support promised a refund a week ago and it still isn't on my card",
        "{o}when does the refund you approved actually land in our account?",
    ],
    "invoice_request": [
        "{o}our finance team needs a PDF of the {month} invoice",
        "{o}can you email me a receipt for the latest payment, I need it for expenses",
        "{o}where can I download last month's bill for our bookkeeping?",
    ],
    "update_billing_details": [
        "{o}please send future invoices to accounts@ourcompany.example instead",
        "{o}we moved offices, how do I change the billing address on the invoices",
        "{o}I need our VAT number printed on the invoices from now on",
    ],
    "cancel_subscription": [
        "{o}we're winding down the project, how do we stop the subscription",
        "{o}please close our workspace at the end of this billing period",
    ],
    "plan_change": [
        "{o}we'd like to move to the yearly plan to save a bit",
        "{o}can we drop to fewer seats, the team shrank to 6 people",
        "{o}how do I bump us up to the Business tier?",
    ],
    "payment_methods_question": [
        "{o}can we pay by bank transfer instead of a credit card?",
        "{o}do you take American Express or only Visa and Mastercard?",
    ],
    "fraud_compromised": [
        "{o}our company card was stolen yesterday, please make sure nothing else is charged to it",
        "{o}someone used our card without permission and there are payments we never made",
    ],
    "human_agent": [
        "{o}I'd rather speak with someone from your team, not an assistant",
        "{o}get me a real human on this please",
    ],
    "out_of_scope": [
        "{o}the export to CSV button does nothing in Firefox",
        "{o}how do I invite a colleague to the workspace?",
        "{o}is there an API rate limit for the search endpoint?",
    ],
}


def contact_text(intent: str, rng: random.Random, amount_usd: float | None = None) -> str:
    template = rng.choice(TEMPLATES[intent])
    text = template.format(
        o=rng.choice(OPENERS), month=rng.choice(MONTHS), amount=f"${amount_usd:.2f}" if amount_usd else "$49"
    )
    return text[0].upper() + text[1:]
