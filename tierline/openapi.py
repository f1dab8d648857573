"""The OpenAPI documents of the HTTP services, generated from their routes (never written by hand).

Each service serves its own at ``/openapi.json`` (``Service.openapi``); ``make openapi`` writes the
committed copies to ``openapi/<service>.json`` for the services with routes of their own, and
tests/unit/test_openapi.py fails when a copy is stale: a route added, removed or retyped, or a model
whose schema changed, without the document following.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tierline.settings import InfraSettings

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "openapi"


def documents() -> dict[str, dict[str, Any]]:
    """Service name → its OpenAPI document, for every service with HTTP routes of its own."""
    from tierline.registry import SERVICE_MODULES, load_service_factory

    settings = InfraSettings()
    out: dict[str, dict[str, Any]] = {}
    for name in SERVICE_MODULES:
        service = load_service_factory(name)(settings)
        if service.routes:
            out[name] = service.openapi()
    return out


def render() -> dict[str, str]:
    """File name → text, as committed under ``openapi/``."""
    return {
        f"{name}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n" for name, doc in documents().items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(OUT_DIR), help="directory for <service>.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
