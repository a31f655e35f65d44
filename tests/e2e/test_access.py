"""Least privilege and the audit of reads, with every service running as its own process.

One citizen is vaccinated at site S (a lot shipped there, the dose recorded by S's
staff), so administration knows the dose, registration learns the link from the dose
event, booking books the second dose at S and certificates issue a certificate. Then:

- site staff of S read the citizen in registration, administration and booking; staff
  of another site are refused, and let in when they say why (`Access-Reason`); each
  read is in the service's audit log, with the reason; the citizen sees who read;
- every route of every OpenAPI document is called as every kind of caller, and the
  answer (refused: 401/403, else let through) must be what the route's rule says, and
  what docs/security.md says (`access_matrix.py`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
from access_matrix import CALLERS, committed, expected, operations, table
from e2e_http import send
from test_administration import VAXZEVRIA, register_citizen, ship_lot

if TYPE_CHECKING:
    from conftest import Stack

WAIT_SECONDS = 120.0
REASON = "walk-in for a second dose, first given elsewhere"


@dataclass(frozen=True)
class World:
    """A citizen vaccinated and booked at `site`, and ids of what that made."""

    citizen: str
    site: str
    other_site: str
    dose: str
    lot: str
    shipment: str
    appointment: str
    uvci: str


def _until(what: str, probe: Any) -> Any:
    """Poll `probe` (None: not yet) until it answers, or fail naming `what`."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {WAIT_SECONDS:.0f} s")


@pytest.fixture(scope="module")
def world(stack: Stack) -> World:
    needed = {"registration", "booking", "inventory", "administration", "certificates"}
    if not needed <= set(stack.urls):
        pytest.skip(f"needs {sorted(needed)}")
    site = f"SITE-A{uuid.uuid4().hex[:8].upper()}"
    admin = stack.token("admin")
    defined = send(
        "PUT",
        f"{stack.urls['booking']}/v1/sites/{site}",
        admin,
        {
            "name": "Dom zdravlja Access",
            "municipality_code": "70092",
            "address": "Svetog Save 1",
            "daily_capacity": {VAXZEVRIA: 20},
        },
    )
    assert defined.status in (200, 201), defined.json()
    citizen, _ = register_citizen(stack)
    lot, shipment = ship_lot(stack, site)
    staff = stack.token("site_staff", site_id=site)
    body = {
        "citizen_id": citizen,
        "site_id": site,
        "lot_number": lot,
        "product_code": VAXZEVRIA,
        "dose_number": 1,
        "administered_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "vaccinator_id": "V-ACCESS",
        "injection_site": "left_arm",
    }

    def recorded() -> str | None:
        answer = send("POST", f"{stack.urls['administration']}/v1/doses", staff, body)
        return str(answer.json()["dose_id"]) if answer.status in (200, 201) else None

    dose = _until("the dose being recorded", recorded)

    def booked() -> str | None:
        url = f"{stack.urls['booking']}/v1/citizens/{citizen}/appointments"
        items = send("GET", url, admin).json()["items"]
        return str(items[0]["appointment_id"]) if items else None

    def certified() -> str | None:
        url = f"{stack.urls['certificates']}/v1/citizens/{citizen}/certificates"
        items = send("GET", url, admin).json()["certificates"]
        return str(items[0]["uvci"]) if items else None

    def linked() -> bool | None:
        url = f"{stack.urls['registration']}/v1/citizens/{citizen}"
        return True if send("GET", url, staff).status == 200 else None

    appointment = _until("booking the second dose", booked)
    uvci = _until("the certificate", certified)
    _until("registration learning the citizen's site", linked)
    other_site = f"SITE-B{uuid.uuid4().hex[:8].upper()}"
    return World(citizen, site, other_site, dose, lot, shipment, appointment, uvci)


READS = {
    "registration": "/v1/citizens/{citizen}",
    "administration": "/v1/citizens/{citizen}/doses",
    "booking": "/v1/citizens/{citizen}/appointments",
}


@pytest.mark.parametrize("service", sorted(READS))
def test_site_staff_read_a_citizen_of_their_site_and_another_only_saying_why(
    stack: Stack, world: World, service: str
) -> None:
    url = stack.urls[service] + READS[service].format(citizen=world.citizen)
    subject = f"nurse-{uuid.uuid4().hex[:6]}"
    own = stack.token("site_staff", site_id=world.site)
    other = stack.token("site_staff", site_id=world.other_site, subject=subject)
    assert send("GET", url, own).status == 200
    refused = send("GET", url, other)
    assert (refused.status, refused.json()["code"]) == (403, "citizen_not_at_site")
    assert send("GET", url, {**other, "Access-Reason": REASON}).status == 200

    officer = stack.token("public_health")
    log = send("GET", f"{stack.urls[service]}/v1/audit/reads?citizen_id={world.citizen}", officer)
    assert log.status == 200
    mine = [r for r in log.json()["items"] if r["subject"] == subject]
    assert [(r["site_id"], r["reason"], r["citizen_id"]) for r in mine] == [
        (world.other_site, REASON, world.citizen)
    ]
    me = stack.token("citizen", citizen_id=world.citizen)
    seen = send("GET", f"{stack.urls[service]}/v1/citizens/{world.citizen}/reads", me)
    assert subject in {r["subject"] for r in seen.json()["items"]}


def test_site_staff_read_no_certificates_and_a_citizen_only_their_own(
    stack: Stack, world: World
) -> None:
    url = f"{stack.urls['certificates']}/v1/certificates/{quote(world.uvci, safe='')}"
    staff = stack.token("site_staff", site_id=world.site)
    assert send("GET", url, staff).status == 403
    other = stack.token("citizen", citizen_id="cit_" + uuid.uuid4().hex[:20])
    assert send("GET", url, other).status == 403
    assert send("GET", url, stack.token("citizen", citizen_id=world.citizen)).status == 200


def _headers(stack: Stack, world: World, column: tuple[str, str | None, str]) -> dict[str, str]:
    _, role, relation = column
    if role is None:
        return {}
    if role == "citizen":
        owner = world.citizen if relation == "own" else "cit_" + uuid.uuid4().hex[:20]
        return stack.token("citizen", citizen_id=owner)
    if role == "site_staff":
        headers = stack.token(
            "site_staff", site_id=world.site if relation == "own" else world.other_site
        )
        return {**headers, "Access-Reason": REASON} if relation == "reason" else headers
    return stack.token(role)


def _target(world: World, method: str, path: str, operation: dict[str, Any]) -> str:
    """The route's path with real ids for a read; ids of nothing for a write, so no
    write changes anything (its role gate answers before its handler looks)."""
    real = method == "GET"
    values = {
        "citizen_id": world.citizen if real else "cit_matrix_nobody",
        "site_id": world.site,
        "dose_id": world.dose if real else "matrix-nothing",
        "lot_number": world.lot if real else "MATRIXNOLOT",
        "shipment_id": world.shipment if real else "matrix-nothing",
        "appointment_id": world.appointment if real else "matrix-nothing",
        "uvci": quote(world.uvci, safe="") if real else "matrix-nothing",
        "date": date.today().isoformat(),
        # supply's resources hold no personal data: ids of nothing answer its role gate
        "run_id": "matrix-nothing",
        "contract_id": "matrix-nothing",
        # a message of nothing: the admin-only retry answers its role gate, then 404
        "message_id": "matrix-nothing",
    }
    filled = path.format(**values)
    required = [
        p["name"]
        for p in operation.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    ]
    query = "&".join(f"{name}={values[name]}" for name in required)
    return f"{filled}?{query}" if query else filled


def test_every_route_answers_every_caller_as_its_rule_says(stack: Stack, world: World) -> None:
    documents = {
        name: send("GET", f"{url}/openapi.json").json() for name, url in stack.urls.items()
    }
    wrong = []
    for service, method, path, operation in operations(documents):
        target = stack.urls[service] + _target(world, method, path, operation)
        body: dict[str, Any] | None = {} if "requestBody" in operation else None
        for column in CALLERS:
            answer = send(method, target, _headers(stack, world, column), body)
            assert answer.status < 500, (service, method, path, column[0], answer.json())
            allowed = answer.status not in (401, 403)
            if allowed != expected(operation, method.lower(), path, column):
                wrong.append(f"{service} {method} {path} as {column[0]}: {answer.status}")
    assert wrong == []
    assert table(documents) == committed(), "regenerate: tests/e2e/access_matrix.py --write"
