"""The public statistics routes hold anonymous callers to a per-address rate limit."""

from __future__ import annotations

import pytest

from immunreg.http.auth import Role

from .conftest import Projections


@pytest.mark.parametrize(
    "projections", [{"rate_limit_burst": 3, "rate_limit_per_minute": 1.0}], indirect=True
)
async def test_the_request_after_the_burst_is_429_with_retry_after(
    projections: Projections,
) -> None:
    client = projections.client
    for _ in range(3):
        assert (await client.get("/v1/coverage")).status == 200
    refused = await client.get("/v1/coverage")
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert refused.headers["Retry-After"] == "60"  # one request a minute
    assert (await refused.json())["code"] == "rate_limited"
    # Each public route has a bucket of its own, and a caller with a token is not limited.
    assert (await client.get("/v1/doses/daily")).status == 200
    analyst = projections.headers(Role.PUBLIC_HEALTH)
    assert (await client.get("/v1/coverage", headers=analyst)).status == 200
