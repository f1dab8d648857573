"""The diagnostics OpenAPI document (generated from its routes) says what the door enforces: a bearer
service token on customer data, while health and the document itself stay open."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas.messages import DiagnosisView
from services.diagnostics.contracts import UsageReport

pytestmark = pytest.mark.unit
DOC = Path(__file__).resolve().parents[2] / "openapi" / "diagnostics.json"  # kept current by test_openapi.py


def test_given_the_diagnostics_document_then_every_customer_operation_needs_the_service_token() -> None:
    doc = json.loads(DOC.read_text())

    assert doc["components"]["securitySchemes"]["serviceToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the internal service credential (TIERLINE_SERVICE_TOKEN)",
    }
    customer = {p: ops for p, ops in doc["paths"].items() if p.startswith("/v1/customers/")}
    operations = [op for ops in customer.values() for op in ops.values()]
    assert len(operations) == 2
    for operation in operations:
        assert operation["security"] == [{"serviceToken": []}]
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    for open_path in ("/livez", "/healthz", "/readyz", "/openapi.json"):
        assert "security" not in doc["paths"][open_path]["get"], open_path


def test_given_the_diagnostics_document_then_its_answers_are_the_models_schemas() -> None:
    doc = json.loads(DOC.read_text())
    schemas = doc["components"]["schemas"]

    def answer(path: str) -> dict[str, object]:
        ref = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        return schemas[ref.rsplit("/", 1)[1]]  # type: ignore[no-any-return]

    diagnosis = answer("/v1/customers/{customer_id}/diagnosis")
    usage = answer("/v1/customers/{customer_id}/usage")
    ref = "#/components/schemas/{model}"
    expected = DiagnosisView.model_json_schema(mode="serialization", ref_template=ref)
    expected.pop("$defs", None)
    assert diagnosis == expected
    assert set(usage["properties"]) == set(UsageReport.model_fields)  # "events" too, which the old one lacked
