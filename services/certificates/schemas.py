"""What the certificates API accepts and answers (the OpenAPI document is built from these).

Responses are msgspec Structs, so the document describes exactly what is sent.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from immunreg.structs import Struct

from .keys import KID_BYTES, TrustedKey, TrustList, kid_text
from .verify import Reason, Verification

Status = Literal["valid", "revoked"]
MAX_HC1_LENGTH = 8192  # a QR code holds at most 4296 alphanumeric characters


# --- certificates ---------------------------------------------------------------------


class CertificateView(Struct):
    """One certificate: what it certifies, its status, and the signed `HC1:` string.

    `hc1` is null once the citizen's personal data was erased.
    """

    uvci: str
    citizen_id: str
    dose_id: str
    status: Status
    product_code: str
    dose_number: int
    total_doses: int
    vaccination_date: date
    issued_at: datetime
    expires_at: datetime
    key_id: str
    supersedes: str | None = None
    superseded_by: str | None = None
    revocation_reason: str | None = None
    revoked_at: datetime | None = None
    hc1: str | None = None


class CitizenCertificates(Struct):
    """A citizen's certificates (newest first) and the doses still waiting for one
    (their names or data key have not arrived from registration yet)."""

    citizen_id: str
    certificates: list[CertificateView]
    pending_doses: list[str]


# --- verifying ------------------------------------------------------------------------


class VerifyRequest(Struct, forbid_unknown_fields=True):
    """An `HC1:` string as a QR code holds it; `at` asks about a later moment (expiry is
    checked at the later of `at` and the server's clock)."""

    hc1: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HC1_LENGTH)]
    at: datetime | None = None


class VerifyResult(Struct):
    """The verdict and what the certificate says (`payload`: the decoded DCC, when decodable).

    `reason`: ok, malformed, unknown_key, bad_signature, signer_revoked, issuer_mismatch,
    signer_not_valid, wrong_key_usage, revoked, expired.
    """

    valid: bool
    reason: Reason
    detail: str
    kid: str | None
    issuer: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    uvci: str | None
    payload: dict[str, Any] | None

    @classmethod
    def of(cls, verification: Verification) -> VerifyResult:
        """The answer for a verification."""
        return cls(
            valid=verification.valid,
            reason=verification.reason,
            detail=verification.detail,
            kid=kid_text(verification.kid) if verification.kid is not None else None,
            issuer=verification.issuer,
            issued_at=verification.issued_at,
            expires_at=verification.expires_at,
            uvci=verification.uvci,
            payload=verification.payload,
        )


class SigningKeyRevocation(Struct, forbid_unknown_fields=True):
    """Revoke the DSC with this `kid` (as the trust list writes it), for `reason`."""

    kid: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    reason: Literal["key_compromise", "ca_compromise", "superseded", "cessation_of_operation"]

    def kid_bytes(self) -> bytes | None:
        """The kid's bytes, or None when it is not base64 of 8 bytes."""
        try:
            kid = base64.b64decode(self.kid, validate=True)
        except ValueError:
            return None
        return kid if len(kid) == KID_BYTES else None


# --- revocation list ------------------------------------------------------------------


class RevokedEntry(Struct):
    """One revoked certificate, by hashes of its UVCI only."""

    uvci_sha256: str  # hex SHA-256 of the UVCI as written in the certificate (`ci`)
    uci: str  # EU DCC revocation `UCI` hash type: first 128 bits of that SHA-256, base64
    revoked_at: datetime


class RevocationList(Struct):
    """A page of the revocation list, oldest revocation first; follow `next_cursor`."""

    issuer: str
    hash_types: list[str]
    entries: list[RevokedEntry]
    next_cursor: str | None = None


# --- trust list -----------------------------------------------------------------------


class Jwk(Struct, omit_defaults=True):
    """The public key as a JWK (RFC 7517): EC P-256 (x, y) or RSA (n, e), base64url."""

    kty: str
    kid: str
    crv: str | None = None
    x: str | None = None
    y: str | None = None
    n: str | None = None
    e: str | None = None


class TrustListEntry(Struct):
    """A document signer (DSC): verify certificates whose COSE `kid` equals `kid`, unless
    it is revoked (`revoked_at` set: it verifies nothing). Every DSC listed chains to the
    CSCA named in `csca`."""

    kid: str  # base64 of the first 8 bytes of SHA-256(DSC DER)
    country: str | None
    source: Literal["issuer", "trusted"]  # signed here / another issuer's, configured
    active: bool  # the key this service signs with now
    certificate: str  # the DSC, base64 DER
    public_key: Jwk
    spki: str  # SubjectPublicKeyInfo, base64 DER
    key_usage: list[str] | None  # certificate types it may sign (v, t, r); null: any
    not_before: datetime
    not_after: datetime
    csca: str | None = None  # subject of the CSCA it chains to (RFC 4514)
    revoked_at: datetime | None = None
    revocation_reason: str | None = None


class TrustListView(Struct):
    """Every key `POST /v1/verify` accepts; keys rotated out stay listed."""

    issuer: str
    keys: list[TrustListEntry]


def _b64url(value: int, size: int | None = None) -> str:
    length = size or (value.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).decode("ascii").rstrip("=")


def _jwk(key: TrustedKey) -> Jwk:
    kid = kid_text(key.kid)
    public = key.public_key
    if isinstance(public, ec.EllipticCurvePublicKey):
        numbers = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return Jwk(
            kty="EC",
            kid=kid,
            crv=curve.get(public.curve.name, public.curve.name),
            x=_b64url(numbers.x, size),
            y=_b64url(numbers.y, size),
        )
    assert isinstance(public, rsa.RSAPublicKey)
    rsa_numbers = public.public_numbers()
    return Jwk(kty="RSA", kid=kid, n=_b64url(rsa_numbers.n), e=_b64url(rsa_numbers.e))


def trust_list_entry(key: TrustedKey, *, active_kid: bytes) -> TrustListEntry:
    """One DSC as the trust list publishes it."""
    return TrustListEntry(
        kid=kid_text(key.kid),
        country=key.country,
        source="issuer" if key.source == "issuer" else "trusted",
        active=key.kid == active_kid,
        certificate=base64.b64encode(
            key.certificate.public_bytes(serialization.Encoding.DER)
        ).decode("ascii"),
        public_key=_jwk(key),
        spki=base64.b64encode(
            key.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).decode("ascii"),
        key_usage=sorted(key.key_usage) if key.key_usage is not None else None,
        not_before=key.not_before,
        not_after=key.not_after,
        csca=key.csca.subject.rfc4514_string() if key.csca is not None else None,
        revoked_at=key.revoked.revoked_at if key.revoked is not None else None,
        revocation_reason=key.revoked.reason if key.revoked is not None else None,
    )


def trust_list_view(trust: TrustList, *, issuer: str, active_kid: bytes) -> TrustListView:
    """The published trust list."""
    return TrustListView(
        issuer=issuer, keys=[trust_list_entry(key, active_kid=active_kid) for key in trust]
    )
