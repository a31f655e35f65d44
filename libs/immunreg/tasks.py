"""Background tasks: the loop that works off a queue, and stopping tasks within a bound.

`work_off_forever` is the one loop of every job that does work accepted earlier (supply's
allocation planner, booking's scheduling runs through immunreg.runs): look for pending
items, handle each, then wait until woken or the interval passes. Looking again on a
timer is the source of truth (a wake-up is only a shortcut), so work accepted by
another replica, or before a restart, is found too.

Committed work is safe in PostgreSQL, so a clean-up that hangs (a Kafka client that
never finishes stopping, say) must not hold a process or a test run hostage. A task
that does not stop in time is abandoned and logged with the stack it is stuck in, so
the hang can be found.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from immunreg.eventstore.errors import database_unavailable

log = logging.getLogger(__name__)

# How long a cancelled task may take to finish its clean-up (leave a consumer group,
# abort a Kafka transaction) before shutdown goes on without it.
TASK_STOP_SECONDS = 15.0


async def stop_tasks(
    tasks: Collection[asyncio.Task[Any]], seconds: float = TASK_STOP_SECONDS
) -> None:
    """Cancel `tasks` and wait at most `seconds` for them; log failures and stuck ones."""
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        stack = io.StringIO()
        task.print_stack(file=stack)
        log.warning(
            "task did not stop within %.0f s; abandoned",
            seconds,
            extra={"task": task.get_name(), "stack": stack.getvalue()},
        )
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task failed", exc_info=task.exception())


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
