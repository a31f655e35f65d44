"""Demo data for `make run`: each service that has some contributes it.

A service adds `services/<name>/demo.py` with `load(urls: dict[str, str]) -> str`
(returning a one-line summary); they run in service order over HTTP, as a
client would.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys


def load_demo_data(urls: dict[str, str]) -> None:
    """Run every service's demo loader against the running services."""
    for name in urls:
        module_name = f"services.{name}.demo"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        summary = module.load(urls)
        print(f"[demo] {name}: {summary}", file=sys.stderr, flush=True)
