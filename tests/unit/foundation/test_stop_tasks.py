"""Background tasks stop within a bound: a stuck clean-up is abandoned, with its stack logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from immunreg.tasks import stop_tasks


async def test_cooperative_tasks_are_cancelled_and_awaited() -> None:
    task = asyncio.create_task(asyncio.sleep(60))
    await stop_tasks([task], seconds=5)
    assert task.cancelled()


async def test_a_task_stuck_in_its_clean_up_is_abandoned_with_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await release.wait()  # a clean-up that never finishes on its own

    task = asyncio.create_task(stubborn(), name="stubborn-consumer")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="immunreg.tasks"):
        await stop_tasks([task], seconds=0.2)
    # It returned (a hang would end in the suite's timeout) and left the task running.
    assert not task.done()
    # Only this task's record: other tasks of the session's loop may log meanwhile.
    [record] = [r for r in caplog.records if getattr(r, "task", None) == "stubborn-consumer"]
    assert record.task == "stubborn-consumer"  # type: ignore[attr-defined]
    assert "release.wait()" in record.stack  # type: ignore[attr-defined]
    release.set()  # let it finish its clean-up: the cancellation then completes
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="immunreg.tasks"):
        await stop_tasks([task], seconds=1)
    assert any(
        r.name == "immunreg.tasks" and r.exc_info and "boom" in str(r.exc_info[1])
        for r in caplog.records
    )
