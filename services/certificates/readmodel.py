"""What the API reads: certificates, pending doses, the revocation list, the trust list.

Views are msgspec Structs, so the OpenAPI document describes exactly what is sent.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from typing import Literal

import asyncpg
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .keys import TrustedKey, TrustList, kid_text
from .verify import uci_hash

Status = Literal["valid", "revoked"]


class CertificateView(msgspec.Struct, frozen=True, kw_only=True):
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


class CitizenCertificates(msgspec.Struct, frozen=True, kw_only=True):
    """A citizen's certificates (newest first) and the doses still waiting for one
    (their names or data key have not arrived from registration yet)."""

    citizen_id: str
    certificates: list[CertificateView]
    pending_doses: list[str]


_COLUMNS = """
uvci, citizen_id, dose_id, status, product_code, dose_number, total_doses, vaccination_date,
issued_at, expires_at, key_id, supersedes, superseded_by, revocation_reason, revoked_at, hc1
"""


def _view(row: asyncpg.Record) -> CertificateView:
    return CertificateView(**dict(row.items()))


async def certificate(pool: asyncpg.Pool, uvci: str) -> CertificateView | None:
    """One certificate by UVCI."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM certificates WHERE uvci = $1", uvci)
    return _view(row) if row is not None else None


_PENDING = """
SELECT d.dose_id FROM doses d
WHERE d.citizen_id = $1 AND NOT d.voided
  AND NOT EXISTS (SELECT 1 FROM recalled_lots r WHERE r.lot_number = d.lot_number)
  AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.dose_id = d.dose_id AND c.status = 'valid')
  AND NOT EXISTS (SELECT 1 FROM citizens z WHERE z.citizen_id = d.citizen_id AND z.erased)
ORDER BY d.administered_at, d.dose_id
"""


async def citizen_certificates(pool: asyncpg.Pool, citizen_id: str) -> CitizenCertificates:
    """Every certificate of the citizen, newest first, and the doses still pending."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM certificates WHERE citizen_id = $1 ORDER BY seq DESC",
        citizen_id,
    )
    pending = await pool.fetch(_PENDING, citizen_id)
    return CitizenCertificates(
        citizen_id=citizen_id,
        certificates=[_view(r) for r in rows],
        pending_doses=[r["dose_id"] for r in pending],
    )


async def is_revoked(pool: asyncpg.Pool, uvci_sha256: bytes) -> bool:
    """Whether a certificate issued here with that UVCI hash is revoked."""
    return bool(
        await pool.fetchval(
            "SELECT true FROM certificates WHERE uvci_sha256 = $1 AND status = 'revoked'",
            uvci_sha256,
        )
    )


# --- revocation list ----------------------------------------------------------------


class RevokedEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One revoked certificate, by hashes of its UVCI only."""

    uvci_sha256: str  # hex SHA-256 of the UVCI as written in the certificate (`ci`)
    uci: str  # EU DCC revocation `UCI` hash type: first 128 bits of that SHA-256, base64
    revoked_at: datetime


class RevocationList(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the revocation list, oldest revocation first; follow `next_cursor`."""

    issuer: str
    hash_types: list[str]
    entries: list[RevokedEntry]
    next_cursor: str | None = None


async def revocations(
    pool: asyncpg.Pool, *, limit: int, after: tuple[datetime, bytes] | None
) -> tuple[list[RevokedEntry], tuple[datetime, bytes] | None]:
    """Up to `limit` revoked certificates after the cursor position, and the next position."""
    if after is None:
        rows = await pool.fetch(
            "SELECT uvci, uvci_sha256, revoked_at FROM certificates WHERE status = 'revoked' "
            "ORDER BY revoked_at, uvci_sha256 LIMIT $1",
            limit + 1,
        )
    else:
        rows = await pool.fetch(
            "SELECT uvci, uvci_sha256, revoked_at FROM certificates WHERE status = 'revoked' "
            "AND (revoked_at, uvci_sha256) > ($2, $3) "
            "ORDER BY revoked_at, uvci_sha256 LIMIT $1",
            limit + 1,
            *after,
        )
    page = rows[:limit]
    entries = [
        RevokedEntry(
            uvci_sha256=bytes(r["uvci_sha256"]).hex(),
            uci=uci_hash(r["uvci"]),
            revoked_at=r["revoked_at"],
        )
        for r in page
    ]
    following = None
    if len(rows) > limit:
        last = page[-1]
        following = (last["revoked_at"], bytes(last["uvci_sha256"]))
    return entries, following


# --- trust list ---------------------------------------------------------------------


class Jwk(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The public key as a JWK (RFC 7517): EC P-256 (x, y) or RSA (n, e), base64url."""

    kty: str
    kid: str
    crv: str | None = None
    x: str | None = None
    y: str | None = None
    n: str | None = None
    e: str | None = None


class TrustListEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A document signer (DSC): verify certificates whose COSE `kid` equals `kid`."""

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


class TrustListView(msgspec.Struct, frozen=True, kw_only=True):
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


def trust_list_view(trust: TrustList, *, issuer: str, active_kid: bytes) -> TrustListView:
    """The published trust list."""
    entries = [
        TrustListEntry(
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
        )
        for key in trust
    ]
    return TrustListView(issuer=issuer, keys=entries)
