"""SQL round trips per registration and per dose, by service, counted in PostgreSQL's log.

Run with `.venv/bin/python -m bench.round_trips [--registrations 100] [--doses 100]`
(it needs the local stack: `make infra`). A fresh stack as `bench.http_rates` starts it;
PostgreSQL logs every statement (`log_statement = all`, each line prefixed with the
connection's application name, which is the service's schema) only while this runs.
Registrations and then doses go through `bench.http_rates`' generator at a low rate; after
each phase the stack is left to drain (no backlog, no lag), so the consumers' fan-out is
counted with the request that caused it. What the same stack sends idle (relay polls,
timers, the drain checks) in as long is measured first and subtracted. Every statement
the client sends is one line: BEGIN, COMMIT, savepoints and the pool's reset on release
included. The relays' own connections (`<schema>-relay`) are shown apart from the
services' figure. Beside them, the CPU the services, PostgreSQL and Kafka used per
request (from /proc, less the idle stack's in as long). Figures go to bench/results.json
under "round_trips".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import progress
from bench.http_rates import DEFAULT_PORT_BASE, _generator, _stock
from bench.results import record
from bench.stack import fresh_stack
from immunreg import localinfra
from immunreg.demo import wait_until_quiet
from immunreg.http.auth import ensure_dev_keys
from immunreg.localinfra.services import IsolatedStack
from immunreg.localinfra.stack import local_postgres
from immunreg.paths import keys_dir
from loadtests.watch import cpu_seconds, server_groups

SECTION = "round_trips"
PREFIX = "rt|%a|"
WITH_CHILDREN = {"postgresql"}  # the postmaster's backends
SERVERS = {"postgresql", "kafka"}
# What PostgreSQL writes for one statement: simple protocol, or an extended execute.
_LINE = re.compile(r"^rt\|([^|]*)\|.*LOG:  (?:statement|execute [^:]*):(.*)")
_SHOWN = 90  # characters of a statement's text in the listing


async def _logging(dsn: str, on: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            await conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{PREFIX}'")
        else:
            await conn.execute("ALTER SYSTEM RESET log_statement")
            await conn.execute("ALTER SYSTEM RESET log_line_prefix")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def _count(dsn: str, schema: str, event_type: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(f"SELECT count(*) FROM {schema}.events WHERE type = $1", event_type)
        )
    finally:
        await conn.close()


def _statements(logfile: Path, start: int, run: str) -> tuple[Counter[str], Counter[str]]:
    """Statements per application name since byte `start`, of this run's schemas only; and
    per (application name, the statement's text, shortened)."""
    counted: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    current: list[str] | None = None  # the statement being read: its name and text lines

    def done() -> None:
        if current is not None:
            text = " ".join(" ".join(current[1:]).split())[:_SHOWN]
            texts[f"{current[0]}: {text}"] += 1

    with logfile.open("rb") as log:
        log.seek(start)
        for raw in log:
            line = raw.decode(errors="replace")
            match = _LINE.match(line)
            if match is None:
                if current is not None and not line.startswith("rt|"):
                    current.append(line)  # the statement's next line
                    continue
                done()
                current = None
                continue
            done()
            current = None
            if match.group(1).startswith(run):
                name = match.group(1).removeprefix(run + "_")
                counted[name] += 1
                current = [name, match.group(2)]
    done()
    return counted, texts


class _Tally:
    """Statements by application name and CPU seconds by process group over a window."""

    def __init__(self, phase: _Phase) -> None:
        self.phase = phase
        self.texts: Counter[str] = Counter()
        self.start = phase.logfile.stat().st_size
        self.cpu = cpu_seconds(phase.groups, WITH_CHILDREN)
        self.began = time.monotonic()

    def end(self) -> tuple[float, Counter[str], dict[str, float]]:
        """(seconds, statements, CPU seconds) since the start."""
        cpu = cpu_seconds(self.phase.groups, WITH_CHILDREN)
        used = {k: cpu[k] - self.cpu.get(k, 0.0) for k in cpu}
        counted, self.texts = _statements(self.phase.logfile, self.start, self.phase.run)
        return time.monotonic() - self.began, counted, used


def _per_request(
    window: tuple[float, Counter[str], dict[str, float]],
    idle: tuple[float, Counter[str], dict[str, float]],
    requests: int,
) -> dict[str, Any]:
    """Statements and CPU per request, less what the idle stack used in as long."""
    seconds, counted, cpu = window
    scale = seconds / idle[0]
    net = {k: max(v - idle[1].get(k, 0) * scale, 0.0) for k, v in counted.items()}
    services = {k: v for k, v in net.items() if not k.endswith("-relay")}
    relays = {k: v for k, v in net.items() if k.endswith("-relay")}
    cpu_ms = {
        k: 1000 * max(v - idle[2].get(k, 0.0) * scale, 0.0) / requests for k, v in cpu.items()
    }
    return {
        "requests": requests,
        "seconds": round(seconds, 1),
        "per_request": {k: round(v / requests, 2) for k, v in sorted(services.items()) if v},
        "services_per_request": round(sum(services.values()) / requests, 2),
        "relays_per_request": round(sum(relays.values()) / requests, 2),
        "cpu_ms_per_request": {k: round(v, 2) for k, v in cpu_ms.items()},
        "services_cpu_ms_per_request": round(
            sum(v for k, v in cpu_ms.items() if k not in SERVERS), 2
        ),
    }


class _Phase:
    """Counts one phase's statements from the log, and the idle stack's as a baseline."""

    def __init__(self, stack: IsolatedStack, run: str, logfile: Path) -> None:
        self.stack, self.run, self.logfile = stack, run, logfile
        # The services' processes, and PostgreSQL's and Kafka's of this checkout.
        self.groups = {p.name: [p.process.pid] for p in stack.processes} | server_groups()
        self.idle: tuple[float, Counter[str], dict[str, float]] = (1.0, Counter(), {})
        self.listing = False

    def measure_idle(self, seconds: float) -> None:
        """What the stack does while nothing is sent (polls, timers, the drain checks)."""
        wait_until_quiet(self.stack.urls, 300)
        tally = _Tally(self)
        time.sleep(seconds)
        wait_until_quiet(self.stack.urls, 300)
        self.idle = tally.end()

    def measure(self, folder: Path, requests: int, rate: float, *, doses: bool) -> dict[str, Any]:
        """Send `requests` at `rate`, wait for the stack to drain, count per request done."""
        wait_until_quiet(self.stack.urls, 300)
        tally = _Tally(self)
        _generator(self.stack.urls, folder, f"{rate:g}", requests / rate, doses=doses)
        wait_until_quiet(self.stack.urls, 300)
        window = tally.end()
        service, kind = ("administration", "DoseAdministered") if doses else (
            "registration", "CitizenRegistered")  # fmt: skip
        done = asyncio.run(_count(self.stack.dsn, f"{self.run}_{service}", kind))
        figures = _per_request(window, self.idle, done)
        if self.listing:
            # What each statement of the phase was, per request (the idle stack's not
            # subtracted: polls show up as statements at a fraction per request).
            figures["statements"] = {
                text: round(n / done, 2)
                for text, n in sorted(
                    tally.texts.items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])
                )
                if n / done >= 0.05
            }
        return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.round_trips")
    parser.add_argument("--registrations", type=int, default=100)
    parser.add_argument("--doses", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    # Low enough that every checkout keeps up, so every request succeeds.
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second")
    parser.add_argument(
        "--statements",
        action="store_true",
        help="also list each statement's text (shortened) per request, by service",
    )
    args = parser.parse_args(argv)
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    dsn = endpoints["DATABASE_URL"]
    figures: dict[str, Any] = {}
    asyncio.run(_logging(dsn, True))
    try:
        with fresh_stack(endpoints, "rt", "RATES_PORT_BASE", DEFAULT_PORT_BASE) as (stack, run):
            phase = _Phase(stack, run, local_postgres().logfile)
            phase.listing = args.statements
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                phase.measure_idle(args.idle_seconds)
                figures["registration"] = phase.measure(
                    folder, args.registrations, args.rate, doses=False
                )
                progress(f"per registration: {figures['registration']}")
                asyncio.run(_stock(stack.urls, folder, vials=20_000))
                figures["dose"] = phase.measure(folder, args.doses, args.rate, doses=True)
                progress(f"per dose: {figures['dose']}")
    finally:
        asyncio.run(_logging(dsn, False))
    record(SECTION, figures)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
