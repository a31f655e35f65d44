"""What booking's own Python spends per booking in a scheduling run's commit, on real PostgreSQL.

Run with `.venv/bin/python -m bench.commit_cpu [--bookings N] [--batch B] [--profile]`.

The per-booking part of a run's commit: each booking's reason (`ranking.explain`, as
`_batches` does), then, as `reserve_days` does it, per batch of B new appointments (one
site and product), one transaction that claims them in the appointments read model
(`readmodel.claim_appointments`, its COPY) and starts their appointment streams
(`EventStore.start_streams`: decide, envelope, encode, COPY of the events and their
outbox rows). The figure is this process's CPU time (user + system, and each apart) per
booking, which is what bench.scheduling's "booking" CPU per booking is made of
beside the per-transaction work (locks, SiteDays, stock). `--profile` prints cProfile's
top entries (internal time) for the same work.

Figures go to bench/results.json under "booking_commit_cpu".
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from bench.foundation import unique_schema
from bench.results import postgres_version, record
from immunreg import localinfra
from immunreg.contracts.envelope import new_id_text
from immunreg.eventstore.database import apply_schema, create_pool
from immunreg.eventstore.store import EventStore
from services.booking import readmodel
from services.booking.app import SCHEMA_FILE
from services.booking.domain import APPOINTMENT, Book, appointment_stream
from services.booking.ranking import Decision, explain
from services.booking.readmodel import Claim

SECTION = "booking_commit_cpu"
SITE = "SITE-BENCH"
PRODUCT = "EU/1/20/1528"


GROUPS = ("health_worker", "chronic_patient", "elderly_65", "general", "education")


def decision(n: int, first_day: date) -> Decision:
    """The n-th booking's planner decision: days, tiers, groups and choices vary as a
    run's do (what _batches explains before the commit)."""
    first = first_day + timedelta(days=n % 3)
    return Decision(
        priority_group=GROUPS[n % len(GROUPS)],
        tier=n % 5,
        site_id=SITE,
        site_municipality="70092",
        product_code=PRODUCT,
        preference_rank=n % 2,
        any_product=n % 4 == 0,
        day=first + timedelta(days=n % 11),
        first_day=first,
        dose_number=1 + n % 2,
    )


async def commit_batches(store: EventStore, bookings: int, batch: int, first_day: date) -> None:
    """`bookings` new appointments, `batch` per transaction, as reserve_days writes them."""
    for start in range(0, bookings, batch):
        claims = [
            Claim(
                appointment_id=new_id_text(),
                citizen_id=f"cit_{n:012d}",
                day=decision(n, first_day).day,
                dose_number=1,
                booster=False,
                reason=explain(decision(n, first_day)),
                run_id="run_bench",
            )
            for n in range(start, min(start + batch, bookings))
        ]

        async def work(conn: Any, claims: list[Claim] = claims) -> None:
            await readmodel.claim_appointments(
                conn, claims, site_id=SITE, municipality_code="70092", product_code=PRODUCT
            )
            await store.start_streams(
                conn,
                APPOINTMENT,
                [
                    (
                        appointment_stream(c.appointment_id),
                        Book(
                            appointment_id=c.appointment_id,
                            citizen_id=c.citizen_id,
                            site_id=SITE,
                            municipality_code="70092",
                            day=c.day,
                            product_code=PRODUCT,
                            dose_number=c.dose_number,
                            booster=c.booster,
                            reason=c.reason,
                            run_id=c.run_id,
                        ),
                    )
                    for c in claims
                ],
            )

        await store.transact(work)


async def measure(dsn: str, bookings: int, batch: int, profile: bool) -> dict[str, Any]:
    schema = unique_schema("commitcpu")
    pool = await create_pool(dsn, schema, min_size=1, max_size=2)
    try:
        await apply_schema(pool, schema, [SCHEMA_FILE])
        store = EventStore(pool)
        first_day = date(2027, 1, 4)
        await commit_batches(store, min(batch, bookings), batch, first_day - timedelta(days=30))
        await pool.execute("TRUNCATE appointments, events, outbox")
        profiler = cProfile.Profile() if profile else None
        wall, before = time.perf_counter(), os.times()
        if profiler is not None:
            profiler.enable()
        await commit_batches(store, bookings, batch, first_day)
        if profiler is not None:
            profiler.disable()
        after, wall = os.times(), time.perf_counter() - wall
        user, system = after.user - before.user, after.system - before.system
        events = await pool.fetchval("SELECT count(*) FROM events")
        assert events == bookings, (events, bookings)
        figures: dict[str, Any] = {
            "bookings": bookings,
            "batch": batch,
            "seconds": round(wall, 3),
            "cpu_us_per_booking": round((user + system) / bookings * 1e6, 1),
            "user_us_per_booking": round(user / bookings * 1e6, 1),
            "system_us_per_booking": round(system / bookings * 1e6, 1),
            "profiled": profile,
        }
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
        return figures
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_cpu", description=__doc__)
    parser.add_argument("--bookings", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=250, help="bookings per transaction")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    args = parser.parse_args(argv)
    dsn = localinfra.up()["DATABASE_URL"]
    figures = asyncio.run(measure(dsn, args.bookings, args.batch, args.profile))
    if not args.profile:  # a profiled run's CPU is the profiler's too
        record(SECTION, figures, postgres=postgres_version(dsn))
    print(f"commit CPU: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
