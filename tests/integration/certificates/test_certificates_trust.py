"""The chain of trust on the running service: a forged DSC row does not verify; a revoked
DSC (ours or a foreign one) verifies nothing, its revocation recorded as an event and
shown on the trust list; `at` in the past does not make an expired certificate valid;
an altered or truncated HC1 is refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.certificates.keys import KeyConfigError, SigningKey, kid_of, private_pem
from services.certificates.pki import issue_dsc, new_csca

from .conftest import Certificates, foreign_certificate, running_certificates


async def _issued_certificate(certificates: Certificates) -> dict[str, Any]:
    citizen = certificates.new_citizen()
    await certificates.register(citizen)
    await certificates.administer(certificates.new_dose(citizen))
    [certificate] = await certificates.certificates_of(citizen.citizen_id, 1)
    return certificate


async def _trust_list(certificates: Certificates) -> dict[str, dict[str, Any]]:
    trust = await certificates.json("/v1/trust-list", headers={})
    return {k["kid"]: k for k in trust["keys"]}


async def _revoke(certificates: Certificates, body: dict[str, Any]) -> tuple[int, Any]:
    response = await certificates.client.post(
        "/v1/signing-keys/revocations", json=body, headers=certificates.admin
    )
    return response.status, await response.json()


async def _counts(certificates: Certificates) -> list[int]:
    return [
        await certificates.pool.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("events", "signer_revocations", "signing_keys")
    ]


async def test_a_forged_dsc_row_that_does_not_chain_to_the_csca_does_not_verify(
    certificates: Certificates,
) -> None:
    genuine = await _issued_certificate(certificates)
    keys = await _trust_list(certificates)
    ours = x509.load_der_x509_certificate(base64.b64decode(keys[genuine["key_id"]]["certificate"]))
    # Someone with write access to the table makes a CSCA under our CSCA's very name,
    # issues himself a DSC, puts it in signing_keys and signs a certificate with it.
    impostor = new_csca(
        "RS",
        now=datetime.now(UTC),
        common_name="immunreg DEV CSCA RS",
        organisation="immunreg (development)",
    )
    assert impostor.certificate.subject == ours.issuer
    key = ec.generate_private_key(ec.SECP256R1())
    forged = SigningKey(key, issue_dsc(impostor, key.public_key(), now=datetime.now(UTC)))
    assert forged.certificate.issuer == ours.issuer
    await certificates.pool.execute(
        "INSERT INTO signing_keys (kid, certificate, not_before, not_after) "
        "VALUES ($1, $2, $3, $4)",
        forged.kid,
        forged.certificate.public_bytes(serialization.Encoding.DER),
        forged.certificate.not_valid_before_utc,
        forged.certificate.not_valid_after_utc,
    )
    keys = await _trust_list(certificates)  # rebuilt from the table
    forged_kid = base64.b64encode(forged.kid).decode()
    assert forged_kid not in keys and genuine["key_id"] in keys
    verdict = await certificates.verify(foreign_certificate(forged, issuer="RS"))
    assert (verdict["valid"], verdict["reason"]) == (False, "unknown_key")
    assert (await certificates.verify(genuine["hc1"]))["reason"] == "ok"


async def test_a_revoked_dsc_verifies_nothing_and_the_trust_list_shows_it(
    certificates: Certificates,
) -> None:
    signed_before = await _issued_certificate(certificates)
    old_kid = signed_before["key_id"]
    status, refused = await _revoke(certificates, {"kid": old_kid, "reason": "key_compromise"})
    assert (status, refused["code"]) == (409, "signing_key_active")

    rotated = await certificates.client.post("/v1/signing-keys/rotate", headers=certificates.admin)
    assert rotated.status == 201
    status, entry = await _revoke(certificates, {"kid": old_kid, "reason": "key_compromise"})
    assert status == 201, entry
    assert (entry["kid"], entry["revocation_reason"]) == (old_kid, "key_compromise")
    assert entry["revoked_at"] is not None

    verdict = await certificates.verify(signed_before["hc1"])
    assert (verdict["valid"], verdict["reason"]) == (False, "signer_revoked")
    listed = (await _trust_list(certificates))[old_kid]
    assert listed["revocation_reason"] == "key_compromise" and listed["revoked_at"]
    # Durable: an event in the SigningKey stream and its row, in the same database.
    stream = f"signing-key-{base64.b64decode(old_kid).hex()}"
    types = await certificates.pool.fetch(
        "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", stream
    )
    assert [r["type"] for r in types] == ["SigningKeyRevoked"]
    again_status, again = await _revoke(certificates, {"kid": old_kid, "reason": "superseded"})
    assert (again_status, again["revocation_reason"]) == (200, "key_compromise")
    assert (
        await certificates.pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", stream)
        == 1
    )

    # What the new DSC signs still verifies.
    signed_after = await _issued_certificate(certificates)
    assert signed_after["key_id"] != old_kid
    assert (await certificates.verify(signed_after["hc1"]))["reason"] == "ok"


async def test_a_foreign_dsc_can_be_revoked_too(certificates: Certificates) -> None:
    hc1 = foreign_certificate(certificates.foreign_to_revoke, issuer="HR")
    assert (await certificates.verify(hc1))["reason"] == "ok"
    kid = base64.b64encode(kid_of(certificates.foreign_to_revoke.certificate)).decode()
    status, entry = await _revoke(certificates, {"kid": kid, "reason": "ca_compromise"})
    assert (status, entry["source"], entry["country"]) == (201, "trusted", "HR")
    assert (await certificates.verify(hc1))["reason"] == "signer_revoked"


async def test_a_bad_revocation_is_refused_and_stores_nothing(certificates: Certificates) -> None:
    before = await _counts(certificates)
    unknown = base64.b64encode(b"\x00" * 8).decode()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"kid": "not base64!", "reason": "superseded"}, 422, "body.kid"),
        ({"kid": base64.b64encode(b"short").decode(), "reason": "superseded"}, 422, "body.kid"),
        ({"kid": unknown, "reason": "because"}, 422, "body.reason"),
        ({"kid": unknown}, 422, "body.reason"),
    ]
    for body, status, field in cases:
        got, problem = await _revoke(certificates, body)
        assert got == status, (body, problem)
        assert [e["field"] for e in problem["errors"]] == [field], problem
    got, problem = await _revoke(certificates, {"kid": unknown, "reason": "superseded"})
    assert (got, problem["code"]) == (404, "unknown_signing_key")
    citizen_headers = certificates.citizen_token("c-nobody")
    response = await certificates.client.post(
        "/v1/signing-keys/revocations",
        json={"kid": unknown, "reason": "superseded"},
        headers=citizen_headers,
    )
    assert response.status == 403
    assert await _counts(certificates) == before


async def test_at_in_the_past_does_not_make_an_expired_certificate_valid(
    certificates: Certificates,
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=60)  # expired 30 days after
    hc1 = foreign_certificate(certificates.foreign, issuer="HR", issued_at=long_ago)
    still_valid_then = (long_ago + timedelta(days=1)).isoformat()
    verdict = await certificates.verify(hc1, at=still_valid_then)
    assert (verdict["valid"], verdict["reason"]) == (False, "expired")
    fresh = foreign_certificate(certificates.foreign, issuer="HR")
    assert (await certificates.verify(fresh, at=still_valid_then))["reason"] == "ok"


async def test_an_altered_or_truncated_hc1_is_refused(certificates: Certificates) -> None:
    genuine = (await _issued_certificate(certificates))["hc1"]
    assert (await certificates.verify(genuine))["reason"] == "ok"
    for cut in (3, 6):  # the Adler-32 checksum, in part or whole
        verdict = await certificates.verify(genuine[:-cut])
        assert (verdict["valid"], verdict["reason"]) == (False, "malformed"), cut
    base45_alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
    for position in range(len(genuine) - 5, len(genuine)):
        for character in base45_alphabet:
            changed = genuine[:position] + character + genuine[position + 1 :]
            if changed != genuine:
                verdict = await certificates.verify(changed)
                assert verdict["valid"] is False, (position, character)


def _signer_files(directory: Path, signer: SigningKey) -> dict[str, str]:
    directory.mkdir()
    assert isinstance(signer.private_key, ec.EllipticCurvePrivateKey)
    (directory / "dsc-key.pem").write_bytes(private_pem(signer.private_key))
    (directory / "dsc.crt").write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    return {
        "DSC_KEY_FILE": str(directory / "dsc-key.pem"),
        "DSC_CERT_FILE": str(directory / "dsc.crt"),
    }


async def test_a_configured_signer_that_does_not_chain_to_a_configured_csca_refuses_to_start(
    dsn: str, bootstrap: str, tmp_path: Path
) -> None:
    # A DSC from a CSCA nobody configured (CSCA_DIR holds only the foreign HR CSCA).
    stranger = new_csca("RS", now=datetime.now(UTC))
    key = ec.generate_private_key(ec.SECP256R1())
    signer = SigningKey(key, issue_dsc(stranger, key.public_key(), now=datetime.now(UTC)))
    extra = _signer_files(tmp_path / "signer", signer)
    with pytest.raises(KeyConfigError, match="does not chain to any configured CSCA"):
        async with running_certificates(dsn, bootstrap, tmp_path / "keys", extra):
            pass
    # ... and a configured signer with no CSCA configured at all.
    with pytest.raises(KeyConfigError, match="CSCA_DIR"):
        async with running_certificates(
            dsn, bootstrap, tmp_path / "keys-2", {**extra, "CSCA_DIR": ""}
        ):
            pass
