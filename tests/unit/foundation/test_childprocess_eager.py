"""An eager child's reports are read as the child writes them, however busy the parent's
event loop: a child streaming its work (booking's planner) never waits for the pipe."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from immunreg.childprocess import follow_reports, start_child

CHILD = "tests.unit.foundation.chatty_child"


def exited(pid: int) -> bool:
    """Whether the process has ended (gone, or a zombie not waited for yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "not_eager"])
async def test_an_eager_child_writes_all_while_the_parents_loop_is_busy(eager: bool) -> None:
    process = await start_child(CHILD, reports=True, eager=eager)
    assert process.stdout is not None and process.stdin is not None
    # The loop busy (as a committer's is between two turns): only a thread reads now.
    deadline = time.monotonic() + 5
    while not exited(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # noqa: ASYNC251 - the point: the loop is blocked
    assert exited(process.pid) is eager
    seen: list[Any] = []

    async def progress(value: Any) -> None:
        seen.append(value["i"])

    outcome = await follow_reports(process.stdout, progress)
    process.stdin.close()
    await asyncio.wait_for(process.wait(), 20)
    assert outcome == {"result": "done"} and seen == list(range(40))
