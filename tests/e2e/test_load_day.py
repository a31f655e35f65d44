"""The quick national day (`python -m loadtests.national_day --quick`) as a user runs it:
every service its own process, the load from another, the books checked at the end.

Sanity only: the books balance, nothing was answered 5xx, every step of the day
happened and the report was written. No timing threshold: the figures are the
report's, read by people (docs/load-national-day.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

from immunreg.paths import REPO_ROOT

REPORTS = REPO_ROOT / "loadtests" / "reports"
CHARTS = (
    "throughput.png",
    "latency.png",
    "consumer_lag.png",
    "outbox_backlog.png",
    "cpu.png",
    "memory.png",
    "freshness.png",
)


def test_a_quick_national_day_balances_its_books(infra: dict[str, str]) -> None:
    before = set(REPORTS.glob("*-*"))
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.national_day", "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    written = sorted(set(REPORTS.glob("*-*")) - before)
    assert len(written) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    folder = written[0]
    figures = json.loads((folder / "figures.json").read_text())
    books = figures["books"]
    assert books["problems"] == []
    assert figures["server_errors"] == 0
    assert figures["unanswered"] == 0
    assert result.returncode == 0, figures["verdict"]
    # Every step of the day reached the system.
    for kind in ("registration", "dose", "scheduling_run", "recall", "correction"):
        assert books[f"{kind} accepted"] > 0, kind
    assert books["appointments read as booked"] > 0
    assert books["freshness probes"] == figures["freshness"]["probes"] > 0
    assert books["doses in projections"] == books["dose accepted"]
    summary = (folder / "summary.md").read_text()
    assert "PASSED" in summary
    # Profiled, or the reason it was not (py-spy may not attach, which fails nothing).
    profiled = summary.split("## Where the time went", 1)[1].split("## Charts", 1)[0]
    assert "### booking" in profiled
    assert "](profile-booking.svg)" in profiled or "No profile taken: " in profiled
    for chart in CHARTS:
        assert (folder / chart).stat().st_size > 0, chart
        assert f"]({chart})" in summary
