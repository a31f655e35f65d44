"""A scheduling run's planning side: load, plan and explain, handing the bookings on in
parts as they are planned (scheduler.planned), so the run commits while it plans.

    planner(pool, request, sink):  sink.loaded(considered, seconds)
                                   sink.part(part) ... one per part, in planning order
                                   sink.planned(seconds)

Two planners do it with the same code (`explained_parts`): `plan_here`, in the calling
process (a run of a few citizens, and the replan of the citizens whose slot was taken),
and planworker.plan_in_a_process, in a process of its own (a national run in the run's
worker: the plan then takes one core while the worker commits on another).

Explaining a booking (ranking.explain: why this site, day and product) is a planner's
step: the committing process does not pay it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from typing import Protocol

import msgspec

from . import readmodel
from .appointments import BookingRequest
from .ranking import explain
from .scheduler import PART_CITIZENS, Citizen, planned


class Explained(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One proposed booking, as the committer takes it: where, when, what, who and why."""

    site_id: str
    product_code: str
    day: date
    request: BookingRequest


class Part(msgspec.Struct, frozen=True, gc=False):
    """The bookings of a part of the plan, and how many of its citizens are left waiting
    for each reason."""

    bookings: list[Explained]
    waiting: dict[str, int]


class PlanRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to plan: every waiting citizen, or only `citizen_ids` (a replan)."""

    run_id: str
    from_day: date
    horizon_days: int
    today: date
    allow_anywhere: bool
    citizen_ids: list[str] | None = None
    part_citizens: int = PART_CITIZENS  # citizens decided per part


class Sink(Protocol):
    """What a planner hands its results to (handlers' committer)."""

    async def loaded(self, considered: int, seconds: float) -> None: ...

    async def part(self, part: Part) -> None: ...

    async def planned(self, seconds: float) -> None: ...


Planner = Callable[[readmodel.Executor, PlanRequest, Sink], Awaitable[None]]


async def load(
    db: readmodel.Executor, request: PlanRequest
) -> tuple[list[Citizen], readmodel.Supply]:
    """The citizens to plan, and the free capacity and stock to plan them into."""
    citizens = await readmodel.waiting_citizens(db, request.citizen_ids)
    supply = await readmodel.supply(db, request.from_day, request.horizon_days, request.today)
    return citizens, supply


def explained_parts(
    citizens: list[Citizen], supply: readmodel.Supply, request: PlanRequest
) -> Iterator[Part]:
    """The plan of `citizens` in `supply`, in parts as it is made, each booking explained."""
    by_id = {c.citizen_id: c for c in citizens}
    municipality_of = {s.site_id: s.municipality_code for s in supply.sites}
    for part in planned(
        citizens,
        supply.sites,
        supply.capacity,
        supply.stock,
        start=request.from_day,
        days=request.horizon_days,
        allow_anywhere=request.allow_anywhere,
        part_citizens=request.part_citizens,
    ):
        yield Part(
            bookings=[
                Explained(
                    p.site_id,
                    p.product_code,
                    p.day,
                    BookingRequest(
                        citizen_id=p.citizen_id,
                        dose_number=p.dose_number,
                        booster=p.booster,
                        reason=explain(p.decision(by_id[p.citizen_id], municipality_of[p.site_id])),
                        run_id=request.run_id,
                    ),
                )
                for p in part.bookings
            ],
            waiting=part.waiting_by_reason(),
        )


async def plan_here(db: readmodel.Executor, request: PlanRequest, sink: Sink) -> None:
    """Load and plan in this process (the plan in a thread: the event loop keeps
    serving), then hand the parts on."""
    clock = time.perf_counter()
    citizens, supply = await load(db, request)
    await sink.loaded(len(citizens), time.perf_counter() - clock)
    clock = time.perf_counter()
    parts = await asyncio.to_thread(lambda: list(explained_parts(citizens, supply, request)))
    seconds = time.perf_counter() - clock
    for part in parts:
        await sink.part(part)
    await sink.planned(seconds)
