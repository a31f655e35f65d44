"""From events to a certificate anyone can verify: real PostgreSQL, real Kafka."""

from __future__ import annotations

import base64
from typing import Any

import cbor2
import msgspec
import pytest
from cryptography.exceptions import InvalidSignature

from immunreg import holderkeys
from immunreg.contracts import certificates as contract
from immunreg.contracts.envelope import decode_envelope
from immunreg.eventstore.store import EventStore
from immunreg.http.auth import Role
from immunreg.sealing import new_holder_key_pair

from ..support.kafka import KafkaTools
from . import independent
from .conftest import Certificates, eventually, quoted


async def test_a_dose_gets_a_certificate_an_independent_decoder_verifies(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen(given_name="Đorđe", family_name="Jovanović-Šapić")
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen, dose_number=2, series_length=2)
    await certificates.administer(dose)

    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)
    assert (cert["dose_id"], cert["dose_number"], cert["total_doses"]) == (dose.dose_id, 2, 2)
    assert cert["vaccination_date"] == "2026-03-02" and cert["status"] == "valid"
    assert cert["uvci"].startswith("URN:UVCI:01:RS:")

    trust_list = await certificates.json("/v1/trust-list", headers={})
    message, claims = independent.decode(cert["hc1"])
    kid = cbor2.loads(message[0])[4]
    assert base64.b64encode(kid).decode() == cert["key_id"]
    public_key = independent.key_from_trust_list(trust_list, kid)
    independent.verify_signature(message, public_key)
    hcert = claims[-260][1]
    assert independent.schema_errors(hcert) == []
    assert hcert["nam"] == {
        "fn": "Jovanović-Šapić",
        "fnt": "JOVANOVIC<SAPIC",
        "gn": "Đorđe",
        "gnt": "DORDE",
    }
    assert hcert["dob"] == "1985-04-12"
    [v] = hcert["v"]
    assert v == {
        "tg": "840539006",
        "vp": "1119349007",
        "mp": "EU/1/20/1528",
        "ma": "ORG-100030215",
        "dn": 2,
        "sd": 2,
        "dt": "2026-03-02",
        "co": "RS",
        "is": "Ministry of Health of the Republic of Serbia",
        "ci": cert["uvci"],
    }
    assert claims[1] == "RS" and claims[4] > claims[6]

    verdict = await certificates.verify(cert["hc1"])
    assert (verdict["valid"], verdict["reason"], verdict["uvci"]) == (True, "ok", cert["uvci"])
    assert verdict["payload"] == hcert

    # a tampered payload fails both the independent path and POST /v1/verify
    forged = independent.tamper(cert["hc1"], (-260, 1, "dob"), "1995-04-12")
    forged_message, _ = independent.decode(forged)
    with pytest.raises(InvalidSignature):
        independent.verify_signature(forged_message, public_key)
    verdict = await certificates.verify(forged)
    assert (verdict["valid"], verdict["reason"]) == (False, "bad_signature")


async def test_the_citizen_fetches_the_certificate_in_every_form(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    await certificates.administer(certificates.new_dose(citizen))
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1)
    own = certificates.citizen_token(citizen.citizen_id)
    path = f"/v1/certificates/{quoted(cert['uvci'])}"

    assert (await certificates.json(path, own))["hc1"] == cert["hc1"]
    png = await certificates.get(f"{path}/qr.png", own)
    assert (png.status, png.content_type) == (200, "image/png")
    assert (await png.read()).startswith(b"\x89PNG")
    svg = await certificates.get(f"{path}/qr.svg", own)
    assert (svg.status, svg.content_type) == (200, "image/svg+xml")
    # A client that holds the image names its ETag and is spared the slow rendering.
    assert png.headers["ETag"] != svg.headers["ETag"]
    cached = await certificates.get(f"{path}/qr.png", {**own, "If-None-Match": png.headers["ETag"]})
    assert (cached.status, await cached.read()) == (304, b"")
    stale = await certificates.get(f"{path}/qr.svg", {**own, "If-None-Match": png.headers["ETag"]})
    assert stale.status == 200
    page = await certificates.get(f"{path}/print", own)
    assert (page.status, page.content_type) == (200, "text/html")
    html = await page.text()
    assert "Jelena Petrović" in html and cert["uvci"] in html and "<svg" in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]

    listing = await certificates.json(f"/v1/citizens/{citizen.citizen_id}/certificates", own)
    assert [c["uvci"] for c in listing["certificates"]] == [cert["uvci"]]

    stranger = certificates.citizen_token(certificates.new_citizen().citizen_id)
    for suffix in ("", "/qr.png", "/qr.svg", "/print"):
        response = await certificates.get(path + suffix, stranger)
        assert response.status == 403, suffix
        assert (await certificates.get(path + suffix, {})).status == 401
    other = await certificates.get(f"/v1/citizens/{citizen.citizen_id}/certificates", stranger)
    assert other.status == 403
    staff = certificates.auth(Role.SITE_STAFF, site_id="SITE-0001")
    assert (await certificates.get(path, staff)).status == 403
    missing = await certificates.get("/v1/certificates/" + quoted("URN:UVCI:01:RS:NOPE#A"))
    assert missing.status == 404
    assert missing.content_type == "application/problem+json"


async def test_a_dose_before_the_names_waits_then_is_issued(certificates: Certificates) -> None:
    citizen = certificates.new_citizen()
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)

    async def pending() -> bool:
        listing = await certificates.listing(citizen.citizen_id)
        return bool(listing["pending_doses"] == [dose.dose_id] and listing["certificates"] == [])

    await eventually(pending, "the dose waits for the citizen's names")
    await certificates.register(citizen)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)
    assert cert["dose_id"] == dose.dose_id
    assert (await certificates.listing(citizen.citizen_id))["pending_doses"] == []
    assert (await certificates.verify(cert["hc1"]))["reason"] == "ok"


async def test_a_citizen_kept_before_holder_keys_gets_an_offer_and_then_a_certificate(
    certificates: Certificates,
) -> None:
    # As an upgrade finds it: the sealed names are here (kept from an RSA-era
    # CitizenRegistered), and no holder key.
    citizen = certificates.new_citizen()
    await certificates.pool.execute(
        "INSERT INTO citizens (citizen_id, birth_date, personal) VALUES ($1, $2, $3::jsonb)",
        citizen.citizen_id,
        citizen.birth_date,
        msgspec.json.encode(certificates.sealed(citizen)).decode(),
    )
    store = EventStore(certificates.pool)
    assert await holderkeys.offer_missing(store, certificates.pool, contract.CONTEXT) >= 1
    [offered] = await store.load(holderkeys.stream_id(citizen.citizen_id))
    assert offered.type == "HolderKeyOffered"
    assert await holderkeys.offer_missing(store, certificates.pool, contract.CONTEXT) == 0
    await certificates.grant(citizen)
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1, valid=1)
    assert (await certificates.verify(cert["hc1"]))["reason"] == "ok"


async def test_a_grant_this_service_cannot_open_leaves_the_dose_pending(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen()
    _, someone_else = new_holder_key_pair()
    await certificates.register(citizen, grant_to=someone_else)
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)

    async def pending() -> bool:
        listing = await certificates.listing(citizen.citizen_id)
        return bool(listing["pending_doses"] == [dose.dose_id])

    await eventually(pending, "the dose waits (the key could not be opened)")
    metrics = await (await certificates.client.get("/metrics")).text()
    assert "immunreg_certificates_key_grants_refused_total" in metrics


async def test_certificate_issued_reaches_kafka(
    certificates: Certificates, kafka: KafkaTools
) -> None:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    dose = certificates.new_dose(citizen)
    await certificates.administer(dose)
    [cert] = await certificates.certificates_of(citizen.citizen_id, 1)

    async def published() -> list[Any]:
        records = await kafka.read_all(contract.CONTEXT.topic, expect=1, timeout=10, settle=0.5)
        mine = []
        for record in records:
            envelope = decode_envelope(record.value)
            if envelope.stream_id == f"certificate-{dose.dose_id}":
                mine.append((record, envelope, contract.CONTEXT.decode(envelope.data)))
        return mine

    [(record, envelope, event)] = await eventually(published, "CertificateIssued is on Kafka")
    assert record.key == f"certificate-{dose.dose_id}".encode()
    assert isinstance(event, contract.CertificateIssued)
    assert (event.uvci, event.citizen_id, event.dose_number) == (
        cert["uvci"],
        citizen.citizen_id,
        1,
    )
    assert envelope.causation_id is not None  # the DoseAdministered it answers
    assert "Petrovi" not in record.value.decode(), "no names in events"
