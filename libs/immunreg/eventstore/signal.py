"""Waking the outbox relay when new rows commit.

A NOTIFY inside the writing transaction takes a database-wide lock at commit
and serialises every writer, so appends never NOTIFY. Instead the process
that appended wakes its own relay directly, and at most a few times a second
sends one NOTIFY from a separate connection for relays in other processes.
Polling stays the source of truth; these are only hints.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from immunreg.tasks import stop_tasks


def channel_name(schema: str) -> str:
    """The LISTEN/NOTIFY channel of one service's outbox."""
    return f"immunreg_outbox_{schema}"


class OutboxSignal:
    """An in-process wake-up for the relay plus a debounced cross-process NOTIFY."""

    def __init__(self, schema: str, pool: asyncpg.Pool | None = None, debounce: float = 0.2):
        self.channel = channel_name(schema)
        self._pool = pool
        self._debounce = debounce
        self._event = asyncio.Event()
        self._notify_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows."""
        self._event.set()
        if self._pool is not None and not self._notify_pending:
            self._notify_pending = True
            task = asyncio.get_running_loop().create_task(self._notify_later())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _notify_later(self) -> None:
        await asyncio.sleep(self._debounce)
        self._notify_pending = False
        assert self._pool is not None
        with contextlib.suppress(Exception):  # a hint only: polling covers a lost one
            await self._pool.execute("SELECT pg_notify($1, '')", self.channel)

    def external(self, *_: object) -> None:
        """A LISTEN callback: another process appended."""
        self._event.set()

    async def wait(self, timeout: float) -> None:
        """Wait for a wake-up or the poll interval, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def close(self) -> None:
        """Cancel pending NOTIFY tasks."""
        await stop_tasks(list(self._tasks))
