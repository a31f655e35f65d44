"""A certificate as a citizen and a verifier see it: every service running as its own process.

Registration (citizen and sealed names, data key granted to certificates), inventory (a lot
at a site), administration (the dose), certificates (the certificate, the trust list,
verification). The dose part needs inventory and administration in the stack.
"""

from __future__ import annotations

import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from e2e_http import poll, receive_lot, send

from services.registration import jmbg

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack


def call(
    method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[int, Any, bytes]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json() if answer.is_json else None, answer.raw


def register(stack: Stack) -> str:
    rng = random.Random()
    born = date(1960 + rng.randint(0, 40), rng.randint(1, 12), rng.randint(1, 28))
    body = {
        "national_id": jmbg.make(born, 71, rng.randint(500, 999)),
        "given_name": "Ljiljana",
        "family_name": "Đorđević",
        "birth_date": born.isoformat(),
        "sex": "female",
        "municipality_code": "70092",
        "email": "ljiljana@example.rs",
        "consent": {"data_processing": True},
    }
    status, created, _ = call(
        "POST", f"{stack.urls['registration']}/v1/citizens", stack.token("admin"), body
    )
    assert status == 201, created
    citizen_id: str = created["citizen_id"]
    return citizen_id


def dose_and_certificate(
    stack: Stack,
    citizen_id: str,
    place: tuple[str, str],
    given_at: datetime,
    product: str = "EU/1/20/1528",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A first dose from `place`'s (site, lot) recorded by that site's staff, and the
    certificate issued for it (both polled: each service learns of the last over Kafka)."""
    site, lot = place
    dose = {
        "citizen_id": citizen_id,
        "site_id": site,
        "lot_number": lot,
        "product_code": product,
        "dose_number": 1,
        "administered_at": given_at.isoformat(),
        "vaccinator_id": "vaccinator-e2e",
    }
    staff = stack.token("site_staff", site_id=site)

    def record() -> tuple[bool, Any]:
        # administration learns of the citizen and the lot from Kafka: 422 until it has
        status, body, _ = call("POST", f"{stack.urls['administration']}/v1/doses", staff, dose)
        return status in (200, 201), (status, body)

    _, recorded = poll("administration records the dose", record)
    me = stack.token("citizen", citizen_id=citizen_id)

    def issued() -> tuple[bool, Any]:
        url = f"{stack.urls['certificates']}/v1/citizens/{citizen_id}/certificates"
        status, body, _ = call("GET", url, me)
        return status == 200 and len(body["certificates"]) == 1, body

    [certificate] = poll("the certificate is issued", issued)["certificates"]
    return recorded, certificate


def test_a_recorded_dose_yields_a_certificate_anyone_can_verify(stack: Stack) -> None:
    if "certificates" not in stack.urls or "registration" not in stack.urls:
        pytest.skip("certificates and registration must both be in the stack")
    certificates = stack.urls["certificates"]
    status, trust, _ = call("GET", f"{certificates}/v1/trust-list", {})
    assert status == 200 and any(k["active"] and k["country"] == "RS" for k in trust["keys"])
    status, verdict, _ = call("POST", f"{certificates}/v1/verify", {}, {"hc1": "HC1:nonsense"})
    assert (status, verdict["reason"]) == (200, "malformed")

    citizen_id = register(stack)
    me = stack.token("citizen", citizen_id=citizen_id)
    status, listing, _ = call("GET", f"{certificates}/v1/citizens/{citizen_id}/certificates", me)
    assert status == 200 and listing["certificates"] == []

    missing = [name for name in ("inventory", "administration") if name not in stack.urls]
    if missing:
        pytest.skip(f"no {' and '.join(missing)} service in this checkout: no dose to certify")

    site = f"SITE-E{uuid.uuid4().hex[:8].upper()}"
    logistics = stack.token("logistics")
    lot = receive_lot(
        stack.urls["inventory"], logistics, site, "EU/1/20/1528", vials=5, prefix="E2E"
    )

    given_at = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    recorded, certificate = dose_and_certificate(stack, citizen_id, (site, lot), given_at)
    assert certificate["dose_id"] == recorded["dose_id"]
    assert (certificate["dose_number"], certificate["total_doses"]) == (1, 2)
    assert certificate["status"] == "valid" and certificate["hc1"].startswith("HC1:")

    status, verdict, _ = call("POST", f"{certificates}/v1/verify", {}, {"hc1": certificate["hc1"]})
    assert (status, verdict["valid"], verdict["reason"]) == (200, True, "ok"), verdict
    names = verdict["payload"]["nam"]
    assert (names["fn"], names["fnt"], names["gnt"]) == ("Đorđević", "DORDEVIC", "LJILJANA")
    assert verdict["kid"] in {k["kid"] for k in trust["keys"]}

    uvci = urllib.parse.quote(certificate["uvci"], safe="")
    status, _, png = call("GET", f"{certificates}/v1/certificates/{uvci}/qr.png", me)
    assert status == 200 and png.startswith(b"\x89PNG")
    status, _, page = call("GET", f"{certificates}/v1/certificates/{uvci}/print", me)
    assert status == 200 and "Ljiljana" in page.decode()
