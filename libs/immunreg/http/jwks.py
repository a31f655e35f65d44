"""The JWT keys services trust: a JWKS file of public keys, each named by its `kid`.

Signing keys live with whoever issues tokens; services only ever read public
halves. Several keys may be trusted at once, which is how a signing key is
rotated without downtime (publish the new key, switch the issuer, drop the old
key once its tokens have expired; see docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm
from jwt.exceptions import PyJWKError

# The development key pair: the signing key and the trusted keys in separate
# folders, so the folder services read never holds a private key.
SIGNING_DIR = "jwt-signing"
TRUSTED_DIR = "jwt-trusted"
PRIVATE_KEY_FILE = "jwt-private.pem"
JWKS_FILE = "jwks.json"
ALGORITHM = "ES256"
"""What the project signs with (P-256 ECDSA), and services verify unless configured."""
DEV_KID_PREFIX = "dev-"
"""Generated development keys are named `dev-...`; production mode refuses them."""

# RFC 7517/7518: the members that carry a private (or secret) half of a key.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# RFC 7638: the members a key's thumbprint is computed over, per key type.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# How much of a file in the trusted folder is read to look for a private key.
_SNIFF_BYTES = 65536


class TrustedKeys:
    """Public keys by `kid`, for one signing algorithm."""

    def __init__(self, keys: Mapping[str, PyJWK], algorithm: str) -> None:
        if not keys:
            raise ValueError("the JWKS holds no keys")
        self.algorithm = algorithm
        self._keys = dict(keys)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The kid of every trusted key."""
        return tuple(self._keys)

    def get(self, kid: str) -> PyJWK | None:
        """The key named `kid`, or None when it is not trusted."""
        return self._keys.get(kid)

    @classmethod
    def from_jwks(cls, document: bytes | str, algorithm: str = ALGORITHM) -> TrustedKeys:
        """Parse a JWKS (`{"keys": [...]}`); ValueError naming the entry that is wrong.

        Every entry needs a unique kid, only public members, and (if it says) the
        configured algorithm: a key carrying its private half is refused outright.
        """
        try:
            parsed = json.loads(document)
        except ValueError as e:
            raise ValueError(f"the JWKS is not JSON: {e}") from None
        entries = parsed.get("keys") if isinstance(parsed, dict) else None
        if not isinstance(entries, list):
            raise ValueError('the JWKS must be an object with a "keys" list')
        keys: dict[str, PyJWK] = {}
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"JWKS key {index} is not an object")
            kid = entry.get("kid")
            if not isinstance(kid, str) or not kid:
                raise ValueError(f"JWKS key {index} has no kid")
            if kid in keys:
                raise ValueError(f"JWKS kid {kid!r} appears twice")
            private = sorted(PRIVATE_MEMBERS & entry.keys())
            if private:
                raise ValueError(
                    f"JWKS key {kid!r} carries private members {private}: "
                    "publish only the public half"
                )
            declared = entry.get("alg")
            if declared is not None and declared != algorithm:
                raise ValueError(f"JWKS key {kid!r} is for {declared}, not {algorithm}")
            try:
                keys[kid] = PyJWK(entry, algorithm)
            except PyJWKError as e:
                raise ValueError(f"JWKS key {kid!r} is not a usable {algorithm} key: {e}") from None
        return cls(keys, algorithm)

    @classmethod
    def read(cls, path: Path, algorithm: str = ALGORITHM) -> TrustedKeys:
        """The JWKS file at `path` (see `from_jwks`)."""
        try:
            return cls.from_jwks(path.read_bytes(), algorithm)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def key_id(public_key: Any) -> str:
    """The RFC 7638 thumbprint of a public key (base64url SHA-256): a stable kid."""
    jwk = public_jwk(public_key)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwk(
    public_key: Any, kid: str | None = None, algorithm: str | None = None
) -> dict[str, Any]:
    """A public key as a JWK (only public members), with its kid and alg when given."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("only EC public keys are written as JWKs here")
    jwk: dict[str, Any] = dict(ECAlgorithm.to_jwk(public_key, as_dict=True))
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    if algorithm is not None:
        jwk["alg"] = algorithm
    return jwk


def signing_key_id(private_key_pem: bytes) -> str:
    """The kid tokens signed with this private key carry (development keys: `dev-...`)."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    return DEV_KID_PREFIX + key_id(key.public_key())[:16]


def readable_private_keys(folder: Path) -> list[Path]:
    """Files in `folder` this process can read that hold a private or secret key.

    A PEM private key, or a JSON JWK/JWKS with private members: either would let
    whoever runs the service mint tokens the service trusts.
    """
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file() or not os.access(path, os.R_OK):
            continue
        try:
            with path.open("rb") as f:
                head = f.read(_SNIFF_BYTES)
        except OSError:
            continue
        if b"PRIVATE KEY-----" in head or _json_has_private_members(head):
            found.append(path)
    return found


def _json_has_private_members(data: bytes) -> bool:
    try:
        parsed = json.loads(data)
    except ValueError:
        return False
    entries = parsed.get("keys", [parsed]) if isinstance(parsed, dict) else []
    return any(isinstance(e, dict) and PRIVATE_MEMBERS & e.keys() for e in entries)
