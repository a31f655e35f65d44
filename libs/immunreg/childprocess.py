"""Child processes with a lifeline: `python -m <module>` that stops when its parent goes.

Why: some work needs an interpreter of its own (a core, and an event loop the API does
not share): booking's scheduling runs, a rebuild's helper consumers. Such a child must
never outlive its parent: it would go on committing work that no process accounts for
(a run record marked interrupted, a model already summed or dropped).

The lifeline is the child's stdin, a pipe whose only writer is the parent. The parent
never closes it until it wants the child stopped, and the operating system closes it
when the parent's process ends in any way (stopped, crashed, SIGKILL), so the child
sees the end of its stdin exactly when it should stop. No signal to forward, no
heartbeat, no pid file.

Parent's side:

- `start_child(module, *args, payload=..., reports=..., eager=...)`: the child, its
  stdin kept open. `payload` (any picklable value: both ends are this code) is written
  to the stdin first, length-prefixed; with `reports` the child's stdout is a pipe of
  JSON lines, read with `follow_reports`; with `eager` too, a thread of the parent
  empties that pipe as fast as the child fills it (a child streaming its work, such as
  booking's planner, is never held up by a parent's busy event loop).
- `follow_reports(stdout, on_progress)`: each `{"progress": ...}` line handed to
  `on_progress`; the first other line (`{"result": ...}`, `{"error": ...}`) returned,
  or {} when the child exited without one.
- `stop_child` / `stop_children`: close the stdin and send SIGTERM (the child treats
  both as "stop now"), wait `grace` seconds, then SIGKILL (a killed child's open
  transaction is rolled back by PostgreSQL: it wrote nothing).

Child's side:

- `run_child(main)`: runs the child's coroutine on `loop_factory`'s loop, with SIGINT
  ignored (Ctrl-C reaches the whole process group; the parent decides when the child
  stops, and closes its stdin to say so).
- `received()`: the payload (read before the loop starts).
- `report(kind, value)`: one JSON line `{kind: value}` on stdout.
- `until_told_to_stop()`: returns when stdin ends or SIGTERM arrives;
  `cancelled_when_told_to_stop(work)`: `work`, cancelled (and waited for) if that
  happens first; `reported(work, ...)`: that, with its result or error reported, and
  the exit status to return.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import msgspec

log = logging.getLogger(__name__)

T = TypeVar("T")

# A report line is small (a run's counts are a few hundred bytes, a part of booking's
# plan a few hundred kilobytes); the limit only bounds a broken one.
LINE_LIMIT = 1 << 20
# An eager child's pipe: Linux's largest for anyone (/proc/sys/fs/pipe-max-size).
_EAGER_PIPE_BYTES = 1 << 20
_STDIN = 0
_LENGTH_BYTES = 8

_encoder = msgspec.json.Encoder()


# --- the parent's side ------------------------------------------------------------------


async def start_child(
    module: str, *args: str, payload: object = None, reports: bool = False, eager: bool = False
) -> asyncio.subprocess.Process:
    """`python -m module args...` with its stdin kept open as its lifeline; `payload`,
    when given, written to it first; its stdout a pipe of report lines if `reports`
    (else the parent's), emptied by a thread of this process if `eager`."""
    stdout: int | None = asyncio.subprocess.PIPE if reports else None
    if reports and eager:
        read_end, stdout = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # a smaller pipe only waits more
            fcntl.fcntl(stdout, fcntl.F_SETPIPE_SZ, _EAGER_PIPE_BYTES)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=stdout,
            limit=LINE_LIMIT,
        )
    finally:
        if reports and eager:
            assert stdout is not None
            os.close(stdout)  # the child's now
    if reports and eager:
        process.stdout = _emptied(read_end)
    if payload is not None:
        assert process.stdin is not None
        data = pickle.dumps(payload)
        process.stdin.write(len(data).to_bytes(_LENGTH_BYTES, "big") + data)
        await process.stdin.drain()
    return process


def _emptied(pipe: int) -> asyncio.StreamReader:
    """A stream of what arrives on `pipe`, read by a thread of its own: the pipe is
    emptied whenever data arrives, however long the event loop takes to read the
    stream (what it has not read yet waits in this process's memory)."""
    loop = asyncio.get_running_loop()
    stream = asyncio.StreamReader(limit=LINE_LIMIT)

    def hand(call: Callable[..., None], *args: Any) -> bool:
        try:
            loop.call_soon_threadsafe(call, *args)
        except RuntimeError:  # the loop is closed: nobody reads any more
            return False
        return True

    def empty() -> None:
        with open(pipe, "rb", buffering=0) as source:
            while data := source.read(_EAGER_PIPE_BYTES):
                if not hand(stream.feed_data, data):
                    return
        hand(stream.feed_eof)

    threading.Thread(target=empty, name="child-reports", daemon=True).start()
    return stream


async def follow_reports(
    lines: asyncio.StreamReader, on_progress: Callable[[Any], Awaitable[None]]
) -> dict[str, Any]:
    """Hand `on_progress` each progress report the child writes; its last report (a
    result or an error), or {} when it exited without one."""
    async for line in lines:
        message: dict[str, Any] = msgspec.json.decode(line)
        if "progress" in message:
            await on_progress(message["progress"])
        else:
            return message
    return {}


async def stop_child(process: asyncio.subprocess.Process, grace: float) -> int:
    """Tell the child to stop (stdin closed, SIGTERM); kill it if it has not exited
    within `grace` seconds. Its exit status (negative: the signal that ended it)."""
    if process.stdin is not None:
        process.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        return await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        log.warning(
            "a child process did not stop in %.0f s; killed", grace, extra={"pid": process.pid}
        )
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        return await process.wait()


async def stop_children(processes: Iterable[asyncio.subprocess.Process], grace: float) -> None:
    """`stop_child` for each, all at once (each stops in parallel with the others)."""
    await asyncio.gather(*(stop_child(process, grace) for process in processes))


# --- the child's side -------------------------------------------------------------------


def run_child(
    main: Coroutine[Any, Any, T],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """The child's life: `main` on a loop of `loop_factory` (asyncio's by default)."""
    # Ctrl-C reaches the whole process group: the parent decides when the child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def received() -> Any:
    """The payload the parent wrote to this process's stdin (`start_child`); call once,
    before anything else reads the stdin."""
    stdin = sys.stdin.buffer
    size = int.from_bytes(stdin.read(_LENGTH_BYTES), "big")
    return pickle.loads(stdin.read(size))


def report(kind: str, value: Any) -> None:
    """One report line for the parent's `follow_reports`: kind "progress", or the last
    one ("result", "error")."""
    out = sys.stdout.buffer
    out.write(_encoder.encode({kind: value}) + b"\n")
    out.flush()


async def until_told_to_stop() -> None:
    """Return when this process's stdin reaches its end (the parent closed it, or is
    gone) or SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    told = asyncio.Event()

    def stdin_readable() -> None:
        # Nothing but the payload is ever written: anything more is read and dropped.
        if not os.read(_STDIN, 4096):
            loop.remove_reader(_STDIN)
            told.set()

    # The SIGTERM handler stays: a SIGTERM sent with the stdin's close (stop_child)
    # must not kill the child after its stdin's end was seen first.
    loop.add_signal_handler(signal.SIGTERM, told.set)
    loop.add_reader(_STDIN, stdin_readable)
    try:
        await told.wait()
    finally:
        loop.remove_reader(_STDIN)


async def cancelled_when_told_to_stop(work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result; if the child is told to stop first, `work` is cancelled and
    waited for (its transactions rolled back), and CancelledError is raised."""
    task = asyncio.ensure_future(work)
    told = asyncio.ensure_future(until_told_to_stop())
    try:
        await asyncio.wait({task, told}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        told.cancel()
        if not task.done():
            task.cancel()
        # Wait for the work's clean-up in every case: the caller closes its pool next.
        await asyncio.wait({task, told})
    return task.result()


async def reported(
    work: Coroutine[Any, Any, Any], *, failed: str, extra: Mapping[str, object]
) -> int:
    """Do `work` until told to stop (`cancelled_when_told_to_stop`); report its result
    ("result") or its error ("error", logged as `failed` with `extra`); the child's exit
    status (0: done)."""
    try:
        result = await cancelled_when_told_to_stop(work)
    except asyncio.CancelledError:
        return 1
    except Exception as error:
        log.exception(failed, extra=dict(extra))
        report("error", f"{type(error).__name__}: {error}"[:500])
        return 1
    report("result", result)
    return 0
