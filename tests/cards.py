"""Cards in tests, the way the product gets them: created at Stripe (the emulator), never sent to tierline.

``attach_default_card``: test setup straight against the emulator (what a customer who added a card
long ago has). ``confirm_like_the_browser``: what the card page does from the browser — confirm tier 1's
SetupIntent on the emulator's API with only the publishable key and the client secret.
"""

from __future__ import annotations

from typing import Any

import httpx

from tierline.stripe_adapter import StripeActions, as_dict
from tierline_tools.world import VISA


async def attach_default_card(stripe: StripeActions, customer_id: str, number: str = VISA) -> str:
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    pm = as_dict(await stripe.v1.payment_methods.create_async({"type": "card", "card": card}))
    await stripe.set_default_payment_method(customer_id, pm["id"], f"test-card-{pm['id']}")
    return str(pm["id"])


async def confirm_like_the_browser(setup: dict[str, Any], number: str = VISA) -> httpx.Response:
    """POST the card to the emulator's SetupIntent confirm with the publishable key (no secret key)."""
    form = {
        "key": setup["publishable_key"],
        "client_secret": setup["client_secret"],
        "payment_method_data[type]": "card",
        "payment_method_data[card][number]": number,
        "payment_method_data[card][exp_month]": "12",
        "payment_method_data[card][exp_year]": "31",
        "payment_method_data[card][cvc]": "123",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{setup['api_base']}/v1/setup_intents/{setup['setup_intent']}/confirm", data=form
        )
