"""Pause CPython's cyclic garbage collector while a bulk load builds acyclic objects.

Why: reading a million rows allocates millions of container objects (asyncpg Records,
the lists their arrays decode to, the lists that collect the results). Each allocation
burst triggers collections, and every full collection walks everything still alive,
so a national waiting list spent about half of its client CPU in the collector
(booking's waiting list at 1,000,000: 15-18 s of CPU with the collector, 7-8 s
without). The objects built are acyclic: reference counting frees them, so nothing
leaks while the collector waits.

The collector is process-wide: nested or concurrent pauses (threads, tasks) are
counted, and it is re-enabled when the last one ends, and only if it was enabled when
the first began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """How many pauses are running, and whether the collector ran before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False


_pauses = _Pauses()


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic collector off for the block (reference counting still frees)."""
    with _pauses.lock:
        if _pauses.depth == 0:
            _pauses.was_enabled = gc.isenabled()
            gc.disable()
        _pauses.depth += 1
    try:
        yield
    finally:
        with _pauses.lock:
            _pauses.depth -= 1
            if _pauses.depth == 0 and _pauses.was_enabled:
                gc.enable()
