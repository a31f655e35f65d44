"""A run planned in a planner process and committed while it plans books exactly what
the pure planner plans on the same input: the same citizens at the same sites, days and
products, none twice, none missing, every other one waiting for the same reason."""

from __future__ import annotations

import random
from datetime import date, timedelta

import msgspec

from immunreg.http.app import SETTINGS_KEY
from services.booking import readmodel
from services.booking.config import BookingConfig
from services.booking.handlers import run_scheduler
from services.booking.planning import Part, PlanRequest, Sink
from services.booking.planworker import plan_in_a_process
from services.booking.scheduler import plan

from .conftest import AZ, PFIZER, SINOPHARM, Booking, new_site_id

MUNICIPALITIES = ["70092", "70122", "70165"]
GROUPS = ["general", "general", "chronic_patient", "health_worker", "critical_worker"]
DAYS = 4


async def crowded(booking: Booking) -> None:
    """More citizens than slots, one product short of stock, mixed groups, places and
    preferences: a plan with bookings everywhere and citizens left for each reason."""
    rng = random.Random(16)
    for i in range(4):
        site_id = new_site_id()
        await booking.define_site(site_id, MUNICIPALITIES[i % 3], {PFIZER: 5, AZ: 3, SINOPHARM: 2})
        await booking.stock(site_id, PFIZER, 40)
        await booking.stock(site_id, AZ, 6 if i else 0)
        await booking.stock(site_id, SINOPHARM, 30)
    for _ in range(260):
        await booking.register(
            municipality_code=rng.choice(MUNICIPALITIES),
            priority_group=rng.choice(GROUPS),
            vaccine_preferences=rng.choice([["any"], [PFIZER], [AZ], [SINOPHARM], [AZ, PFIZER]]),
            birth_date=date(rng.randint(1940, 2012), rng.randint(1, 12), 1),
        )


class Parts:
    """A sink in front of another, counting the parts that pass."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.seen = 0

    async def loaded(self, considered: int, seconds: float) -> None:
        await self.sink.loaded(considered, seconds)

    async def part(self, part: Part) -> None:
        self.seen += 1
        await self.sink.part(part)

    async def planned(self, seconds: float) -> None:
        await self.sink.planned(seconds)


async def test_a_streamed_run_books_what_the_pure_plan_plans(booking: Booking) -> None:
    await crowded(booking)
    today = BookingConfig().today()
    start = today + timedelta(days=1)
    citizens = await readmodel.waiting_citizens(booking.pool)
    supply = await readmodel.supply(booking.pool, start, DAYS, today)
    pure = plan(citizens, supply.sites, supply.capacity, supply.stock, start=start, days=DAYS)
    settings = booking.client.app[SETTINGS_KEY]
    seen: list[Parts] = []

    async def in_small_parts(db: readmodel.Executor, request: PlanRequest, sink: Sink) -> None:
        seen.append(Parts(sink))
        small = msgspec.structs.replace(request, part_citizens=7)
        await plan_in_a_process(settings, db, small, seen[-1])

    counts = await run_scheduler(
        booking.store,
        run_id="streamed",
        from_day=start,
        horizon_days=DAYS,
        today=today,
        # Groups commit from 2 bookings on: most commit while the plan goes on.
        config=BookingConfig(commit_batch=8, commit_concurrency=3),
        planner=in_small_parts,
    )

    assert len(seen) == 1 and seen[0].seen > 30  # planned in a process, in many parts
    rows = await booking.pool.fetch(
        "SELECT citizen_id, site_id, day, product_code FROM appointments"
        " WHERE run_id = 'streamed' AND status = 'booked'"
    )
    booked = sorted((r["citizen_id"], r["site_id"], r["day"], r["product_code"]) for r in rows)
    planned = sorted((p.citizen_id, p.site_id, p.day, p.product_code) for p in pure.bookings)
    assert booked == planned
    assert 100 < len(planned) < len(citizens)
    assert counts.considered == len(citizens)
    assert counts.booked == len(planned)
    assert counts.booked_elsewhere == 0 and counts.replanned == 0
    assert counts.waiting == pure.waiting_by_reason()
    assert {"load", "plan", "commit", "commit_after_plan"} <= set(counts.timings)
