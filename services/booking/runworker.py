"""A scheduling run in a process of its own: `python -m services.booking.runworker`.

Why: planning and committing a national run is seconds of pure Python per 100,000
bookings. In the service's process it shared one interpreter (the GIL) and one event
loop with the API, the outbox relay publishing the run's events and the consumers, so
the run could never use more than one core, and the API waited on it. Here the run
gets an interpreter, an event loop and a small pool of its own; the service's
process keeps the run's record (immunreg.runs) and publishes what the run commits
(the worker's commits wake the relay with the cross-process NOTIFY, OutboxSignal).

The protocol, over the child's standard streams:

- stdin: the service writes the run's settings, configuration and record (pickled,
  length-prefixed: both ends are this code) and then keeps stdin open. EOF means the
  service is gone (stopped, crashed, killed): the worker cancels the run, so nothing
  is committed by a run whose record no process holds any more (the crash rule of
  immunreg.runs). SIGTERM does the same.
- stdout: one JSON line per progress report ({"progress": counts}), then
  {"result": counts} or {"error": "..."}. The service reports the progress as its own,
  so the run's record is written by the one process that holds it.

Whatever the worker committed stays committed, each batch complete and exactly once
(handlers.run_scheduler), as when the run ran in the service's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, BinaryIO

import msgspec

from immunreg.config import Settings
from immunreg.eventloop import new_event_loop
from immunreg.eventstore.database import create_pool
from immunreg.eventstore.signal import OutboxSignal
from immunreg.eventstore.store import EventStore
from immunreg.runs import Progress, RunRecord

from .config import BookingConfig
from .jobs import scheduling_run
from .schemas import RunCounts

log = logging.getLogger(__name__)

# How long a worker told to stop may take to roll back and exit before it is killed.
STOP_SECONDS = 5.0
# A progress line is a RunCounts (a few hundred bytes); the limit only bounds a broken one.
LINE_LIMIT = 1 << 20

_encoder = msgspec.json.Encoder()


class WorkerFailed(RuntimeError):
    """The worker reported an error, or exited without a result."""


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
        outcome = await follow(process.stdout, progress.report)
        with contextlib.suppress(TimeoutError):  # done: it closes its pool and exits
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except asyncio.CancelledError:
        await _stop(process)
        with contextlib.suppress(Exception):
            await follow(process.stdout, progress.report)  # what it sent before it stopped
        raise
    finally:
        if process.returncode is None:
            await _stop(process)
    if "result" in outcome:
        return msgspec.convert(outcome["result"], RunCounts)
    raise WorkerFailed(outcome.get("error") or f"the run's worker exited with {process.returncode}")


async def start_worker(
    settings: Settings, config: BookingConfig, record: RunRecord
) -> asyncio.subprocess.Process:
    """A worker process doing the run `record` asks for; its stdin stays open (the
    lifeline: closing it stops the run) and its stdout carries the reports (`follow`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )
    assert process.stdin is not None
    payload = pickle.dumps((settings, config, record))
    process.stdin.write(len(payload).to_bytes(8, "big") + payload)
    await process.stdin.drain()
    return process


async def follow(
    lines: asyncio.StreamReader, report: Callable[[Mapping[str, Any]], Awaitable[None]]
) -> dict[str, Any]:
    """Hand `report` each progress line the worker writes; its last line (result or
    error), or {} when it exited without one."""
    async for line in lines:
        message: dict[str, Any] = msgspec.json.decode(line)
        if "progress" in message:
            await report(message["progress"])
        else:
            return message
    return {}


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ask the worker to stop (stdin closed, SIGTERM); kill it if it does not in time."""
    if process.stdin is not None:
        process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


# --- the worker's side ------------------------------------------------------------------


def _write(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(_encoder.encode(message) + b"\n")
    out.flush()


async def _work(settings: Settings, config: BookingConfig, record: RunRecord) -> int:
    out = sys.stdout.buffer
    loop = asyncio.get_running_loop()
    run = asyncio.current_task()
    assert run is not None

    def stdin_readable() -> None:
        if not os.read(0, 4096):  # EOF: the service is gone or wants the run stopped
            loop.remove_reader(0)
            run.cancel()

    loop.add_reader(0, stdin_readable)
    loop.add_signal_handler(signal.SIGTERM, run.cancel)
    pool = await create_pool(
        settings.database_url,
        settings.db_schema,
        min_size=1,
        max_size=max(config.commit_concurrency, 1) + 1,
        timeouts=settings.database_timeouts(),
    )
    signal_ = OutboxSignal(settings.db_schema, pool)  # wakes the service's relay

    async def report(progress: Mapping[str, Any]) -> None:
        _write(out, {"progress": dict(progress)})

    try:
        counts = await scheduling_run(EventStore(pool, signal=signal_), config, record, report)
        _write(out, {"result": msgspec.structs.asdict(counts)})
        return 0
    except asyncio.CancelledError:
        return 1
    except Exception as error:
        log.exception("scheduling run failed", extra={"run_id": record.run_id})
        _write(out, {"error": f"{type(error).__name__}: {error}"[:500]})
        return 1
    finally:
        await signal_.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 2.0)


def main() -> int:
    """The worker: read what to run from stdin, run it, report on stdout."""
    # Ctrl-C reaches the whole process group: the service decides when the run stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    stdin = sys.stdin.buffer
    size = int.from_bytes(stdin.read(8), "big")
    settings, config, record = pickle.loads(stdin.read(size))
    # The service's loop (uvloop by default): the standard library's writes the run's
    # COPY data to PostgreSQL's socket in Python, a fifth of the worker's time in py-spy.
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_work(settings, config, record))


if __name__ == "__main__":
    sys.exit(main())
