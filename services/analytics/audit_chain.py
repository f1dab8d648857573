"""`tierline audit verify`: check the per-partition hash chain of the audit records in ClickHouse."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import httpx

from services.analytics.store import DEFAULT_DATABASE
from tierline.service_auth import bearer_headers


def verify(args: argparse.Namespace) -> dict[str, Any]:
    if not args.local:
        try:
            res = httpx.get(
                f"{args.url.rstrip('/')}/v1/analytics/audit/verify",
                headers=bearer_headers(args.service_token),
                timeout=60,
            )
            if res.status_code in (200, 409):
                return dict(res.json())
            raise SystemExit(f"audit verify: {args.url} answered {res.status_code}: {res.text[:500]}")
        except httpx.ConnectError:
            pass  # nothing serves the analytics API: open ClickHouse here
    import clickhouse_connect

    from services.analytics.domain import ChainKeys
    from services.analytics.routes import verify_report
    from services.analytics.store import AnalyticsStore

    return verify_report(
        AnalyticsStore(clickhouse_connect.get_client(dsn=args.clickhouse_dsn), args.database),
        ChainKeys.parse(args.chain_keys),
    )


def audit_main(argv: list[str] | None = None) -> int:
    from tierline.settings import InfraSettings

    infra = InfraSettings()
    p = argparse.ArgumentParser(prog="tierline audit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="verify the audit hash chain; exit 1 at the first broken link")
    v.add_argument("--url", default=infra.analytics_url)
    v.add_argument("--clickhouse-dsn", default=infra.resolved_analytics_clickhouse_dsn())
    v.add_argument("--database", default=DEFAULT_DATABASE)
    v.add_argument("--local", action="store_true", help="skip HTTP, open ClickHouse directly")
    v.add_argument("--json", action="store_true")
    # the analytics API's credential comes from TIERLINE_SERVICE_TOKEN, never from argv
    v.set_defaults(
        service_token=infra.service_token.get_secret_value(),
        chain_keys=infra.audit_chain_keys.get_secret_value(),  # TIERLINE_AUDIT_CHAIN_KEYS (--local)
    )
    args = p.parse_args(argv)
    result = verify(args)
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["ok"]:
        print(f"audit chain OK ({result['checked']} records)")
    else:
        b = result["broken"]
        print(
            f"audit chain BROKEN at partition {b['partition']} offset {b['offset']} "
            f"(message {b['message_id']}): {b['problem']}; {result['checked']} records verified before it"
        )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(audit_main())
