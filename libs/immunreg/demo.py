"""Demo data for `make run`: each service that has some contributes it.

A service adds `services/<name>/demo.py` with `load(urls: dict[str, str]) -> str`
(returning a one-line summary). They run in the order the data flows
(citizens and stock before bookings, bookings before doses), over HTTP as a
client would; between steps the loader waits until every service has
published its outbox and its consumers have caught up, so each step sees
what the previous one caused.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import time
import urllib.error
import urllib.request

ORDER = ("registration", "inventory", "booking", "administration", "certificates", "projections")

_GAUGE = re.compile(
    r"^(immunreg_consumer_lag_messages|immunreg_outbox_backlog)(\{[^}]*\})? ([0-9.eE+-]+)$",
    re.MULTILINE,
)


def _busy(url: str) -> float:
    """Unpublished outbox rows plus consumer lag, as the service itself reports them."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return float("inf")
    return sum(float(match[2]) for match in _GAUGE.findall(text))


def wait_until_quiet(urls: dict[str, str], seconds: float = 60.0) -> bool:
    """Wait until no service has outbox backlog or consumer lag (twice in a row)."""
    deadline = time.monotonic() + seconds
    quiet_polls = 0
    while time.monotonic() < deadline:
        quiet_polls = quiet_polls + 1 if all(_busy(u) == 0 for u in urls.values()) else 0
        if quiet_polls >= 2:
            return True
        time.sleep(1.0)
    return False


def load_demo_data(urls: dict[str, str]) -> None:
    """Run every service's demo loader against the running services."""
    for name in ORDER:
        if name not in urls or importlib.util.find_spec(f"services.{name}.demo") is None:
            continue
        if not wait_until_quiet(urls):
            print("[demo] services still busy after 60 s; going on", file=sys.stderr)
        summary = importlib.import_module(f"services.{name}.demo").load(urls)
        print(f"[demo] {name}: {summary}", file=sys.stderr, flush=True)
