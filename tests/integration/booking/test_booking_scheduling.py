"""Scheduling runs over a real app and database: concurrent runs, cancel, reschedule, no-shows."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from immunreg.contracts import booking as booking_events
from services.booking import readmodel
from services.booking.config import BookingConfig
from services.booking.domain import ChangeCapacity
from services.booking.handlers import change_day, mark_no_shows, run_scheduler
from services.booking.schemas import RunCounts

from .conftest import AZ, PFIZER, SINOPHARM, Booking, new_site_id

MUNICIPALITIES = ["70092", "70122", "70165"]  # three Belgrade municipalities
GROUPS = ["general", "general", "chronic_patient", "health_worker", "critical_worker"]


def today() -> date:
    return BookingConfig().today()


async def appointment_streams(booking: Booking) -> list[list[str]]:
    """Each appointment stream's event types in order, the streams sorted."""
    rows = await booking.pool.fetch(
        "SELECT stream_id, type FROM events WHERE stream_type = 'Appointment'"
        " ORDER BY stream_id, version"
    )
    streams: dict[str, list[str]] = {}
    for row in rows:
        streams.setdefault(row["stream_id"], []).append(row["type"])
    return sorted(streams.values())


async def test_concurrent_runs_book_each_citizen_once_and_overbook_nothing(
    booking: Booking,
) -> None:
    rng = random.Random(7)
    sites = {}
    for i in range(6):
        site_id = new_site_id()
        capacity = {PFIZER: rng.randint(1, 4), AZ: rng.randint(0, 3), SINOPHARM: rng.randint(1, 3)}
        await booking.define_site(site_id, MUNICIPALITIES[i % 3], capacity)
        sites[site_id] = capacity
        for product in capacity:
            await booking.stock(site_id, product, rng.randint(5, 40))
    citizens = [
        await booking.register(
            municipality_code=rng.choice(MUNICIPALITIES),
            priority_group=rng.choice(GROUPS),
            vaccine_preferences=rng.choice([["any"], [PFIZER], [AZ, SINOPHARM], [SINOPHARM]]),
            birth_date=date(rng.randint(1940, 2004), rng.randint(1, 12), rng.randint(1, 28)),
        )
        for _ in range(220)
    ]
    start = today() + timedelta(days=1)

    # Two identical runs, and one over a later period: the last plans other citizens into
    # the shared days, so only the SiteDay's version check keeps those days from overflowing.
    # At once, as three replicas' workers run them (one worker runs one run at a time).
    config = BookingConfig(commit_batch=7)
    counts = await asyncio.gather(
        *(
            run_scheduler(
                booking.store,
                run_id=f"concurrent-{n}",
                from_day=from_day,
                horizon_days=days,
                today=today(),
                config=config,
            )
            for n, (from_day, days) in enumerate(
                ((start, 5), (start, 5), (start + timedelta(days=1), 4))
            )
        )
    )
    runs = [msgspec.structs.asdict(c) for c in counts]

    appointments = await booking.pool.fetch(
        "SELECT citizen_id, site_id, day, product_code, status FROM appointments"
    )
    # Each citizen booked once: one row, one AppointmentBooked event.
    per_citizen = Counter(r["citizen_id"] for r in appointments)
    assert max(per_citizen.values()) == 1
    booked_events = await booking.pool.fetch(
        "SELECT data->>'citizen_id' AS citizen_id FROM events WHERE type = 'AppointmentBooked'"
    )
    assert len(booked_events) == len(appointments) == len({r["citizen_id"] for r in booked_events})
    assert set(per_citizen) <= set(citizens)
    # No site day over its capacity, counted from the appointments and from the slot ledger.
    per_slot = Counter((r["site_id"], r["day"], r["product_code"]) for r in appointments)
    for (site_id, _, product), count in per_slot.items():
        assert count <= sites[site_id][product], (site_id, product, count)
    reserved = await booking.pool.fetch(
        "SELECT data->>'site_id' AS site, data->>'product_code' AS product, data->>'day' AS day, "
        "sum(jsonb_array_length(data->'appointment_ids')) AS n FROM events "
        "WHERE type = 'SlotsReserved' GROUP BY 1, 2, 3"
    )
    assert reserved and all(r["n"] <= sites[r["site"]][r["product"]] for r in reserved)
    # No site booked beyond its stock.
    stock = {
        (r["site_id"], r["product_code"]): r["doses_available"]
        for r in await booking.pool.fetch("SELECT * FROM site_stock")
    }
    per_stock = Counter((r["site_id"], r["product_code"]) for r in appointments)
    assert all(n <= stock[k] for k, n in per_stock.items())
    # The runs account for every booking between them, and there was contention.
    assert sum(r["booked"] for r in runs) == len(appointments) > 0
    assert sum(r["booked_elsewhere"] + r["replanned"] for r in runs) > 0
    for summary in runs:
        assert summary["considered"] <= len(citizens)  # a run may start after another booked
        assert set(summary["waiting"]) <= {
            "no_capacity",
            "no_stock",
            "slot_taken",
            "no_eligible_product",
            "contraindicated",
            "outside_horizon",
        }
    # Every booking says why.
    reasons = await booking.pool.fetch("SELECT reason FROM appointments")
    assert all("served in order of priority" in r["reason"] for r in reasons)
    # Calm runs afterwards may book what contention left waiting ("slot_taken"); then a
    # run books nothing more, and nothing is over capacity still.
    await booking.run(start, 5)
    assert (await booking.run(start, 5))["booked"] == 0
    final = Counter(
        (r["site_id"], r["product_code"], r["day"])
        for r in await booking.pool.fetch("SELECT * FROM appointments")
    )
    assert all(n <= sites[site][product] for (site, product, _), n in final.items())


async def test_a_run_alone_commits_one_site_at_a_time_and_plans_nobody_twice(
    booking: Booking,
) -> None:
    """A run's transactions at one site (its products share the SiteDays; a big
    (site, product) is several transactions on one stock row) go one after another:
    alone, a run collides with nobody: no append is refused, nobody is planned again."""
    rng = random.Random(11)
    for i in range(2):
        site_id = new_site_id()
        await booking.define_site(site_id, MUNICIPALITIES[i], {PFIZER: 6, AZ: 6, SINOPHARM: 6})
        for product in (PFIZER, AZ, SINOPHARM):
            await booking.stock(site_id, product, 60)
    for _ in range(120):
        await booking.register(
            municipality_code=rng.choice(MUNICIPALITIES[:2]),
            priority_group="general",
            vaccine_preferences=rng.choice([[PFIZER], [AZ], [SINOPHARM]]),
            birth_date=date(rng.randint(1950, 1990), 1, 1),
        )
    metrics = booking.store.metrics
    assert metrics is not None

    def conflicts() -> float:
        return metrics.registry.get_sample_value("immunreg_eventstore_conflicts_total") or 0.0

    before = conflicts()
    counts = await run_scheduler(
        booking.store,
        run_id="one-site-at-a-time",
        from_day=today() + timedelta(days=1),
        horizon_days=5,
        today=today(),
        config=BookingConfig(commit_batch=3, commit_concurrency=8),
    )
    assert counts.booked > 60 and counts.batches_committed > 20
    assert counts.replanned == 0 and counts.booked_elsewhere == 0
    # Not one append refused for a SiteDay another of the run's transactions moved on.
    assert conflicts() == before


async def test_a_citizen_booked_on_a_replan_is_booked_and_not_counted_waiting(
    booking: Booking,
) -> None:
    """A day closed between the plan and its commit: its bookings are refused (slot
    taken), planned again onto the next day and booked there; the run counts them booked
    and replanned, and none of them as waiting."""
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 2})
    await booking.stock(site, PFIZER, 100)
    day1 = today() + timedelta(days=1)
    day2 = day1 + timedelta(days=1)
    citizens = [await booking.register() for _ in range(2)]
    closed = False

    async def close_day1_once_planned(counts: RunCounts) -> None:
        # The first report comes after the first plan, before its commit.
        nonlocal closed
        if not closed:
            closed = True
            await change_day(
                booking.store, ChangeCapacity(site_id=site, day=day1, capacity={}, closed=True)
            )

    counts = await run_scheduler(
        booking.store,
        run_id="replanned",
        from_day=day1,
        horizon_days=2,
        today=today(),
        config=BookingConfig(),
        report=close_day1_once_planned,
    )
    assert (counts.booked, counts.replanned, counts.booked_elsewhere) == (2, 2, 0)
    assert counts.waiting == {}
    for citizen_id in citizens:
        (appointment,) = await booking.appointments_of(citizen_id)
        assert appointment["day"] == day2.isoformat()


async def test_cancel_frees_the_slot_and_rescheduling_to_a_full_day_is_409(
    booking: Booking,
) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 1})
    await booking.stock(site, PFIZER, 100)
    day1 = today() + timedelta(days=1)
    day2 = day1 + timedelta(days=1)
    ana = await booking.register()
    ben = await booking.register()
    summary = await booking.run(day1, 2)
    assert summary["booked"] == 2
    (ana_appt,) = await booking.appointments_of(ana)
    (ben_appt,) = await booking.appointments_of(ben)
    assert (ana_appt["day"], ben_appt["day"]) == (day1.isoformat(), day2.isoformat())
    assert ana_appt["status"] == "booked" and "Comirnaty" in ana_appt["reason"]

    full = await booking.client.post(
        f"/v1/appointments/{ana_appt['appointment_id']}/reschedule",
        json={"day": day2.isoformat()},
        headers=booking.citizen(ana),
    )
    assert full.status == 409
    assert (await full.json())["code"] == "slot_full"

    other = await booking.client.post(
        f"/v1/appointments/{ben_appt['appointment_id']}/cancel", headers=booking.citizen(ana)
    )
    assert other.status == 404  # another citizen's appointment is not there for you

    cancelled = await booking.client.post(
        f"/v1/appointments/{ben_appt['appointment_id']}/cancel", headers=booking.citizen(ben)
    )
    assert cancelled.status == 200
    assert (await cancelled.json())["status"] == "cancelled"
    again = await booking.client.post(
        f"/v1/appointments/{ben_appt['appointment_id']}/cancel", headers=booking.citizen(ben)
    )
    assert again.status == 200  # cancelling twice changes nothing

    moved = await booking.client.post(
        f"/v1/appointments/{ana_appt['appointment_id']}/reschedule",
        json={"day": day2.isoformat()},
        headers=booking.citizen(ana),
    )
    assert moved.status == 200, await moved.text()
    assert (await moved.json())["day"] == day2.isoformat()

    # Day 1 is free again. Ben cancelled but is still registered, so he is waiting again and,
    # registered before Carl, gets it; Carl, the newcomer, finds no room.
    carl = await booking.register()
    rerun = await booking.run(day1, 2)
    assert rerun["booked"] == 1 and rerun["waiting"] == {"no_capacity": 1}
    assert await booking.appointments_of(carl) == []
    ben_now = [a for a in await booking.appointments_of(ben) if a["status"] == "booked"]
    assert [a["day"] for a in ben_now] == [day1.isoformat()]

    listing = await booking.client.get(
        f"/v1/sites/{site}/appointments",
        params={"date": day2.isoformat()},
        headers=booking.auth("site_staff", site_id=site),
    )
    assert listing.status == 200
    day2_list = [(a["citizen_id"], a["status"]) for a in (await listing.json())["items"]]
    assert sorted(day2_list) == sorted([(ana, "booked"), (ben, "cancelled")])
    foreign = await booking.client.get(
        f"/v1/sites/{site}/appointments",
        params={"date": day2.isoformat()},
        headers=booking.auth("site_staff", site_id="SITE-OTHER"),
    )
    assert foreign.status == 403

    released = await booking.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'SlotsReleased'"
    )
    assert released == 2  # the cancellation and the move
    # One event per decision and nothing beside it (no NotificationRequested): the
    # notifications service tells the citizen from these.
    assert await appointment_streams(booking) == [
        ["AppointmentBooked"],  # Ben again
        ["AppointmentBooked", "AppointmentCancelled"],  # Ben
        ["AppointmentBooked", "AppointmentRescheduled"],  # Ana
    ]
    runs = await booking.pool.fetch(
        "SELECT data->>'run_id' AS run_id FROM events WHERE type = 'AppointmentBooked'"
    )
    assert all(r["run_id"] for r in runs)  # each booked by a scheduling run


async def test_closing_a_day_cancels_its_appointments(booking: Booking) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 5})
    await booking.stock(site, PFIZER, 100)
    day = today() + timedelta(days=1)
    citizen = await booking.register()
    await booking.run(day, 1)
    closed = await booking.client.put(
        f"/v1/sites/{site}/days/{day.isoformat()}", json={"closed": True}, headers=booking.admin
    )
    assert closed.status == 200, await closed.text()
    body = await closed.json()
    assert (body["closed"], body["cancelled"], body["capacity"]) == (True, 1, {})
    (appointment,) = await booking.appointments_of(citizen)
    assert (appointment["status"], appointment["status_reason"]) == ("cancelled", "site_closed")
    summary = await booking.run(day, 1)
    assert summary["booked"] == 0 and summary["waiting"] == {"no_capacity": 1}


async def test_a_missed_appointment_is_marked_and_the_citizen_booked_again(
    booking: Booking,
) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 5})
    await booking.stock(site, PFIZER, 100)
    day = today() + timedelta(days=1)
    citizen = await booking.register()
    await booking.run(day, 1)
    config = BookingConfig()
    # The evening of the day itself: nothing is a no-show yet.
    evening = datetime.combine(day, time(23, 0), tzinfo=config.timezone)
    assert await mark_no_shows(booking.store, now=evening, config=config) == 0
    after = datetime.combine(day + timedelta(days=1), time(0, 5), tzinfo=config.timezone)
    assert await mark_no_shows(booking.store, now=after.astimezone(UTC), config=config) == 1
    assert await mark_no_shows(booking.store, now=after, config=config) == 0
    (missed,) = await booking.appointments_of(citizen)
    assert missed["status"] == "missed"
    assert [c.citizen_id for c in await readmodel.waiting_citizens(booking.pool)] == [citizen]
    rebooked = await booking.run(day + timedelta(days=1), 1)
    assert rebooked["booked"] == 1
    statuses = sorted(a["status"] for a in await booking.appointments_of(citizen))
    assert statuses == ["booked", "missed"]
    # The missed appointment and the new one, and nothing beside them.
    assert await appointment_streams(booking) == [
        ["AppointmentBooked"],
        ["AppointmentBooked", "AppointmentMissed"],
    ]
    assert booking_events.CONTEXT.knows("AppointmentMissed")


async def test_concurrent_reschedules_into_a_nearly_full_day_overbook_nothing(
    booking: Booking,
) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 10})
    await booking.stock(site, PFIZER, 100)
    day1 = today() + timedelta(days=1)
    target = day1 + timedelta(days=3)
    override = await booking.client.put(
        f"/v1/sites/{site}/days/{target.isoformat()}",
        json={"capacity": {PFIZER: 2}},
        headers=booking.admin,
    )
    assert override.status == 200 and (await override.json())["capacity"] == {PFIZER: 2}
    citizens = [await booking.register() for _ in range(10)]
    assert (await booking.run(day1, 1))["booked"] == 10
    appointments = [(c, (await booking.appointments_of(c))[0]) for c in citizens]

    async def move(citizen: str, appointment: dict[str, object]) -> int:
        response = await booking.client.post(
            f"/v1/appointments/{appointment['appointment_id']}/reschedule",
            json={"day": target.isoformat()},
            headers=booking.citizen(citizen),
        )
        return response.status

    statuses = await asyncio.gather(*(move(c, a) for c, a in appointments))
    assert Counter(statuses) == {200: 2, 409: 8}
    on_target = await booking.pool.fetchval(
        "SELECT count(*) FROM appointments WHERE site_id = $1 AND day = $2", site, target
    )
    on_day1 = await booking.pool.fetchval(
        "SELECT count(*) FROM appointments WHERE site_id = $1 AND day = $2", site, day1
    )
    assert (on_target, on_day1) == (2, 8)
