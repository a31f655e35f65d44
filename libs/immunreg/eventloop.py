"""The event loop a long-running process serves on: uvloop unless told otherwise.

`IMMUNREG_EVENT_LOOP` is `uvloop` (the default) or `asyncio` (the standard library's
loop, to rule uvloop out when chasing a problem). Measured in the same run, both
ways: bench/http_rates.py `--event-loops` (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import os

EVENT_LOOPS = ("uvloop", "asyncio")
DEFAULT_EVENT_LOOP = "uvloop"


def event_loop_setting() -> str:
    """`IMMUNREG_EVENT_LOOP`, checked: a start-up failure naming it when it is neither."""
    value = os.environ.get("IMMUNREG_EVENT_LOOP", "").strip() or DEFAULT_EVENT_LOOP
    if value not in EVENT_LOOPS:
        raise RuntimeError(
            f"IMMUNREG_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, not {value!r}"
        )
    return value


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop of the kind `IMMUNREG_EVENT_LOOP` names (not yet running, not installed)."""
    if event_loop_setting() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
