"""Bad input is a problem+json with field entries, and nothing is stored; roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.booking.config import BookingConfig

from .conftest import PFIZER, Booking, new_site_id


def fields(problem: dict[str, Any]) -> set[str]:
    return {e["field"] for e in problem["errors"]}


async def test_bad_site_definitions_are_422_and_store_nothing(booking: Booking) -> None:
    before = await booking.counts()
    site = new_site_id()
    cases = [
        (
            {
                "name": "A",
                "municipality_code": "99999",
                "address": "x",
                "daily_capacity": {"Covaxin": 5},
            },
            None,
        ),
        (
            {"name": "A", "municipality_code": "70092", "address": "x", "latitude": 91},
            "body.latitude",
        ),
        (
            {"name": "A", "municipality_code": "70092", "address": "x", "opening_hours": "8-20"},
            "body.opening_hours",
        ),
        (
            {
                "name": "A",
                "municipality_code": "70092",
                "address": "x",
                "daily_capacity": {PFIZER: -1},
            },
            f"body.daily_capacity.{PFIZER}",
        ),
        ({"name": "A", "municipality_code": "70092"}, "body.address"),
        ({"name": "A", "municipality_code": "70092", "address": "x", "extra": 1}, "body.extra"),
    ]
    for body, field in cases:
        response = await booking.client.put(f"/v1/sites/{site}", json=body, headers=booking.admin)
        assert response.status == 422, (body, await response.text())
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        if field is None:  # the business checks report every bad field at once
            assert fields(problem) >= {"body.municipality_code", "body.daily_capacity.Covaxin"}
            assert problem["code"] == "invalid_fields"
        else:
            assert field in fields(problem) or any(f.startswith(field) for f in fields(problem))
    bad_id = await booking.client.put(
        "/v1/sites/site 1",
        json={"name": "A", "municipality_code": "70092", "address": "x"},
        headers=booking.admin,
    )
    assert bad_id.status == 422 and fields(await bad_id.json()) == {"path.site_id"}
    assert await booking.counts() == before


async def test_bad_day_overrides_runs_and_reschedules_are_422_and_store_nothing(
    booking: Booking,
) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 2})
    await booking.stock(site, PFIZER, 10)
    citizen = await booking.register()
    today = BookingConfig().today()
    await booking.run(today + timedelta(days=1), 1)
    (appointment,) = await booking.appointments_of(citizen)
    before = await booking.counts()
    admin = booking.admin

    checks = [
        ("PUT", f"/v1/sites/{site}/days/2021-13-01", {"capacity": {PFIZER: 1}}, {"path.date"}),
        ("PUT", f"/v1/sites/{site}/days/{today - timedelta(days=1)}", {}, {"path.date"}),
        (
            "PUT",
            f"/v1/sites/{site}/days/{today + timedelta(days=2)}",
            {"capacity": {"Covaxin": 1}},
            {"body.capacity.Covaxin"},
        ),
        ("POST", "/v1/scheduling/runs", {"from_day": "2020-01-01"}, {"body.from_day"}),
        ("POST", "/v1/scheduling/runs", {"horizon_days": 0}, {"body.horizon_days"}),
        ("POST", "/v1/scheduling/runs", {"from_day": "tomorrow"}, {"body.from_day"}),
        (
            "POST",
            f"/v1/appointments/{appointment['appointment_id']}/reschedule",
            {"day": (today - timedelta(days=3)).isoformat()},
            {"body.day"},
        ),
        (
            "POST",
            f"/v1/appointments/{appointment['appointment_id']}/reschedule",
            {"day": (today + timedelta(days=2)).isoformat(), "site_id": "SITE-NOWHERE"},
            {"body.site_id"},
        ),
    ]
    for method, path, body, expected in checks:
        response = await booking.client.request(method, path, json=body, headers=admin)
        assert response.status == 422, (path, body, await response.text())
        assert response.content_type == "application/problem+json"
        assert fields(await response.json()) == expected, (path, body)
    listing = await booking.client.get(f"/v1/sites/{site}/appointments", headers=admin)
    assert listing.status == 422 and fields(await listing.json()) == {"query.date"}
    assert await booking.counts() == before


async def test_roles(booking: Booking) -> None:
    site = new_site_id()
    await booking.define_site(site, capacity={PFIZER: 2})
    body = {"name": "A", "municipality_code": "70092", "address": "x"}
    for role, claims in (("citizen", {"citizen_id": "c1"}), ("site_staff", {"site_id": site})):
        refused = await booking.client.put(
            f"/v1/sites/{site}", json=body, headers=booking.auth(role, **claims)
        )
        assert refused.status == 403
        run = await booking.client.post(
            "/v1/scheduling/runs", json={}, headers=booking.auth(role, **claims)
        )
        assert run.status == 403
    sites = await booking.client.get(
        "/v1/sites", params={"limit": "1"}, headers=booking.auth("public_health")
    )
    assert sites.status == 200
    page = await sites.json()
    assert [s["site_id"] for s in page["items"]] == [site] and page["next_cursor"] is None
    other = await booking.client.get("/v1/citizens/c2/appointments", headers=booking.citizen("c1"))
    assert other.status == 403
    anonymous = await booking.client.get("/v1/sites")
    assert anonymous.status == 401


async def test_site_definition_is_idempotent_and_versioned(booking: Booking) -> None:
    site = new_site_id()
    body = {
        "name": "A",
        "municipality_code": "70092",
        "address": "x",
        "daily_capacity": {PFIZER: 3},
    }
    first = await booking.client.put(f"/v1/sites/{site}", json=body, headers=booking.admin)
    assert first.status == 201 and first.headers["ETag"] == '"1"'
    same = await booking.client.put(f"/v1/sites/{site}", json=body, headers=booking.admin)
    assert same.status == 200 and same.headers["ETag"] == '"1"'  # nothing changed, nothing stored
    stale = await booking.client.put(
        f"/v1/sites/{site}",
        json={**body, "name": "B"},
        headers={**booking.admin, "If-Match": '"0"'},
    )
    assert stale.status == 412
    changed = await booking.client.put(
        f"/v1/sites/{site}",
        json={**body, "name": "B"},
        headers={**booking.admin, "If-Match": '"1"'},
    )
    assert changed.status == 200 and (await changed.json())["name"] == "B"
    openapi = await booking.client.get("/openapi.json")
    paths = (await openapi.json())["paths"]
    assert {"/v1/sites/{site_id}", "/v1/scheduling/runs", "/v1/sites/{site_id}/days/{date}"} <= set(
        paths
    )
