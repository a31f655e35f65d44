"""Booking's read models: what the planner, the reactions and the GET routes read.

`sites`, `site_days` and `appointments` are written in the same transaction as the
events they mirror; `citizens`, `doses` and `site_stock` by the reactions to other
contexts' events, each guarded by the source stream's version or the event's id so a
redelivery changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
import msgspec

from immunreg.contracts.booking import SiteDefined
from immunreg.eventstore.database import Connection

from .eligibility import DoseTaken, NextDose, next_dose
from .ranking import registration_order
from .scheduler import Capacity, Citizen, SiteInfo, Stock

Executor = Connection | asyncpg.Pool

_json = msgspec.json.Encoder()
_capacity = msgspec.json.Decoder(dict[str, int])


# --- sites ----------------------------------------------------------------------------


async def save_site(conn: Connection, site: SiteDefined, version: int) -> None:
    await conn.execute(
        """
        INSERT INTO sites AS s (site_id, name, municipality_code, address, latitude, longitude,
                                opening_hours, daily_capacity, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9)
        ON CONFLICT (site_id) DO UPDATE SET
            name = excluded.name, municipality_code = excluded.municipality_code,
            address = excluded.address, latitude = excluded.latitude,
            longitude = excluded.longitude, opening_hours = excluded.opening_hours,
            daily_capacity = excluded.daily_capacity, version = excluded.version,
            updated_at = now()
        WHERE s.version < excluded.version
        """,
        site.site_id,
        site.name,
        site.municipality_code,
        site.address,
        site.latitude,
        site.longitude,
        site.opening_hours,
        _json.encode(site.daily_capacity).decode(),
        version,
    )


def capacity_of(raw: str) -> dict[str, int]:
    """A jsonb capacity column, decoded."""
    return _capacity.decode(raw)


async def save_site_day(
    conn: Connection, site_id: str, day: date, capacity: dict[str, int], closed: bool
) -> None:
    await conn.execute(
        """
        INSERT INTO site_days (site_id, day, capacity, closed) VALUES ($1, $2, $3::text::jsonb, $4)
        ON CONFLICT (site_id, day) DO UPDATE SET capacity = excluded.capacity,
                                                 closed = excluded.closed
        """,
        site_id,
        day,
        _json.encode(capacity).decode(),
        closed,
    )


# --- what the planner needs ------------------------------------------------------------

_CITIZEN_WITH_DOSES = """
SELECT c.citizen_id, c.status, c.birth_date, c.municipality_code,
       c.preferred_municipality_code, c.priority_group, c.conditions, c.vaccine_preferences,
       c.registered_at, d.numbers, d.products, d.days, d.boosters, d.sites
FROM citizens c
LEFT JOIN LATERAL (
    SELECT array_agg(dose_number) AS numbers, array_agg(product_code) AS products,
           array_agg(administered_on) AS days, array_agg(booster) AS boosters,
           array_agg(site_id) AS sites
    FROM doses WHERE citizen_id = c.citizen_id AND NOT voided
) d ON true
"""

_WAITING = (
    _CITIZEN_WITH_DOSES
    + """
WHERE c.status = 'active' AND c.birth_date IS NOT NULL AND c.municipality_code IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM appointments a
                  WHERE a.citizen_id = c.citizen_id AND a.status = 'booked')
  AND ($1::text[] IS NULL OR c.citizen_id = ANY($1::text[]))
ORDER BY c.citizen_id
"""
)

_ONE = _CITIZEN_WITH_DOSES + "WHERE c.citizen_id = $1"


def _doses(row: asyncpg.Record) -> list[DoseTaken]:
    if row["numbers"] is None:
        return []
    return [
        DoseTaken(dose_number=n, product_code=p, day=d, booster=b, site_id=s)
        for n, p, d, b, s in zip(
            row["numbers"], row["products"], row["days"], row["boosters"], row["sites"], strict=True
        )
    ]


def citizen_from_row(row: asyncpg.Record, due: NextDose) -> Citizen:
    registered_at: datetime | None = row["registered_at"]
    return Citizen(
        citizen_id=row["citizen_id"],
        birth_date=row["birth_date"],
        municipality_code=row["municipality_code"],
        priority_group=row["priority_group"] or "general",
        order=registration_order(registered_at) if registered_at else 0,
        conditions=tuple(row["conditions"] or ()),
        preferences=tuple(row["vaccine_preferences"] or ()),
        preferred_municipality_code=row["preferred_municipality_code"],
        due=due,
    )


async def waiting_citizens(db: Executor, only: Iterable[str] | None = None) -> list[Citizen]:
    """Active citizens with no open appointment and a dose still to come."""
    ids = list(only) if only is not None else None
    citizens = []
    for row in await db.fetch(_WAITING, ids):
        due = next_dose(_doses(row))
        if due is not None:
            citizens.append(citizen_from_row(row, due))
    return citizens


async def citizen(db: Executor, citizen_id: str) -> tuple[asyncpg.Record, NextDose | None] | None:
    """One citizen's row (any status) and the next dose due, or None when unknown."""
    row = await db.fetchrow(_ONE, citizen_id)
    if row is None:
        return None
    return row, next_dose(_doses(row))


async def doses_of(db: Executor, citizen_id: str) -> list[DoseTaken]:
    rows = await db.fetch(
        "SELECT dose_number, product_code, administered_on, booster, site_id FROM doses "
        "WHERE citizen_id = $1 AND NOT voided",
        citizen_id,
    )
    return [
        DoseTaken(
            dose_number=r["dose_number"],
            product_code=r["product_code"],
            day=r["administered_on"],
            booster=r["booster"],
            site_id=r["site_id"],
        )
        for r in rows
    ]


@dataclass
class Supply:
    """Sites, free slots and bookable stock for a period, as the planner takes them."""

    sites: list[SiteInfo]
    capacity: Capacity
    stock: Stock


async def supply(
    db: Executor, start: date, days: int, today: date, site_ids: list[str] | None = None
) -> Supply:
    """Free capacity per (site, day, product) and stock per (site, product).

    Capacity: the day's override, else the site's default; closed days have none; minus
    the appointments holding a slot (all but cancelled ones). Stock: doses available minus
    open appointments from `today` on.
    """
    end = start + timedelta(days=days - 1)
    site_rows = await db.fetch(
        "SELECT site_id, municipality_code, daily_capacity::text AS capacity FROM sites "
        "WHERE $1::text[] IS NULL OR site_id = ANY($1::text[])",
        site_ids,
    )
    overrides = {
        (r["site_id"], r["day"]): (capacity_of(r["capacity"]), r["closed"])
        for r in await db.fetch(
            "SELECT site_id, day, capacity::text AS capacity, closed FROM site_days "
            "WHERE day BETWEEN $1 AND $2 AND ($3::text[] IS NULL OR site_id = ANY($3::text[]))",
            start,
            end,
            site_ids,
        )
    }
    booked = {
        (r["site_id"], r["day"], r["product_code"]): r["n"]
        for r in await db.fetch(
            # A slot stays taken once attended or missed (only a cancellation or a move
            # frees it), as in the SiteDay's ledger.
            "SELECT site_id, day, product_code, count(*) AS n FROM appointments "
            "WHERE status <> 'cancelled' AND day BETWEEN $1 AND $2 "
            "AND ($3::text[] IS NULL OR site_id = ANY($3::text[])) GROUP BY 1, 2, 3",
            start,
            end,
            site_ids,
        )
    }
    capacity: dict[tuple[str, date, str], int] = {}
    sites = []
    for row in site_rows:
        site_id = row["site_id"]
        sites.append(SiteInfo(site_id, row["municipality_code"]))
        default = capacity_of(row["capacity"])
        for offset in range(days):
            day = start + timedelta(days=offset)
            per_product, closed = overrides.get((site_id, day), (default, False))
            if closed:
                continue
            for product, total in per_product.items():
                free = total - booked.get((site_id, day, product), 0)
                if free > 0:
                    capacity[(site_id, day, product)] = free
    stock = {
        (r["site_id"], r["product_code"]): r["left"]
        for r in await db.fetch(
            """
            SELECT s.site_id, s.product_code, s.doses_available - coalesce(b.n, 0) AS left
            FROM site_stock s
            LEFT JOIN (SELECT site_id, product_code, count(*) AS n FROM appointments
                       WHERE status = 'booked' AND day >= $1 GROUP BY 1, 2) b
                 USING (site_id, product_code)
            WHERE $2::text[] IS NULL OR s.site_id = ANY($2::text[])
            """,
            today,
            site_ids,
        )
        if r["left"] > 0
    }
    return Supply(sites=sites, capacity=capacity, stock=stock)


async def site_ids_near(db: Executor, municipality_codes: list[str]) -> list[str]:
    """Sites in these municipalities."""
    rows = await db.fetch(
        "SELECT site_id FROM sites WHERE municipality_code = ANY($1::text[])", municipality_codes
    )
    return [r["site_id"] for r in rows]


# --- appointments -----------------------------------------------------------------------

APPOINTMENT_COLUMNS = """appointment_id, citizen_id, site_id, municipality_code, day,
    product_code, dose_number, booster, status, reason, status_reason, run_id, booked_at"""


async def open_appointment(db: Executor, citizen_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "
        "WHERE citizen_id = $1 AND status = 'booked'",
        citizen_id,
    )


async def appointment(db: Executor, appointment_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE appointment_id = $1",
        appointment_id,
    )
