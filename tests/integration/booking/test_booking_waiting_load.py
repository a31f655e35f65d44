"""The waiting list as the planner gets it: every field of every Citizen as the rows say.

readmodel.waiting_citizens reads the national list with its own statement (doses
grouped beside the citizens, the registration order computed by PostgreSQL) and builds
Citizens sharing equal values; the expectation here is built from the raw tables the
way the loader did before (`registration_order` of the timestamp, `next_dose` of the
doses, conditions kept in clear folded into the ruled-out products), so a field that
loads differently fails, whichever way it was read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from immunreg.reference.health import ruled_out_by
from services.booking import readmodel
from services.booking.eligibility import next_dose
from services.booking.ranking import registration_order
from services.booking.scheduler import Citizen

from .conftest import AZ, PFIZER, SINOPHARM, Booking

pytestmark = pytest.mark.asyncio


async def expected(booking: Booking, citizen_id: str) -> Citizen | None:
    """The Citizen the raw rows describe (None: nothing more is due)."""
    row = await booking.pool.fetchrow("SELECT * FROM citizens WHERE citizen_id = $1", citizen_id)
    assert row is not None
    # doses_of: one citizen's doses by their own statement, not the national one.
    due = next_dose(await readmodel.doses_of(booking.pool, citizen_id))
    if due is None:
        return None
    published = tuple(row["ruled_out_products"] or ())
    ruled_out = (
        tuple(sorted({*published, *ruled_out_by(list(row["conditions"]))}))
        if row["conditions"]
        else published
    )
    return Citizen(
        citizen_id=citizen_id,
        birth_date=row["birth_date"],
        municipality_code=row["municipality_code"],
        priority_group=row["priority_group"] or "general",
        order=registration_order(row["registered_at"]) if row["registered_at"] else 0,
        ruled_out=ruled_out,
        preferences=tuple(row["vaccine_preferences"] or ()),
        preferred_municipality_code=row["preferred_municipality_code"],
        due=due,
    )


async def dose(
    booking: Booking,
    citizen_id: str,
    number: int,
    product: str,
    day: date,
    *,
    booster: bool = False,
    voided: bool = False,
) -> None:
    await booking.pool.execute(
        "INSERT INTO doses (dose_id, citizen_id, site_id, product_code, dose_number, booster,"
        " administered_on, voided) VALUES ($1, $2, 'SITE-EARLIER', $3, $4, $5, $6, $7)",
        f"{citizen_id}-{number}-{booster}-{voided}",
        citizen_id,
        product,
        number,
        booster,
        day,
        voided,
    )


async def test_citizens_with_doses_conditions_and_preferences_load_as_their_rows_say(
    booking: Booking, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = datetime.now(UTC).date()
    plain = await booking.register()
    choosy = await booking.register(
        vaccine_preferences=[AZ, "any"],
        preferred_municipality_code="70106",
        priority_group="health_worker",
        birth_date=date(1944, 2, 29),
    )
    # Conditions that rule out products (published by registration as ruled-out products).
    allergic = await booking.register(conditions=["severe_allergy_peg"])
    second_due = await booking.register(vaccine_preferences=[SINOPHARM])
    await dose(booking, second_due, 1, PFIZER, today - timedelta(days=10))
    # A voided first dose does not count: dose 1 is due again.
    voided = await booking.register(priority_group="care_home")
    await dose(booking, voided, 1, PFIZER, today - timedelta(days=30), voided=True)
    booster_due = await booking.register()
    await dose(booking, booster_due, 1, SINOPHARM, today - timedelta(days=300))
    await dose(booking, booster_due, 2, SINOPHARM, today - timedelta(days=270))
    boosted = await booking.register()  # nothing more is due: not waiting
    await dose(booking, boosted, 1, SINOPHARM, today - timedelta(days=300))
    await dose(booking, boosted, 2, SINOPHARM, today - timedelta(days=270))
    await dose(booking, boosted, 3, SINOPHARM, today - timedelta(days=10), booster=True)
    # A row written before registration sealed the conditions: kept in clear.
    legacy = await booking.register(vaccine_preferences=[])
    await booking.pool.execute(
        "UPDATE citizens SET conditions = ARRAY['tts_history', 'pregnancy'],"
        " registered_at = registered_at + interval '0.000123 seconds' WHERE citizen_id = $1",
        legacy,
    )
    ids = [plain, choosy, allergic, second_due, voided, booster_due, boosted, legacy]
    wanted = {i: c for i in ids if (c := await expected(booking, i)) is not None}
    assert set(wanted) == set(ids) - {boosted}
    assert wanted[second_due].due.dose_number == 2
    assert wanted[second_due].due.anchor_site == "SITE-EARLIER"
    assert wanted[booster_due].due.booster
    assert wanted[voided].due.dose_number == 1
    assert wanted[allergic].ruled_out and wanted[legacy].ruled_out

    # Pages of 2 and 3: a citizen's doses on the page after the one before.
    for size in (2, 3, readmodel.WAITING_PAGE):
        monkeypatch.setattr(readmodel, "WAITING_PAGE", size)
        loaded = await readmodel.waiting_citizens(booking.pool)
        assert [c.citizen_id for c in loaded] == sorted(wanted)
        assert {c.citizen_id: c for c in loaded} == wanted
        some = await readmodel.waiting_citizens(booking.pool, [legacy, second_due, boosted])
        assert {c.citizen_id: c for c in some} == {i: wanted[i] for i in (legacy, second_due)}
