"""Run the localstripe Stripe emulator bound to loopback, with its state file inside our data directory.

localstripe itself binds every interface and pickles its whole store to /tmp on every write; this
wrapper binds 127.0.0.1 only and writes the state file (debounced) where we say.

It also indexes the store by object type. localstripe answers every list call (and every charge it
renders: a charge's ``refunds``, ``amount_refunded`` and ``refunded`` are each a refund list) by scanning
the whole store, so its cost grew with everything ever created and it became the demo's bottleneck.
The index holds the same objects in the same (insertion) order, so list answers do not change.
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
    resources.store.try_load_from_disk()

    async def flush_on_shutdown(_: web.Application) -> None:
        with contextlib.suppress(Exception):
            write_now(resources.store)

    server.app.on_shutdown.append(flush_on_shutdown)
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
