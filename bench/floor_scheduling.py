"""The floor of a scheduling run: what 1,000,000 waiting citizens cost at least here.

Run with `.venv/bin/python -m bench.floor --scheduling [--citizens N | --national]`
(default 100,000 waiting; `--national` is 1,000,000; `--quick` 20,000; also in
`make bench`). On bench.booking's synthetic country (as bench.scheduling seeds it, but
written straight into a fresh schema's read model: no service runs), in one process of
its own, "the writer", as booking's run worker is one:

1. load: `readmodel.waiting_citizens` and `readmodel.supply`, as the run loads them;
2. plan: the pure `scheduler.plan` on them;
3. commit, with no domain logic: the plan's bookings per (site, product), cut into
   transactions by the real commit's `_chunks` (COMMIT_BATCH bookings), one site's
   transactions one after another and COMMIT_CONCURRENCY at a time, each writing what
   the contract needs of a booking and nothing else: its appointment row
   (`readmodel.claim_appointments`, the COPY-based claim), its AppointmentBooked event
   row and outbox row (the recorder's `insert_streams`, the COPY that starts a run's
   appointment streams), with the events decided and encoded before the window; the
   store's transaction wakes the relay as a service's does. The outbox relay
   (`OutboxRelay`, the services' batch size) publishes them to Kafka from a process of
   its own.

CPU is read from /proc (loadtests.watch) for PostgreSQL, the writer, the relay and the
Kafka broker at each phase's start and end; the commit's window ends when the outbox is
empty. Checked: appointment rows, Appointment events and Kafka messages (read
read_committed, distinct streams) all equal the plan's bookings.

Then the arithmetic for 1,000,000 waiting (643,861 booked, as the real run books):
core-seconds at the floor against 2 cores x 60 s, the least wall time with the commit
after the plan and overlapping it, and the CPU per booking the commit may cost to meet
60 s either way, beside the real run's 163 us (its shortest 1M run). Figures go to
bench/results.json under `floor.scheduling` (bench.floor's own run keeps them).
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
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from bench.common import progress
from immunreg.paths import REPO_ROOT

if TYPE_CHECKING:  # the child processes import what they use, when they use it
    from immunreg.contracts.envelope import Context, Envelope
    from services.booking.readmodel import Claim
    from services.booking.scheduler import Proposal

SECTION, PART = "floor", "scheduling"  # bench/results.json: floor.scheduling
PARTITIONS = 3  # Settings.kafka_partitions
DAYS = 14  # bench.scheduling's horizon
CORES = 2
TARGET_SECONDS = 60.0
NATIONAL = 1_000_000
BOOKED_AT_NATIONAL = 643_861  # the real run's bookings of bench.booking's 1M country
# The real run's CPU per booking, all groups, over its whole run (load and plan too): the
# shortest 1,000,000 run, docs/BENCHMARKS.md "Packed outbox rows" (163 in "The run's
# worker without the cyclic collector", 174 in "The plan: eligibility judged once per
# distinct input", 296 in "All of 2026-12-07's morning together").
REAL_US_PER_BOOKING = 144.0
PHASE = "floor-phase "


# --- arithmetic (pure) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    """A run's floor per unit: wall and CPU (all groups) seconds per waiting citizen for
    the load and the plan (the plan's wall: its thread's CPU), CPU seconds per booking
    (all groups) for the commit."""

    load_wall: float
    load_cpu: float
    plan_wall: float
    plan_cpu: float
    commit_cpu: float


def national_arithmetic(
    floor: Floor,
    *,
    citizens: int = NATIONAL,
    bookings: int = BOOKED_AT_NATIONAL,
    cores: int = CORES,
    seconds: float = TARGET_SECONDS,
    real_us_per_booking: float = REAL_US_PER_BOOKING,
) -> dict[str, Any]:
    """What `citizens` waiting (`bookings` booked) need at the floor on `cores` against
    `seconds`.

    Sequential: load, then plan, then the commit on every core. Overlapped: load, then
    the plan on one core while the commit uses the others, then the commit on every core
    (the commit cannot begin before the waiting list is loaded; the plan is one thread).
    The budget is the most CPU per booking (us, all groups) the commit may take and
    still end within `seconds`; 0 when the load and plan alone do not."""
    load, plan = floor.load_wall * citizens, floor.plan_wall * citizens
    load_cpu, plan_cpu = floor.load_cpu * citizens, floor.plan_cpu * citizens
    commit_cpu = floor.commit_cpu * bookings
    needed = load_cpu + plan_cpu + commit_cpu
    sequential = load + plan + commit_cpu / cores
    during_plan = min(commit_cpu, (cores - 1) * plan)
    overlapped = max(load + plan + (commit_cpu - during_plan) / cores, needed / cores)
    left = seconds - load - plan
    budget_sequential = max(cores * left, 0.0) / bookings
    budget_overlapped = (
        max(min((cores - 1) * plan + cores * left, cores * seconds - load_cpu - plan_cpu), 0.0)
        / bookings
        if left >= 0
        else 0.0
    )
    if sequential <= seconds:
        verdict = "possible"
    elif overlapped <= seconds:
        verdict = "only with overlap"
    else:
        verdict = "impossible"
    return {
        "citizens": citizens,
        "bookings": bookings,
        "cores": cores,
        "target_seconds": seconds,
        "load_seconds": round(load, 2),
        "plan_seconds": round(plan, 2),
        "commit_core_seconds": round(commit_cpu, 2),
        "core_seconds_needed": round(needed, 2),
        "core_seconds_available": cores * seconds,
        "least_wall_seconds_sequential": round(sequential, 2),
        "least_wall_seconds_overlapped": round(overlapped, 2),
        "commit_budget_us_per_booking_sequential": round(budget_sequential * 1e6, 1),
        "commit_budget_us_per_booking_overlapped": round(budget_overlapped * 1e6, 1),
        "commit_floor_us_per_booking": round(floor.commit_cpu * 1e6, 1),
        # The real run's figure is its whole run's CPU (load and plan too) per booking.
        "whole_run_floor_us_per_booking": round(needed / bookings * 1e6, 1),
        "real_us_per_booking": real_us_per_booking,
        "verdict": verdict,
    }


def per_unit(before: dict[str, float], after: dict[str, float], units: int) -> dict[str, float]:
    """CPU seconds per unit for each group between two readings."""
    if units <= 0:
        raise ValueError("nothing was done in the window")
    return {g: (after[g] - before[g]) / units for g in before}


# --- the writer process --------------------------------------------------------------------


def mark(phase: str, **fields: Any) -> None:
    """In the writer: a phase boundary, for the parent to read every group's CPU at."""
    print(PHASE + json.dumps({"phase": phase, **fields}), flush=True)


async def write(dsn: str, schema: str, context_name: str, concurrency: int, size: int) -> None:
    """Load, plan and commit at the floor (the module doc), marking each phase."""
    from immunreg.contracts.booking import CONTEXT
    from immunreg.eventstore.database import create_pool
    from immunreg.eventstore.signal import OutboxSignal
    from immunreg.eventstore.store import EventStore
    from services.booking import readmodel
    from services.booking.config import BookingConfig
    from services.booking.scheduler import plan

    today = BookingConfig().today()
    start = today + timedelta(days=1)
    context = CONTEXT.renamed(context_name)
    pool = await create_pool(dsn, schema, min_size=concurrency + 1, max_size=concurrency + 1)
    signal = OutboxSignal(schema, pool)
    store = EventStore(pool, signal=signal)
    try:
        mark("load")
        clock = time.perf_counter()
        citizens = await readmodel.waiting_citizens(pool)
        supply = await readmodel.supply(pool, start, DAYS, today)
        load_seconds = time.perf_counter() - clock
        mark("plan", considered=len(citizens), seconds=load_seconds)
        clock, cpu = time.perf_counter(), time.thread_time()
        result = plan(citizens, supply.sites, supply.capacity, supply.stock, start=start, days=DAYS)
        plan_seconds, plan_cpu = time.perf_counter() - clock, time.thread_time() - cpu
        mark("prepare", booked=len(result.bookings), seconds=plan_seconds, thread_cpu=plan_cpu)
        municipality = {s.site_id: s.municipality_code for s in supply.sites}
        del citizens, supply
        transactions = _transactions(result.bookings, municipality, context, size)
        del result
        mark("commit", transactions=sum(len(t) for t in transactions.values()))
        clock = time.perf_counter()
        gate = asyncio.Semaphore(concurrency)
        claimed = 0

        async def commit(one: _Transaction) -> None:
            nonlocal claimed
            async with gate, store.transaction() as conn:
                held = await readmodel.claim_appointments(
                    conn,
                    one.claims,
                    site_id=one.site_id,
                    municipality_code=one.municipality_code,
                    product_code=one.product_code,
                )
                await store.postgres.insert_streams(one.envelopes, one.outbox, conn)
            claimed += len(held)

        async def commit_site(site: list[_Transaction]) -> None:
            for one in site:  # one site's transactions one after another, as the run's
                await commit(one)

        await asyncio.gather(*(commit_site(site) for site in transactions.values()))
        mark("committed", claimed=claimed, seconds=time.perf_counter() - clock)
    finally:
        await signal.close()
        await pool.close()


@dataclass
class _Transaction:
    """One commit's writes, decided and encoded before the window."""

    site_id: str
    municipality_code: str
    product_code: str
    claims: list[Claim]
    envelopes: list[Envelope]
    outbox: tuple[str, list[bytes]]


def _transactions(
    bookings: Sequence[Proposal], municipality: dict[str, str], context: Context, size: int
) -> dict[str, list[_Transaction]]:
    """The plan's bookings per site, as the real commit cuts them: per (site, product),
    days in order, at most `size` bookings a transaction (`handlers._chunks`)."""
    from immunreg.contracts.envelope import encode_envelope, new_id_text, utcnow
    from services.booking.appointments import BookingRequest
    from services.booking.domain import APPOINTMENT, Book, appointment_stream
    from services.booking.handlers import _chunks
    from services.booking.readmodel import Claim

    run_id = f"floor-{uuid.uuid4().hex[:8]}"
    groups: dict[tuple[str, str], dict[date, list[BookingRequest]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in bookings:
        groups[(p.site_id, p.product_code)][p.day].append(
            BookingRequest(
                citizen_id=p.citizen_id,
                dose_number=p.dose_number,
                reason="floor",
                booster=p.booster,
                run_id=run_id,
            )
        )
    recorded_at = utcnow()
    by_site: dict[str, list[_Transaction]] = defaultdict(list)
    for (site_id, product), by_day in groups.items():
        for chunk in _chunks(sorted(by_day.items()), size):
            claims, envelopes = [], []
            for day, requests in chunk:
                for r in requests:
                    appointment_id = new_id_text()
                    claims.append(
                        Claim(
                            appointment_id=appointment_id,
                            citizen_id=r.citizen_id,
                            day=day,
                            dose_number=r.dose_number,
                            booster=r.booster,
                            reason=r.reason,
                            run_id=r.run_id,
                        )
                    )
                    command = Book(
                        appointment_id=appointment_id,
                        citizen_id=r.citizen_id,
                        site_id=site_id,
                        municipality_code=municipality[site_id],
                        day=day,
                        product_code=product,
                        dose_number=r.dose_number,
                        booster=r.booster,
                        reason=r.reason,
                        run_id=r.run_id,
                    )
                    (event,) = APPOINTMENT.decide(APPOINTMENT.initial(), command)
                    envelopes.append(
                        context.envelope(
                            event,
                            stream_id=appointment_stream(appointment_id),
                            stream_type=APPOINTMENT.stream_type,
                            version=1,
                            recorded_at=recorded_at,
                        )
                    )
            outbox = (context.topic, [encode_envelope(e) for e in envelopes])
            by_site[site_id].append(
                _Transaction(site_id, municipality[site_id], product, claims, envelopes, outbox)
            )
    return by_site


# --- the relay process ---------------------------------------------------------------------


async def relay(dsn: str, schema: str, bootstrap: str) -> None:
    """The services' outbox relay on the floor's schema until terminated; says `leading`."""
    from immunreg.config import Settings
    from immunreg.eventstore.relay import OutboxRelay
    from immunreg.eventstore.signal import OutboxSignal
    from immunreg.observability.metrics import Metrics

    signal = OutboxSignal(schema)
    outbox = OutboxRelay(
        dsn,
        schema,
        bootstrap,
        signal=signal,
        metrics=Metrics(f"floorsched_{uuid.uuid4().hex[:8]}"),
        batch_size=Settings.relay_batch_size,
    )
    task = asyncio.create_task(outbox.run())
    await asyncio.wait_for(outbox.leading.wait(), 120)
    print("leading", flush=True)
    await task


# --- the parent ----------------------------------------------------------------------------


async def seed(dsn: str, schema: str, count: int) -> None:
    """bench.booking's country, into a fresh schema with booking's tables: sites and
    their closed days (written as the read model holds them), citizens, doses, stock."""
    import random

    from bench.booking import SEED, make_citizens, make_sites
    from bench.scheduling import write_citizens, write_stock
    from immunreg.eventstore.database import apply_schema, create_pool
    from services.booking.config import BookingConfig

    start = BookingConfig().today() + timedelta(days=1)
    rng = random.Random(SEED)
    sites, capacity, stock = make_sites(rng, start)
    citizens = make_citizens(rng, count, start)
    daily: dict[str, dict[str, int]] = {s.site_id: {} for s in sites}
    for (site_id, _, product), free in capacity.items():
        daily[site_id][product] = free
    open_days = {(site_id, day) for site_id, day, _ in capacity}
    pool = await create_pool(dsn, schema, min_size=1, max_size=2)
    try:
        await apply_schema(pool, schema, [REPO_ROOT / "services" / "booking" / "schema.sql"])
        async with pool.acquire() as conn:
            await conn.copy_records_to_table(
                "sites",
                records=[
                    (
                        s.site_id,
                        f"Punkt {s.site_id}",
                        s.municipality_code,
                        "bench",
                        "08-16",
                        json.dumps(daily[s.site_id]),
                        1,
                    )
                    for s in sites
                ],
                columns=[
                    "site_id",
                    "name",
                    "municipality_code",
                    "address",
                    "opening_hours",
                    "daily_capacity",
                    "version",
                ],
            )
            await conn.copy_records_to_table(
                "site_days",
                records=[
                    (s.site_id, start + timedelta(days=d), "{}", True)
                    for s in sites
                    for d in range(DAYS)
                    if (s.site_id, start + timedelta(days=d)) not in open_days
                ],
                columns=["site_id", "day", "capacity", "closed"],
            )
        await write_citizens(pool, citizens)
        await write_stock(pool, stock)
    finally:
        await pool.close()


@dataclass
class Phases:
    """Every group's CPU seconds and the clock at each phase boundary, with what the
    writer said there."""

    cpu: dict[str, dict[str, float]]
    clock: dict[str, float]
    said: dict[str, dict[str, Any]]


def follow(
    writer: subprocess.Popen[str], groups: dict[str, list[int]], drained: Callable[[], None]
) -> Phases:
    """Read the writer's phase marks, each group's CPU at each; at `committed`, wait
    until `drained()` (the outbox is empty) and read them again as `drained`."""
    from loadtests.watch import cpu_seconds

    phases = Phases({}, {}, {})
    assert writer.stdout is not None
    for line in writer.stdout:
        if not line.startswith(PHASE):
            continue
        said = json.loads(line[len(PHASE) :])
        name = said.pop("phase")
        phases.cpu[name] = cpu_seconds(groups, {"postgresql"})
        phases.clock[name] = time.monotonic()
        phases.said[name] = said
        if name == "committed":
            drained()
            phases.cpu["drained"] = cpu_seconds(groups, {"postgresql"})
            phases.clock["drained"] = time.monotonic()
    if writer.wait(60) != 0 or "drained" not in phases.cpu:
        raise RuntimeError(f"the floor's writer failed (exit {writer.returncode})")
    return phases


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.floor_scheduling", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _outbox_empty(dsn: str, schema: str, timeout: float) -> None:
    from immunreg.eventstore.database import create_pool

    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        deadline = time.monotonic() + timeout
        while await pool.fetchval("SELECT EXISTS (SELECT 1 FROM outbox)"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the relay did not drain the outbox within {timeout:g} s")
            await asyncio.sleep(0.05)
    finally:
        await pool.close()


async def _counts(dsn: str, schema: str) -> dict[str, int]:
    from immunreg.eventstore.database import create_pool

    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        return {
            "appointments": int(await pool.fetchval("SELECT count(*) FROM appointments")),
            "appointment_events": int(
                await pool.fetchval("SELECT count(*) FROM events WHERE stream_type = 'Appointment'")
            ),
            "outbox_left": int(
                await pool.fetchval("SELECT coalesce(sum(coalesce(packed, 1)), 0) FROM outbox")
            ),
        }
    finally:
        await pool.close()


def _phases(dsn: str, schema: str, bootstrap: str, namespace: str) -> tuple[Phases, dict[str, int]]:
    """The relay started and leading, then the writer followed through its phases; the
    read model's and the store's counts after."""
    from loadtests.watch import server_groups
    from services.booking.config import BookingConfig

    config = BookingConfig()
    relay_process = _child("--relay", dsn, schema, bootstrap)
    writer: subprocess.Popen[str] | None = None
    try:
        assert relay_process.stdout is not None
        if relay_process.stdout.readline().strip() != "leading":
            raise RuntimeError("the floor's relay did not start")
        progress("scheduling floor: relay leading; load, plan, commit")
        writer = _child(
            "--write",
            dsn,
            schema,
            namespace,
            str(config.commit_concurrency),
            str(config.commit_batch),
        )
        groups = {**server_groups(), "writer": [writer.pid], "relay": [relay_process.pid]}
        phases = follow(writer, groups, lambda: asyncio.run(_outbox_empty(dsn, schema, 600)))
        return phases, asyncio.run(_counts(dsn, schema))
    finally:
        if writer is not None:
            _stop(writer)
        _stop(relay_process)


async def _drop(dsn: str, schema: str) -> None:
    from immunreg.eventstore.database import create_pool

    pool = await create_pool(dsn, "public", min_size=1, max_size=1)
    try:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await pool.close()


def run(count: int) -> dict[str, Any]:
    from bench.foundation import count_committed, unique_schema
    from immunreg import localinfra
    from immunreg.contracts.booking import CONTEXT
    from immunreg.messaging.topics import delete_namespace, ensure_topics
    from loadtests.national_day import git_sha
    from services.booking.config import BookingConfig

    config = BookingConfig()
    endpoints = localinfra.up()
    dsn, bootstrap = endpoints["DATABASE_URL"], endpoints["KAFKA_BOOTSTRAP_SERVERS"]
    schema = unique_schema("floorsched")
    namespace = f"floorsched_{uuid.uuid4().hex[:8]}"
    context = CONTEXT.renamed(namespace)
    load_before = [round(x, 2) for x in os.getloadavg()]
    began = time.monotonic()
    progress(f"scheduling floor: seeding {count:,} waiting citizens into {schema}")
    try:
        asyncio.run(seed(dsn, schema, count))
        asyncio.run(ensure_topics(bootstrap, [context.topic], PARTITIONS))
        phases, found = _phases(dsn, schema, bootstrap, namespace)
        progress("scheduling floor: counting what Kafka holds")
        messages, unique = asyncio.run(count_committed(bootstrap, context.topic, timeout=300))
    finally:
        asyncio.run(delete_namespace(bootstrap, context.topic))
        asyncio.run(_drop(dsn, schema))
    return figures_of(
        phases,
        found,
        messages=messages,
        unique=unique,
        citizens=count,
        commit=git_sha(),
        load_average=(load_before, [round(x, 2) for x in os.getloadavg()]),
        seconds=time.monotonic() - began,
        config=(config.commit_batch, config.commit_concurrency),
    )


def figures_of(
    phases: Phases,
    found: dict[str, int],
    *,
    messages: int,
    unique: int,
    citizens: int,
    commit: str,
    load_average: tuple[list[float], list[float]],
    seconds: float,
    config: tuple[int, int],
) -> dict[str, Any]:
    """The run's figures: each phase's wall and CPU by group, the floor per unit, the
    checks, and the national arithmetic."""
    cpu, clock, said = phases.cpu, phases.clock, phases.said
    considered = int(said["plan"]["considered"])
    booked = int(said["prepare"]["booked"])
    windows = {
        "load": ("load", "plan", considered),
        "plan": ("plan", "prepare", considered),
        # Not in the floor: deciding, explaining nothing, and encoding the events and
        # claims before the window (what it costs, for scale).
        "prepare": ("prepare", "commit", booked),
        "commit": ("commit", "drained", booked),
    }
    phase_figures: dict[str, Any] = {}
    for name, (a, b, units) in windows.items():
        each = per_unit(cpu[a], cpu[b], units)
        scale = 1e6  # us per citizen (load, plan) or per booking (commit)
        phase_figures[name] = {
            "wall_seconds": round(clock[b] - clock[a], 2),
            "cpu_seconds": {g: round(cpu[b][g] - cpu[a][g], 2) for g in cpu[a]},
            "cpu_us_each": {g: round(v * scale, 2) for g, v in each.items()},
            "cpu_us_each_total": round(sum(each.values()) * scale, 2),
        }
    phase_figures["commit"]["writer_seconds"] = round(said["committed"]["seconds"], 2)
    phase_figures["commit"]["transactions"] = said["commit"]["transactions"]
    phase_figures["plan"]["pure_plan_seconds"] = round(said["prepare"]["seconds"], 2)
    phase_figures["plan"]["thread_cpu_seconds"] = round(said["prepare"]["thread_cpu"], 2)
    floor = Floor(
        load_wall=(clock["plan"] - clock["load"]) / considered,
        load_cpu=phase_figures["load"]["cpu_us_each_total"] / 1e6,
        # One thread, no I/O: on a core of its own the plan takes its CPU time; its wall
        # here is longer by whatever else the shared machine ran (kept as plan.wall_seconds).
        plan_wall=said["prepare"]["thread_cpu"] / considered,
        plan_cpu=phase_figures["plan"]["cpu_us_each_total"] / 1e6,
        commit_cpu=phase_figures["commit"]["cpu_us_each_total"] / 1e6,
    )
    checks = {
        "booked": booked,
        "claimed": int(said["committed"]["claimed"]),
        **found,
        "kafka_messages": messages,
        "kafka_distinct_streams": unique,
    }
    consistent = (
        booked
        == checks["claimed"]
        == found["appointments"]
        == found["appointment_events"]
        == messages
        == unique
        and found["outbox_left"] == 0
    )
    return {
        "citizens": citizens,
        "considered": considered,
        "booked": booked,
        "commit": commit,
        "commit_batch": config[0],
        "commit_concurrency": config[1],
        "load_average_before": load_average[0],
        "load_average_after": load_average[1],
        "total_seconds": round(seconds, 1),
        "phases": phase_figures,
        "checks": checks,
        "consistent": consistent,
        "national": national_arithmetic(floor),
    }


def summary(figures: dict[str, Any]) -> str:
    """The phases, the checks and the national arithmetic, in a few lines."""
    phases, national = figures["phases"], figures["national"]
    lines = [
        f"scheduling floor at {figures['citizens']:,} waiting ({figures['considered']:,} "
        f"considered, {figures['booked']:,} booked; {figures['commit']}; load average "
        f"{figures['load_average_before']} -> {figures['load_average_after']})"
    ]
    shown_phases = (
        ("load", "citizen"),
        ("plan", "citizen"),
        ("prepare", "booking, not in the floor"),
        ("commit", "booking"),
    )
    for name, unit in shown_phases:
        p = phases[name]
        shown = ", ".join(f"{g} {v:.1f}" for g, v in p["cpu_us_each"].items())
        lines.append(
            f"  {name}: {p['wall_seconds']} s; us of CPU per {unit}: {shown} "
            f"= {p['cpu_us_each_total']:.1f}"
        )
    lines.append(f"  consistent: {figures['consistent']} {figures['checks']}")
    lines.append(
        f"  1,000,000 waiting, {national['bookings']:,} booked, at the floor: load "
        f"{national['load_seconds']} s + plan {national['plan_seconds']} s + commit "
        f"{national['commit_core_seconds']} core-s; {national['core_seconds_needed']} of "
        f"{national['core_seconds_available']:g} core-seconds; least wall "
        f"{national['least_wall_seconds_sequential']} s sequential, "
        f"{national['least_wall_seconds_overlapped']} s overlapped; commit budget "
        f"{national['commit_budget_us_per_booking_sequential']} us/booking sequential, "
        f"{national['commit_budget_us_per_booking_overlapped']} overlapped (floor "
        f"{national['commit_floor_us_per_booking']}); the whole run at the floor "
        f"{national['whole_run_floor_us_per_booking']} us/booking against the real run's "
        f"{national['real_us_per_booking']:g}: "
        f"{national['verdict']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from bench.results import postgres_version, record

    parser = argparse.ArgumentParser(prog="python -m bench.floor --scheduling")
    parser.add_argument("--scheduling", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="20,000 waiting")
    parser.add_argument("--national", action="store_true", help="1,000,000 waiting")
    parser.add_argument("--citizens", type=int, help="default 100,000")
    parser.add_argument("--write", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--relay", nargs=3, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.write:
        dsn, schema, name, concurrency, size = args.write
        asyncio.run(write(dsn, schema, name, int(concurrency), int(size)))
        return 0
    if args.relay:
        asyncio.run(relay(*args.relay))
        return 0
    count = args.citizens or (NATIONAL if args.national else 20_000 if args.quick else 100_000)
    from immunreg import localinfra

    figures = run(count)
    record(SECTION, figures, postgres=postgres_version(localinfra.up()["DATABASE_URL"]), part=PART)
    print(summary(figures))
    return 0 if figures["consistent"] else 1


if __name__ == "__main__":
    sys.exit(main())
