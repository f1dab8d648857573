"""The declarative product connector: actions in the SaaS product's own API, described in versioned YAML
(``tierline/billing/product_actions.yaml``, or ``TIERLINE_PRODUCT_ACTIONS_PATH``).

Each action names its parameters (a JSON schema), the HTTP call (bearer credential from
``TIERLINE_PRODUCT_API_TOKEN``), the role the asking person needs, the ledger target and the text the
customer is told. The executor (``ActionExecutor.product_action``) runs them: policy, ledger, audit.
This module only reads the YAML, validates parameters and talks HTTP; it decides nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
import jsonschema
import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = structlog.get_logger(__name__)

DEFAULT_CONNECTOR_PATH = Path(__file__).parent / "billing" / "product_actions.yaml"
#: Roles that may ask for an action that requires ``admin``; ``owner`` requires the owner.
ROLE_GRANTS: dict[str, frozenset[str]] = {
    "owner": frozenset({"owner"}),
    "admin": frozenset({"owner", "admin"}),
    "member": frozenset({"owner", "admin", "member", "billing"}),
}
_PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")


class ConnectorError(Exception):
    """The connector file is missing or malformed."""


class InvalidParameters(ValueError):
    """Parameters that do not satisfy the action's JSON schema (nothing was sent)."""


class ProductCallFailed(Exception):
    """The product did not do it: ``unavailable`` (down, timeout, 5xx) or ``refused`` (4xx, its reason)."""

    def __init__(
        self, kind: Literal["unavailable", "refused"], detail: str, status: int | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status


class RequestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    body: dict[str, Any] | None = None


class ProductAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    title: str
    section: Literal["team", "api_keys", "account"] = "account"
    required_role: Literal["owner", "admin", "member"] = "admin"
    parameters: dict[str, Any]
    request: RequestSpec
    target: str
    confirmation: str
    secret_fields: list[str] = Field(default_factory=list)

    def validated(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with the schema's defaults filled in; :class:`InvalidParameters` otherwise."""
        full = dict(params)
        for field, spec in (self.parameters.get("properties") or {}).items():
            if field not in full and isinstance(spec, Mapping) and "default" in spec:
                full[field] = spec["default"]
        validator = jsonschema.Draft202012Validator(
            self.parameters, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(full), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "parameters"
            raise InvalidParameters(f"{self.name}: {where}: {errors[0].message}")
        if "email" in full and isinstance(full["email"], str):
            full["email"] = full["email"].strip().lower()
        return full

    def render_target(self, params: Mapping[str, Any]) -> str:
        return f"{self.name}:{_fill(self.target, params)}"

    def confirm(self, params: Mapping[str, Any], result: Mapping[str, Any]) -> str:
        return _fill(self.confirmation, {**result, **params})

    def public(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The product's answer without the fields that are shown once (never stored, logged or sent)."""
        return {k: v for k, v in result.items() if k not in self.secret_fields}


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _fill(template: str, values: Mapping[str, Any]) -> str:
    return template.format_map(_Missing({k: v for k, v in values.items()}))


def request_key(customer_id: str, name: str, params: Mapping[str, Any]) -> str:
    """The request's own identity (the same ask from any contact): the product's Idempotency-Key."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return "tlp_" + hashlib.sha256(f"{customer_id}|{name}|{canonical}".encode()).hexdigest()[:40]


class ConnectorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int
    actions: dict[str, ProductAction]

    def action(self, name: str) -> ProductAction:
        if name not in self.actions:
            raise InvalidParameters(
                f"unknown product action {name!r}; known: {', '.join(sorted(self.actions))}"
            )
        return self.actions[name]

    def section(self, section: str) -> list[ProductAction]:
        return [a for a in self.actions.values() if a.section == section]


def load_connector(path: Path | None = None) -> ConnectorSpec:
    source = path or DEFAULT_CONNECTOR_PATH
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConnectorError(f"cannot read product connector {source}: {exc}") from exc
    try:
        actions = {name: {**body, "name": name} for name, body in (raw.get("actions") or {}).items()}
        spec = ConnectorSpec.model_validate({**raw, "actions": actions})
    except (ValidationError, AttributeError) as exc:
        raise ConnectorError(f"invalid product connector {source}: {exc}") from exc
    for action in spec.actions.values():
        try:
            jsonschema.Draft202012Validator.check_schema(action.parameters)
        except jsonschema.SchemaError as exc:
            raise ConnectorError(f"{source}: {action.name}: invalid parameter schema: {exc.message}") from exc
    return spec


def _body(template: Any, values: Mapping[str, Any]) -> Any:
    """A body template with ``"{name}"`` strings replaced by the value itself (a list stays a list)."""
    if isinstance(template, dict):
        return {k: _body(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_body(v, values) for v in template]
    if isinstance(template, str):
        whole = _PLACEHOLDER.match(template)
        if whole:
            return values.get(whole.group(1))
        return _fill(template, values)
    return template


class ProductConnector:
    """HTTP calls to the product's API, as the YAML describes them."""

    def __init__(
        self,
        spec: ConnectorSpec,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: Any) -> ProductConnector:
        return cls(
            load_connector(settings.product_actions_path),
            settings.product_api_url,
            settings.product_api_token.get_secret_value(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ProductCallFailed(
                "unavailable", f"the product API did not answer ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500:
            raise ProductCallFailed(
                "unavailable", f"the product API answered {response.status_code}", response.status_code
            )
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code >= 400:
            detail = str(body.get("detail") or body.get("error") or response.reason_phrase)
            raise ProductCallFailed("refused", detail[:300], response.status_code)
        return body if isinstance(body, dict) else {"items": body}

    async def members(self, account_id: str) -> list[dict[str, Any]]:
        body = await self._send("GET", f"/v1/accounts/{quote(account_id, safe='')}/members")
        return list(body.get("members") or [])

    async def keys(self, account_id: str) -> list[dict[str, Any]]:
        body = await self._send("GET", f"/v1/accounts/{quote(account_id, safe='')}/keys")
        return list(body.get("keys") or [])

    async def call(
        self,
        action: ProductAction,
        account_id: str,
        params: Mapping[str, Any],
        *,
        idempotency_key: str,
        acting_user: str | None = None,
    ) -> dict[str, Any]:
        values = {**params, "account_id": account_id}
        path = action.request.path.format_map({k: quote(str(v), safe="") for k, v in values.items()})
        headers = {"Idempotency-Key": idempotency_key}
        if acting_user:
            headers["X-Acting-User"] = acting_user
        body = _body(action.request.body, values) if action.request.body is not None else None
        result = await self._send(action.request.method, path, json=body, headers=headers)
        log.info("product.action.called", action=action.name, account_id=account_id)
        return result
