"""Booking's background work: scheduling runs, the nightly one, the no-show sweep.

A scheduling run is a background run (immunreg.runs): `POST /v1/scheduling/runs` and
the nightly loop submit one, and the runs worker app.py starts hands it to a worker
process of its own (runworker.py), which calls `scheduling_run`.
The nightly loop and the no-show sweep are started as background resources when
BOOKING_SCHEDULE_ENABLED / BOOKING_NO_SHOW_ENABLED allow (config.py). Every replica
runs the loops; the nightly run's id names the night, so it is submitted once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from immunreg.contracts.envelope import Metadata
from immunreg.eventstore.store import EventStore
from immunreg.runs import BackgroundRuns, RunRecord

from .config import BookingConfig
from .handlers import mark_no_shows, run_scheduler
from .planning import Planner, plan_here
from .schemas import RunCounts

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


async def nightly_runs(runs: BackgroundRuns, config: BookingConfig) -> None:
    """Submit a scheduling run every night at SCHEDULE_AT for the next
    SCHEDULE_HORIZON_DAYS; its id names the night, so replicas submit it once."""
    while True:
        now = config.now()
        await asyncio.sleep(seconds_until(next_run_at(now, config), now))
        try:
            today = config.today()
            await runs.submit(
                run_parameters(
                    trigger="nightly",
                    from_day=today + timedelta(days=1),
                    horizon_days=config.schedule_horizon_days,
                    today=today,
                ),
                run_id=f"nightly-{today.isoformat()}",
            )
        except Exception:
            log.exception("the nightly scheduling run could not be submitted")
        await asyncio.sleep(1)


def run_parameters(
    *,
    trigger: str,
    from_day: date,
    horizon_days: int,
    today: date,
    correlation_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A scheduling run's parameters, as its background run record keeps them."""
    return {
        "trigger": trigger,
        "from_day": from_day.isoformat(),
        "horizon_days": horizon_days,
        "today": today.isoformat(),
        "correlation_id": None if correlation_id is None else str(correlation_id),
    }


async def scheduling_run(
    store: EventStore,
    config: BookingConfig,
    record: RunRecord,
    progress: Callable[[Mapping[str, Any]], Awaitable[None]],
    planner: Planner = plan_here,
) -> RunCounts:
    """Do the scheduling run `record` asks for, handing `progress` its counts as it goes
    (immunreg.runs' `Progress.report`, or the worker's pipe to it); `planner` plans it
    (here, or in a planner process: planworker.py)."""
    params = record.params
    correlation = params.get("correlation_id")

    async def report(counts: RunCounts) -> None:
        await progress(msgspec.structs.asdict(counts))

    return await run_scheduler(
        store,
        run_id=record.run_id,
        from_day=date.fromisoformat(params["from_day"]),
        horizon_days=int(params["horizon_days"]),
        today=date.fromisoformat(params["today"]),
        config=config,
        metadata=Metadata(correlation_id=uuid.UUID(correlation) if correlation else None),
        report=report,
        planner=planner,
    )


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
