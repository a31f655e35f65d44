"""Events from the real topics: registrations make citizens wait, a dose books the next one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from dose_events import administered
from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.inventory import StockLevelChanged
from immunreg.contracts.registration import (
    CitizenErased,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from services.booking import readmodel
from services.booking.config import BookingConfig

from .conftest import AZ, PFIZER, Booking, new_citizen_id, new_site_id, publish, registered

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], seconds: float = 90
) -> T:
    deadline = time.monotonic() + seconds
    value = await probe()
    while not check(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {seconds}s: {value!r}")
        await asyncio.sleep(0.2)
        value = await probe()
    return value


async def citizen_row(booking: Booking, citizen_id: str) -> Any:
    return await booking.pool.fetchrow("SELECT * FROM citizens WHERE citizen_id = $1", citizen_id)


async def test_registration_events_make_citizens_wait(
    booking_with_consumer: Booking, producer: AIOKafkaProducer
) -> None:
    booking = booking_with_consumer
    ana, ben, cleo = new_citizen_id(), new_citizen_id(), new_citizen_id()
    for cid in (ana, ben, cleo):
        await publish(producer, registration.CONTEXT, registered(cid), cid, "Citizen")
    await publish(
        producer,
        registration.CONTEXT,
        PreferencesChanged(
            citizen_id=ana,
            vaccine_preferences=[AZ],
            preferred_municipality_code="70122",
            priority_group="health_worker",
            conditions=["diabetes"],
        ),
        ana,
        "Citizen",
        version=2,
    )
    await publish(
        producer,
        registration.CONTEXT,
        RegistrationWithdrawn(citizen_id=ben),
        ben,
        "Citizen",
        version=2,
    )
    await publish(
        producer,
        registration.CONTEXT,
        RegistrationWithdrawn(citizen_id=cleo),
        cleo,
        "Citizen",
        version=2,
    )
    await publish(
        producer, registration.CONTEXT, CitizenErased(citizen_id=cleo), cleo, "Citizen", version=3
    )

    async def waiting() -> dict[str, Any]:
        return {
            c.citizen_id: c
            for c in await readmodel.waiting_citizens(booking.pool, [ana, ben, cleo])
        }

    async def erased() -> Any:
        return await citizen_row(booking, cleo)

    await eventually(erased, lambda row: row is not None and row["status"] == "erased")
    found = await eventually(
        waiting, lambda w: ana in w and w[ana].priority_group == "health_worker"
    )
    assert set(found) == {ana}
    assert (found[ana].preferences, found[ana].preferred_municipality_code) == ((AZ,), "70122")
    assert found[ana].due.dose_number == 1
    # Ben's events sit on another partition than Ana's and Cleo's: wait for them too.
    await eventually(
        lambda: citizen_row(booking, ben),
        lambda row: row is not None and row["status"] == "withdrawn",
    )
    cleo_row = await citizen_row(booking, cleo)
    assert cleo_row["birth_date"] is None and cleo_row["municipality_code"] is None
    assert list(cleo_row["ruled_out_products"]) == [] and list(cleo_row["conditions"]) == []
    ana_row = await citizen_row(booking, ana)
    assert list(ana_row["conditions"]) == [], "an old event's clear conditions are not kept"


async def test_a_dose_event_books_the_second_dose_inside_the_interval(
    booking_with_consumer: Booking, producer: AIOKafkaProducer
) -> None:
    booking = booking_with_consumer
    site = new_site_id()
    await booking.define_site(site, "70092", {PFIZER: 1000})
    await publish(
        producer,
        inventory.CONTEXT,
        StockLevelChanged(location_id=site, product_code=PFIZER, doses_available=1000),
        f"level-{site}:{PFIZER}",
        "StockLevel",
    )
    citizen = new_citizen_id()
    await publish(producer, registration.CONTEXT, registered(citizen), citizen, "Citizen")

    async def ready() -> tuple[Any, Any]:
        stock = await booking.pool.fetchval(
            "SELECT doses_available FROM site_stock WHERE site_id = $1", site
        )
        return stock, await citizen_row(booking, citizen)

    await eventually(ready, lambda r: r[0] == 1000 and r[1] is not None)

    config = BookingConfig()
    given_at = datetime.now(UTC)
    dose_id = str(uuid.uuid4())
    await publish(
        producer,
        administration.CONTEXT,
        administered(
            dose_id=dose_id,
            citizen_id=citizen,
            site_id=site,
            product_code=PFIZER,
            administered_at=given_at,
        ),
        f"dose-{dose_id}",
        "DoseRecord",
    )

    appointments = await eventually(
        lambda: booking.appointments_of(citizen), lambda items: len(items) == 1, seconds=60
    )
    (second,) = appointments
    given_on = given_at.astimezone(config.timezone).date()
    assert second["dose_number"] == 2 and second["status"] == "booked"
    assert (second["site_id"], second["product_code"]) == (site, PFIZER)
    day = datetime.fromisoformat(second["day"]).date()
    assert given_on + timedelta(days=21) <= day <= given_on + timedelta(days=42)
    assert "dose 2 of Comirnaty" in second["reason"]
    dose = await booking.pool.fetchrow("SELECT * FROM doses WHERE dose_id = $1", dose_id)
    assert dose is not None and dose["citizen_id"] == citizen

    # Withdrawing the registration cancels the open appointment and frees its slot.
    await publish(
        producer,
        registration.CONTEXT,
        RegistrationWithdrawn(citizen_id=citizen),
        citizen,
        "Citizen",
        version=2,
    )
    (cancelled,) = await eventually(
        lambda: booking.appointments_of(citizen), lambda items: items[0]["status"] == "cancelled"
    )
    assert cancelled["status_reason"] == "registration_withdrawn"
    released = await booking.pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'SlotsReleased' AND data->'appointment_ids' ? $1",
        cancelled["appointment_id"],
    )
    assert released == 1
