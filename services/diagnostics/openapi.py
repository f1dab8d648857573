"""The OpenAPI document of the diagnostics HTTP door (served at /openapi.json)."""

from __future__ import annotations

from typing import Any

from schemas.messages import DiagnosisView


def openapi_document() -> dict[str, Any]:
    diagnosis_schema = DiagnosisView.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = diagnosis_schema.pop("$defs", {})
    error = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "customer_id": {"type": "string"},
        },
    }
    customer_param = {
        "name": "customer_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The Stripe customer id (cus_...)",
    }
    unauthorized = {
        "description": "no or wrong service token (Authorization: Bearer <TIERLINE_SERVICE_TOKEN>)",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "tierline diagnostics",
            "version": "1.0.0",
            "description": "The one Billing Diagnosis: Stripe state + subscription/entitlements + usage.",
        },
        "paths": {
            "/v1/customers/{customer_id}/diagnosis": {
                "get": {
                    "operationId": "getDiagnosis",
                    "summary": "Diagnose a customer's billing",
                    "description": "Reads the Stripe mirror (live Stripe on a miss or when stale), "
                    "the subscription store and ClickHouse usage. A source that is down is listed in "
                    "missing_sources and the status is never green. Every diagnosis is audited.",
                    "parameters": [
                        customer_param,
                        {
                            "name": "x-contact-id",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": "correlation id for the audit record",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the diagnosis",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/DiagnosisView"}}
                            },
                        },
                        "404": {
                            "description": "unknown customer",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                            },
                        },
                    },
                }
            },
            "/v1/customers/{customer_id}/usage": {
                "get": {
                    "operationId": "getUsage",
                    "summary": "Usage by metric (period, last 30 days vs previous 30, forecast) and by day",
                    "parameters": [
                        customer_param,
                        {
                            "name": "days",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 60},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "usage figures",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {
                                            "customer_id": {"type": "string"},
                                            "period_start": {
                                                "type": ["string", "null"],
                                                "format": "date-time",
                                            },
                                            "period_end": {"type": ["string", "null"], "format": "date-time"},
                                            "metrics": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "metric": {"type": "string"},
                                                        "period_units": {"type": "number"},
                                                        "last_30d": {"type": "number"},
                                                        "prev_30d": {"type": "number"},
                                                        "forecast": {"type": "number"},
                                                        "period_cost_usd": {"type": "number"},
                                                    },
                                                },
                                            },
                                            "daily": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "metric": {"type": "string"},
                                                        "day": {"type": "string", "format": "date"},
                                                        "units": {"type": "number"},
                                                        "cost_usd": {"type": "number"},
                                                        "events": {"type": "integer"},
                                                    },
                                                },
                                            },
                                        },
                                    }
                                }
                            },
                        },
                        "404": {
                            "description": "unknown customer",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                            },
                        },
                        "503": {
                            "description": "usage store unavailable",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                            },
                        },
                    },
                }
            },
        },
        "components": {
            "schemas": {"DiagnosisView": diagnosis_schema, "Error": error, **defs},
            "securitySchemes": {
                "serviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the internal service credential (TIERLINE_SERVICE_TOKEN)",
                }
            },
        },
        # Customer data needs the service token; health and this document stay open.
        "security": [{"serviceToken": []}],
    }
    for operations in doc["paths"].values():
        for operation in operations.values():
            operation["responses"]["401"] = unauthorized
    return doc
