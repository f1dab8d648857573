"""The `tierline` command: one way to run everything (the Makefile calls these)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierline.registry import REFERENCE_SERVICE_MODULES, SERVICE_MODULES, load_service_factory

REPO_ROOT = Path(__file__).resolve().parent.parent


def _data_dir(args: argparse.Namespace) -> Path:
    from tierline.settings import InfraSettings

    return Path(args.data_dir) if getattr(args, "data_dir", None) else InfraSettings().data_dir


def cmd_up(args: argparse.Namespace) -> int:
    manager = _stack_manager("up")

    cfg = manager.default_config(_data_dir(args))
    if not cfg.kafka().proc.running() and (args.durable or args.memory):
        # a broker that is running keeps the storage it was started on
        cfg.durable_broker = bool(args.durable)
    seconds = manager.up(cfg, with_services=not args.components_only)
    print(f"tierline up: stack ready in {seconds:.1f}s (data in {cfg.root})")
    return _print_status(cfg)


def _print_status(cfg: Any) -> int:
    manager = _stack_manager("status")

    results = manager.status(cfg)
    width = max(len(h.name) for h in results)
    for h in results:
        print(f"  {'OK  ' if h.ok else 'DOWN'} {h.name:<{width}}  {h.detail}")
    print(metrics_targets({n: p for n, p in cfg.service_ports.items() if n in SERVICE_MODULES}))
    return 0 if all(h.ok for h in results) else 1


def metrics_targets(ports: dict[str, int], host: str = "127.0.0.1") -> str:
    """Where Prometheus scrapes each service (deploy/prometheus/prometheus.yml does it on compose)."""
    lines = [f"  metrics (Prometheus, GET /metrics): {len(ports)} targets"]
    lines += [f"    {name:<16} http://{host}:{port}/metrics" for name, port in sorted(ports.items())]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    manager = _stack_manager("status")

    cfg = manager.StackConfig.load(_data_dir(args))
    if cfg is None:
        print(f"no stack in {_data_dir(args)} (run `tierline up`)")
        return 1
    return _print_status(cfg)


def cmd_down(args: argparse.Namespace) -> int:
    manager = _stack_manager("down")

    cfg = manager.StackConfig.load(_data_dir(args))
    if cfg is None:
        print("nothing to stop")
        return 0
    stopped = manager.down(cfg)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tierline.observability import configure_logging, configure_tracing
    from tierline.settings import InfraSettings

    configure_logging(args.service)
    configure_tracing(args.service)  # on only with an OTLP endpoint configured
    settings = InfraSettings()
    if args.port:
        settings = settings.model_copy(update={"http_port": args.port})
    settings.refuse_unsafe_defaults(args.service)  # again in Service.start; here before any import
    service = load_service_factory(args.service)(settings)
    asyncio.run(service.run_forever())
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from tierline.db import migrate
    from tierline.settings import InfraSettings

    applied = asyncio.run(migrate(InfraSettings().postgres_dsn))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from tierline.asyncapi import render

    out = Path(args.out)
    out.write_text(render())
    print(f"wrote {out}")
    return 0


TOOLING_MISSING = (
    "`tierline {command}` is tooling: install it with the `tooling` extra (pip install 'tierline[tooling]'); "
    "the runtime package runs the services alone"
)


def _stack_manager(command: str) -> Any:
    """The embedded stack's manager (tierline_tools), or a clear error when the tooling is not installed."""
    try:
        from tierline_tools.stack import manager
    except ImportError as exc:
        raise RuntimeError(TOOLING_MISSING.format(command=command)) from exc
    return manager


def _delegate(module: str, func: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "data_dir", None):
            # `tierline --data-dir X demo`: the subcommand parses its own options, so the global one
            # reaches it through the setting every command reads (InfraSettings.data_dir).
            import os

            os.environ["TIERLINE_DATA_DIR"] = str(args.data_dir)
        try:
            fn = getattr(importlib.import_module(module), func)
        except ModuleNotFoundError as exc:
            if module.startswith("tierline_tools"):  # the tooling, or a package only it needs, is missing
                raise RuntimeError(TOOLING_MISSING.format(command=args.command)) from exc
            raise
        return int(fn(args.rest) or 0)

    return run


def cmd_token(args: argparse.Namespace) -> int:
    """Print a signed token: a customer session (Health Meter) or an agent's (Tier 3 console)."""
    try:
        print(_mint_token(args))
    except ValueError as exc:  # a malformed key set, no queue, an empty name
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _mint_token(args: argparse.Namespace) -> str:
    from tierline import tokens
    from tierline.settings import InfraSettings

    settings = InfraSettings()
    settings.refuse_unsafe_defaults(f"tierline token {args.kind}")
    if args.kind == "customer":
        return tokens.issue_customer_token(settings.customer_token_keyset(), args.subject, args.ttl)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    roles = [tokens.APPROVER_ROLE] if args.approver else []
    return tokens.issue_agent_token(
        settings.agent_token_keyset(), args.subject, queues, args.ttl, roles=roles
    )


def cmd_policy_simulate(args: argparse.Namespace) -> int:
    """Recorded decisions decided again under another policy file; reads Postgres only, changes nothing."""
    from tierline.policy_simulate import simulate_command
    from tierline.settings import InfraSettings

    return simulate_command(args, InfraSettings().postgres_dsn)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierline", description=__doc__)
    parser.add_argument("--data-dir", help="embedded stack data directory (default .tierline)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("up", help="start the embedded stack and the services")
    storage = p.add_mutually_exclusive_group()
    storage.add_argument(
        "--durable",
        action="store_true",
        help="broker log on the loopback object store, kept across broker restarts and down/up (default)",
    )
    storage.add_argument(
        "--memory",
        action="store_true",
        help="broker log in the broker's memory, lost when it restarts (kept for this data dir)",
    )
    p.add_argument("--components-only", action="store_true", help="start components, not services")
    p.set_defaults(func=cmd_up)
    sub.add_parser("status", help="health of every component and service").set_defaults(func=cmd_status)
    sub.add_parser("down", help="stop everything `up` started").set_defaults(func=cmd_down)

    p = sub.add_parser("serve", help="run one service in the foreground")
    p.add_argument("service", choices=sorted({**SERVICE_MODULES, **REFERENCE_SERVICE_MODULES}))
    p.add_argument("--port", type=int, default=None)
    p.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply Postgres migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("asyncapi", help="write the AsyncAPI document generated from the services")
    p.add_argument("--out", default=str(REPO_ROOT / "asyncapi.yaml"))
    p.set_defaults(func=cmd_asyncapi)

    for name, module, func, help_text in (
        ("train-intents", "services.router.intent.model", "train_main", "train the router's intent model"),
        ("eval", "tierline_tools.scenarios.cli", "eval_main", "run scenario files through the real doors"),
        ("demo", "tierline_tools.demo", "demo_main", "build a synthetic month and replay it"),
        ("report", "services.analytics.report", "report_main", "analyst tables for a period"),
        ("audit", "services.analytics.audit_chain", "audit_main", "audit chain tools (verify)"),
        (
            "classify",
            "services.router.intent.model",
            "classify_command",
            "one text a line on stdin -> one JSON line on stdout",
        ),
        ("bench", "bench.run", "bench_main", "run every benchmark"),
        ("audit-inbox", "services.router.audit_inbox", "audit_inbox_main", "rank why customers write"),
    ):
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.set_defaults(func=_delegate(module, func), delegated=True)

    p = sub.add_parser("token", help="print a signed token for a customer or an agent")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("customer", help="a customer session token (Health Meter)")
    k.add_argument("subject", metavar="CUS_ID")
    k.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    k.set_defaults(func=cmd_token)
    k = kinds.add_parser("agent", help="an agent token (Tier 3 console)")
    k.add_argument("subject", metavar="NAME")
    k.add_argument("--queues", required=True, help="comma-separated queues, e.g. billing,risk")
    k.add_argument("--approver", action="store_true", help="may approve refunds over the automatic cap")
    k.add_argument("--ttl", type=int, default=12 * 3600, help="seconds the token is valid (default 12 h)")
    k.set_defaults(func=cmd_token)

    p = sub.add_parser("policy", help="policy tools (simulate a policy change on recorded contacts)")
    policy_sub = p.add_subparsers(dest="policy_command", required=True)
    s = policy_sub.add_parser("simulate", help="replay recorded decisions under NEW.yaml, no side effects")
    s.add_argument("--policy", required=True, help="the policy YAML to evaluate (e.g. one with a new cap)")
    s.add_argument("--since", default="30d", help="how far back to replay: 30d, 12h, 2w (default 30d)")
    s.add_argument("--json", action="store_true", help="one JSON document on stdout (for CI)")
    s.set_defaults(func=cmd_policy_simulate)

    from tierline.ops_commands import add_parsers as add_ops_parsers  # pause/resume money, deadletter

    add_ops_parsers(sub)
    return parser


def _beside_the_local_stack(args: argparse.Namespace) -> None:
    """Commands run next to `tierline up`'s stack talk to it with its addresses and generated secrets,
    unless the environment names others (what is set there wins)."""
    import os

    try:
        from tierline_tools.stack import manager
    except ImportError:  # the runtime alone (no `tooling` extra): no local stack to stand beside
        return
    cfg = manager.StackConfig.load(_data_dir(args))
    if cfg is not None:
        for name, value in cfg.env().items():
            os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "delegated", False):
        args.rest = extra  # the subcommand parses its own options (e.g. `tierline demo --contacts 50`)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command != "serve":  # logs are events on stderr; stdout is the command's output
        from tierline.observability import configure_logging

        quiet = args.command in (
            "classify",
            "demo",
            "eval",
            "report",
            "bench",
            "audit",
            "token",
            "policy",
            "audit-inbox",
            "pause",
            "resume",
            "deadletter",
        )
        configure_logging(f"tierline-{args.command}", level="WARNING" if quiet else "INFO")
    if args.command in (
        *("report", "audit", "migrate", "asyncapi", "token", "policy", "audit-inbox"),
        *("pause", "resume", "deadletter"),
    ):
        _beside_the_local_stack(args)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(
            json.dumps({"error": str(exc)}) if not sys.stderr.isatty() else f"error: {exc}", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
