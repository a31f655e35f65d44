"""Small scheduling runs through the service: from the 202 to `completed`, and their CPU.

Run with `.venv/bin/python -m bench.scheduling_small [--runs 6] [--citizens 100]`.

What a small run costs, the kind the day brings (the load test's day books 429
appointments over all its runs): booking as its own process (`IsolatedStack`, as
bench.scheduling), with bench.booking's 400 sites and their stock; before each run,
`--citizens` new waiting citizens written into its read model; then
`POST /v1/scheduling/runs` (202) and `GET /v1/scheduling/runs/{id}` every 10 ms until
`completed`. Per run: the time from sending the POST to the first look that shows
`completed` (so up to 10 ms late), the run's own `seconds`, and the CPU booking's
process used meanwhile, the worker processes it started and waited for included
(/proc: utime + stime + cutime + cstime).
The first run is reported apart (the first of a process pays for warming up).
Prints one JSON object; nothing goes to bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import aiohttp

from bench.booking import SEED, make_citizens, make_sites
from bench.common import progress
from bench.scheduling import DAYS, seed, write_citizens
from bench.stack import fresh_stack
from immunreg import localinfra
from immunreg.eventstore.database import create_pool
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import keys_dir
from services.booking.config import BookingConfig

DEFAULT_PORT_BASE = 26490
POLL_SECONDS = 0.01
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU of `pid` and of the children it has waited for, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command's closing parenthesis: utime is the 12th of them.
        fields = stat.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / _TICK


async def one_run(
    http: aiohttp.ClientSession, base: str, body: dict[str, Any], pid: int
) -> dict[str, Any]:
    cpu = cpu_seconds(pid)
    began = time.perf_counter()
    async with http.post(f"{base}/v1/scheduling/runs", json=body) as answer:
        assert answer.status == 202, await answer.text()
        location = answer.headers["Location"]
        view = await answer.json()
    while view["status"] in ("queued", "running"):
        await asyncio.sleep(POLL_SECONDS)
        async with http.get(base + location) as answer:
            view = await answer.json()
    wall = time.perf_counter() - began
    assert view["status"] == "completed", view
    return {
        "to_completed_ms": round(wall * 1000, 1),
        "run_seconds": view["seconds"],
        "booked": view["booked"],
        "considered": view["considered"],
        "booking_cpu_ms": round((cpu_seconds(pid) - cpu) * 1000),
        "timings": view["timings"],
    }


async def measure(stack: IsolatedStack, runs: int, per_run: int) -> dict[str, Any]:
    base = stack.urls["booking"]
    private, _ = ensure_dev_keys(keys_dir())
    admin = {"Authorization": f"Bearer {issue_token(private.read_bytes(), Role.ADMIN)}"}
    start = BookingConfig().today() + timedelta(days=1)
    rng = random.Random(SEED)
    sites, capacity, stock = make_sites(rng, start)
    citizens = make_citizens(rng, runs * per_run, start)
    pid = stack.processes[0].process.pid
    pool = await create_pool(stack.dsn, stack.schemas["booking"], min_size=1, max_size=2)
    seen: list[dict[str, Any]] = []
    try:
        await seed(
            base,
            admin,
            pool,
            citizens=citizens[:per_run],
            sites=sites,
            capacity=capacity,
            stock=stock,
            start=start,
        )
        body = {"from_day": start.isoformat(), "horizon_days": DAYS}
        async with aiohttp.ClientSession(headers=admin) as http:
            for n in range(runs):
                if n:
                    await write_citizens(pool, citizens[n * per_run : (n + 1) * per_run])
                seen.append(await one_run(http, base, body, pid))
                progress(f"run {n + 1}: {seen[-1]}")
    finally:
        await pool.close()
    later = seen[1:]
    return {
        "citizens_per_run": per_run,
        "first_run": seen[0],
        "runs": later,
        "to_completed_ms_median": statistics.median(r["to_completed_ms"] for r in later),
        "booking_cpu_ms_median": statistics.median(r["booking_cpu_ms"] for r in later),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduling_small", description=__doc__)
    parser.add_argument("--runs", type=int, default=6, help="runs, the first reported apart")
    parser.add_argument("--citizens", type=int, default=100, help="new waiting citizens per run")
    args = parser.parse_args(argv)
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    port = ("SCHEDULING_SMALL_PORT_BASE", DEFAULT_PORT_BASE)
    with fresh_stack(endpoints, "schedsmall", *port, names=["booking"]) as (stack, _):
        figures = asyncio.run(measure(stack, max(args.runs, 2), args.citizens))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
