"""`make load`: a country's vaccination day over HTTP, with the books checked at the end.

    python -m loadtests.national_day                 # 1% of Serbia, the day in 10 minutes
    python -m loadtests.national_day --quick         # 0.05%, the day in 30 s (inside make test)
    python -m loadtests.national_day --scale 0.05 --seconds 1200 --generators 2

1. Starts every service as its own process (`IsolatedStack`: own ports, schemas and
   Kafka topics) against the project's PostgreSQL and Kafka.
2. The eve (loadtests/day.py `eve`): sites, lots, shipments, the citizens due today.
3. The day (`DAY`): `--generators` load-generator processes, each its share, open loop,
   while a watch samples lag, outbox backlog, CPU and memory.
4. Waits until every outbox and consumer has drained (`--drain-seconds` at most).
5. Checks the books (tests/faults/books.py plus loadtests/books.py).
6. Writes the report to loadtests/reports/<time>-<git sha>/ (summary.md first).

Exit status 0 only when the books balance, nothing was answered 5xx or left
unanswered, and everything drained in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from immunreg import localinfra
from immunreg.config import local_port
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.demo import delivery_backlog
from immunreg.discovery import available_services
from immunreg.http.auth import ensure_dev_keys
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import REPO_ROOT, keys_dir
from immunreg.reference.calendar import today

from . import books, report
from .day import DayRun, Shard, eve
from .profile import Profiler, section
from .scenario import Day, national_day
from .traffic import Traffic
from .watch import Watch, server_groups

# Moved, like every local port, by IMMUNREG_PORT_OFFSET (a second checkout's load test).
# Low enough that offsets up to 6,600 stay below Linux's range for outgoing connections'
# local ports (32768-60999), where a client socket could hold a service's port.
DEFAULT_PORT_BASE = 26080
REPORTS = REPO_ROOT / "loadtests" / "reports"
# The quick form: big enough that every step happens (a recall, probes, runs), small
# enough for `make test`.
QUICK = {"scale": 0.0005, "seconds": 30.0}
# The profile window opens at the morning peak (09:00: registrations and doses both near
# their highest); 20 s by default, 3 s in the quick day (09:00-10:36 of its 30 s day).
PEAK_HOUR = 9.0


def _git(*args: str) -> str:
    found = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return found.stdout.strip()


def git_sha() -> str:
    """This checkout's commit (short), '+' when it has uncommitted changes."""
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return (_git("rev-parse", "--short", "HEAD") or "nogit") + ("+" if dirty else "")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.national_day")
    parser.add_argument("--scale", type=float, default=0.01, help="share of Serbia (1.0 = all)")
    parser.add_argument("--seconds", type=float, default=600.0, help="the day compressed into")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--generators", type=int, default=1, help="load-generator processes")
    parser.add_argument("--drain-seconds", type=float, default=120.0, help="bound on draining")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument(
        "--profile-seconds", type=float, default=20.0, help="py-spy window at 09:00 (0: off)"
    )
    parser.add_argument("--quick", action="store_true", help="0.05%% of Serbia in 30 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale, args.seconds, args.interval = QUICK["scale"], QUICK["seconds"], 1.0
        args.profile_seconds = min(args.profile_seconds, 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = datetime.now(UTC)
    folder = REPORTS / f"{started:%Y%m%dT%H%M%SZ}-{git_sha()}"
    folder.mkdir(parents=True, exist_ok=True)
    run_name = f"load_{uuid.uuid4().hex[:8]}"
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    names = available_services()
    port_base = local_port("LOAD_PORT_BASE", DEFAULT_PORT_BASE)
    print(f"[load] starting {', '.join(names)}; report in {folder}", flush=True)
    # Schemas and topics of its own (IsolatedStack), so the load never reaches `make run`'s
    # services (nor theirs it).
    stack = IsolatedStack.start(endpoints, names, port_base, run_name)
    os.environ[TOPIC_NAMESPACE_VARIABLE] = stack.namespace  # the books read the run's topics
    try:
        return _run(args, folder, stack, endpoints, started)
    finally:
        stack.stop()


def _run(
    args: argparse.Namespace,
    folder: Path,
    stack: IsolatedStack,
    endpoints: dict[str, str],
    started: datetime,
) -> int:
    day = national_day(args.scale, args.seed, args.seconds)
    urls = stack.urls
    day_date = today()
    print(
        f"[load] the eve: {len(day.sites)} sites, {len(day.lots)} lots, "
        f"{len(day.booked_for_today) + len(day.second_doses) + len(day.probes)} citizens",
        flush=True,
    )
    eve_started = time.monotonic()
    citizens = asyncio.run(_eve(day, urls, folder / "ledger-eve.jsonl", day_date))
    eve_seconds = time.monotonic() - eve_started
    (folder / "citizens.json").write_text(json.dumps(citizens))

    t0 = time.time() + 3.0
    generators = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loadtests.generator",
                f"--scale={args.scale}",
                f"--seed={args.seed}",
                f"--seconds={args.seconds}",
                f"--shard={index}",
                f"--of={args.generators}",
                f"--t0={t0}",
                f"--today={day_date.isoformat()}",
                f"--urls={json.dumps(urls)}",
                f"--citizens={folder / 'citizens.json'}",
                f"--out={folder / f'ledger-{index}.jsonl'}",
            ],
            cwd=REPO_ROOT,
            stdout=(folder / f"generator-{index}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for index in range(args.generators)
    ]
    groups = {p.name: [p.process.pid] for p in stack.processes}
    groups |= {f"load generator {i}": [g.pid] for i, g in enumerate(generators)}
    groups |= server_groups()
    print(f"[load] the day: {args.seconds:.0f} s, {args.generators} generator(s)", flush=True)
    services = {p.name: p.process.pid for p in stack.processes}
    profiler = Profiler(folder, services, t0 + day.at_hour(PEAK_HOUR), args.profile_seconds)
    if args.profile_seconds > 0:
        profiler.start()
    with (folder / "samples.jsonl").open("w") as samples:
        watch = Watch(samples, urls, groups, {"postgresql"}, args.interval, t0)
        watch.start()
        try:
            failed = [g for g in generators if g.wait(timeout=args.seconds + 300) != 0]
            day_ended = time.time() - t0
            drained = _drain(urls, args.drain_seconds)
        finally:
            watch.stop()
    profiles = profiler.finish()
    print(f"[load] drained after {drained} s; checking the books", flush=True)
    schemas = {**stack.schemas}
    env = {
        **os.environ,
        **endpoints,
        "PROJECTIONS_DB_SCHEMA": stack.schemas["projections"],
    }
    books_started = time.monotonic()
    balance = asyncio.run(books.check(folder, urls=urls, env=env, schemas=schemas, day=day))
    print(f"[load] books checked in {time.monotonic() - books_started:.1f} s", flush=True)
    figures = report.write(
        folder,
        day=day,
        started=started,
        day_seconds=day_ended,
        eve_seconds=eve_seconds,
        drain_seconds=drained,
        drain_bound=args.drain_seconds,
        generators=args.generators,
        balance=balance,
        generator_failures=len(failed),
        profile=section(profiles, args.profile_seconds, f"{PEAK_HOUR:05.2f}".replace(".", ":")),
    )
    verdict = figures["verdict"]
    print(f"[load] {verdict}; report: {folder / 'summary.md'}", flush=True)
    return 0 if figures["passed"] else 1


async def _eve(day: Day, urls: dict[str, str], ledger: Path, day_date: date) -> dict[str, str]:
    """Run the eve from this process; the citizens it registered (national id -> id)."""
    traffic = await Traffic.open(urls, ledger, time.time())
    run = DayRun(day, Shard(), traffic, day_date)
    try:
        await eve(run)
    finally:
        await traffic.close()
    return run.citizens


def _drain(urls: dict[str, str], bound: float) -> float | None:
    """Seconds until no outbox backlog or consumer lag is left anywhere (twice in a row);
    None when that did not happen within `bound`."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < bound:
        busy = sum(sum(delivery_backlog(u).values()) for u in urls.values())
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return time.monotonic() - started
        time.sleep(0.5)
    return None


if __name__ == "__main__":
    sys.exit(main())
