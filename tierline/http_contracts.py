"""Typed HTTP contracts on plain Starlette: pydantic bodies, auth as a dependency, a generated OpenAPI.

A door declares its contract once, with :func:`api_route`::

    api_route("/v1/cases/{case_id}/resolve", resolve, method="POST", auth=agents,
              body=ResolveCase, response=CaseResolved, errors={404: "no such case"})

and the layer does the rest, the same way on every door:

- **auth** (an :class:`Auth`, e.g. a bearer-token verifier) runs first and hands the endpoint its
  principal (an agent, a customer's claims); a refusal is the auth's own 401;
- **path ids** named in :data:`tierline.http.ID_PATTERNS` are checked (a malformed id is a 404, as
  ``path_id`` answers);
- the **query** and the **body** are validated by their pydantic models: the body is read with
  :func:`tierline.http.read_json` (size, media type, depth, NUL, NaN guards stay), and a body that does
  not match its model is a 422 with a field-level message —
  ``{"error": "invalid_request", "detail": "text: Input should be a valid string", "fields": [...]}`` —
  never a 500;
- the endpoint returns a model (rendered as JSON with the declared status; keys it did not set are left
  out, so a model built from a dict answers that dict's shape) or any Starlette ``Response``.

:func:`openapi_document` builds the OpenAPI 3.1 document from a service's routes: typed routes with
their models' JSON Schemas, auth as security schemes, the error answers they declare; plain routes
(pages, health) as bare operations. Nothing in it is written by hand.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tierline.http import ID_PATTERNS, HttpProblem, check_id, problem_body, read_json

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)
B = TypeVar("B")
M = TypeVar("M", bound=BaseModel)

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?}")


# ----------------------------------------------------------------------------- models every door shares
class FieldProblem(BaseModel):
    field: str = Field(description="where in the input: a dotted path (body.text, query.days)")
    message: str
    type: str = Field(description="pydantic's error type (missing, string_type, ...)")


class Problem(BaseModel):
    """Every 4xx and 5xx answer of every door."""

    error: str = Field(
        description="a machine-readable code (invalid_request, forbidden, case_not_found, ...)"
    )
    detail: str = Field(description="what went wrong, in words")
    fields: list[FieldProblem] | None = Field(default=None, description="invalid_request: each bad field")


class Strict(BaseModel):
    """Base of request bodies that refuse keys they do not know (a typo is a 422, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """Base of request bodies whose extra keys the endpoint reads (they are kept in ``model_extra``)."""

    model_config = ConfigDict(extra="allow")


# ----------------------------------------------------------------------------- auth as a dependency
class Auth(Protocol[P_co]):
    """Turns a request into its principal, or raises (the door's own error mapping answers 401)."""

    @property
    def schemes(self) -> Mapping[str, Mapping[str, Any]]:
        """Security schemes this auth accepts, by name (OpenAPI ``securitySchemes``); any one will do."""
        ...

    async def __call__(self, request: Request) -> P_co: ...


# ----------------------------------------------------------------------------- one call
@dataclass(frozen=True)
class Call(Generic[P, B]):
    """What a typed endpoint gets: the checked principal, body, query and path ids."""

    request: Request
    principal: P
    body: B
    path: Mapping[str, str]
    query: BaseModel | None = None

    def query_as(self, model: type[M]) -> M:
        if not isinstance(self.query, model):
            raise TypeError(f"this route declares no {model.__name__} query")
        return self.query


Endpoint = Callable[[Call[Any, Any]], Awaitable[BaseModel | Response]]
Raw = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Raw], Raw]


@dataclass(frozen=True)
class Contract:
    method: str
    path: str
    summary: str
    description: str
    operation_id: str
    auth: Auth[Any] | None
    body: type[BaseModel] | None
    body_required: bool
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status_code: int
    errors: Mapping[int, str]
    media_type: str = "application/json"
    tags: tuple[str, ...] = ()
    path_params: tuple[str, ...] = field(default=())


class InvalidInput(Exception):
    """A body or query that does not match its model (rendered as a 422 :class:`Problem`)."""

    def __init__(self, where: str, error: ValidationError) -> None:
        self.fields = [
            FieldProblem(
                field=".".join([where, *(str(p) for p in e["loc"])]), message=e["msg"], type=e["type"]
            )
            for e in error.errors(include_url=False, include_context=False, include_input=False)
        ]
        super().__init__("; ".join(f"{f.field}: {f.message}" for f in self.fields)[:1000])

    def response(self) -> JSONResponse:
        problem = Problem(error="invalid_request", detail=str(self), fields=self.fields)
        return JSONResponse(problem.model_dump(mode="json"), status_code=422)


def render(result: BaseModel | Response, status_code: int) -> Response:
    if isinstance(result, Response):
        return result
    return JSONResponse(result.model_dump(mode="json", exclude_unset=True), status_code=status_code)


class ApiRoute(Route):
    """A Starlette route that carries its :class:`Contract` (the OpenAPI document reads it)."""

    contract: Contract


def api_route(
    path: str,
    endpoint: Endpoint,
    *,
    method: str,
    auth: Auth[Any] | None = None,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status_code: int = 200,
    errors: Mapping[int, str] | None = None,
    summary: str | None = None,
    operation_id: str | None = None,
    guard: Guard | None = None,
    media_type: str = "application/json",
    tags: Sequence[str] = (),
) -> ApiRoute:
    """One typed door. ``guard`` wraps the whole handling (a door's own exception → status mapping);
    ``body_required=False`` reads an empty body as ``{}``."""
    doc = inspect.getdoc(endpoint) or ""
    first, _, rest = doc.partition("\n\n")
    params = tuple(_PARAM.findall(path))
    contract = Contract(
        method=method.upper(),
        path=path,
        summary=summary or " ".join(first.split()) or endpoint.__name__.replace("_", " "),
        description=" ".join(rest.split()),
        operation_id=operation_id or _camel(endpoint.__name__),
        auth=auth,
        body=body,
        body_required=body_required,
        query=query,
        response=response,
        status_code=status_code,
        errors=dict(errors or {}),
        media_type=media_type,
        tags=tuple(tags),
        path_params=params,
    )

    async def handle(request: Request) -> Response:
        try:
            return await checked(request)
        except HttpProblem as exc:  # answered here too, so a door needs no app-wide handler for them
            body = problem_body(exc.code, str(exc.detail))
            return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    async def checked(request: Request) -> Response:
        principal = await auth(request) if auth is not None else None
        ids = {name: str(request.path_params[name]) for name in params}
        for name, value in ids.items():
            if name in ID_PATTERNS:
                check_id(name, value)
        try:
            parsed_query = query.model_validate(dict(request.query_params)) if query else None
        except ValidationError as exc:
            return InvalidInput("query", exc).response()
        parsed_body: BaseModel | None = None
        if body is not None:
            raw = await read_json(request) if body_required else await read_json(request, empty={})
            try:
                parsed_body = body.model_validate(raw)
            except ValidationError as exc:
                return InvalidInput("body", exc).response()
        result = await endpoint(Call(request, principal, parsed_body, ids, parsed_query))
        return render(result, status_code)

    route = ApiRoute(path, guard(handle) if guard else handle, methods=[contract.method])
    route.contract = contract
    return route


def _camel(name: str) -> str:
    head, *tail = name.strip("_").split("_")
    return head + "".join(t.title() for t in tail)


# ----------------------------------------------------------------------------- the document
_STATUS_TEXT = {
    400: "bad request",
    401: "no or refused credentials",
    403: "not yours, or not allowed",
    404: "not found (a malformed id, too)",
    409: "conflicts with the current state",
    410: "gone",
    413: "body too large",
    415: "not JSON",
    422: "the body or query does not match the contract (field-level message)",
    503: "a dependency is unavailable",
}


def _problem_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def openapi_document(
    routes: Iterable[BaseRoute], *, title: str, version: str = "1.0.0", description: str = ""
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``: every route, typed ones with their models."""
    routes = list(routes)
    typed = [r.contract for r in routes if isinstance(r, ApiRoute)]
    wanted: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    for c in typed:
        if c.body is not None:
            wanted.append((c.body, "validation"))
        if c.response is not None:
            wanted.append((c.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    security_schemes: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}

    for route in routes:
        if isinstance(route, ApiRoute):
            c = route.contract
            op = _typed_operation(c, refs)
            if c.auth is not None:
                for name, scheme in c.auth.schemes.items():
                    security_schemes[name] = dict(scheme)
            paths.setdefault(c.path, {})[c.method.lower()] = op
        elif isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                paths.setdefault(route.path, {})[method.lower()] = _plain_operation(route, method)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": {p: dict(sorted(ops.items())) for p, ops in sorted(paths.items())},
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": dict(sorted(security_schemes.items())),
        },
    }
    return document


def _typed_operation(c: Contract, refs: Mapping[Any, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": c.operation_id, "summary": c.summary}
    if c.description:
        op["description"] = c.description
    if c.tags:
        op["tags"] = list(c.tags)
    parameters: list[dict[str, Any]] = []
    for name in c.path_params:
        schema: dict[str, Any] = {"type": "string"}
        if name in ID_PATTERNS:
            schema["pattern"] = f"^{ID_PATTERNS[name].pattern}$"
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if c.query is not None:
        qschema = c.query.model_json_schema(ref_template="#/components/schemas/{model}")
        required = set(qschema.get("required", []))
        for name, prop in qschema.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop["description"]
            param["schema"] = {k: v for k, v in prop.items() if k not in ("description", "title")}
            parameters.append(param)
    if parameters:
        op["parameters"] = parameters
    if c.body is not None:
        op["requestBody"] = {
            "required": c.body_required,
            "content": {"application/json": {"schema": refs[(c.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": "OK" if c.status_code < 300 else "accepted"}
    if c.response is not None:
        ok["content"] = {c.media_type: {"schema": refs[(c.response, "serialization")]}}
    responses[str(c.status_code)] = ok
    errors = dict(c.errors)
    if c.auth is not None:
        errors.setdefault(401, _STATUS_TEXT[401])
        op["security"] = [{name: []} for name in c.auth.schemes]
    if c.body is not None or c.query is not None:
        errors.setdefault(422, _STATUS_TEXT[422])
    if c.body is not None:
        errors.setdefault(400, "the body is not JSON, not UTF-8 or nests too deep")
        errors.setdefault(413, _STATUS_TEXT[413])
        errors.setdefault(415, _STATUS_TEXT[415])
    if any(name in ID_PATTERNS for name in c.path_params):
        errors.setdefault(404, _STATUS_TEXT[404])
    for status in sorted(errors):
        responses[str(status)] = {"description": errors[status], "content": _problem_ref()}
    op["responses"] = responses
    return op


def _plain_operation(route: Route, method: str) -> dict[str, Any]:
    """A route without a contract (a page, a stream, health): described, but not typed."""
    doc = inspect.getdoc(route.endpoint) or ""
    summary = " ".join(doc.partition("\n\n")[0].split()) or route.path
    op: dict[str, Any] = {
        "operationId": _camel(f"{method.lower()}_{route.name or 'route'}")
        + "_"
        + re.sub(r"[^A-Za-z0-9]+", "_", route.path).strip("_"),
        "summary": summary,
        "x-tierline-typed": False,
        "responses": {"default": {"description": "see the door's documentation"}},
    }
    params = _PARAM.findall(route.path)
    if params:
        op["parameters"] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params
        ]
    return op
