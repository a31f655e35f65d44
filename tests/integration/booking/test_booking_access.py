"""Least privilege on a citizen's appointments: site staff see a citizen booked at their
site, another only with a stated reason; every read lands in the audit log."""

from __future__ import annotations

from datetime import timedelta

from immunreg.http.auth import Role
from services.booking.config import BookingConfig

from .conftest import PFIZER, Booking, new_site_id


async def test_site_staff_read_only_citizens_booked_at_their_site_or_say_why(
    booking: Booking,
) -> None:
    site, elsewhere = new_site_id(), new_site_id()
    await booking.define_site(site, capacity={PFIZER: 5})
    await booking.stock(site, PFIZER, 100)
    citizen = await booking.register()
    assert (await booking.run(BookingConfig().today() + timedelta(days=1), 1))["booked"] >= 1
    path = f"/v1/citizens/{citizen}/appointments"
    own_site = booking.auth(Role.SITE_STAFF, site_id=site, subject="nurse-own")
    other_site = booking.auth(Role.SITE_STAFF, site_id=elsewhere, subject="nurse-other")

    allowed = await booking.client.get(path, headers=own_site)
    assert allowed.status == 200, await allowed.text()
    assert [a["site_id"] for a in (await allowed.json())["items"]] == [site]

    refused = await booking.client.get(path, headers=other_site)
    assert refused.status == 403
    assert (await refused.json())["code"] == "citizen_not_at_site"

    blank = await booking.client.get(path, headers={**other_site, "Access-Reason": "  "})
    assert blank.status == 422
    assert (await blank.json())["errors"][0]["field"] == "header.Access-Reason"

    reason = "citizen walked in without an appointment"
    stated = await booking.client.get(path, headers={**other_site, "Access-Reason": reason})
    assert stated.status == 200

    officer = booking.auth(Role.PUBLIC_HEALTH, subject="officer-1")
    log = await booking.client.get(f"/v1/audit/reads?citizen_id={citizen}", headers=officer)
    assert log.status == 200
    reads = [(r["subject"], r["site_id"], r["reason"]) for r in (await log.json())["items"]]
    # Newest first; the refused and the malformed requests read nothing and left no row.
    assert reads[:2] == [("nurse-other", elsewhere, reason), ("nurse-own", site, None)]
    routes = {r["route"] for r in (await log.json())["items"]}
    assert routes == {"GET /v1/citizens/{citizen_id}/appointments"}

    own = await booking.client.get(
        f"/v1/citizens/{citizen}/reads", headers=booking.citizen(citizen)
    )
    assert own.status == 200
    assert {r["subject"] for r in (await own.json())["items"]} >= {"nurse-own", "nurse-other"}
    other = await booking.client.get(
        f"/v1/citizens/{citizen}/reads", headers=booking.citizen("cit_someone_else")
    )
    assert other.status == 403
    assert (await booking.client.get("/v1/audit/reads", headers=booking.admin)).status == 403
