"""Administration as a site and a citizen see it: every service running as its own process.

A citizen registered through registration and a lot shipped to a site through inventory
reach administration only through Kafka; the site then records a dose over HTTP and the
citizen fetches their record as FHIR.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from e2e_http import send
from fhir.resources.R4B.bundle import Bundle

from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack

VAXZEVRIA = "EU/1/21/1529"
WAIT_SECONDS = 90.0


def call(
    method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json(), answer.headers


def register_citizen(stack: Stack) -> tuple[str, date]:
    rng = random.Random()
    born = date(1950 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Milica",
        "family_name": "Jovanović",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "email": "milica@example.rs",
        "consent": {"data_processing": True},
    }
    url = f"{stack.urls['registration']}/v1/citizens"
    status, created, _ = call("POST", url, stack.token("admin"), body)
    assert status == 201, created
    return created["citizen_id"], born


def ship_lot_to(stack: Stack, site: str) -> str:
    """A lot received by logistics, shipped to `site` and received there (inventory API)."""
    lot, _ = ship_lot(stack, site)
    return lot


def ship_lot(stack: Stack, site: str) -> tuple[str, str]:
    """`ship_lot_to`, and the shipment's id too."""
    base = stack.urls["inventory"]
    logistics = stack.token("logistics")
    lot = f"E2E{uuid.uuid4().hex[:8].upper()}"
    status, received, _ = call(
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
    assert status == 201, received
    status, shipment, _ = call(
        "POST",
        f"{base}/v1/shipments",
        logistics,
        {"lot_number": lot, "to_location": site, "vials": 2},
    )
    assert status == 201, shipment
    shipment_url = f"{base}/v1/shipments/{shipment['shipment_id']}"
    status, dispatched, _ = call("POST", f"{shipment_url}/dispatch", logistics)
    assert status == 200, dispatched
    staff = stack.token("site_staff", site_id=site)
    status, arrived, _ = call("POST", f"{shipment_url}/receive", staff, {"vials_received": 2})
    assert status == 200, arrived
    return lot, shipment["shipment_id"]


def test_record_a_dose_and_fetch_the_fhir_record(stack: Stack) -> None:
    base = stack.urls["administration"]
    site = f"SITE-E{uuid.uuid4().hex[:8].upper()}"
    citizen_id, born = register_citizen(stack)
    staff = stack.token("site_staff", site_id=site)
    body: dict[str, Any] = {
        "citizen_id": citizen_id,
        "site_id": site,
        "product_code": VAXZEVRIA,
        "dose_number": 1,
        "administered_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "vaccinator_id": "V-E2E",
        "injection_site": "left_arm",
    }
    if "inventory" in stack.urls:
        body["lot_number"] = ship_lot_to(stack, site)
        headers = staff
    else:
        # No inventory service in this checkout: no lot can reach the site, so the
        # dose is recorded by an admin overriding `lot_not_at_site` (and said so).
        body["lot_number"] = "NO-INVENTORY-LOT"
        body["override_reason"] = "e2e without an inventory service"
        headers = stack.token("admin")

    # The citizen and the lot reach administration through Kafka: until they do, the
    # answer is a 422 naming what is not known yet (and nothing is stored).
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        status, answer, _ = call("POST", f"{base}/v1/doses", headers, body)
        if status == 201 or time.monotonic() > deadline:
            break
        assert status == 422 and answer["code"] in ("citizen_unknown", "lot_not_at_site"), answer
        time.sleep(0.5)
    assert status == 201, answer
    dose_id = answer["dose_id"]

    status, again, _ = call("POST", f"{base}/v1/doses", headers, body)
    assert (status, again) == (200, {"dose_id": dose_id})

    me = stack.token("citizen", citizen_id=citizen_id)
    status, doses, _ = call("GET", f"{base}/v1/citizens/{citizen_id}/doses", me)
    assert status == 200, doses
    [dose] = doses["doses"]
    assert (dose["dose_id"], dose["status"], dose["lot_number"]) == (
        dose_id,
        "completed",
        body["lot_number"],
    )

    request = urllib.request.Request(
        f"{base}/v1/citizens/{citizen_id}/fhir", headers=me, method="GET"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"] == "application/fhir+json"
        bundle: Any = Bundle.model_validate_json(response.read())
    patient, immunization = (entry.resource for entry in bundle.entry)
    assert (patient.identifier[0].value, patient.birthDate) == (citizen_id, born)
    assert (immunization.id, immunization.status) == (dose_id, "completed")
    assert immunization.lotNumber == body["lot_number"]
    assert immunization.vaccineCode.coding[0].code == VAXZEVRIA
    if "inventory" in stack.urls:
        assert immunization.expirationDate == date.today() + timedelta(days=60)
