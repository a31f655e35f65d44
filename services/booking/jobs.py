"""Booking's recurring jobs: the nightly scheduling run and the no-show sweep.

Each is a loop that calls a command of handlers.py at its time; app.py starts them as
background resources when BOOKING_SCHEDULE_ENABLED / BOOKING_NO_SHOW_ENABLED allow
(config.py). Every replica runs the loops; the nightly run takes an advisory lock only
so that replicas do not all do the same work (concurrent runs are safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import asyncpg

from immunreg.eventstore.locks import session_lock
from immunreg.eventstore.store import EventStore

from .config import BookingConfig
from .handlers import mark_no_shows, run_scheduler
from .schemas import RunSummary

log = logging.getLogger(__name__)


def seconds_until(at: datetime, now: datetime) -> float:
    return max((at - now).total_seconds(), 0.0)


def next_run_at(now: datetime, config: BookingConfig) -> datetime:
    """The next local time the nightly run starts (today's if it is still ahead)."""
    local = now.astimezone(config.timezone)
    candidate = datetime.combine(local.date(), config.schedule_at, tzinfo=config.timezone)
    if candidate <= local:
        candidate = datetime.combine(
            local.date() + timedelta(days=1), config.schedule_at, tzinfo=config.timezone
        )
    return candidate


async def nightly_runs(
    store: EventStore,
    config: BookingConfig,
    on_summary: Callable[[RunSummary], None] | None = None,
) -> None:
    """Run the scheduler every night at SCHEDULE_AT for the next SCHEDULE_HORIZON_DAYS."""
    while True:
        now = config.now()
        await asyncio.sleep(seconds_until(next_run_at(now, config), now))
        try:
            async with _leader(store.pool, "booking-nightly-run") as leader:
                if leader:
                    today = config.today()
                    summary = await run_scheduler(
                        store,
                        from_day=today + timedelta(days=1),
                        horizon_days=config.schedule_horizon_days,
                        today=today,
                        config=config,
                        trigger="nightly",
                    )
                    if on_summary is not None:
                        on_summary(summary)
        except Exception:
            log.exception("the nightly scheduling run failed")
        await asyncio.sleep(1)


async def no_show_sweeps(store: EventStore, config: BookingConfig) -> None:
    """Mark no-shows every NO_SHOW_INTERVAL seconds."""
    while True:
        try:
            marked = await mark_no_shows(store, now=config.now(), config=config)
            if marked:
                log.info("no-shows marked", extra={"count": marked})
        except Exception:
            log.exception("the no-show sweep failed")
        await asyncio.sleep(config.no_show_interval)


@contextlib.asynccontextmanager
async def _leader(pool: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """A session advisory lock held while the block runs: one replica does the work."""
    async with pool.acquire() as conn, session_lock(conn, name) as got:
        yield got
