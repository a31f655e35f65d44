"""Supply's tables: the views of its own streams, what it learns from other contexts'
events, and the queries that turn them into a planner's input.

Reaction writes take the consumer's connection; commands' view writes take the
command's transaction; queries take the pool (or a connection of one snapshot).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any, cast

import asyncpg
import msgspec

from immunreg.contracts.booking import (
    AppointmentBooked,
    AppointmentRescheduled,
    SiteCapacityChanged,
    SiteDefined,
)
from immunreg.contracts.inventory import (
    LotReceived,
    ShipmentCreated,
    StockLevelChanged,
    StockReceived,
)
from immunreg.contracts.registration import CitizenRegistered, PreferencesChanged
from immunreg.eventstore.database import Connection
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog

from .allocation import ANY, AllocationInput, DueDelivery, SiteSupply, WarehouseLot
from .domain import AllocationRun, Contract, Replenishment, contract_position
from .schemas import AlertView, ShipmentStatus

_json = msgspec.json.Encoder()
_capacity = msgspec.json.Decoder(dict[str, int])
_contract = msgspec.json.Decoder(Contract)
_run = msgspec.json.Decoder(AllocationRun)
ALWAYS_HELD = "refrigerated"  # every site has a vaccine fridge


def _district(municipality_code: str) -> str:
    known = municipalities().get(municipality_code)
    return known.district_code if known is not None else ""


# --- views of supply's own streams ------------------------------------------------------


async def save_contract(conn: Connection, state: Contract, version: int) -> None:
    """Bring the contract's row up to its state."""
    await conn.execute(
        """
        INSERT INTO contracts (contract_id, product_code, state, version)
        VALUES ($1, $2, $3::text::jsonb, $4)
        ON CONFLICT (contract_id) DO UPDATE SET state = EXCLUDED.state, version = EXCLUDED.version
        """,
        state.contract_id,
        state.product_code,
        _json.encode(state).decode(),
        version,
    )


async def contract(pool: asyncpg.Pool, contract_id: str) -> tuple[Contract, int] | None:
    """A contract's state and version, if recorded."""
    row = await pool.fetchrow(
        "SELECT state::text AS state, version FROM contracts WHERE contract_id = $1", contract_id
    )
    return None if row is None else (_contract.decode(row["state"]), row["version"])


async def save_run(conn: Connection, state: AllocationRun, version: int) -> None:
    """Bring the run's row up to its state."""
    await conn.execute(
        """
        INSERT INTO allocation_runs (run_id, status, state, version)
        VALUES ($1, $2, $3::text::jsonb, $4)
        ON CONFLICT (run_id) DO UPDATE
            SET status = EXCLUDED.status, state = EXCLUDED.state, version = EXCLUDED.version
        """,
        state.run_id,
        state.status,
        _json.encode(state).decode(),
        version,
    )


async def run(pool: asyncpg.Pool, run_id: str) -> AllocationRun | None:
    """An allocation run's state, if requested."""
    raw = await pool.fetchval("SELECT state::text FROM allocation_runs WHERE run_id = $1", run_id)
    return None if raw is None else _run.decode(raw)


async def pending_runs(pool: asyncpg.Pool) -> list[str]:
    """Runs requested and not yet planned, oldest first."""
    rows = await pool.fetch(
        "SELECT run_id FROM allocation_runs WHERE status = 'requested' ORDER BY requested_at"
    )
    return [r["run_id"] for r in rows]


async def shipment_statuses(
    pool: asyncpg.Pool, shipment_ids: list[str]
) -> dict[str, ShipmentStatus]:
    """What inventory has said of these shipments (absent: not created yet)."""
    rows = await pool.fetch(
        "SELECT shipment_id, status FROM shipments WHERE shipment_id = ANY($1::text[])",
        shipment_ids,
    )
    return {r["shipment_id"]: cast(ShipmentStatus, r["status"]) for r in rows}


async def save_alert(conn: Connection, state: Replenishment, version: int) -> None:
    """Bring a site-product's alert row up to its state."""
    await conn.execute(
        """
        INSERT INTO replenishment_alerts (site_id, product_code, alert, days_of_supply, version)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (site_id, product_code) DO UPDATE
            SET alert = EXCLUDED.alert, days_of_supply = EXCLUDED.days_of_supply,
                version = EXCLUDED.version
        """,
        state.site_id,
        state.product_code,
        state.alert,
        state.days_of_supply,
        version,
    )


async def open_alerts(pool: asyncpg.Pool) -> list[AlertView]:
    """Every site-product on alert, by site then product."""
    rows = await pool.fetch(
        "SELECT site_id, product_code, days_of_supply FROM replenishment_alerts "
        "WHERE alert ORDER BY site_id, product_code"
    )
    return [AlertView(**dict(r)) for r in rows]


async def alerts_by_product(pool: asyncpg.Pool) -> dict[str, int]:
    """Open alerts per product (for the gauge)."""
    rows = await pool.fetch(
        "SELECT product_code, count(*) AS n FROM replenishment_alerts WHERE alert "
        "GROUP BY product_code"
    )
    return {r["product_code"]: r["n"] for r in rows}


# --- what other contexts' events teach ------------------------------------------------


async def site_defined(conn: Connection, event: SiteDefined) -> None:
    await conn.execute(
        """
        INSERT INTO sites (site_id, municipality_code, district_code, daily_capacity)
        VALUES ($1, $2, $3, $4::text::jsonb)
        ON CONFLICT (site_id) DO UPDATE SET municipality_code = EXCLUDED.municipality_code,
            district_code = EXCLUDED.district_code, daily_capacity = EXCLUDED.daily_capacity
        """,
        event.site_id,
        event.municipality_code,
        _district(event.municipality_code),
        _json.encode(event.daily_capacity).decode(),
    )


async def site_day(conn: Connection, event: SiteCapacityChanged) -> None:
    await conn.execute(
        """
        INSERT INTO site_days (site_id, day, capacity, closed) VALUES ($1, $2, $3::text::jsonb, $4)
        ON CONFLICT (site_id, day) DO UPDATE
            SET capacity = EXCLUDED.capacity, closed = EXCLUDED.closed
        """,
        event.site_id,
        event.day,
        _json.encode(event.capacity).decode(),
        event.closed,
    )


async def appointment_booked(conn: Connection, event: AppointmentBooked) -> None:
    await conn.execute(
        """
        INSERT INTO appointments (appointment_id, citizen_id, site_id, day, product_code)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (appointment_id) DO NOTHING
        """,
        event.appointment_id,
        event.citizen_id,
        event.site_id,
        event.day,
        event.product_code,
    )


async def appointment_moved(conn: Connection, event: AppointmentRescheduled) -> None:
    await conn.execute(
        "UPDATE appointments SET site_id = $2, day = $3, product_code = $4 "
        "WHERE appointment_id = $1",
        event.appointment_id,
        event.site_id,
        event.day,
        event.product_code,
    )


async def appointment_closed(conn: Connection, appointment_id: str) -> None:
    """Attended, missed or cancelled: no longer demand."""
    await conn.execute("DELETE FROM appointments WHERE appointment_id = $1", appointment_id)


def _first_preference(preferences: list[str]) -> str:
    return preferences[0] if preferences else ANY


async def citizen_registered(conn: Connection, event: CitizenRegistered) -> None:
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, municipality_code, first_preference, registered)
        VALUES ($1, $2, $3, true)
        ON CONFLICT (citizen_id) DO UPDATE SET municipality_code = EXCLUDED.municipality_code,
            first_preference = EXCLUDED.first_preference, registered = true
        """,
        event.citizen_id,
        event.preferred_municipality_code or event.municipality_code,
        _first_preference(event.vaccine_preferences),
    )


async def preferences_changed(conn: Connection, event: PreferencesChanged) -> None:
    await conn.execute(
        """
        UPDATE citizens SET first_preference = $2,
            municipality_code = coalesce($3, municipality_code)
        WHERE citizen_id = $1
        """,
        event.citizen_id,
        _first_preference(event.vaccine_preferences),
        event.preferred_municipality_code,
    )


async def citizen_gone(conn: Connection, citizen_id: str) -> None:
    """Withdrawn or erased: no longer waiting (and nothing personal is kept here)."""
    await conn.execute("UPDATE citizens SET registered = false WHERE citizen_id = $1", citizen_id)


async def series_complete(conn: Connection, citizen_id: str) -> None:
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, complete) VALUES ($1, true)
        ON CONFLICT (citizen_id) DO UPDATE SET complete = true
        """,
        citizen_id,
    )


async def lot_received(conn: Connection, event: LotReceived) -> None:
    await conn.execute(
        "INSERT INTO lots (lot_number, storage, status) VALUES ($1, $2, 'active') "
        "ON CONFLICT (lot_number) DO UPDATE SET storage = EXCLUDED.storage",
        event.lot_number,
        event.storage,
    )


async def lot_unusable(conn: Connection, lot_number: str, status: str) -> None:
    """Recalled or expired: no vial of it may be shipped anywhere."""
    await conn.execute(
        "INSERT INTO lots (lot_number, storage, status) VALUES ($1, '', $2) "
        "ON CONFLICT (lot_number) DO UPDATE SET status = EXCLUDED.status",
        lot_number,
        status,
    )


async def stock_received(conn: Connection, event: StockReceived) -> None:
    await conn.execute(
        """
        INSERT INTO stock (location_id, lot_number, product_code, expiry_date, doses_per_vial,
                           sealed_vials)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (location_id, lot_number) DO UPDATE
            SET sealed_vials = stock.sealed_vials + EXCLUDED.sealed_vials
        """,
        event.location_id,
        event.lot_number,
        event.product_code,
        event.expiry_date,
        event.doses_per_vial,
        event.vials,
    )


async def stock_taken(conn: Connection, location_id: str, lot_number: str, vials: int) -> None:
    """Sealed vials left a location (dispatched) or were opened there."""
    await conn.execute(
        "UPDATE stock SET sealed_vials = greatest(sealed_vials - $3, 0) "
        "WHERE location_id = $1 AND lot_number = $2",
        location_id,
        lot_number,
        vials,
    )


async def stock_unusable(conn: Connection, location_id: str, lot_number: str) -> None:
    await conn.execute(
        "UPDATE stock SET usable = false WHERE location_id = $1 AND lot_number = $2",
        location_id,
        lot_number,
    )


async def level(conn: Connection, event: StockLevelChanged, version: int) -> None:
    await conn.execute(
        """
        INSERT INTO levels (location_id, product_code, doses_available, version)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (location_id, product_code) DO UPDATE
            SET doses_available = EXCLUDED.doses_available, version = EXCLUDED.version
            WHERE levels.version < EXCLUDED.version
        """,
        event.location_id,
        event.product_code,
        event.doses_available,
        version,
    )


async def shipment_created(conn: Connection, event: ShipmentCreated) -> None:
    await conn.execute(
        """
        INSERT INTO shipments (shipment_id, lot_number, product_code, from_location,
                               to_location, vials, status)
        VALUES ($1, $2, $3, $4, $5, $6, 'created') ON CONFLICT (shipment_id) DO NOTHING
        """,
        event.shipment_id,
        event.lot_number,
        event.product_code,
        event.from_location,
        event.to_location,
        event.vials,
    )


async def shipment_status(conn: Connection, shipment_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE shipments SET status = $2 WHERE shipment_id = $1", shipment_id, status
    )


# --- the planner's input ------------------------------------------------------------------


def _storages(daily_capacity: dict[str, int]) -> frozenset[str]:
    catalog = vaccine_catalog()
    held = {catalog[p].storage for p, n in daily_capacity.items() if n > 0 and p in catalog}
    return frozenset({ALWAYS_HELD, *held})


async def allocation_input(
    pool: asyncpg.Pool, start: date, days: int, today: date
) -> AllocationInput:
    """Everything a run plans from, read in one snapshot."""
    end = start + timedelta(days=days - 1)
    catalog = vaccine_catalog()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        site_rows = await conn.fetch(
            "SELECT site_id, municipality_code, district_code, daily_capacity::text AS capacity "
            "FROM sites ORDER BY site_id"
        )
        overrides = await conn.fetch(
            "SELECT site_id, day, capacity::text AS capacity, closed FROM site_days "
            "WHERE day BETWEEN $1 AND $2",
            start,
            end,
        )
        booked_rows = await conn.fetch(
            "SELECT site_id, day, product_code, count(*) AS n FROM appointments "
            "WHERE day BETWEEN $1 AND $2 GROUP BY site_id, day, product_code",
            start,
            end,
        )
        waiting_rows = await conn.fetch(
            """
            SELECT municipality_code, first_preference, count(*) AS n FROM citizens c
            WHERE registered AND NOT complete AND municipality_code IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM appointments a WHERE a.citizen_id = c.citizen_id)
            GROUP BY municipality_code, first_preference
            """
        )
        level_rows = await conn.fetch(
            "SELECT location_id, product_code, doses_available FROM levels "
            "WHERE location_id NOT LIKE 'WH-%' AND doses_available > 0"
        )
        transit_rows = await conn.fetch(
            "SELECT to_location, product_code, sum(vials) AS vials FROM shipments "
            "WHERE status <> 'received' GROUP BY to_location, product_code"
        )
        lot_rows = await conn.fetch(
            """
            SELECT s.location_id, s.lot_number, s.product_code, s.expiry_date, s.doses_per_vial,
                   coalesce(nullif(l.storage, ''), '') AS storage,
                   s.sealed_vials - coalesce((
                       SELECT sum(p.vials) FROM shipments p
                       WHERE p.status = 'created' AND p.from_location = s.location_id
                         AND p.lot_number = s.lot_number), 0) AS vials
            FROM stock s LEFT JOIN lots l USING (lot_number)
            WHERE s.location_id LIKE 'WH-%' AND s.usable AND s.expiry_date >= $1
              AND coalesce(l.status, 'active') = 'active'
            """,
            start,
        )
        contract_rows = await conn.fetch("SELECT state::text AS state FROM contracts")
        alert_rows = await conn.fetch(
            "SELECT site_id, product_code FROM replenishment_alerts WHERE alert"
        )
    sites = [
        SiteSupply(
            site_id=r["site_id"],
            municipality_code=r["municipality_code"],
            district_code=r["district_code"],
            storages=_storages(_capacity.decode(r["capacity"])),
        )
        for r in site_rows
    ]
    booked = {(r["site_id"], r["day"], r["product_code"]): r["n"] for r in booked_rows}
    return AllocationInput(
        start=start,
        days=days,
        products={code: catalog[code].doses_per_vial for code in catalog.codes()},
        sites=sites,
        booked=booked,
        free_slots=_free_slots(site_rows, overrides, booked, start, days),
        waiting={(r["municipality_code"], r["first_preference"]): r["n"] for r in waiting_rows},
        on_hand={(r["location_id"], r["product_code"]): r["doses_available"] for r in level_rows},
        in_transit={
            (r["to_location"], r["product_code"]): r["vials"]
            * catalog[r["product_code"]].doses_per_vial
            for r in transit_rows
            if r["product_code"] in catalog
        },
        lots=[
            WarehouseLot(
                location_id=r["location_id"],
                lot_number=r["lot_number"],
                product_code=r["product_code"],
                expiry_date=r["expiry_date"],
                doses_per_vial=r["doses_per_vial"],
                storage=r["storage"] or catalog[r["product_code"]].storage,
                vials=r["vials"],
            )
            for r in lot_rows
            if r["vials"] > 0 and r["product_code"] in catalog
        ],
        due=_due([_contract.decode(r["state"]) for r in contract_rows], today),
        alerts=frozenset((r["site_id"], r["product_code"]) for r in alert_rows),
    )


def _free_slots(
    site_rows: list[Any],
    overrides: list[Any],
    booked: dict[tuple[str, date, str], int],
    start: date,
    days: int,
) -> dict[tuple[str, date, str], int]:
    special = {(r["site_id"], r["day"]): r for r in overrides}
    free: dict[tuple[str, date, str], int] = {}
    for row in site_rows:
        default = _capacity.decode(row["capacity"])
        for offset in range(days):
            day = start + timedelta(days=offset)
            override = special.get((row["site_id"], day))
            if override is not None and override["closed"]:
                continue
            capacity = default if override is None else _capacity.decode(override["capacity"])
            for product, slots in capacity.items():
                left = slots - booked.get((row["site_id"], day, product), 0)
                if left > 0:
                    free[(row["site_id"], day, product)] = left
    return free


def _due(contracts: list[Contract], today: date) -> list[DueDelivery]:
    """Outstanding tranches; a late one may arrive any day, so it counts as due today."""
    return [
        DueDelivery(
            product_code=state.product_code,
            expected_date=max(tranche.expected_date, today),
            doses=tranche.outstanding,
        )
        for state in contracts
        for tranche in contract_position(state, today).tranches
        if tranche.outstanding > 0
    ]


async def supply_observations(
    pool: asyncpg.Pool, today: date, window_days: int
) -> list[tuple[str, str, int, float]]:
    """(site, product, doses at or bound for the site, booked doses a day) for every
    site-product with bookings in the window or an open alert."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        demand = await conn.fetch(
            "SELECT site_id, product_code, count(*) AS n FROM appointments "
            "WHERE day >= $1 AND day < $2 GROUP BY site_id, product_code",
            today,
            today + timedelta(days=window_days),
        )
        alerted = await conn.fetch(
            "SELECT site_id, product_code FROM replenishment_alerts WHERE alert"
        )
        held = await conn.fetch(
            "SELECT location_id, product_code, doses_available FROM levels "
            "WHERE location_id NOT LIKE 'WH-%'"
        )
        coming = await conn.fetch(
            "SELECT to_location, product_code, sum(vials) AS vials FROM shipments "
            "WHERE status <> 'received' GROUP BY to_location, product_code"
        )
    catalog = vaccine_catalog()
    doses: dict[tuple[str, str], int] = defaultdict(int)
    for r in held:
        doses[(r["location_id"], r["product_code"])] += r["doses_available"]
    for r in coming:
        if r["product_code"] in catalog:
            per_vial = catalog[r["product_code"]].doses_per_vial
            doses[(r["to_location"], r["product_code"])] += r["vials"] * per_vial
    daily = {(r["site_id"], r["product_code"]): r["n"] / window_days for r in demand}
    keys = sorted(set(daily) | {(r["site_id"], r["product_code"]) for r in alerted})
    return [
        (site, product, doses[(site, product)], daily.get((site, product), 0.0))
        for site, product in keys
    ]
