"""A scheduling run in a process of its own: `python -m services.booking.runworker`.

Why: planning and committing a national run is seconds of pure Python per 100,000
bookings. In the service's process it shared one interpreter (the GIL) and one event
loop with the API, the outbox relay publishing the run's events and the consumers, so
the run could never use more than one core, and the API waited on it. Here the run
gets an interpreter, an event loop and a small pool of its own; the service's
process keeps the run's record (immunreg.runs) and publishes what the run commits
(the worker's commits wake the relay with the cross-process NOTIFY, OutboxSignal).

The worker is a child process with a lifeline (immunreg.childprocess):

- stdin: the service writes the run's settings, configuration and record (the child's
  payload) and then keeps stdin open. Its end means the service is gone (stopped,
  crashed, killed): the worker cancels the run, so nothing is committed by a run whose
  record no process holds any more (the crash rule of immunreg.runs). SIGTERM does the
  same.
- stdout: one report line per progress report ({"progress": counts}), then
  {"result": counts} or {"error": "..."}. The service reports the progress as its own,
  so the run's record is written by the one process that holds it.

A small run does not pay for a process: `do_run` runs it in the service's process when
the waiting list is at most BOOKING_IN_PROCESS_RUN_MAX citizens (config.py: 1,000 by
default), where a worker's start (an interpreter and the service's imports, about half
a second) would be most of the run. Both ways run `jobs.scheduling_run` with the same
record and progress, so they give the same bookings and the same status resource.

Whatever the worker committed stays committed, each batch complete and exactly once
(handlers.run_scheduler), as when the run ran in the service's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Mapping
from typing import Any

import msgspec

from immunreg.childprocess import (
    cancelled_when_told_to_stop,
    follow_reports,
    received,
    report,
    run_child,
    start_child,
    stop_child,
)
from immunreg.config import Settings
from immunreg.eventloop import new_event_loop
from immunreg.eventstore.database import create_pool
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import EventStore
from immunreg.gcpause import paused_gc
from immunreg.runs import Progress, RunRecord

from . import readmodel
from .config import BookingConfig
from .jobs import scheduling_run
from .schemas import RunCounts

log = logging.getLogger(__name__)

# How long a worker told to stop may take to roll back and exit before it is killed.
STOP_SECONDS = 5.0


class WorkerFailed(RuntimeError):
    """The worker reported an error, or exited without a result."""


async def do_run(
    settings: Settings,
    store: EventStore,
    config: BookingConfig,
    record: RunRecord,
    progress: Progress,
) -> RunCounts:
    """Do the scheduling run `record` asks for: in this process when the waiting list is
    small (config.in_process_run_max), else in a worker process; its counts either way."""
    if await readmodel.waiting_at_most(store.pool, config.in_process_run_max):
        return await scheduling_run(store, config, record, progress.report)
    return await run_in_worker(settings, config, record, progress)


async def run_in_worker(
    settings: Settings, config: BookingConfig, record: RunRecord, progress: Progress
) -> RunCounts:
    """Do the scheduling run `record` asks for in a worker process; its counts.

    Cancelled (the service stopping), the worker is stopped first and its last
    progress read, so the caller records the run as far as it got, and no batch is
    committed after that."""
    process = await start_worker(settings, config, record)
    assert process.stdin is not None and process.stdout is not None
    outcome: dict[str, Any] = {}
    try:
        outcome = await follow_reports(process.stdout, progress.report)
        with contextlib.suppress(TimeoutError):  # done: it closes its pool and exits
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except asyncio.CancelledError:
        await stop_child(process, STOP_SECONDS)
        with contextlib.suppress(Exception):
            # What it sent before it stopped.
            await follow_reports(process.stdout, progress.report)
        raise
    finally:
        if process.returncode is None:
            await stop_child(process, STOP_SECONDS)
    if "result" in outcome:
        return msgspec.convert(outcome["result"], RunCounts)
    raise WorkerFailed(outcome.get("error") or f"the run's worker exited with {process.returncode}")


async def start_worker(
    settings: Settings, config: BookingConfig, record: RunRecord
) -> asyncio.subprocess.Process:
    """A worker process doing the run `record` asks for; its stdin stays open (the
    lifeline: closing it stops the run) and its stdout carries the reports
    (immunreg.childprocess.follow_reports)."""
    return await start_child(__name__, payload=(settings, config, record), reports=True)


# --- the worker's side ------------------------------------------------------------------


async def work(settings: Settings, config: BookingConfig, record: RunRecord) -> int:
    """The worker's run of `record`, reported on stdout; 0 when it completed."""
    pool = await create_pool(
        settings.database_url,
        settings.db_schema,
        min_size=1,
        max_size=max(config.commit_concurrency, 1) + 1,
        timeouts=settings.database_timeouts(),
    )
    signal_ = OutboxSignal(settings.db_schema, pool)  # wakes the service's relay

    async def progress(counts: Mapping[str, Any]) -> None:
        report("progress", dict(counts))

    try:
        # The collector off for the whole run. A national run holds a million citizens
        # and their plan while it allocates millions of short-lived rows, events and
        # envelopes, and every full collection walked all of them again: in a run of
        # 1,000,000 the collector took 13.1 s of the worker's CPU (8.0 s in 57 full
        # collections) and found 16 objects to free. Reference counting frees the run's
        # objects (acyclic), and the process ends with the run.
        with paused_gc():
            counts = await cancelled_when_told_to_stop(
                scheduling_run(EventStore(pool, signal=signal_), config, record, progress)
            )
        report("result", msgspec.structs.asdict(counts))
        return 0
    except asyncio.CancelledError:
        return 1
    except Exception as error:
        log.exception("scheduling run failed", extra={"run_id": record.run_id})
        report("error", f"{type(error).__name__}: {error}"[:500])
        return 1
    finally:
        await signal_.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 2.0)


def main() -> int:
    """The worker: read what to run from stdin, run it, report on stdout."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings, config, record = received()
    # The service's loop (uvloop by default): the standard library's writes the run's
    # COPY data to PostgreSQL's socket in Python, a fifth of the worker's time in py-spy.
    return run_child(work(settings, config, record), loop_factory=new_event_loop)


if __name__ == "__main__":
    sys.exit(main())
