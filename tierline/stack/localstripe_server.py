"""Run the localstripe Stripe emulator bound to loopback, with its state file inside our data directory.

localstripe itself binds every interface and pickles its whole store to /tmp on every write; this
wrapper binds 127.0.0.1 only and writes the state file (debounced) where we say.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pickle
from pathlib import Path
from typing import Any


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
    resources.store.try_load_from_disk()

    async def flush_on_shutdown(_: web.Application) -> None:
        with contextlib.suppress(Exception):
            write_now(resources.store)

    server.app.on_shutdown.append(flush_on_shutdown)
    web.run_app(server.app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
