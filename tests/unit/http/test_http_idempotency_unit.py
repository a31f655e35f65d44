"""Idempotency checks that need no database (the rest is in tests/integration/http)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from conftest import Client
from immunreg.http import Api, json_response
from immunreg.http.idempotency import request_hash, schema_sql
from immunreg.http.middleware import error_middleware

Serve = Callable[[web.Application], Awaitable[Client]]


def test_request_hash_distinguishes_method_path_and_body() -> None:
    base = request_hash("POST", "/v1/a", b"{}")
    assert base == request_hash("POST", "/v1/a", b"{}")
    assert base != request_hash("PUT", "/v1/a", b"{}")
    assert base != request_hash("POST", "/v1/a?x=1", b"{}")
    assert base != request_hash("POST", "/v1/a", b"{ }")


def test_schema_ships_with_the_package() -> None:
    assert "CREATE TABLE IF NOT EXISTS idempotency_keys" in schema_sql()


async def test_overlong_key_is_refused_before_touching_the_database(serve: Serve) -> None:
    api = Api(title="t", version="1")

    @api.post("/v1/things", responses={201: None}, idempotent=True)
    async def create(request: web.Request) -> web.StreamResponse:
        return json_response({}, status=201)

    app = web.Application(middlewares=[error_middleware])  # no pool: any query would fail
    api.register(app)
    client = await serve(app)
    response = await client.post("/v1/things", headers={"Idempotency-Key": "k" * 256})
    assert response.status == 400
    body = await response.json(content_type="application/problem+json")
    assert body["errors"][0]["field"] == "header.Idempotency-Key"
    assert (await client.post("/v1/things")).status == 201
