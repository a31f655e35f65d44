"""Stopping background tasks within a bound.

This module imports nothing of immunreg's: the event store (its outbox signal), the
HTTP app and the child processes stop their tasks with it, so it must sit below all of
them (it imported immunreg.eventstore once, and importing it first then failed on the
cycle tasks -> eventstore -> eventstore.signal -> tasks). The loop that works off a
queue, which needs the event store's errors, is immunreg.runs' `work_off_forever`.

Committed work is safe in PostgreSQL, so a clean-up that hangs (a Kafka client that
never finishes stopping, say) must not hold a process or a test run hostage. A task
that does not stop in time is abandoned and logged with the stack it is stuck in, so
the hang can be found.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Collection
from typing import Any

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
