"""Scheduling runs, the nightly schedule and the no-show sweep: the planner's I/O edges.

A run: load the waiting citizens and the free capacity and stock from the read models,
plan (scheduler.plan, pure), then commit the proposals per (site, day, product) in
batches - each batch one `store.transact` unit of work through `Slots.reserve`, which
re-checks capacity, stock and the citizen's claim under the database's guarantees. A
proposal that no longer fits (another run or a citizen took the slot meanwhile) is
planned again from fresh read models, up to REPLAN_PASSES times; what still does not
fit is left waiting as "slot_taken". A citizen someone else booked meanwhile counts as
`booked_elsewhere`, not as waiting. Concurrent runs are safe; the nightly one takes an
advisory lock only so that replicas do not all do the same work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec

from immunreg.contracts.envelope import Metadata, new_event_id
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.locks import session_lock
from immunreg.eventstore.store import EventStore

from . import readmodel
from .config import BookingConfig
from .eligibility import SLOT_TAKEN
from .noshow import OpenAppointment, select_no_shows
from .ranking import explain
from .scheduler import Citizen, Proposal, plan
from .slots import ALREADY_BOOKED, BookingRequest, Reservation, Slots

log = logging.getLogger(__name__)

REPLAN_PASSES = 3
# Failures of one batch's transaction that mean "not now", not "broken".
_NOT_NOW = (
    ConcurrencyConflict,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a scheduling run did."""

    run_id: str
    trigger: str
    from_day: date
    horizon_days: int
    considered: int  # waiting citizens with a dose to come
    booked: int
    booked_elsewhere: int  # booked meanwhile by another run or request
    waiting: dict[str, int]  # reason -> citizens left waiting
    replanned: int  # proposals planned again because their slot was taken
    seconds: float


@dataclass
class _Pass:
    booked: int = 0
    elsewhere: int = 0
    retry: list[str] | None = None


async def run_scheduler(
    store: EventStore,
    *,
    from_day: date,
    horizon_days: int,
    today: date,
    config: BookingConfig,
    trigger: str = "on_demand",
    metadata: Metadata | None = None,
) -> RunSummary:
    """Book every waiting citizen that fits between from_day and from_day + horizon."""
    started = time.perf_counter()
    started_at = datetime.now(UTC)
    run_id = str(new_event_id())
    pool = store.pool
    citizens = await readmodel.waiting_citizens(pool)
    considered = len(citizens)
    reasons: dict[str, str] = {}
    booked = elsewhere = replanned = 0
    slots = Slots(store, metadata)
    for attempt in range(REPLAN_PASSES):
        supply = await readmodel.supply(pool, from_day, horizon_days, today)
        # In a thread: a national plan takes seconds, and the event loop keeps serving.
        result = await asyncio.to_thread(
            plan,
            citizens,
            supply.sites,
            supply.capacity,
            supply.stock,
            start=from_day,
            days=horizon_days,
            allow_anywhere=config.allow_anywhere,
        )
        for left in result.waiting:
            reasons[left.citizen_id] = left.reason
        muni = {s.site_id: s.municipality_code for s in supply.sites}
        by_id = {c.citizen_id: c for c in citizens}
        outcome = await _commit(
            slots, result.bookings, by_id, muni, run_id=run_id, today=today, config=config
        )
        booked += outcome.booked
        elsewhere += outcome.elsewhere
        retry = outcome.retry or []
        for citizen_id in retry:
            reasons[citizen_id] = SLOT_TAKEN
        if not retry or attempt == REPLAN_PASSES - 1:
            break
        replanned += len(retry)
        citizens = await readmodel.waiting_citizens(pool, retry)
        elsewhere += len(retry) - len(citizens)  # booked by someone else in between
        for citizen_id in set(retry) - {c.citizen_id for c in citizens}:
            reasons.pop(citizen_id, None)
    waiting: dict[str, int] = defaultdict(int)
    for reason in reasons.values():
        waiting[reason] += 1
    summary = RunSummary(
        run_id=run_id,
        trigger=trigger,
        from_day=from_day,
        horizon_days=horizon_days,
        considered=considered,
        booked=booked,
        booked_elsewhere=elsewhere,
        waiting=dict(sorted(waiting.items())),
        replanned=replanned,
        seconds=round(time.perf_counter() - started, 3),
    )
    await pool.execute(
        "INSERT INTO scheduling_runs (run_id, trigger, from_day, horizon_days, summary, "
        "started_at) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)",
        run_id,
        trigger,
        from_day,
        horizon_days,
        msgspec.json.encode(summary).decode(),
        started_at,
    )
    log.info("scheduling run done", extra={"run_id": run_id, "booked": booked})
    return summary


async def _commit(
    slots: Slots,
    proposals: Sequence[Proposal],
    citizens: dict[str, Citizen],
    site_municipality: dict[str, str],
    *,
    run_id: str,
    today: date,
    config: BookingConfig,
) -> _Pass:
    """Commit proposals per (site, day, product) in batches; some batches at a time."""
    groups: dict[tuple[str, date, str], list[BookingRequest]] = defaultdict(list)
    for p in proposals:  # planner order: best citizens first within each group
        reason = explain(p.decision(citizens[p.citizen_id], site_municipality[p.site_id]))
        groups[(p.site_id, p.day, p.product_code)].append(
            BookingRequest(
                citizen_id=p.citizen_id,
                dose_number=p.dose_number,
                booster=p.booster,
                reason=reason,
                run_id=run_id,
            )
        )
    batches = [
        (key, requests[i : i + config.commit_batch])
        for key, requests in groups.items()
        for i in range(0, len(requests), config.commit_batch)
    ]
    gate = asyncio.Semaphore(max(config.commit_concurrency, 1))
    outcome = _Pass(retry=[])

    async def commit(key: tuple[str, date, str], requests: list[BookingRequest]) -> None:
        site_id, day, product = key

        async def work(conn: Connection) -> Reservation:
            return await slots.reserve(
                conn,
                site_id=site_id,
                day=day,
                product_code=product,
                requests=requests,
                today=today,
            )

        async with gate:
            try:
                reservation = await slots.store.transact(work)
            except _NOT_NOW:
                log.warning("a booking batch was not committed; planning it again", exc_info=True)
                assert outcome.retry is not None
                outcome.retry += [r.citizen_id for r in requests]
                return
        outcome.booked += len(reservation.booked)
        for request, why in reservation.refused:
            if why == ALREADY_BOOKED:
                outcome.elsewhere += 1
            else:
                assert outcome.retry is not None
                outcome.retry.append(request.citizen_id)

    await asyncio.gather(*(commit(key, requests) for key, requests in batches))
    return outcome


# --- no-shows ---------------------------------------------------------------------------


async def mark_no_shows(
    store: EventStore, *, now: datetime, config: BookingConfig, limit: int = 1000
) -> int:
    """Mark every appointment whose day has ended and is still open AppointmentMissed."""
    slots = Slots(store)
    today = now.astimezone(config.timezone).date()
    marked = 0
    while True:
        rows = await store.pool.fetch(
            "SELECT appointment_id, day, status FROM appointments "
            "WHERE status = 'booked' AND day < $1 ORDER BY day, appointment_id LIMIT $2",
            today,
            limit,
        )
        chosen = select_no_shows(
            [OpenAppointment(r["appointment_id"], r["day"], r["status"]) for r in rows],
            now,
            config.timezone,
        )
        for appointment_id in chosen:

            async def work(conn: Connection, appointment_id: str = appointment_id) -> int:
                outcome = await slots.miss(conn, appointment_id)
                return len(outcome.events)

            if await store.transact(work):
                marked += 1
        if len(rows) < limit:
            return marked


# --- background resources -------------------------------------------------------------------


def seconds_until(at: datetime, now: datetime) -> float:
    return max((at - now).total_seconds(), 0.0)


def next_run_at(now: datetime, config: BookingConfig) -> datetime:
    """The next local time the nightly run starts (today's if it is still ahead)."""
    local = now.astimezone(config.timezone)
    candidate = datetime.combine(local.date(), config.schedule_at, tzinfo=config.timezone)
    if candidate <= local:
        candidate = datetime.combine(
            local.date() + timedelta(days=1), config.schedule_at, tzinfo=config.timezone
        )
    return candidate


async def nightly_runs(
    store: EventStore,
    config: BookingConfig,
    on_summary: Callable[[RunSummary], None] | None = None,
) -> None:
    """Run the scheduler every night at SCHEDULE_AT for the next SCHEDULE_HORIZON_DAYS."""
    while True:
        now = config.now()
        await asyncio.sleep(seconds_until(next_run_at(now, config), now))
        try:
            async with _leader(store.pool, "booking-nightly-run") as leader:
                if leader:
                    today = config.today()
                    summary = await run_scheduler(
                        store,
                        from_day=today + timedelta(days=1),
                        horizon_days=config.schedule_horizon_days,
                        today=today,
                        config=config,
                        trigger="nightly",
                    )
                    if on_summary is not None:
                        on_summary(summary)
        except Exception:
            log.exception("the nightly scheduling run failed")
        await asyncio.sleep(1)


async def no_show_sweeps(store: EventStore, config: BookingConfig) -> None:
    """Mark no-shows every NO_SHOW_INTERVAL seconds."""
    while True:
        try:
            marked = await mark_no_shows(store, now=config.now(), config=config)
            if marked:
                log.info("no-shows marked", extra={"count": marked})
        except Exception:
            log.exception("the no-show sweep failed")
        await asyncio.sleep(config.no_show_interval)


@contextlib.asynccontextmanager
async def _leader(pool: asyncpg.Pool, name: str) -> AsyncIterator[bool]:
    """A session advisory lock held while the block runs: one replica does the work."""
    async with pool.acquire() as conn, session_lock(conn, name) as got:
        yield got
