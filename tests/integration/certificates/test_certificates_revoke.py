"""Corrections re-issue, voids, recalls and erasure revoke; the revocation list publishes
hashed UVCIs; rotated keys keep old certificates valid; foreign certificates verify when their DSC
chains to a configured CSCA."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgspec

from ..support.problems import assert_citizen_erased
from .conftest import DCC_DATA, Certificates, eventually, foreign_certificate, quoted


async def revocation_list(certificates: Certificates) -> list[dict[str, Any]]:
    """Every entry of the published revocation list, page by page."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = "/v1/revocations?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await certificates.json(path, headers={})
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries


async def test_a_voided_dose_is_revoked_and_listed_by_hash(certificates: Certificates) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)

    await certificates.void(dose)
    revoked = await certificates.status_of(cert["uvci"], "revoked")
    assert revoked["revocation_reason"] == "dose_voided"
    verdict = await certificates.verify(cert["hc1"])
    assert (verdict["valid"], verdict["reason"]) == (False, "revoked")

    digest = hashlib.sha256(cert["uvci"].encode()).hexdigest()
    entries = await revocation_list(certificates)
    [entry] = [e for e in entries if e["uvci_sha256"] == digest]
    assert entry["uci"] and cert["uvci"] not in str(entries)
    assert (await certificates.listing(citizen.citizen_id))["pending_doses"] == []


async def test_a_correction_revokes_and_reissues(certificates: Certificates) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen, dose_number=1)
    await certificates.administer(dose)
    [first] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)

    await certificates.correct(dataclasses.replace(dose, dose_number=2))
    newest, old = await certificates.certificates_of(citizen.citizen_id, 2, valid=1)
    assert (newest["status"], newest["dose_number"], newest["supersedes"]) == (
        "valid",
        2,
        first["uvci"],
    )
    assert (old["uvci"], old["status"], old["revocation_reason"], old["superseded_by"]) == (
        first["uvci"],
        "revoked",
        "dose_corrected",
        newest["uvci"],
    )
    assert (await certificates.verify(newest["hc1"]))["reason"] == "ok"
    assert (await certificates.verify(old["hc1"]))["reason"] == "revoked"


async def test_a_lot_recall_revokes_its_doses_and_later_ones_get_none(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)

    await certificates.recall(dose.lot_number)
    revoked = await certificates.status_of(cert["uvci"], "revoked")
    assert revoked["revocation_reason"] == "lot_recalled"

    late = certificates.new_dose(citizen, lot_number=dose.lot_number, dose_number=2)
    other_lot = certificates.new_dose(citizen, dose_number=2)
    await certificates.administer(late)
    await certificates.administer(other_lot)
    certs = await certificates.certificates_of(citizen.citizen_id, 2, valid=1)
    assert {c["dose_id"] for c in certs} == {dose.dose_id, other_lot.dose_id}
    assert (await certificates.listing(citizen.citizen_id))["pending_doses"] == []


async def test_erasure_revokes_and_deletes_the_signed_payloads(certificates: Certificates) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    await certificates.administer(certificates.new_dose(citizen))
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)

    path = f"/v1/certificates/{quoted(cert['uvci'])}"
    png = await certificates.get(f"{path}/qr.png")
    assert png.status == 200
    # Once downloaded, the images are stored with the certificate (they show the names).
    stored = "SELECT qr_png IS NOT NULL AND qr_svg IS NOT NULL FROM certificates WHERE uvci = $1"
    assert await certificates.pool.fetchval(stored, cert["uvci"]) is True

    await certificates.erase(citizen)
    revoked = await certificates.status_of(cert["uvci"], "revoked")
    assert (revoked["revocation_reason"], revoked["hc1"]) == ("citizen_erased", None)
    for suffix in ("/qr.png", "/qr.svg", "/print"):
        await assert_citizen_erased(await certificates.get(path + suffix))
    # A revoked certificate is gone even for a client holding the image's ETag.
    held = {**certificates.admin, "If-None-Match": png.headers["ETag"]}
    await assert_citizen_erased(await certificates.get(f"{path}/qr.png", held))
    assert (await certificates.verify(cert["hc1"]))["reason"] == "revoked"
    rows = await certificates.pool.fetch(
        "SELECT 1 FROM holder_keys WHERE citizen_id = $1 UNION ALL "
        "SELECT 1 FROM citizens WHERE citizen_id = $1 AND personal IS NOT NULL UNION ALL "
        "SELECT 1 FROM certificates WHERE citizen_id = $1 "
        "AND (hc1 IS NOT NULL OR qr_png IS NOT NULL OR qr_svg IS NOT NULL)",
        citizen.citizen_id,
    )
    assert rows == []
    # a dose recorded after the erasure waits for nothing and gets nothing
    await certificates.administer(certificates.new_dose(citizen, dose_number=2))
    await eventually(
        lambda: certificates.pool.fetchval(
            "SELECT count(*) = 2 FROM doses WHERE citizen_id = $1", citizen.citizen_id
        ),
        "the later dose was consumed",
    )
    listing = await certificates.listing(citizen.citizen_id)
    assert (len(listing["certificates"]), listing["pending_doses"]) == (1, [])


async def test_rotation_keeps_certificates_signed_before_valid(certificates: Certificates) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    await certificates.administer(certificates.new_dose(citizen))
    [before] = await certificates.certificates_of(citizen.citizen_id, 1)

    response = await certificates.client.post("/v1/signing-keys/rotate", headers=certificates.admin)
    assert response.status == 201, await response.text()
    new_key = await response.json()
    assert new_key["active"] and new_key["kid"] != before["key_id"]
    forbidden = await certificates.client.post(
        "/v1/signing-keys/rotate", headers=certificates.citizen_token(citizen.citizen_id)
    )
    assert forbidden.status == 403

    await certificates.administer(certificates.new_dose(citizen, dose_number=2))
    after, _ = await certificates.certificates_of(citizen.citizen_id, 2)
    assert after["key_id"] == new_key["kid"]
    trust = await certificates.json("/v1/trust-list", headers={})
    kids = {k["kid"]: k for k in trust["keys"]}
    assert kids[before["key_id"]]["active"] is False and kids[new_key["kid"]]["active"]
    assert kids[before["key_id"]]["source"] == "issuer"
    assert (await certificates.verify(before["hc1"]))["reason"] == "ok"
    assert (await certificates.verify(after["hc1"]))["reason"] == "ok"


async def test_a_foreign_certificate_verifies_when_its_dsc_chains_to_a_configured_csca(
    certificates: Certificates,
) -> None:
    hc1 = foreign_certificate(certificates.foreign, issuer="HR")
    verdict = await certificates.verify(hc1)
    assert (verdict["valid"], verdict["reason"], verdict["issuer"]) == (True, "ok", "HR")
    trust = await certificates.json("/v1/trust-list", headers={})
    [croatian] = [k for k in trust["keys"] if k["kid"] == verdict["kid"]]
    assert (croatian["country"], croatian["source"]) == ("HR", "trusted")
    assert "C=HR" in croatian["csca"]
    # Issued under another country's name with the Croatian DSC: refused.
    forged = await certificates.verify(foreign_certificate(certificates.foreign, issuer="RS"))
    assert (forged["valid"], forged["reason"]) == (False, "issuer_mismatch")


async def test_an_eu_test_dsc_whose_csca_is_not_configured_is_not_trusted(
    certificates: Certificates,
) -> None:
    # AT's test DSC is in the trusted folder, but AT's CSCA is not configured: the DSC is
    # left off the trust list and what it signed does not verify, even at its own clock.
    test = msgspec.json.decode((DCC_DATA / "AT" / "1.json").read_bytes())
    verdict = await certificates.verify(test["PREFIX"], at=test["TESTCTX"]["VALIDATIONCLOCK"])
    assert (verdict["valid"], verdict["reason"]) == (False, "unknown_key")
    assert verdict["payload"] == test["JSON"]
    trust = await certificates.json("/v1/trust-list", headers={})
    assert not any(k["country"] == "AT" for k in trust["keys"])


async def test_bad_input_is_a_422_and_stores_nothing(certificates: Certificates) -> None:
    async def counts() -> list[int]:
        return [
            await certificates.pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("certificates", "events", "outbox", "signing_keys")
        ]

    before = await counts()
    cases: list[tuple[Any, str]] = [
        ({}, "body.hc1"),
        ({"hc1": ""}, "body.hc1"),
        ({"hc1": 42}, "body.hc1"),
        ({"hc1": "HC1:" + "A" * 9000}, "body.hc1"),
        ({"hc1": "HC1:X", "extra": 1}, "body.extra"),
        ({"hc1": "HC1:X", "at": "yesterday"}, "body.at"),
        ({"hc1": "HC1:X", "at": "2021-06-01T12:00:00"}, "body.at"),
    ]
    for body, field in cases:
        response = await certificates.client.post("/v1/verify", json=body)
        assert response.status == 422, (body, await response.text())
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert [e["field"] for e in problem["errors"]] == [field], problem
    for query in ("limit=0", "limit=501", "cursor=nonsense"):
        response = await certificates.get(f"/v1/revocations?{query}", headers={})
        assert response.status == 422, query
    garbage = await certificates.verify("not a certificate")
    assert (garbage["valid"], garbage["reason"]) == (False, "malformed")
    assert await counts() == before
