"""CORS: the citizens' portal (another origin) calls the API from a browser; nobody else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from conftest import Client
from immunreg.config import cors_origins
from immunreg.http import Api, Role, TokenVerifier, middlewares
from immunreg.observability.metrics import Metrics

PORTAL = "http://127.0.0.1:8080"


def cors_app(verifier: TokenVerifier) -> web.Application:
    api = Api("cors", "1")

    @api.get("/v1/things/{thing_id}", responses={200: None}, roles={Role.ADMIN})
    async def read(request: web.Request) -> web.StreamResponse:
        return web.json_response({"id": request.match_info["thing_id"]}, headers={"ETag": '"3"'})

    app = web.Application(middlewares=middlewares(Metrics("cors"), verifier, [PORTAL]))
    api.register(app)
    return app


async def test_a_preflight_from_the_portal_is_allowed_with_the_api_headers(
    serve: Callable[[web.Application], Awaitable[Client]], verifier: TokenVerifier
) -> None:
    client = await serve(cors_app(verifier))
    answer = await client.options(
        "/v1/things/1",
        headers={
            "Origin": PORTAL,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, if-match, content-type",
        },
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "PATCH" in answer.headers["Access-Control-Allow-Methods"]
    allowed = answer.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "if-match", "idempotency-key", "content-type"} <= {
        h.strip() for h in allowed.split(",")
    }
    assert "Access-Control-Allow-Credentials" not in answer.headers


async def test_answers_and_problems_to_the_portal_are_readable_and_expose_the_etag(
    serve: Callable[[web.Application], Awaitable[Client]], verifier: TokenVerifier, bearer: Any
) -> None:
    client = await serve(cors_app(verifier))
    ok = await client.get("/v1/things/1", headers={"Origin": PORTAL, **bearer(Role.ADMIN)})
    assert ok.status == 200
    assert ok.headers["Access-Control-Allow-Origin"] == PORTAL
    assert "ETag" in ok.headers["Access-Control-Expose-Headers"]
    assert ok.headers["Vary"] == "Origin"
    refused = await client.get("/v1/things/1", headers={"Origin": PORTAL})
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == PORTAL


async def test_another_origin_gets_no_cors_headers(
    serve: Callable[[web.Application], Awaitable[Client]], verifier: TokenVerifier, bearer: Any
) -> None:
    client = await serve(cors_app(verifier))
    evil = "http://evil.example"
    preflight = await client.options(
        "/v1/things/1", headers={"Origin": evil, "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    answer = await client.get("/v1/things/1", headers={"Origin": evil, **bearer(Role.ADMIN)})
    assert answer.status == 200 and "Access-Control-Allow-Origin" not in answer.headers
    # Which origin asked changes the answer: caches are told so, with or without one.
    assert answer.headers["Vary"] == "Origin"
    plain = await client.get("/v1/things/1", headers=bearer(Role.ADMIN))
    assert plain.headers["Vary"] == "Origin"


def test_the_default_origin_is_the_local_portal_moved_by_the_offset(monkeypatch: Any) -> None:
    monkeypatch.delenv("CORS_ORIGINS", raising=False)
    monkeypatch.delenv("BOOKING_CORS_ORIGINS", raising=False)
    monkeypatch.delenv("PORTAL_PORT", raising=False)
    monkeypatch.setenv("IMMUNREG_PORT_OFFSET", "6000")
    assert cors_origins("booking") == ("http://127.0.0.1:14080", "http://localhost:14080")
    monkeypatch.setenv("CORS_ORIGINS", "https://portal.example.rs/, https://eu.example.rs")
    assert cors_origins("booking") == ("https://portal.example.rs", "https://eu.example.rs")
