"""Supply end to end, every service its own process: a contract and a delivery against it
(inventory receives the lots), an allocation run that proposes shipping to the site where
citizens wait, its approval (inventory creates the shipments), the shipments dispatched
and received with inventory's own routes, booking's scheduling run booking the waiting
citizens at that site, and their doses recorded there.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from e2e_http import follow, send

from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog
from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

VAXZEVRIA = vaccine_catalog()["EU/1/21/1529"]  # 10 doses a vial, refrigerated
WAIT_SECONDS = 120.0
CITIZENS = 3
T = TypeVar("T")


def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json()


def eventually(what: str, attempt: Callable[[], T | None], pause: float = 1.0) -> T:
    """The first non-None result of `attempt`, polling until WAIT_SECONDS have passed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = attempt()
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(pause)


def quiet_municipality() -> str:
    """The smallest municipality: no demo site stands there."""
    return min(municipalities().values(), key=lambda m: (m.population, m.code)).code


def register(stack: Stack, municipality: str) -> str:
    rng = random.Random()
    born = date(1960 + rng.randint(0, 30), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Jovana",
        "family_name": "Petrović",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": municipality,
        "email": "jovana@example.rs",
        "priority_group": "health_worker",
        "vaccine_preferences": [VAXZEVRIA.product_code],
        "preferred_municipality_code": municipality,
        "consent": {"data_processing": True},
    }
    status, created = call(
        "POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body
    )
    assert status == 201, created
    citizen_id: str = created["citizen_id"]
    return citizen_id


def test_contract_delivery_allocation_shipment_booking_and_doses(stack: Stack) -> None:
    supply, inventory = stack.urls["supply"], stack.urls["inventory"]
    booking, administration = stack.urls["booking"], stack.urls["administration"]
    admin, logistics = stack.token("admin"), stack.token("logistics")
    tag = uuid.uuid4().hex[:8].upper()
    site = f"SITE-S{tag}"
    staff = stack.token("site_staff", site_id=site)
    municipality = quiet_municipality()

    # A site where citizens wait, with capacity for the product and no stock yet.
    status, defined = call(
        "PUT",
        f"{booking}/v1/sites/{site}",
        admin,
        {
            "name": "Ambulanta",
            "municipality_code": municipality,
            "address": "Glavna 1",
            "daily_capacity": {VAXZEVRIA.product_code: 30},
        },
    )
    assert status == 201, defined
    citizens = [register(stack, municipality) for _ in range(CITIZENS)]

    # Procurement: a contract, and a delivery whose lot inventory receives from the event.
    status, contract = call(
        "POST",
        f"{supply}/v1/contracts",
        logistics,
        {
            "manufacturer_code": VAXZEVRIA.manufacturer_code,
            "product_code": VAXZEVRIA.product_code,
            "total_doses": 5000,
            "tranches": [
                {"expected_date": (date.today() - timedelta(days=1)).isoformat(), "doses": 2000},
                {"expected_date": (date.today() + timedelta(days=30)).isoformat(), "doses": 3000},
            ],
        },
    )
    assert status == 201, contract
    lot = f"SUP{tag}"
    status, delivered = call(
        "POST",
        f"{supply}/v1/contracts/{contract['contract_id']}/deliveries",
        logistics,
        {
            # A warehouse of this test's own: inventories of other tests on the same
            # topics receive this lot too, and must not find it in their national stock.
            "location_id": f"WH-E2E-{tag}",
            "lots": [
                {
                    "lot_number": lot,
                    "expiry_date": (date.today() + timedelta(days=90)).isoformat(),
                    "vials": 100,
                }
            ],
        },
    )
    assert status == 201, delivered
    assert (delivered["delivered"], delivered["outstanding"], delivered["late"]) == (
        1000,
        4000,
        1000,
    )

    def lot_in_stock() -> bool | None:
        status, _ = call("GET", f"{inventory}/v1/lots/{lot}", logistics)
        return True if status == 200 else None

    eventually("inventory to receive the delivered lot", lot_in_stock)

    # Allocation: runs until supply has heard of the site, the citizens and the lot.
    def planned(run_id: str) -> dict[str, Any] | None:
        _, run = call("GET", f"{supply}/v1/allocation-runs/{run_id}", logistics)
        return None if run["status"] == "requested" else dict(run)

    def proposal_for_the_site() -> tuple[str, list[dict[str, Any]]] | None:
        status, run = call("POST", f"{supply}/v1/allocation-runs", logistics, {"horizon_days": 7})
        assert status == 202, run
        run = eventually("the run to be planned", lambda: planned(run["run_id"]), pause=0.5)
        assert run["status"] == "proposed", run
        mine = [x for x in run["lines"] if x["to_location"] == site]
        waiting = sum(x["why"]["waiting"] for x in mine)
        return (run["run_id"], mine) if mine and waiting >= CITIZENS else None

    run_id, lines = eventually("a proposal for the site", proposal_for_the_site, pause=2.0)
    for line in lines:
        assert line["product_code"] == VAXZEVRIA.product_code
        assert line["vials"] * VAXZEVRIA.doses_per_vial == line["doses"]
        assert line["why"]["on_hand"] == 0 and line["why"]["for_waiting"] >= CITIZENS

    # Approval: our lines, each edited up to 5 vials (other tests' citizens may be booked
    # at the site too); every other line of the national run rejected.
    decisions = [
        {
            "line": x["line"],
            "decision": "edit",
            "vials": min(5, x["vials"] + x["why"]["leaves_behind"]),
        }
        for x in lines
    ]
    status, decided = call(
        "POST", f"{supply}/v1/allocation-runs/{run_id}/approve", logistics, {"decisions": decisions}
    )
    assert status == 200, decided
    assert decided["status"] == "decided"
    shipments = [s["shipment"] for s in decided["shipments"]]
    assert {s["to_location"] for s in shipments} == {site}
    status, twice = call(
        "POST", f"{supply}/v1/allocation-runs/{run_id}/approve", logistics, {"decisions": []}
    )
    assert (status, twice["code"]) == (409, "run_already_decided")

    # Inventory created the shipments; logistics dispatch them, the site receives them.
    def exists(url: str) -> bool | None:
        return True if call("GET", url, logistics)[0] == 200 else None

    for shipment in shipments:
        url = f"{inventory}/v1/shipments/{shipment['shipment_id']}"
        eventually("inventory to create the approved shipment", functools.partial(exists, url))
        status, dispatched = call("POST", f"{url}/dispatch", logistics)
        assert status == 200, dispatched
        status, received = call(
            "POST", f"{url}/receive", staff, {"vials_received": shipment["vials"]}
        )
        assert status == 200, received

    def run_progress() -> bool | None:
        _, run = call("GET", f"{supply}/v1/allocation-runs/{run_id}", logistics)
        return True if {s["status"] for s in run["shipments"]} == {"received"} else None

    eventually("supply to see the shipments arrive", run_progress)

    # Booking books the waiting citizens at the site that got the vaccine.
    def appointments() -> dict[str, dict[str, Any]] | None:
        accepted = send("POST", f"{booking}/v1/scheduling/runs", admin, {"horizon_days": 7})
        summary = follow(accepted, booking, admin, {"queued", "running"})
        assert summary["status"] == "completed", summary
        found = {}
        for citizen_id in citizens:
            _, mine = call("GET", f"{booking}/v1/citizens/{citizen_id}/appointments", admin)
            booked = [a for a in mine["items"] if a["status"] == "booked"]
            if booked:
                found[citizen_id] = booked[0]
        return found if len(found) == CITIZENS else None

    booked = eventually("booking to book the citizens", appointments, pause=2.0)
    assert {a["site_id"] for a in booked.values()} == {site}

    # Their doses are recorded at the site, from the shipped lots.
    for citizen_id, appointment in booked.items():
        body = {
            "citizen_id": citizen_id,
            "site_id": site,
            "product_code": VAXZEVRIA.product_code,
            "lot_number": shipments[0]["lot_number"],
            "dose_number": 1,
            "administered_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            "vaccinator_id": "V-SUPPLY",
            "appointment_id": appointment["appointment_id"],
        }

        def recorded(body: dict[str, Any] = body) -> dict[str, Any] | None:
            status, answer = call("POST", f"{administration}/v1/doses", staff, body)
            if status in (200, 201):
                return dict(answer)
            assert status == 422 and answer["code"] in ("citizen_unknown", "lot_not_at_site"), (
                answer
            )
            return None

        dose = eventually("the dose to be recorded", recorded, pause=0.5)
        me = stack.token("citizen", citizen_id=citizen_id)
        status, doses = call("GET", f"{administration}/v1/citizens/{citizen_id}/doses", me)
        assert status == 200 and [d["dose_id"] for d in doses["doses"]] == [dose["dose_id"]]

    # The contract shows what arrived and what is late; bad input changes nothing.
    status, position = call("GET", f"{supply}/v1/contracts/{contract['contract_id']}", logistics)
    assert status == 200 and position["delivered"] == 1000 and position["late"] == 1000
    status, problem = call(
        "POST",
        f"{supply}/v1/contracts/{contract['contract_id']}/deliveries",
        logistics,
        {"lots": [{"lot_number": f"X{tag}", "expiry_date": date.today().isoformat(), "vials": 1}]},
    )
    assert status == 422 and problem["code"] == "expired_on_arrival", problem
    assert problem["errors"][0]["field"] == "body.lots[0].expiry_date"
    status, after = call("GET", f"{supply}/v1/contracts/{contract['contract_id']}", logistics)
    assert after == position
