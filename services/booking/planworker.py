"""A scheduling run's plan in a process of its own: `python -m services.booking.planworker`.

Why: a national plan is half a minute of pure Python on one core, and the commit of
its bookings is another core's work in the run's worker (runworker.py). Planned in the
worker, the commit waited for the whole plan; planned here, the worker commits the
first bookings while the rest is still being planned, and the run takes about the
longer of the two instead of their sum.

The planner is the run worker's child with a lifeline (immunreg.childprocess), the
service's grandchild:

- stdin: the worker writes the settings and what to plan (planning.PlanRequest), then
  keeps it open; its end (the worker stopped or gone) or SIGTERM stops the planner
  between two parts of the plan.
- stdout: {"progress": {"loaded": {...}}} once loaded, then one
  {"progress": {"part": planning.Part}} per part of the plan as it is made, then
  {"result": {"seconds": ...}} or {"error": "..."}.

It loads the waiting list and the supply itself (on a pool of its own), so nothing of
the size of the waiting list crosses the pipe but the bookings, explained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

import msgspec

from immunreg.childprocess import (
    follow_reports,
    received,
    report,
    reported,
    run_child,
    start_child,
    stop_child,
)
from immunreg.config import Settings
from immunreg.eventloop import new_event_loop
from immunreg.eventstore.database import create_pool

from . import readmodel
from .planning import Part, PlanRequest, Sink, explained_parts, load

# How long a planner told to stop may take to exit before it is killed.
STOP_SECONDS = 5.0


class PlannerFailed(RuntimeError):
    """The planner reported an error, or exited without a result."""


async def plan_in_a_process(
    settings: Settings, db: readmodel.Executor, request: PlanRequest, sink: Sink
) -> None:
    """A planning.Planner: plan `request` in a planner process, handing `sink` each
    part as it arrives. Cancelled, the planner is stopped first."""
    # Eager: the planner streams faster than this process's busy loop would read.
    process = await start_child(__name__, payload=(settings, request), reports=True, eager=True)
    assert process.stdout is not None

    async def heard(progress: dict[str, Any]) -> None:
        if "part" in progress:
            await sink.part(msgspec.convert(progress["part"], Part))
        else:
            loaded = progress["loaded"]
            await sink.loaded(loaded["considered"], loaded["seconds"])

    try:
        outcome = await follow_reports(process.stdout, heard)
        with contextlib.suppress(TimeoutError):  # done: it exits
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
    finally:
        if process.returncode is None:
            await stop_child(process, STOP_SECONDS)
    if "result" in outcome:
        await sink.planned(outcome["result"]["seconds"])
        return
    raise PlannerFailed(outcome.get("error") or f"the planner exited with {process.returncode}")


# --- the planner's side -----------------------------------------------------------------


async def _plan(settings: Settings, request: PlanRequest) -> dict[str, float]:
    pool = await create_pool(
        settings.database_url,
        settings.db_schema,
        min_size=1,
        max_size=1,
        timeouts=settings.database_timeouts(),
    )
    try:
        clock = time.perf_counter()
        citizens, supply = await load(pool, request)
        loaded = {"considered": len(citizens), "seconds": time.perf_counter() - clock}
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 2.0)
    report("progress", {"loaded": loaded})
    clock = time.perf_counter()
    for part in explained_parts(citizens, supply, request):
        report("progress", {"part": part})
        # The loop's turn between parts: a stop (stdin's end, SIGTERM) is seen here.
        await asyncio.sleep(0)
    return {"seconds": time.perf_counter() - clock}


def main() -> int:
    """The planner: read what to plan from stdin, plan it, stream it on stdout."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings, request = received()
    work = reported(
        _plan(settings, request), failed="planning failed", extra={"run_id": request.run_id}
    )
    return run_child(work, loop_factory=new_event_loop)


if __name__ == "__main__":
    sys.exit(main())
