"""Projections with every service running as its own process, on the real topics.

A lot shipped to a fresh site (inventory) shows as that site's stock; a dose recorded
there (administration, for a citizen registered through registration) shows in its
daily doses and in coverage; the dashboard is served. The topics are shared with
other runs, so the checks look at this run's own site.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from e2e_http import send

from immunreg.reference.calendar import local_date
from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

VAXZEVRIA = "EU/1/21/1529"
WAIT_SECONDS = 120.0


def call(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, Any]:
    """JSON when the service answers JSON successfully; otherwise the body as text."""
    answer = send(method, url, headers, body)
    if answer.status < 400 and answer.is_json:
        return answer.status, answer.json()
    return answer.status, answer.raw.decode()


def eventually(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"timed out waiting until {what}"
            return result
        time.sleep(0.5)


def ship_lot(stack: Stack, site: str) -> str:
    base, logistics = stack.urls["inventory"], stack.token("logistics")
    lot = f"E2EP{uuid.uuid4().hex[:8].upper()}"
    status, body = call(
        "POST",
        f"{base}/v1/lots",
        logistics,
        {
            "lot_number": lot,
            "product_code": VAXZEVRIA,
            "manufacturer_code": "ORG-100001699",
            "expiry_date": (date.today() + timedelta(days=60)).isoformat(),
            "vials": 10,
            "doses_per_vial": 10,
            "storage": "refrigerated",
        },
    )
    assert status == 201, body
    status, shipment = call(
        "POST",
        f"{base}/v1/shipments",
        logistics,
        {"lot_number": lot, "to_location": site, "vials": 2},
    )
    assert status == 201, shipment
    url = f"{base}/v1/shipments/{shipment['shipment_id']}"
    assert call("POST", f"{url}/dispatch", logistics)[0] == 200
    staff = stack.token("site_staff", site_id=site)
    assert call("POST", f"{url}/receive", staff, {"vials_received": 2})[0] == 200
    return lot


def register(stack: Stack) -> str:
    rng = random.Random()
    born = date(1950 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    status, body = call(
        "POST",
        f"{stack.urls['registration']}/v1/citizens",
        stack.token("admin"),
        {
            "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
            "given_name": "Ana",
            "family_name": "Nikolić",
            "birth_date": born.isoformat(),
            "sex": "female",
            "municipality_code": "80284",
            "email": "ana@example.rs",
            "consent": {"data_processing": True},
        },
    )
    assert status == 201, body
    citizen_id: str = body["citizen_id"]
    return citizen_id


def test_stock_doses_and_coverage_reach_the_projections(stack: Stack) -> None:
    if not {"projections", "inventory", "registration"} <= set(stack.urls):
        pytest.skip("needs projections, inventory and registration")
    base = stack.urls["projections"]
    analyst = stack.token("public_health")
    site = f"SITE-P{uuid.uuid4().hex[:8].upper()}"
    lot = ship_lot(stack, site)

    def stocked() -> Any:
        status, body = call("GET", f"{base}/v1/stock?location_id={site}", analyst)
        assert status == 200, body
        return body if body["locations"] else None

    stock = eventually("the site's stock is projected", stocked)
    [row] = stock["locations"]
    assert (row["product_code"], row["doses_available"]) == (VAXZEVRIA, 20)
    assert stock["fresh_as_of"] is not None

    status, page = call("GET", f"{base}/")
    assert status == 200 and 'id="map"' in page and "<script" in page

    if "administration" not in stack.urls:
        pytest.skip("no administration service: no dose to project")
    citizen_id = register(stack)
    administered_at = datetime.now(UTC) - timedelta(minutes=5)
    body = {
        "citizen_id": citizen_id,
        "site_id": site,
        "product_code": VAXZEVRIA,
        "lot_number": lot,
        "dose_number": 1,
        "administered_at": administered_at.isoformat(),
        "vaccinator_id": "V-E2E",
    }
    staff = stack.token("site_staff", site_id=site)

    def recorded() -> Any:
        status, answer = call("POST", f"{stack.urls['administration']}/v1/doses", staff, body)
        return answer if status in (200, 201) else None

    eventually("administration knows the citizen and the lot", recorded)

    def counted() -> Any:
        status, daily = call("GET", f"{base}/v1/doses/daily?site_id={site}", analyst)
        assert status == 200, daily
        return daily if daily["total"] == 1 else None

    daily = eventually("the dose is in the site's daily doses", counted)
    # On the day it was given in the national timezone: near midnight, "five minutes
    # ago" is yesterday there.
    given_on = local_date(administered_at).isoformat()
    assert {row["day"]: row["doses"] for row in daily["rows"] if row["doses"]} == {given_on: 1}
    status, coverage = call("GET", f"{base}/v1/coverage?group_by=district", analyst)
    assert status == 200 and coverage["total"]["people"] >= 1
    status, csv_text = call("GET", f"{base}/v1/coverage?group_by=district&format=csv", analyst)
    assert status == 200 and csv_text.startswith("# coverage=district; dose=1;")
    status, model = call("GET", f"{base}/v1/model", analyst)
    assert status == 200 and model["events_applied"] > 0
