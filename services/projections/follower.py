"""The live service's follower: it reads from the active read model and follows a swap.

It reads the pointer (`read_models`, see models.py) every second. When the active model
changes it starts a consumer on the new one (which goes on from the positions the
rebuild stored), then stops the old consumer: the service follows a swap without a
restart. Every answer is read from one model, in one read-only snapshot, so it never
mixes two models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg

from immunreg.eventstore.database import (
    Connection,
    apply_schema,
    create_pool,
)
from immunreg.eventstore.relay import OutboxRelay
from immunreg.eventstore.signal import OutboxSignal
from immunreg.messaging.consumer import EventConsumer
from immunreg.observability.metrics import Metrics
from immunreg.tasks import stop_tasks

from .handlers import Sources, build_reactions
from .models import (
    MODEL_SQL,
    active_model,
    ensure_active_model,
)

log = logging.getLogger(__name__)


@dataclass
class LiveModel:
    """A model the service reads from, with its consumer (and relay for dead letters)."""

    schema: str
    pool: asyncpg.Pool
    consumer: EventConsumer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class Follower:
    """Keeps the service on the active model: consumes into it, reads from it."""

    def __init__(
        self,
        *,
        dsn: str,
        bootstrap: str,
        control_pool: asyncpg.Pool,
        control: str,
        sources: Sources,
        metrics: Metrics | None = None,
        interval: float = 1.0,
        batch_size: int = 1000,
        max_attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.dsn = dsn
        self.bootstrap = bootstrap
        self.control_pool = control_pool
        self.control = control
        self.sources = sources
        self.metrics = metrics
        self.interval = interval
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.current: LiveModel | None = None

    async def follow(self) -> None:
        """Attach to the active model if it is not the one held (creating the first)."""
        schema = await active_model(self.control_pool)
        if schema is None:
            schema = await ensure_active_model(self.dsn, self.control_pool, self.control)
        if self.current is not None and self.current.schema == schema:
            return
        attached = await self._attach(schema)
        previous, self.current = self.current, attached
        log.info(
            "following read model",
            extra={"schema": schema, "previous": previous.schema if previous else None},
        )
        if previous is not None:
            await self._detach(previous)

    async def run(self) -> None:
        """Follow the pointer until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the active read model failed; trying again")

    def ready(self) -> bool:
        """Whether the service follows a model whose consumer has joined its group."""
        return self.current is not None and self.current.consumer.joined.is_set()

    async def close(self) -> None:
        """Stop consuming and close the model's pool."""
        current, self.current = self.current, None
        if current is not None:
            await self._detach(current)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Connection]:
        """A connection to the active model in a read-only, repeatable-read transaction."""
        for _ in range(3):
            model = self.current
            if model is None:
                raise RuntimeError("no read model is attached yet")
            try:
                conn = await model.pool.acquire()
            except asyncpg.InterfaceError:
                if model is not self.current:
                    continue  # swapped while acquiring: read the new one
                raise
            try:
                async with conn.transaction(isolation="repeatable_read", readonly=True):
                    yield conn
            finally:
                await model.pool.release(conn)
            return
        raise RuntimeError("the read model kept changing")

    async def _attach(self, schema: str) -> LiveModel:
        pool = await create_pool(self.dsn, schema, min_size=1, max_size=8)
        try:
            await apply_schema(pool, schema, [MODEL_SQL])
            signal = OutboxSignal(schema)
            consumer = EventConsumer(
                pool,
                self.bootstrap,
                group_id=schema,
                reactions=build_reactions(self.sources),
                metrics=self.metrics,
                signal=signal,
                max_attempts=self.max_attempts,
                backoff=self.backoff,
                batch_size=self.batch_size,
            )
            # Dead letters go through the model's outbox; this relay publishes them.
            relay = OutboxRelay(self.dsn, schema, self.bootstrap, signal=signal, poll_interval=2.0)
        except BaseException:
            await pool.close()
            raise
        return LiveModel(
            schema,
            pool,
            consumer,
            [asyncio.create_task(consumer.run()), asyncio.create_task(relay.run())],
        )

    async def _detach(self, model: LiveModel) -> None:
        await stop_tasks(model.tasks)
        try:
            await asyncio.wait_for(model.pool.close(), timeout=10)
        except TimeoutError:
            model.pool.terminate()
