"""Operators' commands (issue 24): ``tierline pause|resume money``, ``tierline pause status`` and
``tierline deadletter list|show|replay``. They talk to Postgres and the broker named by the settings
(beside `tierline up`'s stack: its addresses)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from tierline.settings import InfraSettings

if TYPE_CHECKING:  # the broker and Postgres clients load when a command runs, not for `tierline --help`
    import asyncpg
    from faststream.kafka import KafkaBroker


def default_actor() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "operator"


@asynccontextmanager
async def _pool(settings: InfraSettings) -> AsyncIterator[asyncpg.Pool]:
    from tierline.db import create_pool

    pool = await create_pool(settings.postgres_dsn, min_size=1, max_size=2)
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def _broker(settings: InfraSettings) -> AsyncIterator[KafkaBroker]:
    from faststream.kafka import KafkaBroker

    broker = KafkaBroker(
        settings.kafka_bootstrap, client_id="tierline-ops", logger=None, enable_idempotence=False
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def _run(coro: Callable[[InfraSettings], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(coro(InfraSettings()))


# ------------------------------------------------------------------------------------------------ switches
def cmd_pause(args: argparse.Namespace) -> int:
    if args.what == "status":
        return _run(_status)
    return _run(lambda s: _set(s, paused=True, actor=args.by or default_actor(), reason=args.reason))


def cmd_resume(args: argparse.Namespace) -> int:
    return _run(lambda s: _set(s, paused=False, actor=args.by or default_actor(), reason=args.reason))


async def _status(settings: InfraSettings) -> int:
    from tierline import switches

    async with _pool(settings) as pool:
        for name in switches.SWITCHES:
            state = await switches.read(pool, name)
            print(json.dumps(state.summary()))
    return 0


async def _set(settings: InfraSettings, *, paused: bool, actor: str, reason: str) -> int:
    from tierline import switches

    async with _pool(settings) as pool:
        state, changed = await switches.set_switch(
            pool, None, name=switches.MONEY, paused=paused, actor=actor, reason=reason
        )
        if changed:
            # the switch is in force from here on: a broker that is down does not keep money running
            try:
                async with _broker(settings) as broker:
                    from tierline.messaging import publish

                    await publish(broker, switches.audit_event(state))
            except Exception as exc:  # noqa: BLE001 - reported; the change is stored with who and why
                print(f"warning: audit event not published ({type(exc).__name__}: {exc})")
                print(json.dumps({**state.summary(), "changed": True, "audited": False}))
                return 1
    print(json.dumps({**state.summary(), "changed": changed}))
    return 0


# --------------------------------------------------------------------------------------------- dead letters
def cmd_deadletter(args: argparse.Namespace) -> int:
    return _run(lambda s: _deadletter(s, args))


async def _deadletter(settings: InfraSettings, args: argparse.Namespace) -> int:
    from tierline import deadletters

    records = deadletters.unique(await deadletters.read_all(settings.kafka_bootstrap))
    async with _pool(settings) as pool:
        done = await deadletters.replays(pool)
        if args.dl_command == "list":
            groups = deadletters.count_by_topic_and_error(records, set(done))
            if args.json:
                print(json.dumps([g.__dict__ for g in groups]))
                return 0
            if args.topic:
                groups = [g for g in groups if g.original_topic == args.topic]
            width = max([len(g.original_topic) for g in groups] + [5])
            print(f"{'topic':<{width}}  {'count':>5}  {'replayed':>8}  error")
            for g in groups:
                print(f"{g.original_topic:<{width}}  {g.count:>5}  {g.replayed:>8}  {g.error}")
            for record in records if args.ids else []:
                if args.topic in (None, record.payload.original_topic):
                    mark = " (replayed)" if str(record.message_id) in done else ""
                    label = deadletters.error_label(record)
                    print(f"  {record.message_id}  {record.payload.original_topic}  {label}{mark}")
            print(f"{len(records)} dead letters")
            return 0
        try:
            record = deadletters.find(records, args.id)
        except deadletters.DeadLetterNotFound as exc:
            print(f"error: {exc}")
            return 2
        if args.dl_command == "show":
            print(json.dumps(deadletters.describe(record, done.get(str(record.message_id))), indent=2))
            return 0
        try:
            async with _broker(settings) as broker:
                result = await deadletters.replay(pool, broker, record, actor=args.by or default_actor())
        except deadletters.ReplayRefused as exc:
            print(f"refused: {exc}")
            return 3
        print(json.dumps(result))
        return 0


def add_parsers(sub: Any) -> None:
    """The subcommands, for ``tierline.cli.build_parser``."""
    p = sub.add_parser("pause", help="pause automatic money actions (`pause money`), or show switches")
    p.add_argument("what", choices=["money", "status"])
    p.add_argument("--reason", default="", help="why (kept with the switch and in the audit)")
    p.add_argument("--by", default=None, help="who (default operator:<login>)")
    p.set_defaults(func=cmd_pause)
    p = sub.add_parser("resume", help="resume automatic money actions")
    p.add_argument("what", choices=["money"])
    p.add_argument("--reason", default="", help="why (kept with the switch and in the audit)")
    p.add_argument("--by", default=None, help="who (default operator:<login>)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("deadletter", help="dead letters: list, show one, replay one after a fix (once)")
    dl = p.add_subparsers(dest="dl_command", required=True)
    s = dl.add_parser("list", help="counts per original topic and error")
    s.add_argument("--topic", default=None, help="only this original topic")
    s.add_argument("--ids", action="store_true", help="one line per dead letter too")
    s.add_argument("--json", action="store_true", help="the counts as JSON")
    s.set_defaults(func=cmd_deadletter)
    s = dl.add_parser("show", help="one dead letter: reason, original key and headers, value")
    s.add_argument("id", help="the dead letter's id (or its first 8+ characters)")
    s.set_defaults(func=cmd_deadletter)
    s = dl.add_parser("replay", help="publish the original message again to its topic, once")
    s.add_argument("id", help="the dead letter's id (or its first 8+ characters)")
    s.add_argument("--by", default=None, help="who (default operator:<login>)")
    s.set_defaults(func=cmd_deadletter)
