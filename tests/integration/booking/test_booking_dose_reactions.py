"""The dose reactions through the service's own handlers (no Kafka): voided doses, changed
conditions, a late dose for a missed appointment."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dose_events import administered
from immunreg.contracts import administration, registration
from immunreg.contracts.administration import DoseAdministered, DoseVoided
from immunreg.contracts.registration import PreferencesChanged
from services.booking import readmodel
from services.booking.config import BookingConfig

from .conftest import PFIZER, Booking, envelope_of, new_site_id


def dose(citizen_id: str, site: str, dose_id: str, **changes: object) -> DoseAdministered:
    """A first dose of PFIZER given now (`changes` name the fields a case is about)."""
    return administered(
        dose_id=dose_id,
        citizen_id=citizen_id,
        site_id=site,
        product_code=PFIZER,
        administered_at=datetime.now(UTC),
        **changes,
    )


async def stocked_site_and_citizen(booking: Booking) -> tuple[str, str]:
    """A new site with capacity and stock of PFIZER, and a new citizen."""
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 10})
    await booking.stock(site, PFIZER, 50)
    return site, await booking.register()


async def given(booking: Booking, event: DoseAdministered | DoseVoided) -> None:
    await booking.feed(
        administration.CONTEXT,
        event,
        envelope_of(administration.CONTEXT, event, f"dose-{event.dose_id}", "DoseRecord"),
    )


async def test_a_voided_dose_cancels_the_next_one_and_the_citizen_waits_again(
    booking: Booking,
) -> None:
    site, citizen = await stocked_site_and_citizen(booking)
    first = str(uuid.uuid4())

    await given(booking, dose(citizen, site, first))
    await given(booking, dose(citizen, site, first))  # the same dose again changes nothing
    (second,) = await booking.appointments_of(citizen)
    assert (second["dose_number"], second["site_id"], second["status"]) == (2, site, "booked")
    today = BookingConfig().today()
    day = datetime.fromisoformat(second["day"]).date()
    assert today + timedelta(days=21) <= day <= today + timedelta(days=42)

    voided = DoseVoided(
        dose_id=first,
        citizen_id=citizen,
        site_id=site,
        product_code=PFIZER,
        lot_number="LOT-1",
        dose_number=1,
        reason="entered in error",
    )
    await given(booking, voided)
    (cancelled,) = await booking.appointments_of(citizen)
    assert cancelled["status"] == "cancelled"
    assert cancelled["status_reason"].startswith("dose_voided")
    (waiting,) = await readmodel.waiting_citizens(booking.pool, [citizen])
    assert waiting.due.dose_number == 1


# Registration publishes the products ruled out; events from before that carried the
# conditions in clear, and booking derives the same from them.
# (ruled-out products, conditions in clear)
CONTRAINDICATION = {
    "published": ([PFIZER, "EU/1/20/1507"], []),
    "derived from an old event": ([], ["severe_allergy_peg"]),
}


@pytest.mark.parametrize(
    ("ruled_out", "conditions"), CONTRAINDICATION.values(), ids=list(CONTRAINDICATION)
)
async def test_a_new_contraindication_cancels_the_open_appointment(
    booking: Booking, ruled_out: list[str], conditions: list[str]
) -> None:
    _, citizen = await stocked_site_and_citizen(booking)
    await booking.run(BookingConfig().today() + timedelta(days=1), 2)
    (booked,) = await booking.appointments_of(citizen)
    assert booked["product_code"] == PFIZER
    changed = PreferencesChanged(
        citizen_id=citizen,
        vaccine_preferences=["any"],
        preferred_municipality_code=None,
        priority_group="general",
        ruled_out_products=ruled_out,
        conditions=conditions,
    )
    await booking.feed(
        registration.CONTEXT,
        changed,
        envelope_of(registration.CONTEXT, changed, citizen, "Citizen", version=2),
    )
    (cancelled,) = await booking.appointments_of(citizen)
    assert cancelled["status"] == "cancelled"
    assert "contraindicated" in cancelled["status_reason"]
    summary = await booking.run(BookingConfig().today() + timedelta(days=1), 2)
    assert summary["waiting"] == {"no_capacity": 1}  # the site offers only Comirnaty
    row = await booking.pool.fetchrow(
        "SELECT conditions, ruled_out_products FROM citizens WHERE citizen_id = $1", citizen
    )
    assert row is not None and list(row["conditions"]) == [], "booking keeps no conditions"
    assert PFIZER in row["ruled_out_products"]


async def _fed_counting_open_reads(booking: Booking, event: DoseAdministered) -> int:
    """Apply the dose as `given` does; how often the citizen's open appointment was read."""
    entry = booking.reactions.lookup(administration.CONTEXT.topic, event.type_name())
    assert entry is not None
    sent: list[str] = []
    async with booking.pool.acquire() as conn, conn.transaction():
        conn.add_query_logger(lambda record: sent.append(record.query))
        await entry[1](
            conn,
            event,
            envelope_of(administration.CONTEXT, event, f"dose-{event.dose_id}", "DoseRecord"),
        )
    return sum("WHERE citizen_id = $1 AND status = 'booked'" in q for q in sent)


async def test_a_dose_reads_the_citizens_open_appointment_once(
    booking: Booking,
) -> None:
    site, citizen = await stocked_site_and_citizen(booking)

    # No appointment: read once, for attending, cancelling and booking the next dose.
    assert await _fed_counting_open_reads(booking, dose(citizen, site, str(uuid.uuid4()))) == 1
    (second,) = await booking.appointments_of(citizen)
    assert (second["dose_number"], second["status"]) == (2, "booked")
    # Given at that appointment (found by its id): attended, then what is open read once
    # for cancelling and booking (nothing left to book: the series is complete).
    at_it = dose(
        citizen, site, str(uuid.uuid4()), dose_number=2, appointment_id=second["appointment_id"]
    )
    assert await _fed_counting_open_reads(booking, at_it) == 1
    (attended,) = await booking.appointments_of(citizen)
    assert attended["status"] == "attended"
