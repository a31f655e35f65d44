"""The DSC private key held in a PKCS#11 token (an HSM in production, SoftHSM in tests).

The key never leaves the token: `Pkcs11EcKey` hashes here (SHA-256) and asks the
token for a raw ECDSA signature of the digest (`CKM_ECDSA`, which every token
that holds EC keys offers), then hands it on DER-encoded, as cryptography's
keys do, so `cose.sign1` signs with either.

Settings (each `CERTIFICATES_<NAME>`): `PKCS11_MODULE` (the token's PKCS#11
library, e.g. /usr/lib/softhsm/libsofthsm2.so), `PKCS11_TOKEN_LABEL`,
`PKCS11_KEY_LABEL` (the EC P-256 private key's label) and `PKCS11_PIN_FILE`
(a file holding the user PIN, so the PIN is in no process listing or
environment dump), with `DSC_CERT_FILE` (the key's DSC, issued by the CSCA).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pkcs11
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Mechanism, ObjectClass

ES256_COORDINATE = 32


class TokenError(RuntimeError):
    """The token, its key or its PIN cannot be used (the message says which)."""


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the DSC key is: library, token, key label, and the file holding the PIN."""

    module: Path
    token_label: str
    key_label: str
    pin_file: Path


class Pkcs11EcKey:
    """An EC P-256 private key in a PKCS#11 token, signing like cryptography's keys.

    One logged-in session for the life of the process; signing runs on the
    event loop's thread only (sessions are not shared between threads).
    """

    def __init__(self, config: Pkcs11Config) -> None:
        try:
            pin = config.pin_file.read_text().strip()
            token = pkcs11.lib(str(config.module)).get_token(token_label=config.token_label)
            self._session = token.open(user_pin=pin)
            key = self._session.get_key(ObjectClass.PRIVATE_KEY, label=config.key_label)
        except OSError as exc:
            raise TokenError(f"PKCS#11 {config.module}: {exc}") from exc
        except pkcs11.PKCS11Error as exc:
            raise TokenError(
                f"PKCS#11 token {config.token_label!r}, key {config.key_label!r}: "
                f"{type(exc).__name__} {exc}"
            ) from exc
        if not isinstance(key, pkcs11.SignMixin):
            raise TokenError(f"PKCS#11 key {config.key_label!r} cannot sign")
        self._key = key

    @property
    def curve(self) -> ec.EllipticCurve:
        """P-256: the only curve a DSC key for ES256 may use (checked at load by signing)."""
        return ec.SECP256R1()

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """A DER ECDSA-SHA256 signature of `data`, made by the token."""
        if not isinstance(signature_algorithm, ec.ECDSA) or not isinstance(
            signature_algorithm.algorithm, hashes.SHA256
        ):
            raise ValueError("the token signs ECDSA with SHA-256 only")
        digest = hashlib.sha256(data).digest()
        try:
            raw = self._key.sign(digest, mechanism=Mechanism.ECDSA)
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"PKCS#11 signing failed: {type(exc).__name__} {exc}") from exc
        if len(raw) != 2 * ES256_COORDINATE:
            raise TokenError("the PKCS#11 key is not a P-256 key")
        r = int.from_bytes(raw[:ES256_COORDINATE], "big")
        s = int.from_bytes(raw[ES256_COORDINATE:], "big")
        return encode_dss_signature(r, s)

    def close(self) -> None:
        """Log out and close the session."""
        self._session.close()
