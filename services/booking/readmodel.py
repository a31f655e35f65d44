"""Booking's tables: every query the handlers, the planner and the GET routes make.

`sites`, `site_days` and `appointments` are written in the same transaction as the
events they mirror; `citizens`, `doses` and `site_stock` by the reactions to other
contexts' events, each guarded by the source stream's version or the event's id so a
redelivery changes nothing. Scheduling runs are background runs (immunreg.runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from immunreg import audit
from immunreg.contracts.administration import DoseAdministered, DoseCorrected
from immunreg.contracts.booking import SiteDefined
from immunreg.contracts.inventory import StockLevelChanged
from immunreg.contracts.registration import (
    CitizenRegistered,
    PreferencesChanged,
    ruled_out_products,
)
from immunreg.eventstore.database import Connection, view_of
from immunreg.gcpause import paused_gc
from immunreg.reference.health import ruled_out_by
from immunreg.structs import Struct

from .eligibility import FIRST_DOSE, DoseTaken, NextDose, next_dose
from .noshow import OpenAppointment
from .scheduler import Capacity, Citizen, SiteInfo, Stock
from .schemas import AppointmentView, SiteView

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


_SITE_ROW = """SELECT site_id, name, municipality_code, address, latitude, longitude,
    opening_hours, daily_capacity::text AS daily_capacity, version FROM sites"""


def _site_view(row: asyncpg.Record) -> SiteView:
    return view_of({**row, "daily_capacity": capacity_of(row["daily_capacity"])}, SiteView)


async def site(db: Executor, site_id: str) -> SiteView | None:
    row = await db.fetchrow(f"{_SITE_ROW} WHERE site_id = $1", site_id)
    return _site_view(row) if row is not None else None


async def sites(
    db: Executor, *, after: str, municipality_code: str | None, limit: int
) -> list[SiteView]:
    """Up to `limit` sites by id after `after`, optionally of one municipality."""
    rows = await db.fetch(
        f"{_SITE_ROW} WHERE site_id > $1 AND ($2::text IS NULL OR municipality_code = $2) "
        "ORDER BY site_id LIMIT $3",
        after,
        municipality_code,
        limit,
    )
    return [_site_view(r) for r in rows]


async def site_exists(db: Executor, site_id: str) -> bool:
    return await db.fetchval("SELECT 1 FROM sites WHERE site_id = $1", site_id) is not None


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

# What the planner needs of a citizen; the registration order computed by PostgreSQL
# (ranking.registration_order: microseconds since 1970, exact, EXTRACT being numeric)
# rather than a datetime per row decoded and turned into it in Python.
_CITIZEN_COLUMNS = """
c.citizen_id, c.birth_date, c.municipality_code, c.preferred_municipality_code,
c.priority_group, c.conditions, c.ruled_out_products, c.vaccine_preferences,
(EXTRACT(EPOCH FROM c.registered_at) * 1000000)::bigint AS registration_order"""

_DOSE_ARRAYS = """
array_agg(dose_number) AS numbers, array_agg(product_code) AS products,
array_agg(administered_on) AS days, array_agg(booster) AS boosters,
array_agg(site_id) AS sites"""

_CITIZEN_WITH_DOSES = f"""
SELECT {_CITIZEN_COLUMNS}, c.status, d.numbers, d.products, d.days, d.boosters, d.sites
FROM citizens c
LEFT JOIN LATERAL (
    SELECT {_DOSE_ARRAYS} FROM doses WHERE citizen_id = c.citizen_id AND NOT voided
) d ON true
"""

_IS_WAITING = """
WHERE c.status = 'active' AND c.birth_date IS NOT NULL AND c.municipality_code IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM appointments a
                  WHERE a.citizen_id = c.citizen_id AND a.status = 'booked')
"""

# The whole waiting list, a page after citizen $1: each page's doses grouped in one
# ordered pass beside the citizens (a merge join), not looked up citizen by citizen
# (a nested loop: 0.75-0.9 s a page of 50,000 against 0.2 s, EXPLAIN ANALYZE at 1M).
_WAITING = f"""
SELECT {_CITIZEN_COLUMNS}, d.numbers, d.products, d.days, d.boosters, d.sites
FROM citizens c
LEFT JOIN (
    SELECT citizen_id, {_DOSE_ARRAYS}
    FROM doses WHERE NOT voided AND citizen_id > $1
    GROUP BY citizen_id
) d ON d.citizen_id = c.citizen_id
{_IS_WAITING}
  AND c.citizen_id > $1
ORDER BY c.citizen_id
LIMIT $2
"""
# Some of them (a run's retries): each one's doses looked up, as few as they are.
_WAITING_AMONG = (
    _CITIZEN_WITH_DOSES
    + _IS_WAITING
    + """
  AND c.citizen_id = ANY($1::text[]) AND c.citizen_id > $2
ORDER BY c.citizen_id
LIMIT $3
"""
)
# Read a page at a time: a national waiting list in one statement outlasts the
# statement timeout (1,000,000 citizens did), and a page is a bounded unit of work.
WAITING_PAGE = 50_000

# Who `_WAITING` may return, counted no further than the limit: a cheap question even
# for a national list (at most limit + 1 index probes), asked before every run.
_WAITING_UP_TO = """
SELECT count(*) FROM (
    SELECT 1 FROM citizens c
    WHERE c.status = 'active' AND c.birth_date IS NOT NULL AND c.municipality_code IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM appointments a
                      WHERE a.citizen_id = c.citizen_id AND a.status = 'booked')
    LIMIT $1
) AS waiting
"""

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


def ruled_out_of(row: asyncpg.Record) -> tuple[str, ...]:
    """The products ruled out for the citizen: published, and for a row written before
    registration sealed the conditions, derived from the conditions kept then."""
    published = tuple(row["ruled_out_products"] or ())
    if not row["conditions"]:
        return published
    return tuple(sorted({*published, *ruled_out_by(list(row["conditions"]))}))


def citizen_from_row(
    row: asyncpg.Record, due: NextDose, shared: dict[Any, Any] | None = None
) -> Citizen:
    """The planner's Citizen of a row of `_CITIZEN_COLUMNS`.

    `shared`, when given, maps each value already seen in this load to the one object
    kept for it: a national list repeats a few hundred municipality codes, a handful of
    priority groups and preference lists and some 36,000 birth dates a million times,
    and one object each keeps the list smaller and its dictionary look-ups in the
    planner on identical keys.
    """
    same = shared.setdefault if shared is not None else _itself
    preferred = row["preferred_municipality_code"]
    municipality: str = row["municipality_code"]
    preferences = tuple(row["vaccine_preferences"] or ())
    ruled_out = ruled_out_of(row)
    return Citizen(
        citizen_id=row["citizen_id"],
        birth_date=same(row["birth_date"], row["birth_date"]),
        municipality_code=same(municipality, municipality),
        priority_group=same(row["priority_group"] or "general", row["priority_group"] or "general"),
        order=row["registration_order"] or 0,
        ruled_out=same(ruled_out, ruled_out),
        preferences=same(preferences, preferences),
        preferred_municipality_code=same(preferred, preferred),
        due=due,
    )


def _itself(value: Any, default: Any) -> Any:
    return value


async def waiting_citizens(db: Executor, only: Iterable[str] | None = None) -> list[Citizen]:
    """Active citizens with no open appointment and a dose still to come."""
    ids = list(only) if only is not None else None

    def page(after: str) -> Awaitable[list[asyncpg.Record]]:
        if ids is None:
            return db.fetch(_WAITING, after, WAITING_PAGE)
        return db.fetch(_WAITING_AMONG, ids, after, WAITING_PAGE)

    citizens: list[Citizen] = []
    shared: dict[Any, Any] = {}
    # The rows and Citizens are acyclic; the collector walking them again and again as
    # they pile up was half of a national load's client CPU (immunreg.gcpause).
    with paused_gc():
        rows = await page("")
        while True:
            # PostgreSQL reads the next page while this one is turned into Citizens (the
            # two took turns before: a national list is 20 pages of each).
            following = (
                asyncio.ensure_future(page(rows[-1]["citizen_id"]))
                if len(rows) == WAITING_PAGE
                else None
            )
            try:
                # A national list is a million rows: turned into Citizens off the event loop.
                if len(rows) > 1000:
                    citizens += await asyncio.to_thread(_waiting_from_rows, rows, shared)
                else:
                    citizens += _waiting_from_rows(rows, shared)
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            if following is None:
                return citizens
            rows = await following


async def waiting_at_most(db: Executor, limit: int) -> bool:
    """Whether at most `limit` citizens are waiting (the candidates `waiting_citizens`
    reads, before those with no dose due are left out: an upper bound)."""
    return int(await db.fetchval(_WAITING_UP_TO, limit + 1)) <= limit


def _waiting_from_rows(rows: list[asyncpg.Record], shared: dict[Any, Any]) -> list[Citizen]:
    citizens = []
    for row in rows:
        # Most of a national list has no dose yet: FIRST_DOSE is what next_dose([]) says.
        due = FIRST_DOSE if row["numbers"] is None else next_dose(_doses(row))
        if due is not None:
            citizens.append(citizen_from_row(row, due, shared))
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


def appointment_view(row: asyncpg.Record) -> AppointmentView:
    return AppointmentView(
        appointment_id=row["appointment_id"],
        citizen_id=row["citizen_id"],
        site_id=row["site_id"],
        municipality_code=row["municipality_code"],
        day=row["day"],
        product_code=row["product_code"],
        dose_number=row["dose_number"],
        booster=row["booster"],
        status=row["status"],
        reason=row["reason"],
        status_reason=row["status_reason"],
        booked_at=row["booked_at"],
    )


async def citizen_appointments(db: Executor, citizen_id: str) -> list[AppointmentView]:
    """The citizen's newest hundred appointments, newest first."""
    rows = await db.fetch(
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments WHERE citizen_id = $1 "
        "ORDER BY booked_at DESC, appointment_id DESC LIMIT 100",
        citizen_id,
    )
    return [appointment_view(r) for r in rows]


async def site_day_appointments(
    db: Executor, site_id: str, day: date, *, after: str, limit: int
) -> list[AppointmentView]:
    """Up to `limit` of a site's appointments on a day (every status) by id after `after`."""
    rows = await db.fetch(
        f"SELECT {APPOINTMENT_COLUMNS} FROM appointments "
        "WHERE site_id = $1 AND day = $2 AND appointment_id > $3 "
        "ORDER BY appointment_id LIMIT $4",
        site_id,
        day,
        after,
        limit,
    )
    return [appointment_view(r) for r in rows]


async def open_appointment_ids(conn: Connection, site_id: str, day: date) -> list[str]:
    """The ids of a site's open appointments on a day, in id order."""
    rows = await conn.fetch(
        "SELECT appointment_id FROM appointments WHERE site_id = $1 AND day = $2 "
        "AND status = 'booked' ORDER BY appointment_id",
        site_id,
        day,
    )
    return [r["appointment_id"] for r in rows]


async def open_appointments_before(db: Executor, day: date, limit: int) -> list[OpenAppointment]:
    """Up to `limit` appointments still open from days before `day`, oldest first."""
    rows = await db.fetch(
        "SELECT appointment_id, day, status FROM appointments "
        "WHERE status = 'booked' AND day < $1 ORDER BY day, appointment_id LIMIT $2",
        day,
        limit,
    )
    return [OpenAppointment(r["appointment_id"], r["day"], r["status"]) for r in rows]


class Claim(Struct):
    """A new appointment's row: the claim on the citizen's one open appointment."""

    appointment_id: str
    citizen_id: str
    day: date
    dose_number: int
    booster: bool
    reason: str
    run_id: str | None


_CLAIM = """
INSERT INTO appointments (appointment_id, citizen_id, site_id, municipality_code, day,
                          product_code, dose_number, booster, status, reason, run_id)
SELECT a, c, $3, $4, d, $5, n, b, 'booked', r, ru
FROM unnest($1::text[], $2::text[], $6::date[], $7::int[], $8::bool[], $9::text[],
            $10::text[]) AS x(a, c, d, n, b, r, ru)
ON CONFLICT (citizen_id) WHERE status = 'booked' DO NOTHING
RETURNING citizen_id
"""


_CLAIM_COLUMNS = (
    "appointment_id",
    "citizen_id",
    "site_id",
    "municipality_code",
    "day",
    "product_code",
    "dose_number",
    "booster",
    "status",
    "reason",
    "run_id",
)


async def claim_appointments(
    conn: Connection,
    claims: list[Claim],
    *,
    site_id: str,
    municipality_code: str,
    product_code: str,
) -> set[str]:
    """Insert the appointments' rows (one site and product, any days); the citizens
    whose claim held (the others had an open appointment already: the partial unique
    index refuses a second one).

    All of them with one COPY first (a scheduling run's citizens almost never have an
    open appointment, and COPY costs PostgreSQL a fraction of INSERT ... ON CONFLICT);
    if the index refuses one, the COPY is undone (a savepoint) and the rows go in
    with _CLAIM, which skips the refused ones."""
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "appointments",
                records=[
                    (
                        c.appointment_id,
                        c.citizen_id,
                        site_id,
                        municipality_code,
                        c.day,
                        product_code,
                        c.dose_number,
                        c.booster,
                        "booked",
                        c.reason,
                        c.run_id,
                    )
                    for c in claims
                ],
                columns=_CLAIM_COLUMNS,
            )
        return {c.citizen_id for c in claims}
    except asyncpg.UniqueViolationError:
        pass
    rows = await conn.fetch(
        _CLAIM,
        [c.appointment_id for c in claims],
        [c.citizen_id for c in claims],
        site_id,
        municipality_code,
        product_code,
        [c.day for c in claims],
        [c.dose_number for c in claims],
        [c.booster for c in claims],
        [c.reason for c in claims],
        [c.run_id for c in claims],
    )
    return {row["citizen_id"] for row in rows}


_OPEN_OF_PRODUCT = """
SELECT count(*) FROM appointments
WHERE site_id = $1 AND product_code = $2 AND status = 'booked' AND day >= $3
"""


async def stock_left(conn: Connection, site_id: str, product_code: str, today: date) -> int:
    """Doses of a product that may still be booked at a site; locks its stock row
    (FOR UPDATE), so bookings of one product at one site queue there."""
    # Two statements on purpose: the count must be read after the lock is held (a new
    # statement, a new snapshot under READ COMMITTED), or it would miss the bookings of
    # the transaction it waited for.
    available = await conn.fetchval(
        "SELECT doses_available FROM site_stock WHERE site_id = $1 AND product_code = $2 "
        "FOR UPDATE",
        site_id,
        product_code,
    )
    if available is None:
        return 0  # no row: no stock
    booked = await conn.fetchval(_OPEN_OF_PRODUCT, site_id, product_code, today)
    return max(int(available) - int(booked), 0)


async def appointment_cancelled(conn: Connection, appointment_id: str, reason: str) -> None:
    await conn.execute(
        "UPDATE appointments SET status = 'cancelled', status_reason = $2, "
        "updated_at = now() WHERE appointment_id = $1",
        appointment_id,
        reason,
    )


async def appointment_moved(
    conn: Connection, appointment_id: str, site_id: str, municipality_code: str, day: date
) -> None:
    await conn.execute(
        "UPDATE appointments SET site_id = $2, municipality_code = $3, day = $4, "
        "updated_at = now() WHERE appointment_id = $1",
        appointment_id,
        site_id,
        municipality_code,
        day,
    )


async def appointment_attended(conn: Connection, appointment_id: str, dose_id: str) -> None:
    await conn.execute(
        "UPDATE appointments SET status = 'attended', status_reason = $2, "
        "updated_at = now() WHERE appointment_id = $1",
        appointment_id,
        dose_id,
    )


async def appointment_missed(conn: Connection, appointment_id: str) -> None:
    await conn.execute(
        "UPDATE appointments SET status = 'missed', updated_at = now() WHERE appointment_id = $1",
        appointment_id,
    )


# --- other contexts' facts (written by the reactions) -------------------------------------

_REGISTERED = """
INSERT INTO citizens AS c (citizen_id, status, version, birth_date, municipality_code,
    preferred_municipality_code, priority_group, ruled_out_products, vaccine_preferences,
    registered_at)
VALUES ($1, 'active', $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'active', version = excluded.version, birth_date = excluded.birth_date,
    municipality_code = excluded.municipality_code,
    preferred_municipality_code = excluded.preferred_municipality_code,
    priority_group = excluded.priority_group, conditions = '{}',
    ruled_out_products = excluded.ruled_out_products,
    vaccine_preferences = excluded.vaccine_preferences,
    registered_at = excluded.registered_at, updated_at = now()
WHERE c.version < excluded.version
"""

_PREFERENCES = """
UPDATE citizens SET version = $2, priority_group = $3, conditions = '{}',
    ruled_out_products = $4, vaccine_preferences = $5, preferred_municipality_code = $6,
    updated_at = now()
WHERE citizen_id = $1 AND version < $2
RETURNING status
"""

_WITHDRAWN = """
UPDATE citizens SET version = $2, status = 'withdrawn', updated_at = now()
WHERE citizen_id = $1 AND version < $2
"""

_ERASED = """
INSERT INTO citizens AS c (citizen_id, status, version) VALUES ($1, 'erased', $2)
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'erased', version = excluded.version, birth_date = NULL,
    municipality_code = NULL, preferred_municipality_code = NULL, priority_group = NULL,
    conditions = '{}', ruled_out_products = '{}', vaccine_preferences = '{}', updated_at = now()
WHERE c.version < excluded.version
"""

_STOCK = """
INSERT INTO site_stock AS s (site_id, product_code, doses_available, earliest_expiry, version)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (site_id, product_code) DO UPDATE SET
    doses_available = excluded.doses_available, earliest_expiry = excluded.earliest_expiry,
    version = excluded.version, updated_at = now()
WHERE s.version < excluded.version
"""

_DOSE = """
INSERT INTO doses (dose_id, citizen_id, site_id, product_code, dose_number, booster,
                   administered_on)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dose_id) DO NOTHING
RETURNING dose_id
"""

_DOSE_CORRECTED = """
INSERT INTO doses (dose_id, citizen_id, site_id, product_code, dose_number, booster,
                   administered_on)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dose_id) DO UPDATE SET site_id = excluded.site_id,
    product_code = excluded.product_code, dose_number = excluded.dose_number,
    booster = excluded.booster, administered_on = excluded.administered_on
"""


async def citizen_registered(
    conn: Connection, event: CitizenRegistered, version: int, registered_at: datetime
) -> None:
    """The citizen waits (again), in registration order `registered_at`."""
    await conn.execute(
        _REGISTERED,
        event.citizen_id,
        version,
        event.birth_date,
        event.municipality_code,
        event.preferred_municipality_code,
        event.priority_group,
        ruled_out_products(event),
        event.vaccine_preferences,
        registered_at,
    )


async def preferences_changed(
    conn: Connection, event: PreferencesChanged, version: int
) -> str | None:
    """The citizen's new preferences; their status (None: unknown here, or a stale event)."""
    status: str | None = await conn.fetchval(
        _PREFERENCES,
        event.citizen_id,
        version,
        event.priority_group,
        ruled_out_products(event),
        event.vaccine_preferences,
        event.preferred_municipality_code,
    )
    return status


async def citizen_withdrawn(conn: Connection, citizen_id: str, version: int) -> None:
    await conn.execute(_WITHDRAWN, citizen_id, version)


async def citizen_erased(conn: Connection, citizen_id: str, version: int) -> None:
    """Only the id and the status stay: birth date, places and what was ruled out go."""
    await conn.execute(_ERASED, citizen_id, version)


async def stock_level_changed(conn: Connection, event: StockLevelChanged, version: int) -> None:
    """A location id is a site id; the newest version wins."""
    await conn.execute(
        _STOCK,
        event.location_id,
        event.product_code,
        event.doses_available,
        event.earliest_expiry,
        version,
    )


async def dose_recorded(conn: Connection, event: DoseAdministered, administered_on: date) -> bool:
    """Keep the dose; False when it was recorded already."""
    fresh = await conn.fetchval(
        _DOSE,
        event.dose_id,
        event.citizen_id,
        event.site_id,
        event.product_code,
        event.dose_number,
        event.booster,
        administered_on,
    )
    return fresh is not None


async def dose_voided(conn: Connection, dose_id: str) -> None:
    """The dose stays, flagged: it no longer counts."""
    await conn.execute("UPDATE doses SET voided = true WHERE dose_id = $1", dose_id)


async def dose_corrected(conn: Connection, event: DoseCorrected, administered_on: date) -> None:
    """The dose as corrected (kept as new if it was never seen)."""
    await conn.execute(
        _DOSE_CORRECTED,
        event.dose_id,
        event.citizen_id,
        event.site_id,
        event.product_code,
        event.dose_number,
        event.booster,
        administered_on,
    )


# Whether the citizen has an appointment (any status) at the site: site staff's linked reach.
citizen_at_site = audit.citizen_at_site_in("appointments")
