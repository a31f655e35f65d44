"""Loaded by every Python process `bench.gc_time` starts: times CPython's cyclic collector.

Each collection is timed through `gc.callbacks`; at exit the process appends one JSON
line to the file named by IMMUNREG_GC_TIMES: its argv, and per generation the seconds,
the collections and the objects they freed. Nothing is written without that variable.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from typing import Any

_PATH = os.environ.get("IMMUNREG_GC_TIMES")
_seconds = [0.0, 0.0, 0.0]
_collections = [0, 0, 0]
_freed = [0, 0, 0]
_began = [0.0]  # when the collection under way began


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _began[0] = time.perf_counter()
        return
    generation = info["generation"]
    _seconds[generation] += time.perf_counter() - _began[0]
    _collections[generation] += 1
    _freed[generation] += info.get("collected", 0)


def _write() -> None:
    assert _PATH is not None
    line = {
        "argv": sys.argv[:3],
        "pid": os.getpid(),
        "seconds": [round(s, 3) for s in _seconds],
        "collections": _collections,
        "freed": _freed,
    }
    with open(_PATH, "a", encoding="utf-8") as sink:
        sink.write(json.dumps(line) + "\n")


if _PATH:
    gc.callbacks.append(_timed)
    atexit.register(_write)
