"""Certificates' tables: what the reactions keep of other contexts' facts (citizens,
their data keys, doses, recalled lots), the signed certificates, the signing keys;
and the API's reads of them.

Every write runs in the caller's transaction (the consumer's, for reactions).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import asyncpg
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from immunreg import holderkeys
from immunreg.contracts.certificates import CertificateIssued, CertificateRevoked
from immunreg.contracts.common import Sealed
from immunreg.eventstore.database import Connection, view_of

from .domain import DoseFacts
from .keys import SignerRevocation, SigningKey
from .render import QrImages
from .schemas import CertificateView, CitizenCertificates, RevokedEntry
from .verify import uci_hash, uvci_sha256

# Reads that run on the pool or inside a transaction alike.
Database = asyncpg.Pool | Connection

_json = msgspec.json.Encoder()

# --- the API's reads ----------------------------------------------------------------

_COLUMNS = """
uvci, citizen_id, dose_id, status, product_code, dose_number, total_doses, vaccination_date,
issued_at, expires_at, key_id, supersedes, superseded_by, revocation_reason, revoked_at, hc1
"""


def _view(row: asyncpg.Record) -> CertificateView:
    return view_of(row, CertificateView)


# The formats a certificate's QR code is stored in (their columns: qr_png, qr_svg).
QrFormat = Literal["png", "svg"]


async def certificate(
    pool: asyncpg.Pool, uvci: str, image: QrFormat | None = None
) -> tuple[CertificateView, bytes | None] | None:
    """One certificate by UVCI, and its stored QR image in `image` format if asked (None
    if not rendered yet)."""
    column = f"qr_{image}" if image is not None else "NULL::bytea"
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS}, {column} AS image FROM certificates WHERE uvci = $1", uvci
    )
    if row is None:
        return None
    fields = dict(row)
    stored: bytes | None = fields.pop("image")
    return view_of(fields, CertificateView), stored


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


# --- signing keys -------------------------------------------------------------------


async def record_signer(db: Database, signer: SigningKey) -> None:
    """Put the signer's DSC in `signing_keys` for good (it stays trusted after rotation)."""
    certificate = signer.certificate
    await db.execute(
        "INSERT INTO signing_keys (kid, certificate, not_before, not_after) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
        signer.kid,
        certificate.public_bytes(serialization.Encoding.DER),
        certificate.not_valid_before_utc,
        certificate.not_valid_after_utc,
    )


async def signing_certificates(db: Database) -> list[x509.Certificate]:
    """Every DSC that signed here, newest first."""
    rows = await db.fetch("SELECT certificate FROM signing_keys ORDER BY first_used_at DESC, kid")
    return [x509.load_der_x509_certificate(r["certificate"]) for r in rows]


async def record_signer_revocation(
    conn: Connection, kid: bytes, reason: str, revoked_at: datetime
) -> None:
    """Keep a DSC's revocation (the first one counts)."""
    await conn.execute(
        "INSERT INTO signer_revocations (kid, reason, revoked_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (kid) DO NOTHING",
        kid,
        reason,
        revoked_at,
    )


async def signer_revocations(db: Database) -> dict[bytes, SignerRevocation]:
    """Every revoked DSC, by kid."""
    rows = await db.fetch("SELECT kid, reason, revoked_at FROM signer_revocations")
    return {bytes(r["kid"]): SignerRevocation(r["reason"], r["revoked_at"]) for r in rows}


# --- citizens, as registration tells ------------------------------------------------


async def keep_citizen(
    conn: Connection, citizen_id: str, birth_date: date, personal: Sealed
) -> None:
    """Keep the birth date and the sealed names (a re-registration clears an erasure)."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, birth_date, personal, erased, updated_at)
        VALUES ($1, $2, $3::text::jsonb, false, now())
        ON CONFLICT (citizen_id) DO UPDATE SET birth_date = excluded.birth_date,
            personal = excluded.personal, erased = false, updated_at = now()
        """,
        citizen_id,
        birth_date,
        _json.encode(personal).decode(),
    )


async def replace_personal(conn: Connection, citizen_id: str, personal: Sealed) -> None:
    """Keep the re-sealed personal data (never for an erased citizen)."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, personal, updated_at)
        VALUES ($1, $2::text::jsonb, now())
        ON CONFLICT (citizen_id) DO UPDATE SET personal = excluded.personal, updated_at = now()
        WHERE NOT citizens.erased
        """,
        citizen_id,
        _json.encode(personal).decode(),
    )


async def erase_citizen(conn: Connection, citizen_id: str) -> None:
    """Mark the citizen erased; drop the birth date, the sealed names and this service's
    key for the citizen (`immunreg.holderkeys`)."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, erased, updated_at) VALUES ($1, true, now())
        ON CONFLICT (citizen_id) DO UPDATE
            SET erased = true, birth_date = NULL, personal = NULL, updated_at = now()
        """,
        citizen_id,
    )
    await holderkeys.forget(conn, citizen_id)


async def delete_signed_payloads(conn: Connection, citizen_id: str) -> None:
    """Delete the citizen's `HC1:` strings and their QR images (they carry personal data)."""
    await conn.execute(
        "UPDATE certificates SET hc1 = NULL, qr_png = NULL, qr_svg = NULL WHERE citizen_id = $1",
        citizen_id,
    )


# --- doses and lots, as administration and inventory tell ---------------------------


@dataclass(frozen=True)
class DoseHolder:
    """Where the dose's certificate holder's names come from, if they are here yet."""

    birth_date: date | None
    personal: str | None  # the Sealed personal data (JSON), sealed with the data key
    private_key: bytes | None  # this service's key for the citizen (holder_keys)
    wrapped_key: str | None  # the data key, as registration granted it to that key


@dataclass(frozen=True)
class DoseOnFile:
    """A dose as this service knows it, and its holder."""

    facts: DoseFacts
    holder: DoseHolder


class DoseOwners(msgspec.Struct, frozen=True):
    """Whose a dose was and from which lot (the rows a correction may move it from)."""

    citizen_id: str
    lot_number: str


async def dose_owners(conn: Connection, dose_id: str) -> DoseOwners | None:
    """The dose's holder and lot as recorded so far."""
    row = await conn.fetchrow(
        "SELECT citizen_id, lot_number FROM doses WHERE dose_id = $1", dose_id
    )
    return DoseOwners(row["citizen_id"], row["lot_number"]) if row is not None else None


async def record_dose(
    conn: Connection,
    *,
    dose_id: str,
    citizen_id: str,
    product_code: str,
    lot_number: str,
    dose_number: int,
    series_length: int,
    administered_at: datetime,
) -> None:
    """Keep the dose as (last) recorded."""
    await conn.execute(
        """
        INSERT INTO doses (dose_id, citizen_id, product_code, lot_number, dose_number,
                           series_length, administered_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, now())
        ON CONFLICT (dose_id) DO UPDATE SET citizen_id = excluded.citizen_id,
            product_code = excluded.product_code, lot_number = excluded.lot_number,
            dose_number = excluded.dose_number, series_length = excluded.series_length,
            administered_at = excluded.administered_at, updated_at = now()
        """,
        dose_id,
        citizen_id,
        product_code,
        lot_number,
        dose_number,
        series_length,
        _aware(administered_at),
    )


def _aware(moment: datetime) -> datetime:
    """Naive times in events are UTC (the column is timestamptz)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def record_voided_dose(
    conn: Connection,
    *,
    dose_id: str,
    citizen_id: str,
    product_code: str,
    lot_number: str,
    dose_number: int,
    voided_at: datetime,
) -> None:
    """Mark the dose voided (kept as a voided row if it had not arrived yet)."""
    await conn.execute(
        """
        INSERT INTO doses (dose_id, citizen_id, product_code, lot_number, dose_number,
                           series_length, administered_at, voided, updated_at)
        VALUES ($1, $2, $3, $4, $5, $5, $6, true, now())
        ON CONFLICT (dose_id) DO UPDATE SET voided = true, updated_at = now()
        """,
        dose_id,
        citizen_id,
        product_code,
        lot_number,
        dose_number,
        voided_at,
    )


async def record_recall(
    conn: Connection, lot_number: str, reason: str, recalled_at: datetime
) -> None:
    """Keep the lot as recalled (the first recall counts)."""
    await conn.execute(
        "INSERT INTO recalled_lots (lot_number, reason, recalled_at) VALUES ($1, $2, $3) "
        "ON CONFLICT (lot_number) DO NOTHING",
        lot_number,
        reason,
        recalled_at,
    )


async def doses_of_lot(conn: Connection, lot_number: str) -> list[str]:
    """The ids of the doses from the lot, in id order."""
    rows = await conn.fetch(
        "SELECT dose_id FROM doses WHERE lot_number = $1 ORDER BY dose_id", lot_number
    )
    return [r["dose_id"] for r in rows]


async def dose_lots_of_citizen(conn: Connection, citizen_id: str) -> dict[str, str]:
    """The citizen's doses (in id order) and the lot of each."""
    rows = await conn.fetch(
        "SELECT dose_id, lot_number FROM doses WHERE citizen_id = $1 ORDER BY dose_id",
        citizen_id,
    )
    return {r["dose_id"]: r["lot_number"] for r in rows}


async def dose_on_file(conn: Connection, dose_id: str) -> DoseOnFile | None:
    """The dose, whether its lot was recalled, and what is known of its holder."""
    row = await conn.fetchrow(
        """
        SELECT d.*, r.lot_number IS NOT NULL AS recalled,
               c.birth_date, c.personal::text AS personal, coalesce(c.erased, false) AS erased,
               k.private_key, k.wrapped_key
        FROM doses d
        LEFT JOIN recalled_lots r ON r.lot_number = d.lot_number
        LEFT JOIN citizens c ON c.citizen_id = d.citizen_id
        LEFT JOIN holder_keys k ON k.citizen_id = d.citizen_id
        WHERE d.dose_id = $1
        """,
        dose_id,
    )
    if row is None:
        return None
    facts = DoseFacts(
        dose_id=row["dose_id"],
        citizen_id=row["citizen_id"],
        product_code=row["product_code"],
        dose_number=row["dose_number"],
        series_length=row["series_length"],
        administered_at=row["administered_at"],
        voided=row["voided"],
        recalled=row["recalled"],
        erased=row["erased"],
    )
    holder = DoseHolder(
        birth_date=row["birth_date"],
        personal=row["personal"],
        private_key=row["private_key"],
        wrapped_key=row["wrapped_key"],
    )
    return DoseOnFile(facts=facts, holder=holder)


# --- certificates -------------------------------------------------------------------


async def record_issued(
    conn: Connection, event: CertificateIssued, hc1: str, images: QrImages
) -> None:
    """Keep an issued certificate, its signed `HC1:` string and its QR images (no row
    is ever without its images, but those from before they were rendered at issue)."""
    await conn.execute(
        """
        INSERT INTO certificates (uvci, uvci_sha256, dose_id, citizen_id, product_code,
            dose_number, total_doses, vaccination_date, issued_at, expires_at, key_id,
            supersedes, hc1, qr_png, qr_svg)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        """,
        event.uvci,
        uvci_sha256(event.uvci),
        event.dose_id,
        event.citizen_id,
        event.product_code,
        event.dose_number,
        event.total_doses,
        event.vaccination_date,
        event.issued_at,
        event.expires_at,
        event.key_id,
        event.supersedes,
        hc1,
        images.png,
        images.svg,
    )


async def record_revoked(conn: Connection, event: CertificateRevoked, at: datetime) -> None:
    """Mark a certificate revoked (and by which it was superseded, if any)."""
    await conn.execute(
        """
        UPDATE certificates SET status = 'revoked', revocation_reason = $2,
            superseded_by = $3, revoked_at = $4
        WHERE uvci = $1
        """,
        event.uvci,
        event.reason,
        event.superseded_by,
        at,
    )


# --- QR images (images.py) ----------------------------------------------------------


async def claim_for_rendering(conn: Connection, uvci: str) -> tuple[str | None, QrImages | None]:
    """Lock the certificate's row until the transaction ends; its `HC1:` and images.

    A renderer holds the rows of its batch the same way, so whoever comes second finds
    the images stored and does not render them again."""
    row = await conn.fetchrow(
        "SELECT hc1, qr_png, qr_svg FROM certificates WHERE uvci = $1 FOR UPDATE", uvci
    )
    if row is None:
        return None, None
    images = QrImages(row["qr_png"], row["qr_svg"]) if row["qr_png"] is not None else None
    return row["hc1"], images


async def claim_unrendered(conn: Connection, limit: int) -> list[tuple[str, str]]:
    """Up to `limit` certificates with no images yet (UVCI, HC1), oldest first, locked until
    the transaction ends; rows another renderer or a download holds are skipped."""
    rows = await conn.fetch(
        "SELECT uvci, hc1 FROM certificates WHERE hc1 IS NOT NULL AND qr_png IS NULL "
        "ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [(r["uvci"], r["hc1"]) for r in rows]


async def store_images(conn: Connection, rendered: list[tuple[str, QrImages]]) -> None:
    """Keep rendered images (on rows the caller holds locked, so the HC1 is still there)."""
    await conn.executemany(
        "UPDATE certificates SET qr_png = $2, qr_svg = $3 WHERE uvci = $1 AND hc1 IS NOT NULL",
        [(uvci, images.png, images.svg) for uvci, images in rendered],
    )
