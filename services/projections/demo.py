"""`make run`: projections make no data of their own; this says what they show of the demo's.

Runs last, after the other services' demo data has flowed through Kafka.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def load(urls: dict[str, str]) -> str:
    """A one-line summary: people with dose 1, daily doses, freshness, where the dashboard is."""
    base = urls["projections"]
    deadline = time.monotonic() + 60
    coverage: Any = None
    while time.monotonic() < deadline:
        try:
            coverage = _get(f"{base}/v1/coverage?group_by=district")
        except (urllib.error.URLError, OSError):
            coverage = None
        if coverage and coverage["fresh_as_of"]:
            break
        time.sleep(1)
    if not coverage:
        return f"no answer yet; dashboard at {base}/"
    daily = _get(f"{base}/v1/doses/daily")
    return (
        f"{coverage['total']['people'] or 0:,} people with dose 1, {daily['total']:,} doses "
        f"(fresh as of {coverage['fresh_as_of']}); dashboard at {base}/ "
        "(for stock, bookings and safety: `immunreg token --role public_health`, "
        f"then {base}/#token=<token>)"
    )
