"""The billing details page (``/billing/details``) and its API (``GET/PUT /v1/portal/billing-details``).

Billing email, company name, postal address and a VAT / tax id, for the signed-in customer (session auth
exactly as the Health Meter, ``auth.py``). ``PUT`` checks every field first (tax ids over python-stdnum,
``tierline.billing.vat``) and answers 422 with one message per field; a valid change runs once through the
one executor (``update_billing_details``: policy, ledger, audit), which writes Stripe and then the mirror,
or nothing at all — Stripe unreachable is a 503 saying so. ``GET`` reads the mirror (Stripe when the
mirror has no row yet). Another customer's id is a 403, as on every portal route.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from schemas import Action, Tier, derived_id
from schemas.messages import SelfhealRequestedPayload, SelfhealRequestedV1, Sender
from services.tier1_selfheal.auth import (
    SESSION_PURPOSE,
    CustomerKeys,
    InvalidSession,
    TokenClaims,
    token_from,
    verify_token,
)
from services.tier1_selfheal.ports import Actions, CardVault
from tierline.actions import ActionContext, ActionOutcome
from tierline.billing.vat import InvalidTaxId, TaxId, validate_tax_id
from tierline.http import read_json
from tierline.stripe_adapter import StripeNotFound

log = structlog.get_logger(__name__)

ACTOR = "tier1_portal"
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-:.]{8,100}")
_LIMIT = 200

#: What the customer is told when Stripe cannot be reached (the change was not made, anywhere).
STRIPE_DOWN = (
    "We couldn't reach our payment processor, so nothing was changed. Please try again in a few minutes."
)


@dataclass
class PortalDeps:
    pool: asyncpg.Pool
    actions: Actions
    cards: CardVault
    secret: CustomerKeys
    broker: Any = None  # the saved change is recorded as a self-service contact (portal_contacts.py)


class PortalError(Exception):
    def __init__(self, status: int, code: str, detail: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.fields = status, code, detail, fields


# --------------------------------------------------------------------------------------------- pure checks


@dataclass(frozen=True)
class DetailsChange:
    """A checked change: only the fields the customer filled in (an empty field changes nothing)."""

    email: str | None = None
    name: str | None = None
    address: dict[str, str] | None = None
    tax_id: TaxId | None = None
    given: tuple[str, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.given


def _text(body: dict[str, Any], key: str, errors: dict[str, str], label: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        errors[key] = f"{label} must be text"
        return None
    value = value.strip()
    if len(value) > _LIMIT:
        errors[key] = f"{label} can be at most {_LIMIT} characters"
        return None
    return value or None


def check_details(body: dict[str, Any]) -> tuple[DetailsChange, dict[str, str]]:
    """The change a form asks for, and a message per field that cannot be used (``{}``: all good)."""
    errors: dict[str, str] = {}
    email = _text(body, "billing_email", errors, "The billing email")
    if email is not None and not _EMAIL.fullmatch(email):
        errors["billing_email"] = f"“{email}” is not an email address (name@company.com)"
    name = _text(body, "company_name", errors, "The company name")
    address: dict[str, str] | None = None
    raw = body.get("address")
    if raw is not None and not isinstance(raw, dict):
        errors["address"] = "address must be an object with line1, city, postal_code, country"
    elif isinstance(raw, dict):
        unknown = sorted(set(raw) - set(ADDRESS_FIELDS))
        if unknown:
            errors["address"] = f"unexpected address field(s): {', '.join(unknown)}"
        parts: dict[str, str] = {}
        for key in ADDRESS_FIELDS:
            value = _text(raw, key, errors, f"address {key.replace('_', ' ')}")
            if f"{key}" in errors:
                errors[f"address.{key}"] = errors.pop(key)
            if value:
                parts[key] = value
        if parts:
            if "country" in parts:
                parts["country"] = parts["country"].upper()
                if not re.fullmatch(r"[A-Z]{2}", parts["country"]):
                    errors["address.country"] = "Use the two-letter country code (for example DE or GB)"
            else:
                errors["address.country"] = "Give the country (two-letter code, for example DE)"
            if "line1" not in parts:
                errors["address.line1"] = "Give the street and number"
            address = parts
    tax_id: TaxId | None = None
    raw_tax = _text(body, "tax_id", errors, "The VAT / tax id")
    if raw_tax is not None:
        hint = body.get("tax_id_country") or (address or {}).get("country")
        try:
            tax_id = validate_tax_id(raw_tax, hint if isinstance(hint, str) and hint.strip() else None)
        except InvalidTaxId as exc:
            errors["tax_id"] = _sentence(str(exc))
    given = tuple(
        k
        for k, v in (
            ("billing_email", email),
            ("company_name", name),
            ("address", address),
            ("tax_id", tax_id),
        )
        if v is not None
    )
    if not errors and not given:
        errors["form"] = "Nothing to change: fill in at least one field"
    return DetailsChange(email, name, address, tax_id, given), errors


def _sentence(text: str) -> str:
    text = text.strip()
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def details_json(customer_id: str, row: dict[str, Any], source: str) -> dict[str, Any]:
    address = row.get("address") or {}
    taxes = row.get("tax_ids") or []
    if isinstance(taxes, dict):
        taxes = taxes.get("data", [])
    return {
        "customer_id": customer_id,
        "billing_email": row.get("email"),
        "company_name": row.get("name"),
        "address": {k: address.get(k) for k in ADDRESS_FIELDS} if isinstance(address, dict) else {},
        "tax_ids": [{"type": t.get("type"), "value": t.get("value")} for t in taxes if isinstance(t, dict)],
        "source": source,
    }


def outcome_error(outcome: ActionOutcome) -> PortalError:
    """An executor outcome that did not succeed, as the page shows it."""
    detail = outcome.detail or ""
    if outcome.status in ("denied", "needs_human"):
        return PortalError(
            409, "not_allowed", "This change needs a person from our billing team; nothing was changed."
        )
    if detail.startswith("StripeNotFound"):
        return PortalError(404, "customer_not_found", "we could not find your billing account")
    if detail.startswith(("StripeUnavailable", "StripeAuthFailed", "APIConnectionError", "TimeoutError")):
        return PortalError(503, "stripe_unavailable", STRIPE_DOWN)
    if outcome.escalation_reason is None or detail.startswith(("InvalidStripeRequest", "CardDeclined")):
        # a business refusal (ActionFailed: a declined card) or a request Stripe would not take
        message = detail.split(": ", 2)[-1]
        return PortalError(422, "rejected", f"The payment processor refused the change: {message}")
    return PortalError(
        503, "not_saved", f"The change could not be saved, nothing was changed ({detail[:200]})"
    )


def describe_change(fields: Any) -> str:
    """The saved fields in the customer's words, e.g. "billing email and VAT / tax id"."""
    names = {
        "billing_email": "billing email",
        "company_name": "company name",
        "address": "address",
        "tax_id": "VAT / tax id",
    }
    words = [names.get(str(f), str(f).replace("_", " ")) for f in fields] or ["billing details"]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def portal_context(
    customer_id: str, contact_id: str, action: Action, params: dict[str, Any]
) -> ActionContext:
    """The executor's context for a change the signed-in customer made in the portal (a click)."""
    cause = SelfhealRequestedV1.build(
        SelfhealRequestedPayload(
            action=action,
            params=params,
            source="api",
            sender=Sender(kind="customer_session", subject=customer_id),
        ),
        contact_id=contact_id,
        customer_id=customer_id,
        message_id=derived_id("portal-change", contact_id),
    )
    return ActionContext(
        contact_id=contact_id,
        customer_id=customer_id,
        tier=Tier.TIER1,
        actor="selfheal",
        actor_id=f"customer:{customer_id}",
        cause=cause,
        clicked=True,
    )


def error_response(exc: PortalError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.code, "detail": exc.detail}
    if exc.fields is not None:
        body["fields"] = exc.fields
    return JSONResponse(body, status_code=exc.status)


def customer_session(secret: CustomerKeys, request: Request) -> TokenClaims:
    return verify_token(secret, token_from(request.headers, request.cookies), purposes=(SESSION_PURPOSE,))


def same_customer(claimed: Any, subject: str) -> None:
    if claimed not in (None, "") and claimed != subject:
        log.warning("tier1.portal.cross_customer_denied", subject=subject)
        raise PortalError(403, "forbidden", "you can only see and change your own account")


def serve_page(name: str, csp: str | None = None) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        html = (resources.files("services.tier1_selfheal") / "static" / name).read_text(encoding="utf-8")
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": csp
                or "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                "img-src 'self' data:",
            },
        )

    return serve


# --------------------------------------------------------------------------------------------- routes


def portal_details_routes(get_deps: Callable[[], PortalDeps]) -> list[Route]:
    """Routes for Service(routes=...); ``get_deps`` is called per request (the pool exists after start)."""

    def guarded(
        endpoint: Callable[[Request, PortalDeps], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            try:
                return await endpoint(request, get_deps())
            except PortalError as exc:
                return error_response(exc)
            except InvalidSession as exc:
                return JSONResponse({"error": "unauthenticated", "detail": str(exc)}, status_code=401)

        return wrapper

    async def current(deps: PortalDeps, customer_id: str) -> dict[str, Any]:
        row = await deps.pool.fetchrow(
            "SELECT email, name, address, tax_ids FROM stripe_customers WHERE id=$1 AND NOT deleted",
            customer_id,
        )
        if row is not None:
            return details_json(customer_id, dict(row), "mirror")
        try:
            live = await deps.cards.billing_profile(customer_id)
        except (LookupError, StripeNotFound) as exc:
            raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
        except Exception as exc:  # noqa: BLE001 - Stripe unreachable and no mirror row: say so
            log.warning("tier1.portal.details_unavailable", error=type(exc).__name__)
            raise PortalError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        return details_json(customer_id, live, "stripe")

    async def get_details(request: Request, deps: PortalDeps) -> Response:
        claims = customer_session(deps.secret, request)
        same_customer(request.query_params.get("customer_id"), claims.subject)
        return JSONResponse(await current(deps, claims.subject))

    async def put_details(request: Request, deps: PortalDeps) -> Response:
        claims = customer_session(deps.secret, request)
        body: dict[str, Any] = await read_json(request)
        same_customer(body.pop("customer_id", None), claims.subject)
        request_id = str(body.pop("request_id", None) or uuid.uuid4().hex)
        if not _REQUEST_ID.fullmatch(request_id):
            raise PortalError(422, "invalid_request_id", "request_id must be 8-100 letters, digits or -_:.")
        unknown = sorted(set(body) - {"billing_email", "company_name", "address", "tax_id", "tax_id_country"})
        if unknown:
            raise PortalError(422, "invalid_details", f"unexpected field(s): {', '.join(unknown)}")
        change, errors = check_details(body)
        if errors:
            first = next(iter(errors.values()))
            raise PortalError(422, "invalid_details", first, errors)
        customer_id = claims.subject
        contact_id = f"pd_{derived_id('portal-details', customer_id, request_id).hex}"
        tax = f"{change.tax_id.stripe_type}:{change.tax_id.value}" if change.tax_id else None
        ctx = portal_context(
            customer_id,
            contact_id,
            Action.UPDATE_BILLING_DETAILS,
            {"fields": list(change.given)},
        )
        try:
            outcome = await deps.actions.update_billing_details(
                ctx, email=change.email, name=change.name, address=change.address, tax_id=tax
            )
        except LookupError as exc:  # the diagnosis knows no such customer
            raise PortalError(404, "customer_not_found", "we could not find your billing account") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. the diagnosis could not be made: nothing was changed
            log.error("tier1.portal.details_failed", contact_id=contact_id, error=type(exc).__name__)
            raise PortalError(503, "stripe_unavailable", STRIPE_DOWN) from exc
        if not outcome.ok:
            log.info("tier1.portal.details_refused", contact_id=contact_id, status=outcome.status)
            raise outcome_error(outcome)
        log.info(
            "tier1.portal.details_updated",
            contact_id=contact_id,
            fields=list(change.given),
            replayed=outcome.replayed,
        )
        if deps.broker is not None:
            from services.tier1_selfheal.portal_contacts import record_portal_save

            await record_portal_save(deps.pool, deps.broker, ctx, outcome, what=describe_change(change.given))
        return JSONResponse(
            {
                **(await current(deps, customer_id)),
                "updated": list(change.given),
                "replayed": outcome.replayed,
                "message": "Your billing details are saved.",
            }
        )

    return [
        Route("/billing/details", serve_page("billing_details.html")),
        Route("/v1/portal/billing-details", guarded(get_details), methods=["GET"]),
        Route("/v1/portal/billing-details", guarded(put_details), methods=["PUT"]),
    ]
