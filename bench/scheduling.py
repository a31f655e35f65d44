"""A scheduling run through the service: N waiting citizens booked and committed by booking.

Run with `.venv/bin/python -m bench.scheduling [--quick] [--citizens N]` (or `make bench`).

Booking runs as in production, a process of its own (`IsolatedStack`: own schema, own
topic namespace, its relay publishing every booking). The input is bench.booking's
synthetic country (400 sites x 14 days from tomorrow, ~250 doses a day each, closed on
Sundays, stock for about 60 % of capacity; citizens with census ages, homes, priority
groups, conditions and preferences, some with a second dose or a booster due): sites
and Sunday closures through booking's API, so their streams exist as in real life;
citizens, their earlier doses and the sites' stock written straight into booking's
read model (in production they arrive from registration, administration and inventory
events; replaying 100k registrations through Kafka would measure the consumers).

Then `POST /v1/scheduling/runs` (202) and `GET /v1/scheduling/runs/{id}` every 0.5 s
until `completed`, while another client reads `GET /v1/sites?limit=1` every 0.1 s (the
API keeps answering: its latency during the run). CPU of booking, PostgreSQL and Kafka
is sampled throughout (loadtests.watch).

Same-run baseline: the pure planner (`scheduler.plan`) on exactly what the run loads,
read from the same read model by this process before the run (load and plan timed).
Checked: the run's `booked` equals its appointments in the read model, its
AppointmentBooked events and every event of the appointment streams (one per booking).
Figures go to bench/results.json under "booking_scheduling_run"; target: 1,000,000
waiting citizens booked and committed in <= 60 s (docs/BENCHMARKS.md has the per-core
arithmetic).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from bench.booking import SEED, make_citizens, make_sites
from bench.common import percentile, progress
from bench.results import postgres_version, record
from bench.stack import fresh_stack
from immunreg import localinfra
from immunreg.eventstore.database import create_pool
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import keys_dir
from immunreg.reference.vaccines import vaccine_catalog
from loadtests.watch import Watch, cpu_between, server_groups
from services.booking import readmodel
from services.booking.config import BookingConfig
from services.booking.scheduler import Citizen, SiteInfo, plan

SECTION = "booking_scheduling_run"
DAYS = 14
DEFAULT_PORT_BASE = 26480
TARGET = {"citizens": 1_000_000, "seconds": 60}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ELSEWHERE = "SITE-ELSEWHERE"  # where earlier doses were given: not a site of this run


async def seed(
    base: str,
    admin: dict[str, str],
    pool: asyncpg.Pool,
    *,
    citizens: list[Citizen],
    sites: list[SiteInfo],
    capacity: dict[tuple[str, date, str], int],
    stock: dict[tuple[str, str], int],
    start: date,
) -> None:
    """Sites (and their closed Sundays) over HTTP; citizens, doses, stock into the model."""
    daily: dict[str, dict[str, int]] = {s.site_id: {} for s in sites}
    for (site_id, _, product), free in capacity.items():
        daily[site_id][product] = free
    open_days = {(site_id, day) for site_id, day, _ in capacity}
    async with aiohttp.ClientSession(headers=admin) as http:
        gate = asyncio.Semaphore(8)

        async def put(path: str, body: dict[str, Any]) -> None:
            async with gate, http.put(base + path, json=body) as answer:
                assert answer.status in (200, 201), await answer.text()

        await asyncio.gather(
            *(
                put(
                    f"/v1/sites/{s.site_id}",
                    {
                        "name": f"Punkt {s.site_id}",
                        "municipality_code": s.municipality_code,
                        "address": "bench",
                        "daily_capacity": daily[s.site_id],
                    },
                )
                for s in sites
            )
        )
        closed = [
            (s.site_id, start + timedelta(days=d))
            for s in sites
            for d in range(DAYS)
            if (s.site_id, start + timedelta(days=d)) not in open_days
        ]
        await asyncio.gather(
            *(put(f"/v1/sites/{site}/days/{day}", {"closed": True}) for site, day in closed)
        )
    await write_citizens(pool, citizens)
    await write_stock(pool, stock)


async def write_stock(pool: asyncpg.Pool, stock: dict[tuple[str, str], int]) -> None:
    """The sites' stock straight into booking's read model; then ANALYZE, the seed done."""
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "site_stock",
            records=[(s, p, doses, 1) for (s, p), doses in stock.items()],
            columns=["site_id", "product_code", "doses_available", "version"],
        )
        await conn.execute("ANALYZE")


async def write_citizens(pool: asyncpg.Pool, citizens: list[Citizen]) -> None:
    """Waiting citizens and their earlier doses, straight into booking's read model."""
    catalog = vaccine_catalog()
    citizen_rows = []
    dose_rows = []
    for c in citizens:
        registered = _EPOCH + timedelta(microseconds=c.order)
        citizen_rows.append(
            (
                c.citizen_id,
                "active",
                1,
                c.birth_date,
                c.municipality_code,
                c.preferred_municipality_code,
                c.priority_group,
                list(c.ruled_out),
                list(c.preferences),
                registered,
            )
        )
        due = c.due
        if due.booster and due.earliest is not None:
            # A finished two-dose series whose booster window opens at `earliest`.
            rule = catalog["BBIBP-CorV"]
            assert rule.booster_min_days_after_series is not None
            last = due.earliest - timedelta(days=rule.booster_min_days_after_series)
            first = last - timedelta(days=rule.min_interval_days)
            for n, day in ((1, first), (2, last)):
                dose_rows.append((f"{c.citizen_id}-d{n}", c.citizen_id, "BBIBP-CorV", n, day))
        elif due.dose_number == 2 and due.product_code and due.earliest is not None:
            rule = catalog[due.product_code]
            last = due.earliest - timedelta(days=rule.min_interval_days)
            dose_rows.append((f"{c.citizen_id}-d1", c.citizen_id, due.product_code, 1, last))
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "citizens",
            records=citizen_rows,
            columns=[
                "citizen_id",
                "status",
                "version",
                "birth_date",
                "municipality_code",
                "preferred_municipality_code",
                "priority_group",
                "ruled_out_products",
                "vaccine_preferences",
                "registered_at",
            ],
        )
        await conn.copy_records_to_table(
            "doses",
            records=[(i, c, ELSEWHERE, p, n, False, d, False) for i, c, p, n, d in dose_rows],
            columns=[
                "dose_id",
                "citizen_id",
                "site_id",
                "product_code",
                "dose_number",
                "booster",
                "administered_on",
                "voided",
            ],
        )


async def baseline(pool: asyncpg.Pool, start: date, today: date) -> dict[str, Any]:
    """The pure planner on what the run will load, read the way the run reads it."""
    began = time.perf_counter()
    citizens = await readmodel.waiting_citizens(pool)
    supply = await readmodel.supply(pool, start, DAYS, today)
    loaded = time.perf_counter() - began
    began = time.perf_counter()
    result = plan(citizens, supply.sites, supply.capacity, supply.stock, start=start, days=DAYS)
    planned = time.perf_counter() - began
    return {
        "considered": len(citizens),
        "booked": len(result.bookings),
        "load_seconds": round(loaded, 2),
        "plan_seconds": round(planned, 2),
        "plan_citizens_per_second": round(len(citizens) / planned),
    }


async def run(base: str, admin: dict[str, str], start: date) -> dict[str, Any]:
    """Start the run, follow it, and read the API beside it; what each saw."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    views: list[dict[str, Any]] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession(headers=admin) as http:

        async def probe() -> None:
            while not done.is_set():
                began = time.perf_counter()
                async with http.get(f"{base}/v1/sites?limit=1") as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                latencies.append(time.perf_counter() - began)
                await asyncio.sleep(0.1)

        prober = asyncio.create_task(probe())
        began = time.perf_counter()
        body = {"from_day": start.isoformat(), "horizon_days": DAYS}
        async with http.post(f"{base}/v1/scheduling/runs", json=body) as answer:
            assert answer.status == 202, await answer.text()
            accepted_seconds = time.perf_counter() - began
            location = answer.headers["Location"]
            view = await answer.json()
        while view["status"] in ("queued", "running"):
            await asyncio.sleep(0.5)
            async with http.get(base + location) as answer:
                view = await answer.json()
            views.append({"t": round(time.perf_counter() - began, 2), **view})
        wall = time.perf_counter() - began
        done.set()
        await prober
    ordered = sorted(latencies)
    return {
        "view": view,
        "wall_seconds": round(wall, 2),
        "accepted_ms": round(accepted_seconds * 1000, 1),
        # What polling saw, thinned to at most 30 looks.
        "progress_seen": [
            {k: v[k] for k in ("t", "status", "booked", "batches_committed")}
            for v in views[:: max(len(views) // 30, 1)]
        ],
        "api_during_run": {
            "requests": len(ordered),
            "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": round(percentile(ordered, 50) * 1000, 1),
            "p99_ms": round(percentile(ordered, 99) * 1000, 1),
            "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
        },
    }


def _cpu(samples: list[dict[str, Any]], group: str, start: float, end: float) -> float:
    """Mean CPU (% of one core) of one process group over [start, end]."""
    alone = [
        {**s, "processes": {k: v for k, v in s["processes"].items() if k == group}} for s in samples
    ]
    return cpu_between(alone, start, end)


async def check(pool: asyncpg.Pool, run_id: str) -> dict[str, int]:
    return {
        "appointments": await pool.fetchval(
            "SELECT count(*) FROM appointments WHERE run_id = $1", run_id
        ),
        "appointment_events": await pool.fetchval(
            "SELECT count(*) FROM events WHERE type = 'AppointmentBooked'"
        ),
        # Every event of the appointment streams: one per booking (until 2026-12-07 a
        # NotificationRequested went beside each AppointmentBooked, two).
        "appointment_stream_events": await pool.fetchval(
            "SELECT count(*) FROM events WHERE stream_type = 'Appointment'"
        ),
        # Messages not yet published when the run completed (a packed row counts as its
        # messages): the relay's work left outside the window the CPU is measured over.
        "outbox_left_at_completion": await pool.fetchval(
            "SELECT coalesce(sum(coalesce(packed, 1)), 0) FROM outbox"
        ),
    }


async def measure(stack: IsolatedStack, count: int) -> dict[str, Any]:
    base = stack.urls["booking"]
    private, _ = ensure_dev_keys(keys_dir())
    admin = {"Authorization": f"Bearer {issue_token(private.read_bytes(), Role.ADMIN)}"}
    today = BookingConfig().today()
    start = today + timedelta(days=1)
    rng = random.Random(SEED)
    began = time.perf_counter()
    sites, capacity, stock = make_sites(rng, start)
    citizens = make_citizens(rng, count, start)
    pool = await create_pool(stack.dsn, stack.schemas["booking"], min_size=1, max_size=4)
    try:
        await seed(
            base,
            admin,
            pool,
            citizens=citizens,
            sites=sites,
            capacity=capacity,
            stock=stock,
            start=start,
        )
        progress(
            f"seeded {count:,} citizens, {len(sites)} sites in {time.perf_counter() - began:.0f} s"
        )
        pure = await baseline(pool, start, today)
        progress(f"baseline: {pure}")
        del citizens
        groups = {"booking": [stack.processes[0].process.pid]} | server_groups()
        samples = io.StringIO()
        # booking with its children: a run is done by a worker process of its own.
        watch = Watch(samples, {}, groups, {"postgresql", "booking"}, interval=1.0)
        watch.start()
        t0 = time.time() - watch.t0
        try:
            seen = await run(base, admin, start)
        finally:
            t1 = time.time() - watch.t0
            watch.stop()
        lines = [json.loads(x) for x in samples.getvalue().splitlines()]
        cpu = {
            group: round(
                cpu_between(
                    [
                        {**s, "processes": {group: s["processes"].get(group, {"cpu_pct": 0})}}
                        for s in lines
                    ],
                    t0,
                    t1,
                ),
                1,
            )
            for group in groups
        }
        found = await check(pool, seen["view"]["run_id"])
    finally:
        await pool.close()
    view = seen.pop("view")
    seconds = view["seconds"]
    cores = sum(cpu.values()) / 100
    return {
        "citizens": count,
        "considered": view["considered"],
        "booked": view["booked"],
        "status": view["status"],
        "seconds": seconds,
        "booked_per_second": round(view["booked"] / seconds) if seconds else None,
        "timings": view["timings"],
        "batches_committed": view["batches_committed"],
        "replanned": view["replanned"],
        "waiting": view["waiting"],
        **seen,
        "cpu_pct_during_run": cpu,
        "cores_busy": round(cores, 2),
        "booked_per_core_second": round(view["booked"] / (seconds * cores)) if cores else None,
        # Each group's CPU during the run over what it booked (booking with its worker).
        "cpu_us_per_booking": {
            group: round(pct / 100 * seconds / view["booked"] * 1e6) for group, pct in cpu.items()
        }
        if view["booked"]
        else None,
        "baseline_pure_planner": pure,
        "read_model_check": found,
        "consistent": found["appointments"]
        == view["booked"]
        == found["appointment_events"]
        == found["appointment_stream_events"],
        "target": TARGET,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scheduling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 citizens")
    parser.add_argument("--citizens", type=int, default=None, help="default 100,000")
    parser.add_argument(
        "--section", default=SECTION, help=f"where in bench/results.json (default {SECTION})"
    )
    args = parser.parse_args(argv)
    count = args.citizens or (20_000 if args.quick else 100_000)
    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    port = ("SCHEDULING_PORT_BASE", DEFAULT_PORT_BASE)
    with fresh_stack(endpoints, "sched", *port, names=["booking"]) as (stack, _):
        figures = asyncio.run(measure(stack, count))
    record(args.section, figures, postgres=postgres_version(endpoints["DATABASE_URL"]))
    pure = figures["baseline_pure_planner"]
    print(
        f"scheduling run through booking: {figures['citizens']:,} waiting, "
        f"{figures['booked']:,} booked and committed in {figures['seconds']} s "
        f"({figures['booked_per_second']}/s; timings {figures['timings']}); "
        f"API during the run p99 {figures['api_during_run']['p99_ms']} ms; "
        f"CPU {figures['cpu_pct_during_run']}, per booking (us) {figures['cpu_us_per_booking']}, "
        f"{figures['booked_per_core_second']} booked per core-second; "
        f"baseline: pure planner {pure['plan_seconds']} s, load {pure['load_seconds']} s; "
        f"consistent: {figures['consistent']}"
    )
    return 0 if figures["consistent"] and figures["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
