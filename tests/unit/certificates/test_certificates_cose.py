"""COSE_Sign1 / CWT / zlib / Base45: a round trip checked by an independent decoder,
tampering detected, malformed input named as such."""

from __future__ import annotations

import hashlib
import zlib
from datetime import timedelta
from typing import Any

import base45
import cbor2
import jsonschema
import pytest
from certificates_support import NOW, payload
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from conftest import Sign
from services.certificates.cose import Malformed, decode_claims, decode_hc1, signature_ok
from services.certificates.keys import SigningKey


def independently_decode(hc1: str) -> tuple[list[Any], dict[Any, Any]]:
    """Decode with the libraries directly (nothing from services.certificates)."""
    assert hc1.startswith("HC1:")
    cose = zlib.decompress(base45.b45decode(hc1[4:]))
    tagged = cbor2.loads(cose)
    assert tagged.tag == 18
    message = list(tagged.value)
    return message, cbor2.loads(message[2])


def independently_verify(message: list[Any], public_key: ec.EllipticCurvePublicKey) -> None:
    protected, _, claims, signature = message
    to_sign = cbor2.dumps(["Signature1", protected, b"", claims])
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public_key.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))


def test_round_trip_through_an_independent_decoder(
    sign: Sign, signer: SigningKey, dcc_schema: jsonschema.protocols.Validator
) -> None:
    hcert = payload()
    hc1 = sign(hcert)
    assert set(hc1[4:]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    message, claims = independently_decode(hc1)
    protected = cbor2.loads(message[0])
    assert protected == {1: -7, 4: signer.kid}
    assert dict(message[1]) == {}
    der = signer.certificate.public_bytes(Encoding.DER)
    assert signer.kid == hashlib.sha256(der).digest()[:8]
    public_key = signer.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    independently_verify(message, public_key)
    assert claims[1] == "RS"
    assert claims[6] == int(NOW.timestamp())
    assert claims[4] == int((NOW + timedelta(days=365)).timestamp())
    assert claims[-260][1] == hcert
    assert list(dcc_schema.iter_errors(claims[-260][1])) == []


def _tamper(hc1: str, change: Any) -> str:
    message, claims = independently_decode(hc1)
    change(claims)
    message[2] = cbor2.dumps(claims)
    cose = cbor2.dumps(cbor2.CBORTag(18, message))
    encoded: bytes = base45.b45encode(zlib.compress(cose))
    return "HC1:" + encoded.decode()


def test_a_tampered_payload_fails_both_verifiers(sign: Sign, signer: SigningKey) -> None:
    hc1 = sign()

    def later_birth(claims: dict[Any, Any]) -> None:
        claims[-260][1]["dob"] = "1995-04-12"

    forged = _tamper(hc1, later_birth)
    message, _ = independently_decode(forged)
    public_key = signer.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    with pytest.raises(InvalidSignature):
        independently_verify(message, public_key)
    assert not signature_ok(decode_hc1(forged), public_key)
    assert signature_ok(decode_hc1(hc1), public_key)


def test_flipping_any_byte_of_the_cwt_is_detected(sign: Sign, signer: SigningKey) -> None:
    hc1 = sign()
    message, _ = independently_decode(hc1)
    public_key = signer.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    for i in range(0, len(message[2]), 7):
        flipped = bytearray(message[2])
        flipped[i] ^= 0x01
        copy = [message[0], message[1], bytes(flipped), message[3]]
        tampered = decode_hc1(
            "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, copy)))).decode()
        )
        assert not signature_ok(tampered, public_key)


def test_claims_are_decoded(sign: Sign) -> None:
    claims = decode_claims(decode_hc1(sign()))
    assert (claims.issuer, claims.issued_at, claims.expires_at) == (
        "RS",
        NOW,
        NOW + timedelta(days=365),
    )
    assert claims.hcert["v"][0]["mp"] == "EU/1/20/1528"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "HC2:NCF",
        "HC1:~~~",
        "HC1:" + base45.b45encode(b"\x78\x9c garbage").decode(),
        "HC1:" + base45.b45encode(zlib.compress(b"\xff\xff")).decode(),
        "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps([1, 2, 3]))).decode(),
        "HC1:" + base45.b45encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(98, [])))).decode(),
        "HC1:" + base45.b45encode(zlib.compress(b"\x00" * 200_000)).decode(),
    ],
)
def test_malformed_input_is_named(text: str) -> None:
    with pytest.raises(Malformed):
        decode_claims(decode_hc1(text))
