"""Booking as a client sees it: a site, stock from inventory, a registered citizen, a run."""

from __future__ import annotations

import random
import time
import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from e2e_http import receive_lot, scheduling_run, send

from immunreg.demo import wait_until_quiet
from services.booking import demo
from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

PFIZER = "EU/1/20/1528"
MUNICIPALITY = "70092"  # Beograd-Barajevo


def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json()


def register(stack: Stack) -> str:
    rng = random.Random()
    born = date(1960 + rng.randint(0, 30), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Milica",
        "family_name": "Jovanović",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": MUNICIPALITY,
        "email": "milica@example.rs",
        "priority_group": "health_worker",
        "vaccine_preferences": [PFIZER],
        "preferred_municipality_code": MUNICIPALITY,
        "consent": {"data_processing": True},
    }
    status, created = call(
        "POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body
    )
    assert status == 201, created
    citizen_id: str = created["citizen_id"]
    return citizen_id


def test_define_a_site_run_the_scheduler_and_read_the_appointment(stack: Stack) -> None:
    base = stack.urls["booking"]
    admin = stack.token("admin")
    site = f"SITE-E{uuid.uuid4().hex[:8].upper()}"
    status, defined = call(
        "PUT",
        f"{base}/v1/sites/{site}",
        admin,
        {
            "name": "Dom zdravlja Barajevo (e2e)",
            "municipality_code": MUNICIPALITY,
            "address": "Svetosavska 1",
            "latitude": 44.58,
            "longitude": 20.42,
            "daily_capacity": {PFIZER: 2000},
        },
    )
    assert status == 201, defined
    citizen_id = register(stack)
    me = stack.token("citizen", citizen_id=citizen_id)
    tomorrow = date.today() + timedelta(days=1)

    if "inventory" not in stack.urls:  # no stock can exist: the run says so
        nothing = scheduling_run(base, admin, {"horizon_days": 3})
        assert nothing["waiting"].get("no_stock", 0) >= 1, nothing
        return

    receive_lot(
        stack.urls["inventory"], stack.token("logistics"), site, PFIZER, vials=2000, prefix="E2EB"
    )

    # Registration and stock reach booking over Kafka. The topics may hold many other
    # waiting citizens (earlier runs, load tests): wait until booking has read up to
    # ours, or a run made before it arrived could fill the site without it.
    quiet = wait_until_quiet(
        {name: stack.urls[name] for name in ("registration", "inventory", "booking")}, 120
    )
    assert quiet, "booking did not catch up with registration and inventory"
    deadline = time.monotonic() + 120
    items: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        summary = scheduling_run(base, admin, {"from_day": tomorrow.isoformat(), "horizon_days": 3})
        status, mine = call("GET", f"{base}/v1/citizens/{citizen_id}/appointments", me)
        assert status == 200, mine
        items = mine["items"]
        if items:
            break
        time.sleep(1)
    assert len(items) == 1, (items, summary)
    (appointment,) = items
    assert (appointment["site_id"], appointment["product_code"]) == (site, PFIZER)
    assert appointment["status"] == "booked" and appointment["dose_number"] == 1
    assert tomorrow <= date.fromisoformat(appointment["day"]) <= tomorrow + timedelta(days=2)
    assert "preferred municipality" in appointment["reason"]

    staff = stack.token("site_staff", site_id=site)
    listed: set[str] = set()
    cursor = ""
    while True:  # the day's list is paginated; other citizens may be booked there too
        status, page = call(
            "GET",
            f"{base}/v1/sites/{site}/appointments?date={appointment['day']}{cursor}",
            staff,
        )
        assert status == 200, page
        listed |= {a["citizen_id"] for a in page["items"]}
        if not page.get("next_cursor"):
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert citizen_id in listed

    status, cancelled = call(
        "POST", f"{base}/v1/appointments/{appointment['appointment_id']}/cancel", me
    )
    assert status == 200 and cancelled["status"] == "cancelled"

    status, sites = call("GET", f"{base}/v1/sites?limit=500", stack.token("public_health"))
    assert status == 200 and site in {s["site_id"] for s in sites["items"]}


def test_demo_data_loads_and_loading_again_changes_nothing(stack: Stack) -> None:
    first = demo.load(stack.urls)
    again = demo.load(stack.urls)
    assert first.startswith("40 sites defined") and again.startswith("40 sites defined")
    status, page = call("GET", f"{stack.urls['booking']}/v1/sites?limit=500", stack.token("admin"))
    assert status == 200
    demo_sites = [s for s in page["items"] if s["site_id"] in {d["site_id"] for d in demo.sites()}]
    assert len(demo_sites) == 40 and all(s["version"] == 1 for s in demo_sites)
