"""The verifier: valid, expired, revoked, unknown key, bad signature, rotated keys, and
real EU DCC test certificates of other issuers verified with those issuers' keys."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import base45
import cbor2
import pytest
from certificates_support import DATA, NOW, clock_of, dcc_test, payload, signer_of

from conftest import Sign
from services.certificates.keys import (
    SigningKey,
    TrustList,
    ensure_dev_signing_key,
    rotate_dev_signing_key,
)
from services.certificates.uvci import new_uvci
from services.certificates.verify import Reason, uci_hash, uvci_sha256, verify


def test_a_fresh_certificate_is_valid(sign: Sign, signer: SigningKey) -> None:
    uvci = new_uvci()
    result = verify(sign(payload(uvci=uvci)), TrustList([signer.trusted]), NOW)
    assert (result.valid, result.reason) == (True, Reason.OK)
    assert result.kid == signer.kid and result.uvci == uvci and result.issuer == "RS"
    assert result.payload is not None and result.payload["nam"]["fnt"] == "PETROVIC"


def test_expired(sign: Sign, signer: SigningKey) -> None:
    hc1 = sign(expires_at=NOW + timedelta(days=30))
    trust = TrustList([signer.trusted])
    assert verify(hc1, trust, NOW + timedelta(days=29)).reason is Reason.OK
    late = verify(hc1, trust, NOW + timedelta(days=30))
    assert (late.valid, late.reason) == (False, Reason.EXPIRED)
    assert late.payload is not None  # still says what it is


def test_revoked(sign: Sign, signer: SigningKey) -> None:
    uvci = new_uvci()
    hc1 = sign(payload(uvci=uvci))
    revoked = {uvci_sha256(uvci)}
    result = verify(hc1, TrustList([signer.trusted]), NOW, lambda u: uvci_sha256(u) in revoked)
    assert (result.valid, result.reason) == (False, Reason.REVOKED)
    other = verify(sign(), TrustList([signer.trusted]), NOW, lambda u: uvci_sha256(u) in revoked)
    assert other.reason is Reason.OK
    # expired and revoked: revoked says more
    old = sign(payload(uvci=uvci), expires_at=NOW - timedelta(days=1))
    assert verify(old, TrustList([signer.trusted]), NOW, lambda u: True).reason is Reason.REVOKED


def test_revocation_hashes() -> None:
    uvci = "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B"
    assert uvci_sha256(uvci) == hashlib.sha256(uvci.encode()).digest()
    assert base64.b64decode(uci_hash(uvci)) == uvci_sha256(uvci)[:16]


def test_unknown_key(sign: Sign, tmp_path: Path) -> None:
    stranger = ensure_dev_signing_key(tmp_path / "other")
    result = verify(sign(), TrustList([stranger.trusted]), NOW)
    assert (result.valid, result.reason) == (False, Reason.UNKNOWN_KEY)
    assert verify(sign(), TrustList([]), NOW).reason is Reason.UNKNOWN_KEY


def test_a_key_under_the_right_kid_but_the_wrong_key_is_a_bad_signature(
    sign: Sign, signer: SigningKey, tmp_path: Path
) -> None:
    impostor = ensure_dev_signing_key(tmp_path / "impostor").trusted
    same_kid = dataclasses.replace(impostor, kid=signer.kid)
    result = verify(sign(), TrustList([same_kid]), NOW)
    assert (result.valid, result.reason) == (False, Reason.BAD_SIGNATURE)


def test_rotation_keeps_certificates_signed_before_valid(sign: Sign, keys_dir: Path) -> None:
    before = ensure_dev_signing_key(keys_dir, now=NOW)
    old = sign(key=before)
    after = rotate_dev_signing_key(keys_dir, now=NOW + timedelta(seconds=1))
    assert after.kid != before.kid
    assert ensure_dev_signing_key(keys_dir).kid == after.kid, "the newest key signs"
    assert after.certificate.issuer == before.certificate.issuer, "same CSCA"
    new = sign(key=after)
    trust = TrustList([after.trusted, before.trusted])
    assert verify(old, trust, NOW).reason is Reason.OK
    assert verify(new, trust, NOW).reason is Reason.OK
    assert verify(old, TrustList([after.trusted]), NOW).reason is Reason.UNKNOWN_KEY


def test_malformed() -> None:
    for text in ["", "hello", "HC1:", "HC1:%%%%", "HC1:NCF"]:
        result = verify(text, TrustList([]), NOW)
        assert (result.valid, result.reason) == (False, Reason.MALFORMED), text


# --- the EU DCC test data: certificates of other issuers --------------------------------

VALID_FOREIGN = [
    "AT/1.json",  # vaccination
    "AT/2.json",  # recovery
    "BE/1.json",
    "DE/1.json",
    "NL/072-NL-vaccination.json",
    "NL/085-NL-vaccination.json",
]


def _expected_to_verify(test: dict[str, Any]) -> bool:
    expected = test["EXPECTEDRESULTS"]
    return bool(expected.get("EXPECTEDVERIFY", False)) and expected.get("EXPECTEDKEYUSAGE", True)


@pytest.mark.parametrize("name", VALID_FOREIGN)
def test_eu_test_certificates_verify_with_their_issuers_key(name: str) -> None:
    test = dcc_test(name)
    assert _expected_to_verify(test)
    result = verify(test["PREFIX"], TrustList([signer_of(test)]), clock_of(test))
    assert (result.valid, result.reason) == (True, Reason.OK), result.detail
    assert result.payload == test["JSON"]
    if test["EXPECTEDRESULTS"].get("EXPECTEDEXPIRATIONCHECK"):
        assert result.expires_at is not None and clock_of(test) < result.expires_at


@pytest.mark.parametrize("name", VALID_FOREIGN)
def test_eu_test_certificates_fail_with_another_issuers_key(name: str) -> None:
    test = dcc_test(name)
    others = [signer_of(dcc_test(n)) for n in VALID_FOREIGN if n[:2] != name[:2]]
    result = verify(test["PREFIX"], TrustList(others), clock_of(test))
    assert result.reason is Reason.UNKNOWN_KEY
    impostor = dataclasses.replace(others[0], kid=signer_of(test).kid)
    result = verify(test["PREFIX"], TrustList([impostor]), clock_of(test))
    assert result.reason is Reason.BAD_SIGNATURE


def test_an_eu_test_certificate_expected_to_fail_fails() -> None:
    # Signed by a DSC whose extended key usage allows vaccinations only: a test
    # certificate from it must be refused (EXPECTEDKEYUSAGE: false).
    test = dcc_test("NL/227-NL-test+wrong_key.json")
    assert not _expected_to_verify(test)
    result = verify(test["PREFIX"], TrustList([signer_of(test)]), clock_of(test))
    assert (result.valid, result.reason) == (False, Reason.WRONG_KEY_USAGE)


def test_a_tampered_eu_test_certificate_fails() -> None:
    test = dcc_test("AT/1.json")
    tagged = cbor2.loads(zlib.decompress(base45.b45decode(test["PREFIX"][4:])))
    message = list(tagged.value)
    claims = cbor2.loads(message[2])
    claims[-260][1]["v"][0]["dn"] = 2
    message[2] = cbor2.dumps(claims)
    cose = cbor2.dumps(cbor2.CBORTag(18, message))
    forged = "HC1:" + base45.b45encode(zlib.compress(cose)).decode()
    result = verify(forged, TrustList([signer_of(test)]), clock_of(test))
    assert (result.valid, result.reason) == (False, Reason.BAD_SIGNATURE)
    assert result.payload is not None and result.payload["v"][0]["dn"] == 2


def test_all_copied_test_files_are_accounted_for() -> None:
    copied = sorted(
        str(p.relative_to(DATA)) for p in DATA.glob("*/*.json") if p.parent.name != "schema"
    )
    assert copied == sorted([*VALID_FOREIGN, "NL/227-NL-test+wrong_key.json"])
