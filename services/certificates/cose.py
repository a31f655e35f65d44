"""The EU DCC wire format: CWT in COSE_Sign1 (ES256), zlib, Base45, `HC1:`.

    hcert payload -> CWT claims {1: iss, 6: iat, 4: exp, -260: {1: hcert}}
      -> COSE_Sign1 (RFC 9052): tag 18, [protected {1: -7, 4: kid}, {}, claims, r||s]
      -> zlib (level 9) -> Base45 (RFC 9285) -> "HC1:" + text

Libraries do the work: cbor2 (CBOR), cryptography (ECDSA P-256 / SHA-256
and RSA-PSS signatures), base45, zlib. This module only arranges their
input as RFC 9052 section 4.4 prescribes: the signature covers
`["Signature1", protected, external_aad = b"", payload]`, and ES256 signatures
travel as the raw 64-byte r||s, not DER.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import base45
import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

HC1_PREFIX = "HC1:"
COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ES256 = -7
PS256 = -37
CWT_ISS = 1
CWT_EXP = 4
CWT_IAT = 6
CWT_HCERT = -260
HCERT_V1 = 1
ES256_COORDINATE = 32
MAX_INFLATED = 64 * 1024  # a DCC is ~1 KiB; refuse to inflate more (zip bombs)


class Malformed(ValueError):
    """Not an HC1 certificate: prefix, Base45, zlib, CBOR or COSE structure is wrong."""


def cwt_claims(
    hcert: dict[str, Any], *, issuer: str, issued_at: datetime, expires_at: datetime
) -> bytes:
    """The CWT claims set carrying the health certificate (claim -260, key 1)."""
    return cbor2.dumps(
        {
            CWT_ISS: issuer,
            CWT_IAT: int(issued_at.timestamp()),
            CWT_EXP: int(expires_at.timestamp()),
            CWT_HCERT: {HCERT_V1: hcert},
        }
    )


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


class EcSigner(Protocol):
    """An EC private key that signs, wherever it is held: in memory (cryptography's
    `EllipticCurvePrivateKey`) or in a PKCS#11 token (`hsm.Pkcs11EcKey`)."""

    @property
    def curve(self) -> ec.EllipticCurve:
        """The key's curve (ES256 needs P-256)."""
        ...

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """A DER-encoded ECDSA signature of `data`."""
        ...


def sign1(payload: bytes, private_key: EcSigner, kid: bytes) -> bytes:
    """A tagged COSE_Sign1 over `payload`, ES256, with the kid in the protected header."""
    if private_key.curve.name != "secp256r1":
        raise ValueError("ES256 needs a P-256 key")
    protected = cbor2.dumps({HEADER_ALG: ES256, HEADER_KID: kid})
    der = private_key.sign(_sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(ES256_COORDINATE, "big") + s.to_bytes(ES256_COORDINATE, "big")
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def encode_hc1(cose: bytes) -> str:
    """`HC1:` + Base45 of the zlib-compressed COSE message."""
    encoded: bytes = base45.b45encode(zlib.compress(cose, 9))
    return HC1_PREFIX + encoded.decode("ascii")


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1 (nothing verified yet)."""

    protected: bytes  # exactly as signed
    protected_header: dict[Any, Any]
    unprotected_header: dict[Any, Any]
    payload: bytes
    signature: bytes

    def header(self, label: int) -> Any:
        """A header parameter, protected first (RFC 9052: it must not be in both)."""
        if label in self.protected_header:
            return self.protected_header[label]
        return self.unprotected_header.get(label)

    @property
    def alg(self) -> Any:
        """The algorithm (-7 ES256, -37 PS256)."""
        return self.header(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        """The key id, if the message names one."""
        kid = self.header(HEADER_KID)
        return bytes(kid) if isinstance(kid, bytes | bytearray) else None


def _inflate(data: bytes) -> bytes:
    if not data or data[0] != 0x78:  # not zlib: some issuers skipped compression
        return data
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED)
    except zlib.error as exc:
        raise Malformed(f"not zlib-compressed: {exc}") from None
    if inflater.unconsumed_tail:
        raise Malformed("the certificate inflates to more than 64 KiB")
    # zlib checks the Adler-32 trailer only once it reaches it: a stream cut short (or
    # altered so that it seems to end early) inflates without complaint unless we ask
    # whether it ended, and whether anything followed its end.
    if not inflater.eof:
        raise Malformed("the zlib stream is cut short (no end, no checksum)")
    if inflater.unused_data:
        raise Malformed("data follows the end of the zlib stream")
    return out


def _cbor(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types for bad input
        raise Malformed(f"{what} is not valid CBOR: {exc}") from None


def decode_hc1(text: str) -> Sign1:
    """Parse `HC1:...` down to the COSE_Sign1 structure; Malformed if anything is off."""
    text = text.strip()
    if not text.startswith(HC1_PREFIX):
        raise Malformed("the text does not start with HC1:")
    try:
        compressed = base45.b45decode(text[len(HC1_PREFIX) :])
    except ValueError:
        raise Malformed("the text after HC1: is not Base45") from None
    message = _cbor(_inflate(compressed), "the COSE message")
    if isinstance(message, cbor2.CBORTag):
        if message.tag != COSE_SIGN1_TAG:
            raise Malformed(f"CBOR tag {message.tag} is not COSE_Sign1 (18)")
        message = message.value
    # (cbor2 decodes what is inside a tag as tuples and frozen maps)
    if not isinstance(message, list | tuple) or len(message) != 4:
        raise Malformed("COSE_Sign1 must be an array of 4")
    protected, unprotected, payload, signature = message
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise Malformed("COSE_Sign1 protected header and payload must be byte strings")
    if not isinstance(signature, bytes) or not isinstance(unprotected, Mapping):
        raise Malformed("COSE_Sign1 signature must be bytes, unprotected header a map")
    protected_header = _cbor(protected, "the protected header") if protected else {}
    if not isinstance(protected_header, Mapping):
        raise Malformed("the protected header must be a map")
    return Sign1(protected, dict(protected_header), dict(unprotected), payload, signature)


@dataclass(frozen=True)
class Claims:
    """The CWT claims of a DCC."""

    issuer: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    hcert: dict[str, Any]


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def decode_claims(message: Sign1) -> Claims:
    """The CWT claims of the payload; Malformed without a health certificate in -260/1."""
    claims = _cbor(message.payload, "the CWT payload")
    if not isinstance(claims, Mapping):
        raise Malformed("the CWT payload must be a map")
    hcert = claims.get(CWT_HCERT)
    certificate = hcert.get(HCERT_V1) if isinstance(hcert, Mapping) else None
    if not isinstance(certificate, Mapping):
        raise Malformed("the CWT carries no health certificate (claim -260, key 1)")
    issuer = claims.get(CWT_ISS)
    return Claims(
        issuer=issuer if isinstance(issuer, str) else None,
        issued_at=_time(claims.get(CWT_IAT)),
        expires_at=_time(claims.get(CWT_EXP)),
        hcert=dict(certificate),
    )


PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def signature_ok(message: Sign1, public_key: PublicKey) -> bool:
    """Whether the COSE_Sign1 signature verifies with `public_key` (ES256 or PS256)."""
    data = _sig_structure(message.protected, message.payload)
    try:
        if message.alg == ES256 and isinstance(public_key, ec.EllipticCurvePublicKey):
            if public_key.curve.name != "secp256r1" or len(message.signature) != 64:
                return False
            r = int.from_bytes(message.signature[:ES256_COORDINATE], "big")
            s = int.from_bytes(message.signature[ES256_COORDINATE:], "big")
            public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            return True
        if message.alg == PS256 and isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            public_key.verify(message.signature, data, pss, hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return False


def jsonable(value: Any) -> Any:
    """A decoded CBOR value as JSON can carry it (tags unwrapped, bytes as hex)."""
    if isinstance(value, cbor2.CBORTag):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
