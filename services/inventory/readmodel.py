"""Inventory's read models (schema.sql): their rows, the row locks, and the views built on them.

Writes happen inside the transaction that appends the events (handlers.py);
reads serve the GET routes with the API's views (schemas.py).
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from immunreg.contracts.envelope import Envelope
from immunreg.eventstore.database import Connection, view_of

from .domain import Lot, Shipment
from .schemas import (
    HistoryEntry,
    LotDetail,
    LotSummary,
    ProductTotal,
    ShipmentView,
    SiteStock,
    StockLot,
)
from .stock import Stock, next_vial_expiry, open_doses, usable_doses

# --- from states to views -------------------------------------------------------


def lot_summary(state: Lot) -> LotSummary:
    """The view of a lot's state."""
    assert state.expiry_date is not None
    return LotSummary(
        lot_number=state.lot_number,
        product_code=state.product_code,
        manufacturer_code=state.manufacturer_code,
        expiry_date=state.expiry_date,
        doses_per_vial=state.doses_per_vial,
        storage=state.storage,
        location_id=state.location_id,
        vials=state.vials,
        status=state.status,
        recall_reason=state.recall_reason,
    )


def shipment_view(state: Shipment) -> ShipmentView:
    """The view of a shipment's state."""
    return ShipmentView(
        shipment_id=state.shipment_id,
        lot_number=state.lot_number,
        product_code=state.product_code,
        from_location=state.from_location,
        to_location=state.to_location,
        vials=state.vials,
        status=state.status,
        vials_received=state.vials_received,
        vials_lost=state.vials_lost,
        loss_reason=state.loss_reason,
    )


def stock_lot(state: Stock, now: datetime) -> StockLot:
    """The view of one lot's stock at one location, as of `now`."""
    return StockLot(
        location_id=state.location_id,
        lot_number=state.lot_number,
        product_code=state.product_code,
        expiry_date=state.expiry_date,
        doses_per_vial=state.doses_per_vial,
        sealed_vials=state.sealed_vials,
        open_vials=len(state.open_vials),
        open_doses=open_doses(state),
        doses_available=usable_doses(state, now),
        status=state.status,
        doses_consumed=state.doses_consumed,
        doses_wasted=state.doses_wasted,
        discrepancies=state.discrepancies,
        next_vial_expiry=next_vial_expiry(state),
    )


# --- locks -------------------------------------------------------------------------


async def lock_lot(conn: Connection, lot_number: str, *, exclusive: bool) -> None:
    """Order commands on a lot: recall/expiry exclusive, shipment receipts shared."""
    mode = "UPDATE" if exclusive else "SHARE"
    await conn.execute(f"SELECT 1 FROM lots WHERE lot_number = $1 FOR {mode}", lot_number)


async def lock_stock(conn: Connection, location_id: str, lot_number: str) -> None:
    """Queue writers of one lot's stock at one location (no retry storms under load)."""
    await conn.execute(
        "SELECT 1 FROM stock_levels WHERE location_id = $1 AND lot_number = $2 FOR UPDATE",
        location_id,
        lot_number,
    )


async def lock_holders(conn: Connection, lot_number: str, statuses: list[str]) -> list[str]:
    """Lock and list the locations whose stock of the lot is in one of `statuses`."""
    rows = await conn.fetch(
        "SELECT location_id FROM stock_levels WHERE lot_number = $1 AND status = ANY($2) "
        "ORDER BY location_id FOR UPDATE",
        lot_number,
        statuses,
    )
    return [r["location_id"] for r in rows]


# --- writes ------------------------------------------------------------------------


async def save_lot(conn: Connection, state: Lot, version: int) -> None:
    """Upsert the lots row."""
    await conn.execute(
        """
        INSERT INTO lots (lot_number, product_code, manufacturer_code, expiry_date,
                          doses_per_vial, storage, location_id, vials, status,
                          recall_reason, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (lot_number) DO UPDATE
           SET status = excluded.status, recall_reason = excluded.recall_reason,
               version = excluded.version, updated_at = now()
        """,
        state.lot_number,
        state.product_code,
        state.manufacturer_code,
        state.expiry_date,
        state.doses_per_vial,
        state.storage,
        state.location_id,
        state.vials,
        state.status,
        state.recall_reason,
        version,
    )


async def save_shipment(conn: Connection, state: Shipment, version: int) -> None:
    """Upsert the shipments row."""
    await conn.execute(
        """
        INSERT INTO shipments (shipment_id, lot_number, product_code, from_location,
                               to_location, vials, status, vials_received, vials_lost,
                               loss_reason, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (shipment_id) DO UPDATE
           SET status = excluded.status, vials_received = excluded.vials_received,
               vials_lost = excluded.vials_lost, loss_reason = excluded.loss_reason,
               version = excluded.version,
               dispatched_at = CASE WHEN excluded.status = 'dispatched' THEN now()
                                    ELSE shipments.dispatched_at END,
               received_at = CASE WHEN excluded.status = 'received' THEN now()
                                  ELSE shipments.received_at END
        """,
        state.shipment_id,
        state.lot_number,
        state.product_code,
        state.from_location,
        state.to_location,
        state.vials,
        state.status,
        state.vials_received,
        state.vials_lost,
        state.loss_reason,
        version,
    )


async def save_stock(conn: Connection, view: StockLot, version: int) -> None:
    """Upsert the stock_levels row of one lot at one location."""
    await conn.execute(
        """
        INSERT INTO stock_levels (location_id, lot_number, product_code, expiry_date,
                                  doses_per_vial, sealed_vials, open_vials, open_doses,
                                  doses_available, status, doses_consumed, doses_wasted,
                                  discrepancies, next_vial_expiry, version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        ON CONFLICT (location_id, lot_number) DO UPDATE
           SET product_code = excluded.product_code, expiry_date = excluded.expiry_date,
               doses_per_vial = excluded.doses_per_vial,
               sealed_vials = excluded.sealed_vials, open_vials = excluded.open_vials,
               open_doses = excluded.open_doses, doses_available = excluded.doses_available,
               status = excluded.status, doses_consumed = excluded.doses_consumed,
               doses_wasted = excluded.doses_wasted, discrepancies = excluded.discrepancies,
               next_vial_expiry = excluded.next_vial_expiry, version = excluded.version,
               updated_at = now()
        """,
        view.location_id,
        view.lot_number,
        view.product_code,
        view.expiry_date,
        view.doses_per_vial,
        view.sealed_vials,
        view.open_vials,
        view.open_doses,
        view.doses_available,
        view.status,
        view.doses_consumed,
        view.doses_wasted,
        view.discrepancies,
        view.next_vial_expiry,
        version,
    )


async def save_history(conn: Connection, lot_number: str, envelopes: list[Envelope]) -> None:
    """Add events to the lot's history."""
    await conn.executemany(
        """
        INSERT INTO lot_history (lot_number, stream_id, version, event_id, type, data,
                                 occurred_at, recorded_at)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
        """,
        [
            (
                lot_number,
                e.stream_id,
                e.version,
                e.event_id,
                e.type,
                bytes(e.data).decode(),
                e.occurred_at,
                e.recorded_at,
            )
            for e in envelopes
        ],
    )


async def computed_level(
    conn: Connection, location_id: str, product_code: str
) -> tuple[int, date | None]:
    """Usable doses of a product at a location, summed over its lots, and the earliest expiry."""
    row = await conn.fetchrow(
        """
        SELECT coalesce(sum(doses_available), 0)::int AS doses,
               min(expiry_date) FILTER (WHERE doses_available > 0) AS earliest
        FROM stock_levels WHERE location_id = $1 AND product_code = $2
        """,
        location_id,
        product_code,
    )
    assert row is not None
    return row["doses"], row["earliest"]


class PublishedLevel(msgspec.Struct, frozen=True):
    """The level last published for a product at a location, and its stream's version."""

    doses_available: int
    earliest_expiry: date | None
    version: int


async def lock_level(conn: Connection, location_id: str, product_code: str) -> PublishedLevel:
    """Lock (creating it if need be) the row of the level last published.

    Two first writers both insert: the second waits for the first to commit,
    then finds the row and queues for its lock like everyone else.
    """
    await conn.execute(
        "INSERT INTO product_levels (location_id, product_code, doses_available, version) "
        "VALUES ($1, $2, 0, 0) ON CONFLICT DO NOTHING",
        location_id,
        product_code,
    )
    row = await conn.fetchrow(
        "SELECT doses_available, earliest_expiry, version FROM product_levels "
        "WHERE location_id = $1 AND product_code = $2 FOR UPDATE",
        location_id,
        product_code,
    )
    assert row is not None
    return PublishedLevel(row["doses_available"], row["earliest_expiry"], row["version"])


async def save_level(
    conn: Connection,
    *,
    location_id: str,
    product_code: str,
    doses: int,
    earliest: date | None,
    version: int,
) -> None:
    """Record the level just published."""
    await conn.execute(
        """
        INSERT INTO product_levels (location_id, product_code, doses_available,
                                    earliest_expiry, version)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (location_id, product_code) DO UPDATE
           SET doses_available = excluded.doses_available,
               earliest_expiry = excluded.earliest_expiry,
               version = excluded.version, updated_at = now()
        """,
        location_id,
        product_code,
        doses,
        earliest,
        version,
    )


# --- reads -------------------------------------------------------------------------

_STOCK_COLUMNS = """
    location_id, lot_number, product_code, expiry_date, doses_per_vial, sealed_vials,
    open_vials, open_doses, doses_available, status, doses_consumed, doses_wasted,
    discrepancies, next_vial_expiry
"""


async def site_stock(pool: asyncpg.Pool, location_id: str) -> SiteStock:
    """Every lot a location holds (or held), and its usable doses per product."""
    lots = await pool.fetch(
        f"SELECT {_STOCK_COLUMNS} FROM stock_levels WHERE location_id = $1 "
        "ORDER BY product_code, expiry_date, lot_number",
        location_id,
    )
    products = await pool.fetch(
        "SELECT product_code, doses_available, earliest_expiry FROM product_levels "
        "WHERE location_id = $1 AND version > 0 ORDER BY product_code",
        location_id,
    )
    return SiteStock(
        location_id=location_id,
        lots=[view_of(r, StockLot) for r in lots],
        products=[view_of(r, ProductTotal) for r in products],
    )


async def stock_of(pool: asyncpg.Pool, location_id: str, lot_number: str) -> StockLot | None:
    """One lot at one location."""
    row = await pool.fetchrow(
        f"SELECT {_STOCK_COLUMNS} FROM stock_levels WHERE location_id = $1 AND lot_number = $2",
        location_id,
        lot_number,
    )
    return None if row is None else view_of(row, StockLot)


async def shipment_of(pool: asyncpg.Pool, shipment_id: str) -> ShipmentView | None:
    """A shipment, if it exists."""
    row = await pool.fetchrow(
        "SELECT shipment_id, lot_number, product_code, from_location, to_location, vials, "
        "status, vials_received, vials_lost, loss_reason FROM shipments WHERE shipment_id = $1",
        shipment_id,
    )
    return None if row is None else view_of(row, ShipmentView)


async def lot_detail(pool: asyncpg.Pool, lot_number: str) -> LotDetail | None:
    """A lot with its holdings, shipments and every event that touched it, in order."""
    lot = await pool.fetchrow(
        "SELECT lot_number, product_code, manufacturer_code, expiry_date, doses_per_vial, "
        "storage, location_id, vials, status, recall_reason FROM lots WHERE lot_number = $1",
        lot_number,
    )
    if lot is None:
        return None
    holdings = await pool.fetch(
        f"SELECT {_STOCK_COLUMNS} FROM stock_levels WHERE lot_number = $1 ORDER BY location_id",
        lot_number,
    )
    shipments = await pool.fetch(
        "SELECT shipment_id, lot_number, product_code, from_location, to_location, vials, "
        "status, vials_received, vials_lost, loss_reason FROM shipments "
        "WHERE lot_number = $1 ORDER BY created_at, shipment_id",
        lot_number,
    )
    history = await pool.fetch(
        "SELECT stream_id, version, type, occurred_at, recorded_at, data::text AS data "
        "FROM lot_history WHERE lot_number = $1 ORDER BY id",
        lot_number,
    )
    return LotDetail(
        lot=view_of(lot, LotSummary),
        holdings=[view_of(r, StockLot) for r in holdings],
        shipments=[view_of(r, ShipmentView) for r in shipments],
        history=[
            HistoryEntry(
                stream_id=r["stream_id"],
                version=r["version"],
                type=r["type"],
                occurred_at=r["occurred_at"],
                recorded_at=r["recorded_at"],
                data=msgspec.Raw(r["data"].encode()),
            )
            for r in history
        ],
    )


async def lots_past_expiry(pool: asyncpg.Pool, today: date) -> list[str]:
    """Active lots whose expiry date has passed."""
    rows = await pool.fetch(
        "SELECT lot_number FROM lots WHERE status = 'active' AND expiry_date < $1 "
        "ORDER BY expiry_date, lot_number",
        today,
    )
    return [r["lot_number"] for r in rows]


async def stocks_with_stale_vials(pool: asyncpg.Pool, now: datetime) -> list[tuple[str, str]]:
    """(location, lot) pairs with an open vial past its usable time."""
    rows = await pool.fetch(
        "SELECT location_id, lot_number FROM stock_levels WHERE next_vial_expiry <= $1 "
        "ORDER BY next_vial_expiry",
        now,
    )
    return [(r["location_id"], r["lot_number"]) for r in rows]
