"""Tier 2's product tool (issue 23): the SaaS product's own asks — teammates and API keys — planned from
the customer's words and run through the product connector (``ActionExecutor.product_action``).

The agent never sees an email address (the guardrails redact them to ``[EMAIL]``): the plan names the
``n``-th address of the message (``[EMAIL]``, ``[EMAIL:2]``) and the tool fills it in from the customer's
own words, never from anything the model wrote. A key is named by its last four characters, as
customers quote it (``sk_live_…abcd``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from schemas.vocab import EscalationReason, Intent
from services.tier2_agent.ports import AgentRequest, AgentResult, AgentTools

log = structlog.get_logger(__name__)

PRODUCT_INTENTS = frozenset({Intent.TEAM_MEMBER, Intent.API_KEY})
EMAIL_SLOT = re.compile(r"^\[EMAIL(?::(\d{1,2}))?\]$")
_EMAILS = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9.\-]{1,190}\.[A-Za-z]{2,24}")
#: an owner flag: asking to make an address the owner by invitation, which no one may do
OWNERSHIP_GRAB_FLAG = "ownership_grab"

_REMOVE = re.compile(
    r"\b(?:remove|delete|kick|offboard|revoke\s+access|deactivate)\b"
    r"|\b(?:left|leaving)\s+(?:the\s+)?(?:company|team)\b"
    r"|\bno\s+longer\s+(?:works?|with\s+us)\b",
    re.IGNORECASE,
)
_TRANSFER = re.compile(
    r"\btransfer\s+(?:the\s+)?ownership\b|\bmake\s+\S+\s+(?:the\s+)?(?:new\s+)?owner\b", re.IGNORECASE
)
_CHANGE_ROLE = re.compile(
    r"\b(?:change|switch|set)\b.{0,40}\brole\b|\b(?:promote|demote|make)\b", re.IGNORECASE
)
_ADD = re.compile(
    r"\b(?:add|invite|onboard|give\s+access|new\s+(?:team\s*mate|user|member|seat))\b", re.IGNORECASE
)
_ROLE = re.compile(
    r"\b(?:as\s+(?:an?\s+)?|to\s+(?:an?\s+)?|role\s+(?:to\s+|of\s+)?"
    r"|(?:make|promote|demote)\s+\S+\s+(?:an?\s+|the\s+)?)"
    r"(owner|admin|administrator|member|billing)\b",
    re.IGNORECASE,
)
_KEY_HINT = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_\S*?([A-Za-z0-9]{4})\b"
    r"|\b(?:ending|ends)\s+(?:in|with)\s+([A-Za-z0-9]{4})\b",
    re.IGNORECASE,
)
_LEAKED = re.compile(
    r"\b(?:leak(?:ed)?|expos(?:ed|ure)|compromised|public|pushed|committed|github|stolen)\b", re.IGNORECASE
)
_ROTATE = re.compile(r"\b(?:rotate|roll|regenerate|replace|reissue|reset)\b", re.IGNORECASE)
_REVOKE = re.compile(r"\b(?:revoke|delete|disable|deactivate|kill|remove)\b", re.IGNORECASE)
_CREATE = re.compile(r"\b(?:create|new|generate|issue|need)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ProductAsk:
    """What the customer asks of the product: one connector action and its parameters, or a reply."""

    action: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    reply: str | None = None  # asked for something we need first (which address, which key)
    refusal: str | None = None  # never done automatically (an address made owner by invitation)


def _role(text: str) -> str | None:
    found = _ROLE.search(text)
    if not found:
        return None
    role = found.group(1).lower()
    return "admin" if role == "administrator" else role


def read_team_ask(text: str) -> ProductAsk:
    emails = text.count("[EMAIL]") + len(_EMAILS.findall(text))
    if emails == 0:
        return ProductAsk(
            reply="Which teammate's email address do you mean? Reply with it and I'll take care of it."
        )
    role = _role(text)
    if _TRANSFER.search(text):
        return ProductAsk("transfer_ownership", {"email": "[EMAIL]"})
    if _REMOVE.search(text):
        return ProductAsk("remove_member", {"email": "[EMAIL]"})
    if _ADD.search(text):
        if role == "owner":
            return ProductAsk(
                refusal="an invitation that makes an address the workspace owner: ownership is only "
                "transferred by the current owner, never granted by an invitation"
            )
        return ProductAsk("invite_member", {"email": "[EMAIL]", "role": role or "member"})
    if role is not None and _CHANGE_ROLE.search(text):
        if role == "owner":
            return ProductAsk("transfer_ownership", {"email": "[EMAIL]"})
        return ProductAsk("change_member_role", {"email": "[EMAIL]", "role": role})
    return ProductAsk(reply="Should I invite, remove or change the role of that teammate? Tell me which.")


def read_key_ask(text: str) -> ProductAsk:
    hint = _KEY_HINT.search(text)
    last4 = (hint.group(1) or hint.group(2)) if hint else None
    if last4 is None and _CREATE.search(text) and not (_ROTATE.search(text) or _LEAKED.search(text)):
        return ProductAsk("create_api_key", {"name": "API key", "scopes": ["read"]})
    if last4 is None:
        return ProductAsk(
            reply="Which API key do you mean? Tell me its last four characters (like sk_live_…abcd); "
            "never send the whole key."
        )
    if _LEAKED.search(text):  # a leaked key stops at once: rotated with no overlap
        return ProductAsk("rotate_api_key", {"key": last4, "overlap_s": 0})
    if _ROTATE.search(text):
        return ProductAsk("rotate_api_key", {"key": last4, "overlap_s": 24 * 3600})
    if _REVOKE.search(text):
        return ProductAsk("revoke_api_key", {"key": last4})
    return ProductAsk(reply=f"Should I rotate or revoke the key ending {last4}? Tell me which.")


def read_product_ask(intent: Intent | None, text: str) -> ProductAsk:
    return read_key_ask(text) if intent is Intent.API_KEY else read_team_ask(text)


def fill_email_slots(params: Mapping[str, Any], original_text: str) -> dict[str, Any]:
    """``[EMAIL]`` / ``[EMAIL:n]`` → the n-th address of the customer's own message (1-based)."""
    emails = _EMAILS.findall(original_text or "")
    out: dict[str, Any] = {}
    for key, value in params.items():
        slot = EMAIL_SLOT.match(value) if isinstance(value, str) else None
        if slot is None:
            out[key] = value
            continue
        index = int(slot.group(1) or 1) - 1
        out[key] = emails[index].lower() if 0 <= index < len(emails) else value
    return out


async def handle_product_ask(request: AgentRequest, tools: AgentTools, rec: Any) -> AgentResult:
    """Plan one product ask and run it through the ``product_action`` tool; every path ends."""
    ask = read_product_ask(request.intent, request.text)
    if ask.refusal is not None:
        rec.flag(OWNERSHIP_GRAB_FLAG)
        log.warning("tier2.product.refused", reason="ownership_grab")
        result: AgentResult = await rec.escalate(
            tools, EscalationReason.POLICY_DENIED, f"refused: {ask.refusal}"
        )
        return result
    if ask.action is None:
        reply: AgentResult = rec.resolved(ask.reply or "")
        return reply
    outcome = await rec.call(tools, "product_action", action=ask.action, params=ask.params)
    message = str(outcome.data.get("customer_message") or outcome.error or "")
    if outcome.ok:
        done: AgentResult = rec.resolved(message)
        return done
    if outcome.verdict == "deny" and "admins" in outcome.data:  # a member asked: ask your admin
        answered: AgentResult = rec.resolved(message)
        return answered
    if outcome.verdict in ("deny", "needs_human"):
        reason = outcome.escalation_reason or EscalationReason.POLICY_DENIED
        refused: AgentResult = await rec.escalate(tools, reason, f"{ask.action}: {outcome.error}")
        return refused
    failed: AgentResult = await rec.escalate(
        tools, EscalationReason.ERROR, f"{ask.action} failed in the product: {outcome.error}"
    )
    return failed.model_copy(update={"final_answer": message or failed.final_answer})
