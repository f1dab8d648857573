"""The diagnostics OpenAPI document says what the door enforces: a bearer service token on customer data."""

from __future__ import annotations

from services.diagnostics.openapi import openapi_document


def test_given_the_diagnostics_document_then_every_customer_operation_needs_the_service_token() -> None:
    doc = openapi_document()

    assert doc["components"]["securitySchemes"]["serviceToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the internal service credential (TIERLINE_SERVICE_TOKEN)",
    }
    assert doc["security"] == [{"serviceToken": []}]
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    assert len(operations) == 2
    for operation in operations:
        assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
