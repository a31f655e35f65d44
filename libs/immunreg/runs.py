"""Background runs: long work that a request accepts (202 + `Location`) and a task does.

A run is a row of `background_runs` (runs.sql, in every service's schema) that moves

    queued -> running -> completed | failed

and carries its parameters, its progress while running (what the work reports), its
timings, and its result or error. `BackgroundRuns` is one kind of run in one service:
`submit` records a run as queued (before the 202 is sent, so an accepted run is never
lost) and wakes the worker; `run_forever` is the worker, started and stopped with the
app (`background_task` in a cleanup context of the app factory), which takes queued runs
oldest first, one at a time per process, through `work_off_forever`.

`work_off_forever` is the one loop of every job that does work accepted earlier (supply's
allocation planner, the runs here): look for pending items, handle each, then wait until
woken or the interval passes. Looking again on a timer is the source of truth (a wake-up
is only a shortcut), so work accepted by another replica, or before a restart, is found
too.

Crash rule. The worker holds a session advisory lock named after the run for as long
as it runs it, on a connection of its own. A run found `running` whose lock is free has
lost its process (killed, crashed, its database connection cut): the next look of any
replica's worker (at start, then every `interval`) marks it `failed` with the error
"interrupted". A graceful shutdown marks its run so at once. An interrupted run is never
resumed by itself: whatever it committed stays committed (the work must commit in
units that are each complete, exactly once), and the next run starts from what is left.
Queued runs survive a restart: they were accepted, so they are run then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from immunreg.contracts.envelope import new_id_text
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import database_unavailable
from immunreg.eventstore.locks import session_lock
from immunreg.structs import Struct

log = logging.getLogger(__name__)

RUNS_SQL = Path(__file__).with_name("runs.sql")

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
# Which status may follow which (each move is one guarded UPDATE).
TRANSITIONS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING}),
    RUNNING: frozenset({COMPLETED, FAILED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
}
INTERRUPTED = "interrupted: the process running it stopped before it finished"

# Progress is written at most this often (and always at the end): a run reporting
# every batch must not turn into a stream of UPDATEs of one row.
PROGRESS_EVERY_SECONDS = 0.25

_json = msgspec.json.Encoder()


async def work_off_forever(
    what: str,
    look: Callable[[], Awaitable[None]],
    wake: asyncio.Event,
    interval: float,
) -> None:
    """Call `look` (which handles whatever is pending) now, when `wake` is set, and at
    least every `interval` seconds; a failure is logged and the loop goes on."""
    while True:
        wake.clear()
        try:
            await look()
        except Exception as error:  # the job must outlive any one failure
            level = logging.WARNING if database_unavailable(error) else logging.ERROR
            log.log(level, "%s failed; trying again later", what, exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval)


class RunRecord(Struct):
    """A run as stored."""

    run_id: str
    kind: str
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    requested_by: str | None
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far, while running; None until started)."""
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return round(time.time() - self.started_at.timestamp(), 3)
        return round((end - self.started_at).total_seconds(), 3)


_COLUMNS = (
    "run_id, kind, status, params::text AS params, progress::text AS progress, "
    "result::text AS result, error, requested_by, requested_at, started_at, finished_at"
)


def _record(row: asyncpg.Record) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        kind=row["kind"],
        status=row["status"],
        params=msgspec.json.decode(row["params"]),
        progress=msgspec.json.decode(row["progress"]),
        result=None if row["result"] is None else msgspec.json.decode(row["result"]),
        error=row["error"],
        requested_by=row["requested_by"],
        requested_at=row["requested_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


class Progress:
    """What a running run hands its work: report progress, read what it reported."""

    def __init__(self, pool: asyncpg.Pool, run_id: str) -> None:
        self._pool = pool
        self._run_id = run_id
        self._written_at = 0.0
        self._later: asyncio.Task[None] | None = None
        self.latest: dict[str, Any] = {}

    async def report(self, progress: Mapping[str, Any]) -> None:
        """Keep `progress` as the run's: written now, or (when written very recently)
        as soon as PROGRESS_EVERY_SECONDS have passed, so the last report is never lost."""
        self.latest = dict(progress)
        wait = self._written_at + PROGRESS_EVERY_SECONDS - time.monotonic()
        if wait <= 0:
            await self._write()
        elif self._later is None or self._later.done():
            self._later = asyncio.create_task(self._write_after(wait))

    async def _write_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._write()

    async def _write(self) -> None:
        self._written_at = time.monotonic()
        await self._pool.execute(
            "UPDATE background_runs SET progress = $2::text::jsonb "
            "WHERE run_id = $1 AND status = 'running'",
            self._run_id,
            _json.encode(self.latest).decode(),
        )

    async def close(self) -> None:
        """Stop a pending write (the run's end writes the last progress itself)."""
        if self._later is not None:
            self._later.cancel()
            with contextlib.suppress(BaseException):
                await self._later


# The work of a run: its record (parameters) and a progress handle in, its result out.
Work = Callable[[RunRecord, Progress], Awaitable[Mapping[str, Any]]]


class BackgroundRuns:
    """One kind of background run in one service (see the module doc)."""

    def __init__(self, pool: asyncpg.Pool, kind: str, work: Work, *, interval: float = 2.0) -> None:
        self.pool = pool
        self.kind = kind
        self.work = work
        self.interval = interval
        self.wake = asyncio.Event()

    async def submit(
        self,
        params: Mapping[str, Any],
        *,
        requested_by: str | None = None,
        run_id: str | None = None,
    ) -> RunRecord:
        """Record a queued run and wake the worker; the run as recorded.

        With `run_id` (a name the caller derives, e.g. one per night), submitting again
        records nothing and answers the run already there, in whatever state it is.
        """
        row = await self.pool.fetchrow(
            f"INSERT INTO background_runs (run_id, kind, status, params, requested_by) "
            f"VALUES ($1, $2, 'queued', $3::text::jsonb, $4) ON CONFLICT (run_id) DO NOTHING "
            f"RETURNING {_COLUMNS}",
            run_id or new_id_text(),
            self.kind,
            _json.encode(dict(params)).decode(),
            requested_by,
        )
        if row is None:
            assert run_id is not None  # a fresh id never collides
            existing = await self.get(run_id)
            assert existing is not None, f"run id {run_id} is taken by another kind"
            return existing
        self.wake.set()
        return _record(row)

    async def get(self, run_id: str) -> RunRecord | None:
        """The run, if it is one of this kind."""
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM background_runs WHERE run_id = $1 AND kind = $2",
            run_id,
            self.kind,
        )
        return None if row is None else _record(row)

    async def run_forever(self) -> None:
        """The worker: fail orphaned runs, then run every queued one; forever."""
        await work_off_forever(f"{self.kind} runs", self.look, self.wake, self.interval)

    async def look(self) -> None:
        """One look: interrupted runs are marked failed, queued runs are run in turn."""
        await self.fail_interrupted()
        while await self._run_next():
            pass

    async def fail_interrupted(self) -> int:
        """Mark failed every running run whose process is gone (its lock is free)."""
        ids = await self.pool.fetch(
            "SELECT run_id FROM background_runs WHERE kind = $1 AND status = 'running'",
            self.kind,
        )
        failed = 0
        async with self.pool.acquire() as conn:
            for row in ids:
                async with session_lock(conn, _lock_name(row["run_id"])) as free:
                    if free:
                        failed += await _finish(conn, row["run_id"], FAILED, error=INTERRUPTED)
        if failed:
            log.warning("interrupted runs marked failed", extra={"kind": self.kind, "n": failed})
        return failed

    async def _run_next(self) -> bool:
        """Run the oldest queued run that no other worker holds; whether there was one."""
        queued = await self.pool.fetch(
            "SELECT run_id FROM background_runs WHERE kind = $1 AND status = 'queued' "
            "ORDER BY requested_at LIMIT 20",
            self.kind,
        )
        for candidate in queued:
            run_id = candidate["run_id"]
            async with (
                self.pool.acquire() as holder,
                session_lock(holder, _lock_name(run_id)) as got,
            ):
                if not got:
                    continue  # another worker is starting it
                row = await holder.fetchrow(
                    f"UPDATE background_runs SET status = 'running', started_at = now() "
                    f"WHERE run_id = $1 AND status = 'queued' RETURNING {_COLUMNS}",
                    run_id,
                )
                if row is not None:
                    await self._execute(holder, _record(row))
                    return True
        return False

    async def _execute(self, holder: Connection, record: RunRecord) -> None:
        progress = Progress(self.pool, record.run_id)
        try:
            result = await self.work(record, progress)
        except asyncio.CancelledError:
            await progress.close()
            # Shutting down: say so now rather than leave it to the next start.
            await asyncio.wait_for(
                _finish(holder, record.run_id, FAILED, progress.latest, error=INTERRUPTED), 2.0
            )
            raise
        except Exception as error:
            await progress.close()
            log.exception("run failed", extra={"kind": self.kind, "run_id": record.run_id})
            await _finish(
                holder,
                record.run_id,
                FAILED,
                progress.latest,
                error=f"{type(error).__name__}: {error}"[:500],
            )
            return
        await progress.close()
        await _finish(holder, record.run_id, COMPLETED, progress.latest, result=result)


def _lock_name(run_id: str) -> str:
    return f"immunreg-run:{run_id}"


async def _finish(
    conn: Connection,
    run_id: str,
    status: str,
    progress: Mapping[str, Any] | None = None,
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> int:
    """Move a running run to `status`; 1 if it moved, 0 if it was not running."""
    assert status in TRANSITIONS[RUNNING]
    done = await conn.execute(
        "UPDATE background_runs SET status = $2, finished_at = now(), error = $3, "
        "result = $4::text::jsonb, progress = coalesce($5::text::jsonb, progress) "
        "WHERE run_id = $1 AND status = 'running'",
        run_id,
        status,
        error,
        None if result is None else _json.encode(dict(result)).decode(),
        None if not progress else _json.encode(dict(progress)).decode(),
    )
    return int(done.split()[-1])
