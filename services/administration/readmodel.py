"""Administration's read models: what other contexts told us, and the doses we recorded.

Writes from other contexts' events run in the consumer's transaction (the reactions
in handlers.py); writes of our own dose and adverse-event rows run in the command's
transaction (the commands in handlers.py), so the `doses` table is never behind the
event store. Reads turn rows into the API's views (schemas.py).

The rows keep the health details the events seal (reasons, symptoms, outcome,
description), opened with the citizen's key, for the API and the FHIR export while the
citizen exists; CitizenErased shreds them, leaving the dose and adverse-event facts
statistics need (product, lot, site, dates, age, onset, seriousness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from immunreg import audit
from immunreg.contracts.administration import (
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseVoided,
)
from immunreg.contracts.envelope import Envelope, Event
from immunreg.eventstore.database import Connection
from immunreg.reference.vaccines import VaccineCatalog
from immunreg.sealing import CitizenKey

from .keys import adverse_details, dose_notes, fetch_citizen_key
from .rules import CitizenFacts, LotFacts, PriorDose
from .schemas import AdverseEventView, DoseView

Executor = Connection | asyncpg.Pool

# --- citizens (registration events) ---------------------------------------------------------

_CITIZEN_REGISTERED = """
INSERT INTO citizens AS c (citizen_id, status, version, birth_date, sex, municipality_code)
VALUES ($1, 'active', $2, $3, $4, $5)
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'active', version = excluded.version, birth_date = excluded.birth_date,
    sex = excluded.sex, municipality_code = excluded.municipality_code, updated_at = now()
WHERE c.version < excluded.version
"""

# A withdrawal or erasure may be the first we hear of a citizen (e.g. registered before
# this service's history): insert the status so a later dose is judged correctly.
_CITIZEN_STATUS = """
INSERT INTO citizens AS c (citizen_id, status, version) VALUES ($1, $3, $2)
ON CONFLICT (citizen_id) DO UPDATE SET status = excluded.status, version = excluded.version,
    updated_at = now()
WHERE c.version < excluded.version
"""

_CITIZEN_ERASED = """
INSERT INTO citizens AS c (citizen_id, status, version) VALUES ($1, 'erased', $2)
ON CONFLICT (citizen_id) DO UPDATE SET status = 'erased', version = excluded.version,
    birth_date = NULL, sex = NULL, municipality_code = NULL, updated_at = now()
WHERE c.version < excluded.version
"""


async def citizen_registered(
    conn: Connection,
    citizen_id: str,
    version: int,
    *,
    birth_date: date,
    sex: str,
    municipality_code: str,
) -> None:
    await conn.execute(_CITIZEN_REGISTERED, citizen_id, version, birth_date, sex, municipality_code)


async def citizen_withdrawn(conn: Connection, citizen_id: str, version: int) -> None:
    await conn.execute(_CITIZEN_STATUS, citizen_id, version, "withdrawn")


# What an erasure leaves of a citizen's doses and adverse events: the facts statistics
# count, no reason, symptom, outcome or description (their sealed copies in the events
# died with the key).
_SHRED_DOSES = """
UPDATE doses SET override_reason = NULL, last_correction_reason = NULL, void_reason = NULL
WHERE citizen_id = $1
"""
_SHRED_ADVERSE_EVENTS = """
UPDATE adverse_events SET symptoms = '{}', outcome = NULL, description = NULL
WHERE citizen_id = $1
"""


async def citizen_erased(conn: Connection, citizen_id: str, version: int) -> None:
    await conn.execute(_CITIZEN_ERASED, citizen_id, version)
    await conn.execute(_SHRED_DOSES, citizen_id)
    await conn.execute(_SHRED_ADVERSE_EVENTS, citizen_id)


async def lock_citizen(conn: Connection, citizen_id: str) -> CitizenFacts | None:
    """The citizen, with their row locked until the transaction ends.

    Every dose command of one citizen takes this lock first, so two different doses
    for one citizen are checked against each other's history, never side by side.
    """
    row = await conn.fetchrow(
        "SELECT citizen_id, status, birth_date, sex, municipality_code FROM citizens "
        "WHERE citizen_id = $1 FOR UPDATE",
        citizen_id,
    )
    return _citizen(row)


async def fetch_citizen(db: Executor, citizen_id: str) -> CitizenFacts | None:
    row = await db.fetchrow(
        "SELECT citizen_id, status, birth_date, sex, municipality_code FROM citizens "
        "WHERE citizen_id = $1",
        citizen_id,
    )
    return _citizen(row)


def _citizen(row: asyncpg.Record | None) -> CitizenFacts | None:
    if row is None:
        return None
    return CitizenFacts(
        citizen_id=row["citizen_id"],
        status=row["status"],
        birth_date=row["birth_date"],
        sex=row["sex"],
        municipality_code=row["municipality_code"],
    )


# --- lots and sites (inventory and booking events) ----------------------------------------


async def lot_described(
    conn: Connection, lot_number: str, product_code: str, expiry_date: date
) -> None:
    await conn.execute(
        """
        INSERT INTO lots (lot_number, product_code, expiry_date) VALUES ($1, $2, $3)
        ON CONFLICT (lot_number) DO UPDATE SET product_code = excluded.product_code,
            expiry_date = excluded.expiry_date, updated_at = now()
        """,
        lot_number,
        product_code,
        expiry_date,
    )


async def lot_at_site(
    conn: Connection, site_id: str, lot_number: str, product_code: str, seen: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO site_lots (site_id, lot_number, product_code, first_seen)
        VALUES ($1, $2, $3, $4) ON CONFLICT (site_id, lot_number) DO NOTHING
        """,
        site_id,
        lot_number,
        product_code,
        seen,
    )


async def lot_recalled(
    conn: Connection, lot_number: str, product_code: str, reason: str, at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO lots (lot_number, product_code, recalled_at, recall_reason)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (lot_number) DO UPDATE SET
            product_code = coalesce(lots.product_code, excluded.product_code),
            recalled_at = least(lots.recalled_at, excluded.recalled_at),
            recall_reason = coalesce(lots.recall_reason, excluded.recall_reason),
            updated_at = now()
        """,
        lot_number,
        product_code,
        at,
        reason,
    )


async def lot_expired(
    conn: Connection, lot_number: str, product_code: str, expiry_date: date
) -> None:
    await conn.execute(
        """
        INSERT INTO lots (lot_number, product_code, expiry_date, expired) VALUES ($1, $2, $3, true)
        ON CONFLICT (lot_number) DO UPDATE SET expired = true,
            product_code = coalesce(lots.product_code, excluded.product_code),
            expiry_date = coalesce(lots.expiry_date, excluded.expiry_date), updated_at = now()
        """,
        lot_number,
        product_code,
        expiry_date,
    )


async def site_defined(conn: Connection, site_id: str, name: str, municipality_code: str) -> None:
    await conn.execute(
        """
        INSERT INTO sites (site_id, name, municipality_code) VALUES ($1, $2, $3)
        ON CONFLICT (site_id) DO UPDATE SET name = excluded.name,
            municipality_code = excluded.municipality_code, updated_at = now()
        """,
        site_id,
        name,
        municipality_code,
    )


_LOT_COLUMNS = """
coalesce(l.product_code, s.product_code) AS product_code, l.expiry_date, l.recalled_at,
coalesce(l.expired, false) AS expired, s.site_id IS NOT NULL AS here,
l.lot_number IS NOT NULL OR s.site_id IS NOT NULL AS known
"""
_LOT_JOINS = """
LEFT JOIN lots l ON l.lot_number = $1
LEFT JOIN site_lots s ON s.lot_number = $1 AND s.site_id = $2
"""


async def fetch_lot(db: Executor, lot_number: str, site_id: str) -> LotFacts | None:
    """The lot, and whether it reached `site_id`; None when inventory never mentioned it."""
    row = await db.fetchrow(
        f"SELECT {_LOT_COLUMNS} FROM (SELECT 1) AS one {_LOT_JOINS}", lot_number, site_id
    )
    return _lot(row, lot_number)


def _lot(row: asyncpg.Record | None, lot_number: str) -> LotFacts | None:
    if row is None or not row["known"]:
        return None
    return LotFacts(
        lot_number=lot_number,
        product_code=row["product_code"],
        expiry_date=row["expiry_date"],
        recalled_at=row["recalled_at"],
        expired=row["expired"],
        at_site=row["here"],
    )


@dataclass(frozen=True)
class Administering:
    """What recording a new dose reads once the citizen is locked (one statement)."""

    lot: LotFacts | None
    history: list[PriorDose]
    key: CitizenKey | None
    site_municipality: str | None


# The lot, the site's municipality, the citizen's key and the doses that count (as
# fetch_history orders them), in one row.
_ADMINISTERING = f"""
SELECT {_LOT_COLUMNS},
       (SELECT municipality_code FROM sites WHERE site_id = $2) AS site_municipality,
       k.key_id, k.key, h.doses
FROM (SELECT 1) AS one
{_LOT_JOINS}
LEFT JOIN citizen_keys k ON k.citizen_id = $3
CROSS JOIN LATERAL (
    SELECT array_agg(row(dose_id, dose_number, product_code, administered_at)
                     ORDER BY administered_at) AS doses
    FROM doses WHERE citizen_id = $3 AND status = 'completed'
) h
"""


async def fetch_administering(
    conn: Connection, citizen_id: str, lot_number: str, site_id: str
) -> Administering:
    """The lot at the site, the citizen's history and key, the site's municipality."""
    row = await conn.fetchrow(_ADMINISTERING, lot_number, site_id, citizen_id)
    assert row is not None  # one row, whatever is found
    municipality = row["site_municipality"]
    return Administering(
        lot=_lot(row, lot_number),
        history=[PriorDose(*dose) for dose in row["doses"] or ()],
        key=None if row["key_id"] is None else CitizenKey(row["key_id"], bytes(row["key"])),
        site_municipality=str(municipality) if municipality is not None else None,
    )


async def fetch_site_municipality(db: Executor, site_id: str) -> str | None:
    value = await db.fetchval("SELECT municipality_code FROM sites WHERE site_id = $1", site_id)
    return str(value) if value is not None else None


# --- doses (our own events, in the command's transaction) --------------------------------

_DOSE_ADMINISTERED = """
INSERT INTO doses (dose_id, citizen_id, status, version, site_id, site_municipality_code,
    product_code, lot_number, dose_number, series_length, series_complete, booster,
    administered_at, age_at_vaccination, vaccinator_id, appointment_id, injection_site,
    override_reason, overridden_rules, recorded_at, updated_at)
VALUES ($1, $2, 'completed', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
    $17, $18, $19, $19)
ON CONFLICT (dose_id) DO NOTHING
"""

_DOSE_CORRECTED = """
UPDATE doses SET version = $2, product_code = $3, lot_number = $4, dose_number = $5,
    series_length = $6, series_complete = $7, booster = $8, administered_at = $9,
    age_at_vaccination = coalesce($10, age_at_vaccination),
    vaccinator_id = coalesce($11, vaccinator_id), appointment_id = $12, injection_site = $13,
    override_reason = $14, overridden_rules = $15, corrections = corrections + 1,
    last_correction_reason = $16,
    site_municipality_code = coalesce(nullif($17, ''), site_municipality_code),
    updated_at = $18
WHERE dose_id = $1 AND version < $2
"""

_DOSE_VOIDED = """
UPDATE doses SET version = $2, status = 'entered-in-error', void_reason = $3, updated_at = $4
WHERE dose_id = $1 AND version < $2
"""


async def apply_dose_event(conn: Connection, envelope: Envelope, event: Event) -> None:
    """Bring the dose's row up to the event (guarded by version: applying twice is a no-op),
    its details opened with the citizen's key."""
    at = envelope.recorded_at
    if not isinstance(event, DoseAdministered | DoseCorrected | DoseVoided | AdverseEventReported):
        return
    key = None if event.details is None else await fetch_citizen_key(conn, event.citizen_id)
    if isinstance(event, AdverseEventReported):
        await _adverse_event_reported(conn, event, adverse_details(event, key), at)
        return
    notes = dose_notes(event, key)
    if isinstance(event, DoseAdministered):
        await conn.execute(
            _DOSE_ADMINISTERED,
            event.dose_id,
            event.citizen_id,
            envelope.version,
            event.site_id,
            event.site_municipality_code,
            event.product_code,
            event.lot_number,
            event.dose_number,
            event.series_length,
            event.series_complete,
            event.booster,
            event.administered_at,
            event.age_at_vaccination,
            event.vaccinator_id,
            event.appointment_id,
            event.injection_site,
            notes.override_reason,
            event.overridden_rules,
            at,
        )
    elif isinstance(event, DoseCorrected):
        await conn.execute(
            _DOSE_CORRECTED,
            event.dose_id,
            envelope.version,
            event.product_code,
            event.lot_number,
            event.dose_number,
            event.series_length,
            event.series_complete,
            event.booster,
            event.administered_at,
            event.age_at_vaccination,
            event.vaccinator_id,
            event.appointment_id,
            event.injection_site,
            notes.override_reason,
            event.overridden_rules,
            notes.reason,
            event.site_municipality_code,
            at,
        )
    else:
        await conn.execute(_DOSE_VOIDED, event.dose_id, envelope.version, notes.reason, at)


async def _adverse_event_reported(
    conn: Connection, event: AdverseEventReported, details: AdverseEventDetails, at: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO adverse_events (report_id, dose_id, citizen_id, symptoms, onset_at,
            serious, outcome, reporter_role, description, reported_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (report_id) DO NOTHING
        """,
        event.report_id,
        event.dose_id,
        event.citizen_id,
        details.symptoms,
        event.onset_at,
        event.serious,
        details.outcome or None,
        event.reporter_role,
        details.description,
        at,
    )


async def fetch_history(
    conn: Connection, citizen_id: str, *, excluding: str | None = None
) -> list[PriorDose]:
    """The citizen's doses that count (not entered in error), oldest first."""
    rows = await conn.fetch(
        """
        SELECT dose_id, dose_number, product_code, administered_at FROM doses
        WHERE citizen_id = $1 AND status = 'completed' AND dose_id IS DISTINCT FROM $2
        ORDER BY administered_at
        """,
        citizen_id,
        excluding,
    )
    return [
        PriorDose(
            dose_id=r["dose_id"],
            dose_number=r["dose_number"],
            product_code=r["product_code"],
            administered_at=r["administered_at"],
        )
        for r in rows
    ]


async def fetch_doses(db: Executor, citizen_id: str) -> Sequence[asyncpg.Record]:
    """Every dose of the citizen, voided ones too, with the lot's expiry and site's name."""
    rows: Sequence[asyncpg.Record] = await db.fetch(
        """
        SELECT d.*, l.expiry_date, s.name AS site_name
        FROM doses d
        LEFT JOIN lots l ON l.lot_number = d.lot_number
        LEFT JOIN sites s ON s.site_id = d.site_id
        WHERE d.citizen_id = $1 ORDER BY d.administered_at, d.dose_id
        """,
        citizen_id,
    )
    return rows


async def fetch_dose(db: Executor, dose_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        """
        SELECT d.*, l.expiry_date, s.name AS site_name
        FROM doses d
        LEFT JOIN lots l ON l.lot_number = d.lot_number
        LEFT JOIN sites s ON s.site_id = d.site_id
        WHERE d.dose_id = $1
        """,
        dose_id,
    )
    return row


async def fetch_adverse_events(db: Executor, citizen_id: str) -> Sequence[asyncpg.Record]:
    rows: Sequence[asyncpg.Record] = await db.fetch(
        "SELECT * FROM adverse_events WHERE citizen_id = $1 ORDER BY onset_at, report_id",
        citizen_id,
    )
    return rows


# --- views (what the API answers) ----------------------------------------------------------


def _adverse_view(row: asyncpg.Record) -> AdverseEventView:
    return AdverseEventView(
        report_id=row["report_id"],
        symptoms=list(row["symptoms"]),
        onset_at=row["onset_at"],
        serious=row["serious"],
        outcome=row["outcome"],
        reporter_role=row["reporter_role"],
        description=row["description"],
        reported_at=row["reported_at"],
    )


def _dose_view(
    row: asyncpg.Record, catalog: VaccineCatalog, adverse: Sequence[AdverseEventView] = ()
) -> DoseView:
    product = catalog.get(row["product_code"])
    return DoseView(
        dose_id=row["dose_id"],
        citizen_id=row["citizen_id"],
        status=row["status"],
        version=row["version"],
        site_id=row["site_id"],
        site_name=row["site_name"],
        site_municipality_code=row["site_municipality_code"],
        product_code=row["product_code"],
        product_name=product.name if product else None,
        lot_number=row["lot_number"],
        expiry_date=row["expiry_date"],
        dose_number=row["dose_number"],
        series_length=row["series_length"],
        series_complete=row["series_complete"],
        booster=row["booster"],
        administered_at=row["administered_at"],
        age_at_vaccination=row["age_at_vaccination"],
        vaccinator_id=row["vaccinator_id"],
        appointment_id=row["appointment_id"],
        injection_site=row["injection_site"],
        override_reason=row["override_reason"],
        overridden_rules=list(row["overridden_rules"]),
        corrections=row["corrections"],
        last_correction_reason=row["last_correction_reason"],
        void_reason=row["void_reason"],
        recorded_at=row["recorded_at"],
        updated_at=row["updated_at"],
        adverse_events=list(adverse),
    )


async def dose_view(db: Executor, dose_id: str, catalog: VaccineCatalog) -> DoseView | None:
    """The dose as it stands, with the adverse events reported against it."""
    row = await fetch_dose(db, dose_id)
    if row is None:
        return None
    adverse = [
        _adverse_view(r)
        for r in await fetch_adverse_events(db, row["citizen_id"])
        if r["dose_id"] == dose_id
    ]
    return _dose_view(row, catalog, adverse)


async def citizen_dose_views(
    db: Executor, citizen_id: str, catalog: VaccineCatalog
) -> list[DoseView]:
    """Every dose of the citizen, voided ones too, each with its adverse events."""
    adverse: dict[str, list[AdverseEventView]] = {}
    for row in await fetch_adverse_events(db, citizen_id):
        adverse.setdefault(row["dose_id"], []).append(_adverse_view(row))
    return [
        _dose_view(row, catalog, adverse.get(row["dose_id"], []))
        for row in await fetch_doses(db, citizen_id)
    ]


# Site staff's linked reach: a dose recorded for the citizen at the site (voided ones
# too: the site met the citizen).
citizen_at_site = audit.citizen_at_site_in("doses")
