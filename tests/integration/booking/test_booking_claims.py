"""Claiming appointments' rows: one COPY for a batch, and the citizens already booked refused."""

from __future__ import annotations

import uuid
from datetime import timedelta

from services.booking import readmodel
from services.booking.config import BookingConfig
from services.booking.readmodel import Claim

from .conftest import PFIZER, Booking, new_citizen_id, new_site_id


def claim(citizen_id: str) -> Claim:
    return Claim(
        appointment_id=str(uuid.uuid4()),
        citizen_id=citizen_id,
        day=BookingConfig().today() + timedelta(days=1),
        dose_number=1,
        booster=False,
        reason="test",
        run_id="claims-test",
    )


async def test_a_batch_with_a_citizen_booked_already_claims_the_others_only(
    booking: Booking,
) -> None:
    site_id = new_site_id()
    taken, others = new_citizen_id(), sorted(new_citizen_id() for _ in range(3))
    where = {"site_id": site_id, "municipality_code": "70092", "product_code": PFIZER}
    async with booking.pool.acquire() as conn, conn.transaction():
        assert await readmodel.claim_appointments(conn, [claim(taken)], **where) == {taken}
        batch = sorted([claim(taken), *(claim(c) for c in others)], key=lambda c: c.citizen_id)
        # The batch's COPY is refused (the open appointment of `taken`), then each row
        # is claimed on its own; the transaction goes on.
        assert await readmodel.claim_appointments(conn, batch, **where) == set(others)
    rows = await booking.pool.fetch(
        "SELECT citizen_id, count(*) AS n FROM appointments WHERE site_id = $1 GROUP BY 1",
        site_id,
    )
    assert {r["citizen_id"]: r["n"] for r in rows} == {c: 1 for c in [taken, *others]}
