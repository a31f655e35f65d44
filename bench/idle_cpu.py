"""CPU of every process with the whole stack up and no load: the fixed cost that a
request's CPU comes on top of.

Run with `.venv/bin/python -m bench.idle_cpu [--seconds 30] [--poll-intervals 0.1,0.5]`.
For each relay poll interval in turn (RELAY_POLL_INTERVAL; the relay also wakes on its
in-process signal and NOTIFY, so the poll is only the fallback) a fresh stack is started
as `bench.http_rates` starts it (`IsolatedStack`), left until no service has backlog or
lag, then each service's process, PostgreSQL (postmaster and backends) and Kafka are
read from /proc at the start and end of the idle window. Nothing is requested from the
services during the window (not even /metrics), so the figure is theirs alone.

Figures go to bench/results.json under "idle_cpu": per interval, per process, the mean
share of one core in percent, PostgreSQL and Kafka from the same stack beside them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

from bench.common import progress
from bench.results import postgres_version, record
from bench.stack import fresh_stack
from immunreg import localinfra
from immunreg.demo import wait_until_quiet
from immunreg.http.auth import ensure_dev_keys
from immunreg.paths import keys_dir
from loadtests.watch import _children, _stat, server_groups

SECTION = "idle_cpu"
# Beside bench.http_rates' ports, not on them: both may run in one checkout.
DEFAULT_PORT_BASE = 26380
SETTLE_SECONDS = 5.0


def _cpu_seconds(groups: dict[str, list[int]], with_children: set[str]) -> dict[str, float]:
    """CPU seconds used so far by each group's processes (and children, if named)."""
    used = {}
    for group, pids in groups.items():
        everyone = list(pids)
        if group in with_children:
            everyone += [c for p in pids for c in _children(p)]
        used[group] = sum(s[1] for s in (_stat(p, memory=False) for p in everyone) if s)
    return used


def idle_round(endpoints: dict[str, str], poll_interval: str, seconds: float) -> dict[str, Any]:
    """One fresh stack with relays polling every `poll_interval` s, idle for `seconds`."""
    settings = {"RELAY_POLL_INTERVAL": poll_interval}
    with fresh_stack(endpoints, "idle", "IDLE_PORT_BASE", DEFAULT_PORT_BASE, env=settings) as (
        stack,
        _,
    ):
        quiet = wait_until_quiet(stack.urls, 120)
        time.sleep(SETTLE_SECONDS)
        groups = {p.name: [p.process.pid] for p in stack.processes} | server_groups()
        progress(f"[poll {poll_interval} s] idle for {seconds:g} s")
        before, started = _cpu_seconds(groups, {"postgresql"}), time.monotonic()
        time.sleep(seconds)
        after, elapsed = _cpu_seconds(groups, {"postgresql"}), time.monotonic() - started
    cpu_pct = {g: round(100 * (after[g] - before[g]) / elapsed, 1) for g in groups}
    services = sum(v for g, v in cpu_pct.items() if g in stack.urls)
    return {
        "relay_poll_interval_s": float(poll_interval),
        "quiet_before_window": quiet,
        "seconds": round(elapsed, 1),
        "cpu_pct_of_one_core": cpu_pct,
        "services_total_cpu_pct": round(services, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_cpu")
    parser.add_argument("--seconds", type=float, default=30.0, help="idle window per stack")
    parser.add_argument(
        "--poll-intervals",
        default="0.1,0.5",
        help="relay poll intervals (s), one fresh stack each, in this order",
    )
    args = parser.parse_args(argv)
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    postgres = postgres_version(endpoints["DATABASE_URL"])
    rounds = [idle_round(endpoints, p, args.seconds) for p in args.poll_intervals.split(",")]
    record(SECTION, {"rounds": rounds}, postgres=postgres)
    for one in rounds:
        top = sorted(one["cpu_pct_of_one_core"].items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{g} {v:g}%" for g, v in top)
        total = one["services_total_cpu_pct"]
        print(f"poll {one['relay_poll_interval_s']:g} s: services {total:g}% of a core; {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
