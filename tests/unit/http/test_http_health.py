from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web

from conftest import Client
from immunreg.http import health, health_routes, metrics_route
from immunreg.observability.metrics import Metrics

Serve = Callable[[web.Application], Awaitable[Client]]


async def ok() -> bool:
    return True


async def down() -> bool:
    return False


async def broken() -> bool:
    raise ConnectionRefusedError


async def hangs() -> bool:
    await asyncio.sleep(60)
    return True


async def test_healthz_always_ok_and_readyz_ready_when_all_pass(serve: Serve) -> None:
    app = web.Application()
    app.add_routes(health_routes({"postgres": ok, "kafka": ok}))
    client = await serve(app)
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready", "checks": {"postgres": True, "kafka": True}}


async def test_readyz_is_503_naming_failed_checks(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.05)
    app = web.Application()
    app.add_routes(health_routes({"pg": ok, "kafka": down, "dns": broken, "slow": hangs}))
    client = await serve(app)
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["checks"] == {"pg": True, "kafka": False, "dns": False, "slow": False}
    assert sorted(body["failed"]) == ["dns", "kafka", "slow"]
    assert (await client.get("/healthz")).status == 200


async def test_metrics_route_serves_prometheus_text(serve: Serve) -> None:
    metrics = Metrics("t")
    metrics.http_requests.labels("/x", "GET", "200").inc()
    app = web.Application()
    app.add_routes([metrics_route(metrics)])
    client = await serve(app)
    response = await client.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'immunreg_http_requests_total{method="GET",route="/x",status="200"} 1.0' in (
        await response.text()
    )


async def test_an_optional_dependency_down_degrades_but_stays_ready(serve: Serve) -> None:
    metrics = Metrics("t")
    app = web.Application()
    checks = {
        "database": health.Check(ok),
        "kafka": health.Check(down, optional=True),
        "consumers": health.Check(down, needs="kafka"),
    }
    app.add_routes(health_routes(checks, metrics=metrics))
    client = await serve(app)
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "degraded",
        "checks": {"database": True, "kafka": False, "consumers": False},
        "degraded": ["kafka", "consumers"],
    }
    text = metrics.exposition().decode()
    assert 'immunreg_dependency_up{dependency="kafka"} 0.0' in text
    assert 'immunreg_dependency_up{dependency="database"} 1.0' in text


async def test_a_check_needing_a_healthy_dependency_fails_on_its_own(serve: Serve) -> None:
    app = web.Application()
    checks = {
        "database": health.Check(down),
        "kafka": health.Check(ok, optional=True),
        "consumers": health.Check(down, needs="kafka"),  # Kafka is up: still starting
    }
    app.add_routes(health_routes(checks))
    client = await serve(app)
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "not_ready" and body["failed"] == ["database", "consumers"]


async def test_a_check_may_report_degraded_itself(serve: Serve) -> None:
    async def rebalancing() -> health.Health:
        return health.Health.DEGRADED

    app = web.Application()
    app.add_routes(health_routes({"database": ok, "consumers": rebalancing}))
    client = await serve(app)
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["degraded"] == ["consumers"]


async def test_shutting_down_is_503_whatever_the_checks_say(serve: Serve) -> None:
    app = web.Application()
    app.add_routes(health_routes({"database": ok}, shutting_down=lambda: True))
    client = await serve(app)
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "shutting_down"}
    assert (await client.get("/healthz")).status == 200
