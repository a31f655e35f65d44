"""The token bucket on an injected clock, and a limited route answering 429 over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from conftest import Client, build_app
from immunreg.http import Api, Role
from immunreg.http.ratelimit import RATE_LIMITER_KEY, RateLimiter
from immunreg.observability.metrics import Metrics

Serve = Callable[..., Any]


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_the_bucket_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)  # one token a second
    assert [limiter.take("verify", "10.0.0.1") for _ in range(3)] == [None, None, None]
    assert limiter.take("verify", "10.0.0.1") == pytest.approx(1.0)
    clock.now += 0.25
    assert limiter.take("verify", "10.0.0.1") == pytest.approx(0.75)
    clock.now += 0.75
    assert limiter.take("verify", "10.0.0.1") is None
    clock.now += 3600  # a long pause refills to the burst, not beyond
    assert [limiter.take("verify", "10.0.0.1") for _ in range(4)][-1] is not None


def test_addresses_and_routes_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, clock=Clock())
    assert limiter.take("verify", "10.0.0.1") is None
    assert limiter.take("verify", "10.0.0.1") == pytest.approx(60.0)
    assert limiter.take("verify", "10.0.0.2") is None
    assert limiter.take("coverage", "10.0.0.1") is None


def test_a_clock_going_backwards_refills_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    assert limiter.take("r", "a") is None
    clock.now -= 100
    assert limiter.take("r", "a") == pytest.approx(1.0)


def test_the_oldest_address_is_forgotten_beyond_max_clients() -> None:
    limiter = RateLimiter(per_minute=1, burst=1, clock=Clock(), max_clients=2)
    for address in ("a", "b"):
        assert limiter.take("r", address) is None
    assert limiter.take("r", "a") is not None  # "a" is now the most recently seen
    assert limiter.take("r", "c") is None  # evicts "b"
    assert limiter.take("r", "b") is None  # a fresh burst: the documented cost
    assert limiter.take("r", "a") is None  # "a" was evicted by "b" in turn


def test_a_limit_needs_a_positive_rate_and_burst() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=1)
    with pytest.raises(ValueError):
        RateLimiter(per_minute=1, burst=0)


def _limited_api() -> Api:
    api = Api("t", "1")

    @api.get("/v1/public-figures", responses={200: None}, rate_limited=True)
    async def figures(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    return api


def _limited_app(limiter: RateLimiter | None) -> web.Application:
    app = build_app(_limited_api(), Metrics("limits"), None)
    if limiter is not None:
        app[RATE_LIMITER_KEY] = limiter
    return app


async def test_the_request_after_the_burst_is_429_problem_json_with_retry_after(
    serve: Serve,
) -> None:
    clock = Clock()
    client: Client = await serve(_limited_app(RateLimiter(per_minute=6, burst=2, clock=clock)))
    assert [(await client.get("/v1/public-figures")).status for _ in range(2)] == [204, 204]
    refused = await client.get("/v1/public-figures")
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert refused.headers["Retry-After"] == "10"  # 6 a minute: one every 10 s
    assert (await refused.json())["code"] == "rate_limited"
    clock.now += 10
    assert (await client.get("/v1/public-figures")).status == 204


async def test_callers_with_a_token_are_not_limited(
    serve: Serve, verifier: Any, bearer: Any
) -> None:
    app = build_app(_limited_api(), Metrics("limits"), verifier)
    app[RATE_LIMITER_KEY] = RateLimiter(per_minute=1, burst=1, clock=Clock())
    client: Client = await serve(app)
    analyst = bearer(Role.PUBLIC_HEALTH)
    assert (await client.get("/v1/public-figures")).status == 204
    assert (await client.get("/v1/public-figures")).status == 429
    assert [(await client.get("/v1/public-figures", headers=analyst)).status for _ in range(3)] == [
        204
    ] * 3


async def test_a_limited_route_without_a_limiter_fails_closed(serve: Serve) -> None:
    client: Client = await serve(_limited_app(None))
    assert (await client.get("/v1/public-figures")).status == 500


def test_the_openapi_document_names_the_429() -> None:
    assert "429" in _limited_api().openapi()["paths"]["/v1/public-figures"]["get"]["responses"]
