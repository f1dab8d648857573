"""The committed OpenAPI documents (openapi/<service>.json) are exactly what the services generate now, and
each describes every route its service serves, the JSON API ones typed by their models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tierline.settings import InfraSettings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
HTTP_SERVICES = ("diagnostics", "tier1_selfheal", "tier3_handoff")

_CODE = """
import json, sys
from tierline.openapi import render
from tierline.registry import SERVICE_MODULES, load_service_factory
from tierline.settings import InfraSettings

settings = InfraSettings()
served = {}
for name in SERVICE_MODULES:
    app = load_service_factory(name)(settings).asgi()
    served[name] = sorted(
        [r.path, m] for r in app.routes for m in (getattr(r, "methods", None) or {"GET"}) if m != "HEAD"
    )
sys.stdout.write(json.dumps({"files": render(), "served": served}))
"""


@cache
def generated() -> dict[str, Any]:
    # a subprocess: building every service must not open chDB/Qdrant paths in the test process
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIERLINE_", "OPENAI_"))}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _CODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def committed(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "openapi" / f"{name}.json").read_text())  # type: ignore[no-any-return]


def test_given_services_when_openapi_generated_then_every_committed_document_is_current() -> None:
    files = generated()["files"]
    on_disk = {p.name: p.read_text() for p in (ROOT / "openapi").glob("*.json")}

    assert set(files) >= {f"{name}.json" for name in HTTP_SERVICES}
    assert set(on_disk) == set(files), "openapi/ holds other documents than the services generate"
    stale = sorted(name for name, text in files.items() if on_disk[name] != text)
    assert not stale, f"stale OpenAPI documents {stale}: run `make openapi` and commit openapi/"


@pytest.mark.parametrize("name", HTTP_SERVICES)
def test_given_a_service_then_its_document_describes_exactly_the_routes_it_serves(name: str) -> None:
    served = {(path, method.lower()) for path, method in generated()["served"][name]}
    described = {(path, method) for path, ops in committed(name)["paths"].items() for method in ops}

    assert served - described == set(), "routes the document does not describe"
    assert described - served == set(), "the document describes routes the service does not serve"


@pytest.mark.parametrize(
    ("name", "prefixes"),
    [
        ("diagnostics", ("/v1/",)),
        ("tier3_handoff", ("/v1/cases", "/v1/approvals", "/v1/console")),
        ("tier1_selfheal", ("/v1/health-meter", "/v1/session", "/v1/pay/", "/v1/links/", "/v1/update-card")),
    ],
)
def test_given_the_json_api_routes_then_each_is_typed_with_its_bodies_and_credentials(
    name: str, prefixes: tuple[str, ...]
) -> None:
    doc = committed(name)
    schemes = doc["components"]["securitySchemes"]
    operations = [
        (path, method, op)
        for path, ops in doc["paths"].items()
        if path.startswith(prefixes)
        for method, op in ops.items()
    ]
    assert operations
    for path, method, op in operations:
        assert op.get("x-tierline-typed", True), f"{method.upper()} {path} has no contract"
        ok = [status for status in op["responses"] if status < "400"]
        assert ok or path == "/v1/update-card", f"{method.upper()} {path} declares no success answer"
        for requirement in op.get("security", []):
            assert set(requirement) <= set(schemes)
        if "security" in op:
            assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }


def test_given_the_documents_then_they_carry_no_secret_and_resolve_every_reference() -> None:
    settings = InfraSettings()
    secrets = [
        str(value.get_secret_value())
        for field in type(settings).model_fields
        if isinstance(value := getattr(settings, field), SecretStr) and len(value.get_secret_value()) >= 8
    ]
    assert secrets
    for name in HTTP_SERVICES:
        text = (ROOT / "openapi" / f"{name}.json").read_text()
        doc = json.loads(text)
        refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
        assert refs <= set(doc["components"]["schemas"]), name
        for marker in ("sk_test_", "whsec_", *secrets):
            assert marker not in text, name
