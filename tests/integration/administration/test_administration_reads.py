"""Recording a dose reads the lot, the citizen's history and key and the site's
municipality with one statement (`readmodel.fetch_administering`): it must say what the
separate reads say, whatever is there or missing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.administration import keys, readmodel

from .conftest import Administration

PAPER = "entered from paper records"


def _site() -> str:
    return f"SITE-RD{uuid.uuid4().hex[:8].upper()}"


async def _separately(
    a: Administration, citizen_id: str, lot: str, site_id: str
) -> readmodel.Administering:
    async with a.pool.acquire() as conn:
        return readmodel.Administering(
            lot=await readmodel.fetch_lot(conn, lot, site_id),
            history=await readmodel.fetch_history(conn, citizen_id),
            key=await keys.fetch_citizen_key(conn, citizen_id),
            site_municipality=await readmodel.fetch_site_municipality(conn, site_id),
        )


async def _together(
    a: Administration, citizen_id: str, lot: str, site_id: str
) -> readmodel.Administering:
    async with a.pool.acquire() as conn:
        return await readmodel.fetch_administering(conn, citizen_id, lot, site_id)


async def test_the_one_read_says_what_the_separate_reads_say(
    administration: Administration,
) -> None:
    a = administration
    here, elsewhere = _site(), _site()
    await a.define_site(here, "70092")
    lot = await a.deliver_lot(here)
    citizen = await a.register()
    now = datetime.now(UTC)

    async def given(ago: timedelta, number: int) -> str:
        body = a.dose(citizen, here, lot, dose_number=number, override_reason=PAPER)
        return await a.record(body | {"administered_at": (now - ago).isoformat()}, a.admin)

    # Two doses that count, the later one recorded first; and one voided.
    second = await given(timedelta(hours=1), 2)
    first = await given(timedelta(days=30), 1)
    voided = await given(timedelta(minutes=5), 3)
    response = await a.client.post(
        f"/v1/doses/{voided}/void", json={"reason": "wrong citizen"}, headers=a.admin
    )
    assert response.status in (200, 201), await response.text()

    found = await _together(a, citizen, lot, here)
    assert found == await _separately(a, citizen, lot, here)
    assert [d.dose_id for d in found.history] == [first, second]
    assert found.lot is not None and found.lot.at_site and found.key is not None
    assert found.site_municipality == "70092"
    # Nothing known: no lot, no site, a citizen with no doses and no key.
    stranger, unknown_lot = await a.register(), f"NOLOT{uuid.uuid4().hex[:6]}"
    nothing = await _together(a, stranger, unknown_lot, elsewhere)
    assert nothing == await _separately(a, stranger, unknown_lot, elsewhere)
    assert nothing == readmodel.Administering(None, [], None, None)
    # The lot known, though not at this site.
    assert (await _together(a, citizen, lot, elsewhere)) == await _separately(
        a, citizen, lot, elsewhere
    )
