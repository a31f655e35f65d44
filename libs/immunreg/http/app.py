"""The app factory every service uses.

One cleanup context per resource, in order: the database pool (with the
schema applied), the Kafka topics, the outbox relay task, the consumer task,
then the service's own resources. Start-up and shutdown are symmetric, and a
failed start cleans up only what had started.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from aiokafka import AIOKafkaProducer

from immunreg.audit import AUDIT_SQL, CITIZEN_AT_SITE_KEY
from immunreg.config import Settings
from immunreg.domain import DomainError
from immunreg.eventstore.database import apply_schema, create_pool
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.relay import OutboxRelay
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import EventStore
from immunreg.http.auth import token_verifier
from immunreg.http.health import Check, Health, health_routes, metrics_route
from immunreg.http.idempotency import purge_idempotency_keys
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.logs import configure_logging
from immunreg.http.middleware import middlewares
from immunreg.http.problems import FieldError, Problem
from immunreg.http.ratelimit import RATE_LIMITER_KEY, RateLimiter
from immunreg.http.shutdown import SHUTDOWN_KEY, Shutdown
from immunreg.messaging.connection import client_options
from immunreg.messaging.consumer import EventConsumer
from immunreg.messaging.topics import ensure_topics, wait_for_kafka
from immunreg.observability.metrics import Metrics
from immunreg.runs import RUNS_SQL
from immunreg.service import Service
from immunreg.tasks import TASK_STOP_SECONDS, stop_tasks

SETTINGS_KEY = web.AppKey("settings", Settings)
STORE_KEY = web.AppKey("store", EventStore)
SIGNAL_KEY = web.AppKey("outbox_signal", OutboxSignal)
RELAY_KEY = web.AppKey("relay", OutboxRelay)
CONSUMER_KEY = web.AppKey("consumer", EventConsumer)
KAFKA_KEY = web.AppKey("kafka_probe", AIOKafkaProducer)

log = logging.getLogger(__name__)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn refusals from the pure domain into problem+json (the innermost middleware)."""
    try:
        return await handler(request)
    except DomainError as error:
        errors = [FieldError(f"body.{error.field}", error.message)] if error.field else []
        raise Problem(error.status, error.message, code=error.code, errors=errors) from error
    except ConcurrencyConflict as error:
        if request.headers.get("If-Match"):
            raise Problem.precondition_failed(
                "the resource changed since you read it (ETag mismatch)"
            ) from error
        raise Problem.conflict(
            "too many concurrent changes to this resource; try again", code="conflict"
        ) from error


def base_app(name: str, settings: Settings) -> web.Application:
    """The application every service's is built on: logging, metrics, the middleware
    stack, the rate limiter and graceful shutdown; no database, Kafka or routes yet
    (bench/floor.py serves a route on it alone, to price what every request pays)."""
    configure_logging(name)
    metrics = Metrics(name)
    app = web.Application(
        middlewares=[
            *middlewares(metrics, token_verifier(settings), settings.cors_origins),
            domain_errors,
        ]
    )
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = metrics
    app[RATE_LIMITER_KEY] = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app[SHUTDOWN_KEY] = Shutdown(settings.shutdown_timeout, settings.shutdown_drain_delay)
    return app


def create_app(service: Service, settings: Settings) -> web.Application:
    """A runnable aiohttp application for `service`."""
    app = base_app(service.name, settings)
    metrics = app[METRICS_KEY]
    shutdown = app[SHUTDOWN_KEY]
    app.cleanup_ctx.append(_database(service))
    app.cleanup_ctx.append(_kafka(service))
    app.cleanup_ctx.append(_relay)
    app.cleanup_ctx.append(_idempotency_housekeeping)
    if service.reactions is not None:
        app.cleanup_ctx.append(_consumer(service))
    app.cleanup_ctx.extend(service.resources)
    if service.citizen_at_site is not None:
        app[CITIZEN_AT_SITE_KEY] = service.citizen_at_site
    service.api.register(app)
    # The database is required; Kafka is not: without it commands still succeed
    # (their events wait in the outbox), so the instance stays in rotation, degraded.
    checks: dict[str, Check] = {
        "database": Check(lambda: _db_ok(app)),
        "kafka": Check(lambda: _kafka_ok(app), optional=True),
    }
    if service.reactions is not None:
        checks["consumers"] = Check(lambda: _consumers_ok(app), needs="kafka")
    for name, check in service.readiness.items():
        checks[name] = Check(functools.partial(check, app), needs="kafka")
    health = health_routes(checks, metrics=metrics, shutting_down=lambda: shutdown.started)
    app.add_routes([*health, metrics_route(metrics), *service.extra_routes])
    return app


def _database(service: Service) -> Any:
    async def database(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        pool = await create_pool(
            settings.database_url,
            settings.db_schema,
            max_size=20,
            timeouts=settings.database_timeouts(),
        )
        try:
            idempotency_file = Path(__file__).with_name("schema.sql")
            await apply_schema(
                pool,
                settings.db_schema,
                [idempotency_file, AUDIT_SQL, RUNS_SQL, *service.schema_files],
            )
            signal = OutboxSignal(settings.db_schema, pool)
            app[POOL_KEY] = pool
            app[SIGNAL_KEY] = signal
            app[STORE_KEY] = EventStore(pool, signal=signal, metrics=app[METRICS_KEY])
            yield
            await signal.close()
        finally:
            await close_pool(pool, app[SHUTDOWN_KEY].remaining(POOL_CLOSE_SECONDS))

    return database


# Every task using the pool has been cancelled by now; a connection still out
# after this long belongs to something stuck, and must not hold shutdown hostage.
POOL_CLOSE_SECONDS = 10.0


async def close_pool(pool: asyncpg.Pool, seconds: float = POOL_CLOSE_SECONDS) -> None:
    """Close gracefully; after `seconds`, terminate what is still checked out."""
    try:
        await asyncio.wait_for(pool.close(), seconds)
    except TimeoutError:
        log.warning("database connections still in use at shutdown; terminating them")
        pool.terminate()


def _kafka(service: Service) -> Any:
    async def kafka(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        await wait_for_kafka(settings.kafka_bootstrap, seconds=60)
        await ensure_topics(settings.kafka_bootstrap, service.topics, settings.kafka_partitions)
        # A plain producer kept open only to answer readiness probes cheaply.
        probe = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            **client_options(),
        )
        try:
            await probe.start()
            app[KAFKA_KEY] = probe
            yield
        finally:
            # Bounded: with Kafka down, stopping a client may wait for requests in flight.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(probe.stop(), app[SHUTDOWN_KEY].remaining(5.0))

    return kafka


async def _relay(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    relay = OutboxRelay(
        settings.database_url,
        settings.db_schema,
        settings.kafka_bootstrap,
        signal=app[SIGNAL_KEY],
        metrics=app[METRICS_KEY],
        batch_size=settings.relay_batch_size,
        poll_interval=settings.relay_poll_interval,
    )
    app[RELAY_KEY] = relay
    # On shutdown the relay first publishes what is committed (the consumers,
    # stopped before it, may have added to the outbox), within the deadline.
    async with background_task(relay.run(), finish=relay.finish, shutdown=app[SHUTDOWN_KEY]):
        yield


# Clients retry within minutes; a day of keys is generous and keeps the table small.
IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)


async def _idempotency_housekeeping(app: web.Application) -> AsyncIterator[None]:
    async def purge_hourly() -> None:
        while True:
            try:
                await purge_idempotency_keys(app[POOL_KEY], IDEMPOTENCY_KEY_LIFETIME)
            except Exception:
                log.exception("purging idempotency keys failed")
            await asyncio.sleep(3600)

    async with background_task(purge_hourly(), shutdown=app[SHUTDOWN_KEY]):
        yield


def _consumer(service: Service) -> Any:
    async def consumer(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS_KEY]
        assert service.reactions is not None
        loop = EventConsumer(
            app[POOL_KEY],
            settings.kafka_bootstrap,
            group_id=settings.db_schema,
            reactions=service.reactions,
            metrics=app[METRICS_KEY],
            signal=app[SIGNAL_KEY],
            max_attempts=settings.consumer_max_attempts,
            backoff=settings.consumer_backoff,
        )
        app[CONSUMER_KEY] = loop
        # On shutdown the consumer stops between batches and leaves its group.
        async with background_task(loop.run(), finish=loop.finish, shutdown=app[SHUTDOWN_KEY]):
            yield

    return consumer


@contextlib.asynccontextmanager
async def background_task(
    coroutine: Coroutine[Any, Any, None],
    *,
    finish: Callable[[], None] | None = None,
    shutdown: Shutdown | None = None,
) -> AsyncIterator[None]:
    """Run `coroutine` as a task for the life of a cleanup context.

    On exit `finish` (if given) asks it to wind up and it gets what is left of the
    shutdown deadline to return by itself; then it is cancelled.
    """
    task = asyncio.create_task(coroutine)
    try:
        yield
    finally:
        budget = shutdown.remaining(TASK_STOP_SECONDS) if shutdown else TASK_STOP_SECONDS
        if finish is not None and not task.done():
            finish()
            await asyncio.wait([task], timeout=budget)
            budget = shutdown.remaining(TASK_STOP_SECONDS) if shutdown else TASK_STOP_SECONDS
        # At least a moment to unwind after cancel, even past the deadline.
        await stop_tasks([task], max(budget, 1.0))


async def _db_ok(app: web.Application) -> bool:
    return bool(await app[POOL_KEY].fetchval("SELECT 1") == 1)


async def _kafka_ok(app: web.Application) -> bool:
    probe = app[KAFKA_KEY]
    return bool(await probe.client.fetch_all_metadata())


async def _consumers_ok(app: web.Application) -> Health:
    # Not joined before the first assignment is start-up (not ready); after it,
    # Kafka is down or the group rebalances: degraded, not out of rotation.
    consumer = app[CONSUMER_KEY]
    if consumer.joined.is_set():
        return Health.OK
    return Health.DEGRADED if consumer.has_joined else Health.FAILED
