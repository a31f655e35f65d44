"""The generated OpenAPI 3.1 document: complete, and every $ref resolves."""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Any

import msgspec
import pytest
from aiohttp import web

from conftest import Client, build_app
from immunreg.http import Api, Role, json_response
from immunreg.observability.metrics import Metrics


class Vaccine(msgspec.Struct):
    code: str
    doses: int


class Register(msgspec.Struct):
    national_id: str
    birth_date: date
    preferred: list[Vaccine] = []


class Registered(msgspec.Struct):
    citizen_id: str


class CitizenView(msgspec.Struct):
    citizen_id: str
    birth_date: date
    preferred: list[Vaccine]


class Page(msgspec.Struct):
    since: date
    limit: int = 50


def make_api() -> Api:
    api = Api(title="registration", version="1.0.0", description="Citizens register interest.")

    @api.post(
        "/v1/citizens",
        body=Register,
        responses={201: Registered, 409: None},
        roles={Role.CITIZEN, Role.ADMIN},
        summary="Register interest",
        idempotent=True,
    )
    async def register(request: web.Request, body: Register) -> web.StreamResponse:
        """Register a citizen's interest in vaccination."""
        return json_response(Registered(citizen_id="c"), status=201)

    @api.get(
        r"/v1/citizens/{citizen_id:[a-z0-9-]+}",
        responses={200: CitizenView, 404: None},
        roles={Role.CITIZEN, Role.ADMIN},
    )
    async def read_citizen(request: web.Request) -> web.StreamResponse:
        return json_response({})

    @api.get("/v1/citizens", responses={200: list[CitizenView]}, query=Page)
    async def list_citizens(request: web.Request, query: Page) -> web.StreamResponse:
        return json_response([])

    @api.delete("/v1/citizens/{citizen_id}/consent", responses={204: None}, roles={Role.ADMIN})
    async def withdraw(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    return api


@pytest.fixture
def doc() -> dict[str, Any]:
    return make_api().openapi()


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_route_and_method_is_documented(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {
        "title": "registration",
        "version": "1.0.0",
        "description": "Citizens register interest.",
    }
    assert {path: set(ops) for path, ops in doc["paths"].items()} == {
        "/v1/citizens": {"post", "get"},
        "/v1/citizens/{citizen_id}": {"get"},
        "/v1/citizens/{citizen_id}/consent": {"delete"},
    }
    op_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert sorted(op_ids) == ["list_citizens", "read_citizen", "register", "withdraw"]


def test_every_ref_resolves_and_no_dead_components(doc: dict[str, Any]) -> None:
    found = set(refs(doc))
    assert found
    for ref in found:
        assert isinstance(resolve(doc, ref), dict), ref
    # Query structs become parameters; they do not linger as components.
    assert set(doc["components"]["schemas"]) == {
        "ProblemDetail",
        "FieldError",
        "Register",
        "Registered",
        "CitizenView",
        "Vaccine",
    }


def test_post_with_body_roles_and_idempotency(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/v1/citizens"]["post"]
    assert op["summary"] == "Register interest"
    assert op["description"] == "Register a citizen's interest in vaccination."
    assert op["requestBody"]["required"] is True
    body_schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(doc, body_schema["$ref"])["required"] == ["national_id", "birth_date"]
    assert op["security"] == [{"bearerAuth": []}]
    assert op["x-roles"] == ["admin", "citizen"]
    [param] = op["parameters"]
    assert param["name"] == "Idempotency-Key"
    assert param["in"] == "header"
    assert param["required"] is False
    responses = op["responses"]
    assert set(responses) == {"201", "400", "401", "403", "409", "415", "422", "500"}
    assert responses["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Registered"
    }
    assert "Idempotent-Replayed" in responses["201"]["headers"]
    for status in ("400", "401", "403", "409", "415", "422", "500"):
        assert responses[status]["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}
        }, status


def test_path_params_strip_regex_and_query_struct_becomes_parameters(doc: dict[str, Any]) -> None:
    read = doc["paths"]["/v1/citizens/{citizen_id}"]["get"]
    assert read["parameters"] == [
        {"name": "citizen_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert "requestBody" not in read
    assert "415" not in read["responses"]

    listing = doc["paths"]["/v1/citizens"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["since"]["in"] == "query"
    assert params["since"]["required"] is True
    assert params["since"]["schema"] == {"type": "string", "format": "date"}
    assert params["limit"]["required"] is False
    assert params["limit"]["schema"]["type"] == "integer"
    assert "security" not in listing
    assert set(listing["responses"]) == {"200", "422", "500"}
    items = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert items == {"type": "array", "items": {"$ref": "#/components/schemas/CitizenView"}}


def test_no_content_response_has_no_body(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/v1/citizens/{citizen_id}/consent"]["delete"]
    assert op["responses"]["204"] == {"description": "No Content"}
    assert all("description" in r for r in op["responses"].values())


def test_security_scheme_is_bearer_jwt(doc: dict[str, Any]) -> None:
    assert doc["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }


def test_duplicate_declarations_are_refused() -> None:
    api = make_api()

    async def other(request: web.Request) -> web.StreamResponse:
        return web.Response()

    with pytest.raises(ValueError, match="declared twice"):
        api.get("/v1/citizens", responses={200: None})(other)
    with pytest.raises(ValueError, match="POST"):
        api.put("/v1/x", responses={200: None}, idempotent=True)


@pytest.mark.skipif(
    importlib.util.find_spec("openapi_spec_validator") is None,
    reason="openapi-spec-validator is not installed",
)
def test_document_passes_openapi_spec_validator(doc: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(doc)


async def test_openapi_json_is_served(
    serve: Callable[[web.Application], Awaitable[Client]],
) -> None:
    api = make_api()
    client = await serve(build_app(api, Metrics("t"), None))
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert await response.json() == msgspec.json.decode(msgspec.json.encode(api.openapi()))


def test_responses_in_other_media_types_are_declared_with_them() -> None:
    from openapi_spec_validator import validate

    from immunreg.http.openapi import Media

    class Report(msgspec.Struct):
        total: int

    api = Api(title="media", version="1")

    @api.get("/qr.png", responses={200: Media({"image/png": None}), 404: None})
    async def qr(request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    @api.get("/report", responses={200: Media({"application/json": Report, "text/csv": None})})
    async def report(request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    document = api.openapi()
    validate(document)
    png = document["paths"]["/qr.png"]["get"]["responses"]["200"]["content"]
    assert png == {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}
    both = document["paths"]["/report"]["get"]["responses"]["200"]["content"]
    assert both["text/csv"] == {"schema": {"type": "string"}}
    assert both["application/json"] == {"schema": {"$ref": "#/components/schemas/Report"}}
    assert "Report" in document["components"]["schemas"]
