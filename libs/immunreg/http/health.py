"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from immunreg.http.api import json_response
from immunreg.observability.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HealthCheck = Callable[[], Awaitable[bool]]


def health_routes(checks: Mapping[str, HealthCheck]) -> list[web.RouteDef]:
    """`/healthz` (the process answers) and `/readyz` (every dependency answers)."""

    async def healthz(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.StreamResponse:
        names = list(checks)
        results = await asyncio.gather(*(_run(name, checks[name]) for name in names))
        outcome = dict(zip(names, results, strict=True))
        if all(results):
            return json_response({"status": "ready", "checks": outcome})
        failed = [name for name, ok in outcome.items() if not ok]
        return json_response(
            {"status": "not_ready", "checks": outcome, "failed": failed}, status=503
        )

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


async def _run(name: str, check: HealthCheck) -> bool:
    # A hung dependency must not hang the probe: each check gets its own deadline.
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return bool(await check())
    except TimeoutError:
        log.warning("readiness check %s timed out", name)
    except Exception:
        log.warning("readiness check %s failed", name, exc_info=True)
    return False


def metrics_route(metrics: Metrics) -> web.RouteDef:
    """`GET /metrics` in the Prometheus text format."""

    async def scrape(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response

    return web.get("/metrics", scrape)
