"""The OpenAPI 3.1 document, generated from declared routes and msgspec schemas."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec

from immunreg.http.auth import ACCESS_REASON_HEADER, MAX_REASON_LENGTH, Reach
from immunreg.http.problems import PROBLEM_CONTENT_TYPE, ProblemDetail

if TYPE_CHECKING:
    from immunreg.http.api import Route

OPENAPI_VERSION = "3.1.0"
REF_PREFIX = "#/components/schemas/"
SECURITY_SCHEME = "bearerAuth"

# aiohttp paths may constrain a parameter with a regex (`{id:\d+}`, even `{d:\d{4}}`);
# OpenAPI wants only the name.
_PATH_PARAM = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?:[^{}]|\{[^{}]*\})*)?\}")


def openapi_path(path: str) -> tuple[str, list[str]]:
    """The aiohttp path as an OpenAPI template, and its parameter names."""
    names = [m["name"] for m in _PATH_PARAM.finditer(path)]
    return _PATH_PARAM.sub(lambda m: "{" + m["name"] + "}", path), names


@dataclass(frozen=True)
class Media:
    """A response in other media types than plain JSON: an image, a page, CSV, FHIR.

    `types` maps each content type the route can answer with to its msgspec type
    (JSON-like media), or to None (opaque text or binary).
    """

    types: Mapping[str, Any]

    def content(self, schema: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        """The OpenAPI `content` object."""
        return {
            media: {"schema": schema(t) if t is not None else _opaque(media)}
            for media, t in self.types.items()
        }


def _opaque(media: str) -> dict[str, Any]:
    if media.startswith("text/") or media.endswith("+xml"):
        return {"type": "string"}
    return {"type": "string", "contentMediaType": media}


def _schema_types(t: Any) -> list[Any]:
    """The msgspec types a declared response refers to."""
    if isinstance(t, Media):
        return [x for x in t.types.values() if x is not None]
    return [t] if t is not None else []


def build_openapi(
    *, title: str, version: str, description: str, routes: Sequence[Route]
) -> dict[str, Any]:
    """Every route with its parameters, body, responses and problem responses."""
    types = _unique(
        [
            ProblemDetail,
            *(r.body for r in routes if r.body is not None),
            *(x for r in routes for t in r.responses.values() for x in _schema_types(t)),
            *(r.query for r in routes if r.query is not None),
        ]
    )
    schemas, components = msgspec.json.schema_components(types, ref_template=REF_PREFIX + "{name}")
    schema_of = list(zip(types, schemas, strict=True))

    def schema(t: Any) -> dict[str, Any]:
        return next(s for known, s in schema_of if known == t)

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path, _ = openapi_path(route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route, schema, components)

    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            # Query structs become parameters, so their own schemas are dropped
            # unless something else still refers to them.
            "schemas": _reachable(components, paths),
            "securitySchemes": {
                SECURITY_SCHEME: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _operation(route: Route, schema: Any, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id}
    if route.summary:
        op["summary"] = route.summary
    if route.description:
        op["description"] = route.description
    if route.tags:
        op["tags"] = list(route.tags)

    _, names = openapi_path(route.path)
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
    if route.query is not None:
        params.extend(_query_parameters(schema(route.query), components))
    if route.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retries with the same key replay the first answer.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if route.access is not None and Reach.LINKED in route.access.values():
        params.append(
            {
                "name": ACCESS_REASON_HEADER,
                "in": "header",
                "required": False,
                "description": "Why site staff look up a citizen not linked to their site "
                "(no appointment or dose there); recorded in the audit log.",
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_LENGTH},
            }
        )
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema(route.body)}},
        }

    responses: dict[str, Any] = {}
    for status, t in sorted(route.responses.items()):
        if isinstance(t, Media):
            response = _response(status, t.content(schema))
        elif t is not None:
            response = _response(status, {"application/json": {"schema": schema(t)}})
        elif status >= 400:
            response = _problem(status)
        else:
            response = _response(status)
        if route.idempotent and 200 <= status < 300:
            response["headers"] = {
                "Idempotent-Replayed": {
                    "description": "`true` when this is a stored answer to an earlier request.",
                    "schema": {"type": "string", "enum": ["true"]},
                }
            }
        responses[str(status)] = response
    for status in _implied_problems(route):
        responses.setdefault(str(status), _problem(status))
    op["responses"] = dict(sorted(responses.items()))

    if route.roles is not None:
        op["security"] = [{SECURITY_SCHEME: []}]
        op["x-roles"] = sorted(route.roles)
    if route.access is not None:
        op["x-access"] = {role.value: reach.value for role, reach in sorted(route.access.items())}
    return op


def _implied_problems(route: Route) -> list[int]:
    """Errors the kit itself may answer with for this route."""
    statuses = []
    if openapi_path(route.path)[1]:
        statuses.append(422)  # a path parameter with control characters in it
    if route.body is not None:
        statuses += [400, 415, 422]
    if route.query is not None:
        statuses.append(422)
    if route.roles is not None:
        statuses += [401, 403]
    if route.idempotent:
        statuses += [400, 409, 422]
    if route.rate_limited:
        statuses.append(429)
    statuses.append(500)
    return statuses


def _query_parameters(ref: dict[str, Any], components: dict[str, Any]) -> list[dict[str, Any]]:
    struct = components[ref["$ref"].removeprefix(REF_PREFIX)]
    required = set(struct.get("required", []))
    params = []
    for name, prop in struct.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop["description"]
        param["schema"] = prop
        params.append(param)
    return params


def _response(status: int, content: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _phrase(status)}
    if content:
        response["content"] = content
    return response


def _problem(status: int) -> dict[str, Any]:
    ref = {"$ref": REF_PREFIX + ProblemDetail.__name__}
    return _response(status, {PROBLEM_CONTENT_TYPE: {"schema": ref}})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


def _unique(types: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for t in types:
        if t not in seen:
            seen.append(t)
    return seen


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                yield value.removeprefix(REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(components: dict[str, Any], root: Any) -> dict[str, Any]:
    keep: set[str] = set()
    pending = list(_refs(root))
    while pending:
        name = pending.pop()
        if name not in keep:
            keep.add(name)
            pending.extend(_refs(components[name]))
    return {name: s for name, s in components.items() if name in keep}
