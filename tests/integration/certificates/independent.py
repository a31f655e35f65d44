"""An independent decoder for `HC1:` certificates: Base45, zlib, CBOR, COSE_Sign1 and
ES256 done here with the libraries directly - nothing from services.certificates -
and the payload checked against the EU DCC JSON schema."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

import base45
import cbor2
import jsonschema
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SCHEMA = Path(__file__).parents[2] / "data" / "dcc" / "schema" / "DCC.combined-schema.json"


def decode(hc1: str) -> tuple[list[Any], dict[Any, Any]]:
    """The COSE_Sign1 array and the CWT claims (nothing verified)."""
    assert hc1.startswith("HC1:"), hc1[:10]
    tagged = cbor2.loads(zlib.decompress(base45.b45decode(hc1[4:])))
    assert isinstance(tagged, cbor2.CBORTag) and tagged.tag == 18
    message = list(tagged.value)
    assert len(message) == 4
    return message, cbor2.loads(message[2])


def key_from_trust_list(trust_list: dict[str, Any], kid: bytes) -> ec.EllipticCurvePublicKey:
    """The public key the trust list publishes for `kid`, checked against its DSC."""
    [entry] = [k for k in trust_list["keys"] if base64.b64decode(k["kid"]) == kid]
    der = base64.b64decode(entry["certificate"])
    assert hashlib.sha256(der).digest()[:8] == kid, "kid = first 8 bytes of SHA-256(DSC)"
    certificate = x509.load_der_x509_certificate(der)
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    jwk = entry["public_key"]
    numbers = public_key.public_numbers()
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert base64.urlsafe_b64decode(jwk["x"] + "==") == numbers.x.to_bytes(32, "big")
    assert base64.urlsafe_b64decode(jwk["y"] + "==") == numbers.y.to_bytes(32, "big")
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64decode(entry["spki"]) == spki
    return public_key


def verify_signature(message: list[Any], public_key: ec.EllipticCurvePublicKey) -> None:
    """ES256 over the RFC 9052 Sig_structure; raises InvalidSignature when it does not hold."""
    protected, _, payload, signature = message
    assert len(signature) == 64
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public_key.verify(der, to_sign, ec.ECDSA(hashes.SHA256()))


def schema_errors(hcert: dict[str, Any]) -> list[str]:
    """What the EU DCC JSON schema finds wrong with a payload."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [e.message for e in validator.iter_errors(hcert)]


def tamper(hc1: str, path: tuple[Any, ...], value: Any) -> str:
    """The same certificate with one payload field changed and the signature kept."""
    message, claims = decode(hc1)
    target = claims
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    message[2] = cbor2.dumps(claims)
    cose = cbor2.dumps(cbor2.CBORTag(18, message))
    encoded: bytes = base45.b45encode(zlib.compress(cose))
    return "HC1:" + encoded.decode("ascii")
