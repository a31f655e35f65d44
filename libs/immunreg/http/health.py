"""Liveness, readiness and the Prometheus scrape endpoint.

Readiness has three answers. `ready` (200): every check passes. `degraded`
(200): an optional dependency fails, such as Kafka, without which commands still
succeed (their events wait in the outbox), so the instance stays in rotation.
`not_ready` (503): a required dependency fails (the database), or the service
has not started following its topics yet. While shutting down the answer is
`shutting_down` (503), whatever the checks say.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from immunreg.http.api import json_response
from immunreg.observability.metrics import Metrics

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Health(enum.Enum):
    """What one check found."""

    OK = "ok"
    DEGRADED = "degraded"  # not working, but the instance can still serve
    FAILED = "failed"


HealthCheck = Callable[[], Awaitable[bool | Health]]


@dataclass(frozen=True)
class Check:
    """A readiness check and how its failure counts.

    optional: a failure degrades the instance instead of taking it out of rotation.
    needs: the name of another check this one cannot pass without (consumers need
        Kafka): while that one fails, this one's failure counts as degraded, and
        the cause is the dependency, which the answer names.
    """

    probe: HealthCheck
    optional: bool = False
    needs: str | None = None


def health_routes(
    checks: Mapping[str, HealthCheck | Check],
    *,
    metrics: Metrics | None = None,
    shutting_down: Callable[[], bool] = lambda: False,
) -> list[web.RouteDef]:
    """`/healthz` (the process answers) and `/readyz` (the instance should get traffic)."""
    specs = {name: c if isinstance(c, Check) else Check(c) for name, c in checks.items()}

    async def healthz(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.StreamResponse:
        if shutting_down():
            return json_response({"status": "shutting_down"}, status=503)
        names = list(specs)
        found = await asyncio.gather(*(_run(name, specs[name].probe) for name in names))
        results = dict(zip(names, found, strict=True))
        outcome = {name: _weigh(specs[name], health, results) for name, health in results.items()}
        if metrics is not None:
            for name, health in results.items():
                metrics.dependency_up.labels(name).set(1 if health is Health.OK else 0)
        body: dict[str, object] = {
            "status": "ready",
            "checks": {name: health is Health.OK for name, health in results.items()},
        }
        degraded = [name for name, health in outcome.items() if health is Health.DEGRADED]
        failed = [name for name, health in outcome.items() if health is Health.FAILED]
        if degraded:
            body["status"] = "degraded"
            body["degraded"] = degraded
        if failed:
            body["status"] = "not_ready"
            body["failed"] = failed
            return json_response(body, status=503)
        return json_response(body)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


def _weigh(spec: Check, health: Health, results: Mapping[str, Health]) -> Health:
    if health is not Health.FAILED:
        return health
    if spec.optional or (spec.needs is not None and results.get(spec.needs) is not Health.OK):
        return Health.DEGRADED
    return Health.FAILED


async def _run(name: str, check: HealthCheck) -> Health:
    # A hung dependency must not hang the probe: each check gets its own deadline.
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            result = await check()
        if isinstance(result, Health):
            return result
        return Health.OK if result else Health.FAILED
    except TimeoutError:
        log.warning("readiness check %s timed out", name)
    except Exception:
        log.warning("readiness check %s failed", name, exc_info=True)
    return Health.FAILED


def metrics_route(metrics: Metrics) -> web.RouteDef:
    """`GET /metrics` in the Prometheus text format."""

    async def scrape(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return response

    return web.get("/metrics", scrape)
