"""Run the localstripe Stripe emulator bound to loopback, with its state file inside our data directory.

localstripe itself binds every interface and pickles its whole store to /tmp on every write; this
wrapper binds 127.0.0.1 only and writes the state file (debounced) where we say.

It also indexes the store by object type. localstripe answers every list call (and every charge it
renders: a charge's ``refunds``, ``amount_refunded`` and ``refunded`` are each a refund list) by scanning
the whole store, so its cost grew with everything ever created and it became the demo's bottleneck.
The index holds the same objects in the same (insertion) order, so list answers do not change.

localstripe has no Customer Portal. ``install_billing_portal`` answers ``POST /v1/billing_portal/sessions`` in
the real API's shape (``object: billing_portal.session``, a ``url`` to open once) and serves that url: a
minimal page naming the customer with a link back to the session's ``return_url``. Sessions live in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pickle
from pathlib import Path
from typing import Any


def install_type_index(resources: Any) -> dict[str, dict[str, Any]]:
    """Keep ``object type -> {store key: object}`` beside localstripe's store; lists read it.

    Store keys are ``<object>:<id>`` (singletons such as the account have no colon and are not
    listed). Returns the index, for tests.
    """
    index: dict[str, dict[str, Any]] = {}
    store_cls = resources.Store

    def rebuild(store: Any) -> None:
        index.clear()
        for key, value in dict.items(store):
            kind, sep, _ = key.partition(":")
            if sep:
                index.setdefault(kind, {})[key] = value

    def setitem(self: Any, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        kind, sep, _ = key.partition(":")
        if sep:
            index.setdefault(kind, {})[key] = value
        self.dump_to_disk()

    def delitem(self: Any, key: str) -> None:
        dict.__delitem__(self, key)
        kind, sep, _ = key.partition(":")
        if sep:
            index.get(kind, {}).pop(key, None)
        self.dump_to_disk()

    def clear(self: Any) -> None:
        dict.clear(self)
        index.clear()

    load = store_cls.try_load_from_disk

    def try_load_from_disk(self: Any) -> None:
        load(self)
        rebuild(self)

    def list_all(cls: Any, url: str, limit: Any = None, starting_after: Any = None, **kwargs: Any) -> Any:
        customer = kwargs.pop("customer", None)
        if kwargs:
            raise resources.UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        li = resources.List(url, limit=limit, starting_after=starting_after)
        objects = list(index.get(cls.object, {}).values())
        if customer is not None:
            # Stripe filters payment intents (and the other types localstripe lists without a filter of
            # its own) by customer, newest first; localstripe refuses the argument, so a reader had to
            # page through every intent ever created. Unfiltered lists keep localstripe's order.
            objects = [o for o in reversed(objects) if getattr(o, "customer", None) == customer]
        li._list = objects
        return li

    store_cls.__setitem__ = setitem
    store_cls.__delitem__ = delitem
    store_cls.clear = clear
    store_cls.try_load_from_disk = try_load_from_disk
    resources.StripeObject._api_list_all = classmethod(list_all)
    rebuild(resources.store)
    return index


PORTAL_PAGE_PREFIX = "/p/session/"


def _portal_page(session: dict[str, Any]) -> str:
    import html

    back = session.get("return_url") or ""
    link = f'<p><a id="return" href="{html.escape(back)}">Return to the billing page</a></p>' if back else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Billing portal (emulator)</title>"
        "</head><body><main><h1>Stripe customer portal (emulator)</h1>"
        f"<p>Customer <code id='customer'>{html.escape(str(session['customer']))}</code>, "
        f"session <code id='session'>{html.escape(str(session['id']))}</code>, configuration "
        f"<code id='configuration'>{html.escape(str(session['configuration']))}</code>.</p>"
        f"{link}</main></body></html>"
    )


def install_billing_portal(app: Any, resources: Any, get_post_data: Any) -> dict[str, dict[str, Any]]:
    """Customer Portal sessions on the emulator: the API's create call (authenticated as every API call,
    404 for an unknown customer) and the session's page (no key: a browser opens it). Returns the sessions."""
    import time

    from aiohttp import web

    sessions: dict[str, dict[str, Any]] = {}

    async def create(request: web.Request) -> web.Response:
        data = await get_post_data(request) or {}
        customer = data.get("customer")
        if not isinstance(customer, str) or not customer:
            raise resources.UserError(400, "Missing required param: customer.")
        resources.Customer._api_retrieve(customer)  # UserError 404 when unknown
        session_id = f"bps_{resources.random_id(24)}"
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "configuration": data.get("configuration") or "bpc_emulator_default",
            "created": int(time.time()),
            "customer": customer,
            "flow": None,
            "livemode": False,
            "locale": data.get("locale"),
            "on_behalf_of": None,
            "return_url": data.get("return_url"),
            "url": f"{request.scheme}://{request.host}{PORTAL_PAGE_PREFIX}{session_id}",
        }
        sessions[session_id] = session
        return web.json_response(session)

    @web.middleware
    async def portal_page(request: web.Request, handler: Any) -> web.StreamResponse:
        # ahead of localstripe's key check: the page is what a browser opens, as on Stripe
        if request.method == "GET" and request.path.startswith(PORTAL_PAGE_PREFIX):
            session = sessions.get(request.path[len(PORTAL_PAGE_PREFIX) :])
            if session is None:
                return web.Response(status=404, text="This portal session does not exist or has expired.")
            return web.Response(text=_portal_page(session), content_type="text/html")
        return await handler(request)

    app.middlewares.insert(0, portal_page)
    app.router.add_post("/v1/billing_portal/sessions", create)
    return sessions


#: Decline codes Stripe reports as the charge's own ``failure_code`` (the others are ``card_declined``
#: with the issuer's reason in ``outcome.reason``).
OWN_FAILURE_CODES = frozenset(
    {"expired_card", "incorrect_number", "incorrect_cvc", "processing_error", "invalid_expiry_year"}
)


def _world_decline_code(resources: Any, charge: Any) -> str | None:
    """The world builder's convention (``tl_decline_code`` metadata on the charge, its card or its
    invoice): the issuer decline the emulator cannot produce itself."""
    for owner in (charge, getattr(charge, "payment_method", None), getattr(charge, "invoice", None)):
        if isinstance(owner, str):  # an id: the object in the emulator's store
            owner = next(
                (
                    found
                    for kind in ("payment_method", "card", "source", "invoice")
                    if (found := dict.get(resources.store, f"{kind}:{owner}")) is not None
                ),
                None,
            )
        meta = getattr(owner, "metadata", None)
        if (
            isinstance(meta, dict)
            and isinstance(meta.get("tl_decline_code"), str)
            and meta["tl_decline_code"]
        ):
            return str(meta["tl_decline_code"])
    return None


def install_decline_reports(resources: Any) -> None:
    """Report declines as Stripe does: localstripe fails every declined charge with a bare ``card_declined``;
    with this, a failed charge carries the issuer's reason (``failure_code`` ``card_declined`` and
    ``outcome.reason``, or its own ``failure_code`` for e.g. ``expired_card``) and a payment intent's
    ``last_payment_error`` its ``decline_code`` — read from the world builder's ``tl_decline_code``
    metadata, the one place that convention is turned into what Stripe sends. tierline itself reads only
    Stripe's fields (tierline/billing/stripe_shapes.py)."""
    charge_export = resources.Charge._export
    intent_export = resources.PaymentIntent._export

    def charge(self: Any, expand: Any = None) -> dict[str, Any]:
        obj: dict[str, Any] = charge_export(self, expand=expand)
        code = _world_decline_code(resources, self) if obj.get("status") == "failed" else None
        if code:
            outcome = obj.get("outcome")
            obj["failure_code"] = code if code in OWN_FAILURE_CODES else "card_declined"
            obj["outcome"] = {
                **(outcome if isinstance(outcome, dict) else {}),
                "type": "issuer_declined",
                "reason": code,
                "network_status": "declined_by_network",
            }
        return obj

    def intent(self: Any, expand: Any = None) -> dict[str, Any]:
        obj: dict[str, Any] = intent_export(self, expand=expand)
        error = obj.get("last_payment_error")
        latest = getattr(self, "latest_charge", None)
        code = _world_decline_code(resources, latest) if isinstance(error, dict) and latest else None
        if code and isinstance(error, dict):
            obj["last_payment_error"] = {
                **error,
                "type": "card_error",
                "code": code if code in OWN_FAILURE_CODES else "card_declined",
                "decline_code": code,
            }
        return obj

    resources.Charge._export = charge
    resources.PaymentIntent._export = intent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tierline-localstripe")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18420)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args(argv)

    from aiohttp import web
    from localstripe import resources, server

    state: Path = args.state
    state.parent.mkdir(parents=True, exist_ok=True)
    pending: dict[str, Any] = {"handle": None}

    def write_now(store: Any) -> None:
        pending["handle"] = None
        tmp = state.with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(dict(store), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, state)

    def dump_to_disk(self: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            write_now(self)
            return
        if pending["handle"] is None:
            pending["handle"] = loop.call_later(0.5, write_now, self)

    def try_load_from_disk(self: Any) -> None:
        if state.exists():
            with state.open("rb") as f:
                old = pickle.load(f)  # noqa: S301 - our own state file
            dict.clear(self)
            dict.update(self, old)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = try_load_from_disk  # type: ignore[method-assign]
    install_type_index(resources)
    install_decline_reports(resources)
    install_billing_portal(server.app, resources, server.get_post_data)
    resources.store.try_load_from_disk()

    async def flush_on_shutdown(_: web.Application) -> None:
        with contextlib.suppress(Exception):
            write_now(resources.store)

    server.app.on_shutdown.append(flush_on_shutdown)
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
