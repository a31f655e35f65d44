"""Every command and reaction of inventory, apart from HTTP: commands are plain async
functions over a `Ledger` (the dependencies they run with), and `build_reactions` is
the table of what other contexts' events do (one: a dose administered is taken from
stock).

Commands: `receive_lot`, `recall_lot`, `expire_lot`, `create_shipment`,
`dispatch_shipment`, `receive_shipment`, `open_vial`, `waste`, `expire_open_vials`;
time passing: `sweep`; the reaction's command: `consume`.

Commands are written against any event store (`StreamStore[Tx]`) and any
`InventoryBooks[Tx]` (the read models they lock, read and write in the same
transaction), so they run on PostgreSQL in the service and in memory in the unit
tests (tests/unit/inventory/test_inventory_handlers.py).

Every command is one transaction.

A command loads the aggregates it needs, lets them decide (domain.py,
stock.py), appends every stream's events with its expected version, updates
the read models and, when a location's usable doses of a product changed,
appends a StockLevelChanged - all in one unit of work (`store.transact`): a
ConcurrencyConflict (someone appended first) rolls it back and the command is
decided again on fresh state; it is never overwritten.

Row locks keep heavy contention from turning into retry storms (the expected
versions stay the guarantee), always taken in one order - the `lots` row, then
`stock_levels` rows by (location, lot), then `product_levels` rows by
(location, product) - so HTTP commands never deadlock each other:

- dispatch, open vial, waste, dose consumed: the stock row (FOR UPDATE);
- shipment receipt: the lot row (FOR SHARE), then the destination's stock row;
- recall and lot expiry: the lot row (FOR UPDATE), then every holder's stock row.

So a recall waits for receipts in flight and then sees every location that
holds the lot, and a receipt after a recall records the arriving vials as
recalled. Doses consumed run in the consumer's batch transaction, one
savepoint each, so a batch takes stock locks in message order; if that ever
deadlocks with a recall, PostgreSQL aborts one side and the consumer rolls the
batch back and reads it again (an HTTP command simply runs again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, Protocol, TypeVar, cast

import asyncpg

from immunreg.contracts import administration, supply
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.envelope import Envelope, Event, Metadata, utcnow
from immunreg.contracts.inventory import (
    CONTEXT,
    DoseConsumed,
    DosesWasted,
    LotRecalled,
    OpenedVialExpired,
    ShipmentReceived,
    StockDiscrepancyDetected,
    StockLevelChanged,
)
from immunreg.contracts.supply import AllocationApproved, DeliveryReceived
from immunreg.domain import Aggregate, DomainError, Loaded, NotFound, Outcome, RuleViolation
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import StreamStore
from immunreg.messaging.reactions import Reactions
from immunreg.observability.metrics import Metrics

from . import readmodel
from .domain import (
    LOT,
    SHIPMENT,
    CreateShipment,
    DispatchShipment,
    ExpireLot,
    Lot,
    LotCommand,
    RecallLot,
    ReceiveLot,
    ReceiveShipment,
    Shipment,
    ShipmentCommand,
    Storage,
    level_stream,
    lot_stream,
    shipment_stream,
    stock_stream,
)
from .readmodel import PublishedLevel
from .schemas import StockLot
from .stock import (
    STOCK,
    ConsumeDose,
    ExpireOpenVials,
    ExpireStock,
    OpenVials,
    RecallStock,
    Stock,
    StockCommand,
    TakeVials,
    WasteDoses,
    WasteReason,
    arriving,
    check_can_ship,
)

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")
Tx = TypeVar("Tx")
# The books only take the transaction handle (never return one), hence contravariant.
Tx_contra = TypeVar("Tx_contra", contravariant=True)

COMMAND_ATTEMPTS = 10
log = logging.getLogger(__name__)


class InventoryMetrics:
    """Inventory's domain counters (on the service's registry)."""

    def __init__(self, metrics: Metrics) -> None:
        self.doses_wasted = metrics.counter(
            "immunreg_inventory_doses_wasted_total",
            "Doses wasted, by reason (opened_vial_expired: an open vial ran out of time).",
            ["reason"],
        )
        self.discrepancies = metrics.counter(
            "immunreg_inventory_stock_discrepancies_total",
            "Administered doses the stock count could not account for, by reason.",
            ["reason"],
        )
        self.doses_consumed = metrics.counter(
            "immunreg_inventory_doses_consumed_total", "Administered doses taken from stock."
        )
        self.lots_recalled = metrics.counter(
            "immunreg_inventory_lots_recalled_total", "Lots recalled."
        )
        self.vials_lost = metrics.counter(
            "immunreg_inventory_vials_lost_in_transit_total", "Vials lost in transit."
        )

    def count(self, events: Sequence[Event]) -> None:
        """Count what a committed command did."""
        for event in events:
            if isinstance(event, DosesWasted):
                self.doses_wasted.labels(event.reason).inc(event.doses)
            elif isinstance(event, OpenedVialExpired) and event.doses_lost:
                self.doses_wasted.labels("opened_vial_expired").inc(event.doses_lost)
            elif isinstance(event, StockDiscrepancyDetected):
                self.discrepancies.labels(event.reason).inc()
            elif isinstance(event, DoseConsumed):
                self.doses_consumed.inc()
            elif isinstance(event, LotRecalled):
                self.lots_recalled.inc()
            elif isinstance(event, ShipmentReceived) and event.vials_lost:
                self.vials_lost.inc(event.vials_lost)


class InventoryBooks(Protocol[Tx_contra]):
    """The read models a command locks, reads and writes in its own transaction, and
    the two queries the expiry sweep starts from."""

    async def lock_lot(self, tx: Tx_contra, lot_number: str, *, exclusive: bool) -> None:
        """Order commands on a lot: recall/expiry exclusive, shipment receipts shared."""
        ...

    async def lock_stock(self, tx: Tx_contra, location_id: str, lot_number: str) -> None:
        """Queue writers of one lot's stock at one location."""
        ...

    async def lock_holders(self, tx: Tx_contra, lot_number: str, statuses: list[str]) -> list[str]:
        """Lock and list the locations whose stock of the lot is in one of `statuses`."""
        ...

    async def save_history(self, tx: Tx_contra, lot_number: str, events: list[Envelope]) -> None:
        """Add events to the lot's history."""
        ...

    async def save_lot(self, tx: Tx_contra, state: Lot, version: int) -> None:
        """Bring the lot's row up to its state."""
        ...

    async def save_shipment(self, tx: Tx_contra, state: Shipment, version: int) -> None:
        """Bring the shipment's row up to its state."""
        ...

    async def save_stock(self, tx: Tx_contra, view: StockLot, version: int) -> None:
        """Bring the row of one lot's stock at one location up to its view."""
        ...

    async def lock_level(
        self, tx: Tx_contra, location_id: str, product_code: str
    ) -> PublishedLevel:
        """Lock (creating it if need be) the level last published for a product there."""
        ...

    async def computed_level(
        self, tx: Tx_contra, location_id: str, product_code: str
    ) -> tuple[int, date | None]:
        """Usable doses of a product at a location over its lots, and the earliest expiry."""
        ...

    async def save_level(
        self,
        tx: Tx_contra,
        *,
        location_id: str,
        product_code: str,
        doses: int,
        earliest: date | None,
        version: int,
    ) -> None:
        """Record the level just published."""
        ...

    async def lots_past_expiry(self, today: date) -> list[str]:
        """Active lots whose expiry date has passed (outside any command's transaction)."""
        ...

    async def stocks_with_stale_vials(self, now: datetime) -> list[tuple[str, str]]:
        """(location, lot) pairs with an open vial past its usable time."""
        ...


class PostgresBooks:
    """The service's books: its read-model tables (readmodel.py)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool  # for the sweep's queries, which run outside a command

    async def lock_lot(self, tx: Connection, lot_number: str, *, exclusive: bool) -> None:
        await readmodel.lock_lot(tx, lot_number, exclusive=exclusive)

    async def lock_stock(self, tx: Connection, location_id: str, lot_number: str) -> None:
        await readmodel.lock_stock(tx, location_id, lot_number)

    async def lock_holders(self, tx: Connection, lot_number: str, statuses: list[str]) -> list[str]:
        return await readmodel.lock_holders(tx, lot_number, statuses)

    async def save_history(self, tx: Connection, lot_number: str, events: list[Envelope]) -> None:
        await readmodel.save_history(tx, lot_number, events)

    async def save_lot(self, tx: Connection, state: Lot, version: int) -> None:
        await readmodel.save_lot(tx, state, version)

    async def save_shipment(self, tx: Connection, state: Shipment, version: int) -> None:
        await readmodel.save_shipment(tx, state, version)

    async def save_stock(self, tx: Connection, view: StockLot, version: int) -> None:
        await readmodel.save_stock(tx, view, version)

    async def lock_level(
        self, tx: Connection, location_id: str, product_code: str
    ) -> PublishedLevel:
        return await readmodel.lock_level(tx, location_id, product_code)

    async def computed_level(
        self, tx: Connection, location_id: str, product_code: str
    ) -> tuple[int, date | None]:
        return await readmodel.computed_level(tx, location_id, product_code)

    async def save_level(
        self,
        tx: Connection,
        *,
        location_id: str,
        product_code: str,
        doses: int,
        earliest: date | None,
        version: int,
    ) -> None:
        await readmodel.save_level(
            tx,
            location_id=location_id,
            product_code=product_code,
            doses=doses,
            earliest=earliest,
            version=version,
        )

    async def lots_past_expiry(self, today: date) -> list[str]:
        return await readmodel.lots_past_expiry(self.pool, today)

    async def stocks_with_stale_vials(self, now: datetime) -> list[tuple[str, str]]:
        return await readmodel.stocks_with_stale_vials(self.pool, now)


@dataclass(frozen=True)
class Ledger(Generic[Tx]):
    """What inventory's commands run with: nothing but their dependencies.

    One object rather than five arguments because the reaction reaches it through a
    `Provided` and the expiry sweep through the app; `clock` is here so a test can
    move time (the sweep) without touching the commands.
    """

    store: StreamStore[Tx]
    books: InventoryBooks[Tx]
    metrics: InventoryMetrics | None = None
    clock: Callable[[], datetime] = utcnow
    attempts: int = COMMAND_ATTEMPTS


@dataclass(frozen=True)
class SweepResult:
    """What one expiry sweep recorded."""

    lots_expired: int
    stocks_with_expired_vials: int


class _Unit(Generic[Tx]):
    """One attempt at a command: its transaction, clock, and what it appended."""

    def __init__(
        self, ledger: Ledger[Tx], tx: Tx, metadata: Metadata | None, now: datetime
    ) -> None:
        self.store = ledger.store
        self.books = ledger.books
        self.tx = tx
        self.metadata = metadata
        self.now = now
        self.events: list[Event] = []
        self._levels: set[tuple[str, str]] = set()

    @property
    def today(self) -> date:
        return self.now.date()

    async def load(self, aggregate: Aggregate[S, Any], stream_id: str) -> Loaded[S]:
        return await self.store.load_state(aggregate, stream_id, self.tx)

    async def _decide(
        self,
        aggregate: Aggregate[S, C],
        stream_id: str,
        command: C,
        lot_number: str,
        loaded: Loaded[S] | None = None,
    ) -> Outcome[S]:
        loaded = loaded or await self.load(aggregate, stream_id)
        outcome = await self.store.decide_and_append(
            self.tx, aggregate, stream_id, loaded, command, metadata=self.metadata
        )
        if outcome.events:
            await self.books.save_history(self.tx, lot_number, outcome.events)
            self.events.extend(CONTEXT.read(e) for e in outcome.events)
        return outcome

    async def lot(self, lot_number: str, command: LotCommand) -> Outcome[Lot]:
        outcome = await self._decide(LOT, lot_stream(lot_number), command, lot_number)
        if outcome.events:
            await self.books.save_lot(self.tx, outcome.state, outcome.version)
        return outcome

    async def shipment(
        self, loaded: Loaded[Shipment], command: ShipmentCommand
    ) -> Outcome[Shipment]:
        planned = loaded.state
        stream = shipment_stream(planned.shipment_id)
        outcome = await self._decide(SHIPMENT, stream, command, planned.lot_number, loaded)
        if outcome.events:
            await self.books.save_shipment(self.tx, outcome.state, outcome.version)
        return outcome

    async def new_shipment(self, command: CreateShipment) -> Outcome[Shipment]:
        stream = shipment_stream(command.shipment_id)
        outcome = await self._decide(SHIPMENT, stream, command, command.lot_number)
        if outcome.events:
            await self.books.save_shipment(self.tx, outcome.state, outcome.version)
        return outcome

    async def stock(
        self, location_id: str, lot_number: str, command: StockCommand
    ) -> Outcome[Stock]:
        stream = stock_stream(location_id, lot_number)
        outcome = await self._decide(STOCK, stream, command, lot_number)
        if outcome.events:
            view = readmodel.stock_lot(outcome.state, self.now)
            await self.books.save_stock(self.tx, view, outcome.version)
            if outcome.state.status != "none":  # a discrepancy alone changes no level
                self._levels.add((view.location_id, view.product_code))
        return outcome

    async def publish_levels(self) -> None:
        """A StockLevelChanged for every (location, product) whose usable doses changed.

        The product_levels row is locked first, so writers of one product at one
        location queue here instead of conflicting on the `level-` stream; the
        sum read after the lock includes every transaction committed before it.
        """
        for location_id, product_code in sorted(self._levels):
            published = await self.books.lock_level(self.tx, location_id, product_code)
            doses, earliest = await self.books.computed_level(self.tx, location_id, product_code)
            if (published.doses_available, published.earliest_expiry) == (doses, earliest):
                continue
            event = StockLevelChanged(
                location_id=location_id,
                product_code=product_code,
                doses_available=doses,
                earliest_expiry=earliest,
            )
            await self.store.append(
                level_stream(location_id, product_code),
                "StockLevel",
                published.version,
                [event],
                context=CONTEXT,
                metadata=self.metadata,
                conn=self.tx,
            )
            await self.books.save_level(
                self.tx,
                location_id=location_id,
                product_code=product_code,
                doses=doses,
                earliest=earliest,
                version=published.version + 1,
            )
            self.events.append(event)


async def _run(
    ledger: Ledger[Tx],
    work: Callable[[_Unit[Tx]], Awaitable[T]],
    metadata: Metadata | None = None,
    conn: Tx | None = None,
) -> T:
    """Run `work` as one unit of work (store.transact re-runs it on a conflict).

    With `conn` (a reaction), it runs inside the consumer's savepoint, whose
    retries re-run it on a conflict.
    """
    done: list[_Unit[Tx]] = []

    async def attempt(tx: Tx) -> T:
        unit = _Unit(ledger, tx, metadata, ledger.clock())
        try:
            result = await work(unit)
            await unit.publish_levels()
        except asyncpg.exceptions.DeadlockDetectedError as error:
            if conn is not None:
                # Earlier messages of the consumer's batch hold locks a savepoint
                # cannot release: the consumer rolls the batch back and retries.
                raise
            # A deadlock victim was rolled back: decide again, as for a conflict.
            raise ConcurrencyConflict("(deadlock)", -1) from error
        done.append(unit)
        return result

    if conn is None:
        result = await ledger.store.transact(attempt, attempts=ledger.attempts)
    else:
        result = await attempt(conn)
    if ledger.metrics is not None:
        ledger.metrics.count(done[-1].events)
    return result


# --- lots ----------------------------------------------------------------------------


async def receive_lot(
    ledger: Ledger[Tx],
    command: ReceiveLot,
    *,
    metadata: Metadata | None = None,
    conn: Tx | None = None,
) -> Lot:
    """A lot arrives at a warehouse: the lot's stream and that location's stock."""

    async def work(unit: _Unit[Tx]) -> Lot:
        lot = (await unit.lot(command.lot_number, command)).state
        arrival = arriving(lot, lot.location_id, lot.vials, today=unit.today)
        await unit.stock(lot.location_id, lot.lot_number, arrival)
        return lot

    return await _run(ledger, work, metadata, conn)


async def recall_lot(
    ledger: Ledger[Tx], lot_number: str, reason: str, *, metadata: Metadata | None = None
) -> Lot:
    """Recall a lot and tell the stock of every location that holds it."""

    async def work(unit: _Unit[Tx]) -> Lot:
        await unit.books.lock_lot(unit.tx, lot_number, exclusive=True)
        holders = await unit.books.lock_holders(unit.tx, lot_number, ["active", "expired"])
        lot = await unit.lot(lot_number, RecallLot(reason=reason, locations=tuple(holders)))
        for location_id in holders:
            await unit.stock(location_id, lot_number, RecallStock(reason=reason))
        return lot.state

    return await _run(ledger, work, metadata)


async def expire_lot(
    ledger: Ledger[Tx], lot_number: str, *, metadata: Metadata | None = None
) -> Lot:
    """Record that a lot passed its expiry date, here and at every holder."""

    async def work(unit: _Unit[Tx]) -> Lot:
        await unit.books.lock_lot(unit.tx, lot_number, exclusive=True)
        holders = await unit.books.lock_holders(unit.tx, lot_number, ["active"])
        lot = await unit.lot(lot_number, ExpireLot(today=unit.today))
        for location_id in holders:
            await unit.stock(location_id, lot_number, ExpireStock(today=unit.today))
        return lot.state

    return await _run(ledger, work, metadata)


# --- shipments -----------------------------------------------------------------------


async def create_shipment(
    ledger: Ledger[Tx],
    *,
    shipment_id: str,
    lot_number: str,
    from_location: str,
    to_location: str,
    vials: int,
    metadata: Metadata | None = None,
    conn: Tx | None = None,
) -> Shipment:
    """Plan a shipment; refused early if the source could not send it now."""

    async def work(unit: _Unit[Tx]) -> Shipment:
        lot = (await unit.load(LOT, lot_stream(lot_number))).state
        if lot.status == "none":
            raise RuleViolation(
                "unknown_lot", "no lot with this number has been received", field="lot_number"
            )
        source = (await unit.load(STOCK, stock_stream(from_location, lot_number))).state
        check_can_ship(source, vials, unit.today)
        command = CreateShipment(
            shipment_id=shipment_id,
            lot_number=lot_number,
            product_code=lot.product_code,
            from_location=from_location,
            to_location=to_location,
            vials=vials,
        )
        return (await unit.new_shipment(command)).state

    return await _run(ledger, work, metadata, conn)


async def _existing_shipment(unit: _Unit[Tx], shipment_id: str) -> Loaded[Shipment]:
    loaded = await unit.load(SHIPMENT, shipment_stream(shipment_id))
    if loaded.state.status == "none":
        raise NotFound("shipment_not_found", "no shipment with this id")
    return loaded


async def dispatch_shipment(
    ledger: Ledger[Tx], shipment_id: str, *, metadata: Metadata | None = None
) -> Shipment:
    """The vials leave: the shipment and the source stock change together."""

    async def work(unit: _Unit[Tx]) -> Shipment:
        loaded = await _existing_shipment(unit, shipment_id)
        planned = loaded.state
        await unit.books.lock_stock(unit.tx, planned.from_location, planned.lot_number)
        shipment = await unit.shipment(loaded, DispatchShipment())
        await unit.stock(
            planned.from_location,
            planned.lot_number,
            TakeVials(
                shipment_id=shipment_id,
                to_location=planned.to_location,
                vials=planned.vials,
                today=unit.today,
            ),
        )
        return shipment.state

    return await _run(ledger, work, metadata)


async def receive_shipment(
    ledger: Ledger[Tx],
    shipment_id: str,
    command: ReceiveShipment,
    *,
    metadata: Metadata | None = None,
) -> Shipment:
    """The vials arrive (some may be lost): the destination's stock grows."""

    async def work(unit: _Unit[Tx]) -> Shipment:
        loaded = await _existing_shipment(unit, shipment_id)
        planned = loaded.state
        await unit.books.lock_lot(unit.tx, planned.lot_number, exclusive=False)
        await unit.books.lock_stock(unit.tx, planned.to_location, planned.lot_number)
        shipment = (await unit.shipment(loaded, command)).state
        lot = (await unit.load(LOT, lot_stream(planned.lot_number))).state
        arrival = arriving(
            lot,
            planned.to_location,
            shipment.vials_received,
            today=unit.today,
            shipment_id=shipment_id,
        )
        await unit.stock(planned.to_location, planned.lot_number, arrival)
        return shipment

    return await _run(ledger, work, metadata)


# --- stock at a location -------------------------------------------------------------


async def _on_stock(
    ledger: Ledger[Tx],
    location_id: str,
    lot_number: str,
    command: Callable[[_Unit[Tx]], StockCommand],
    *,
    metadata: Metadata | None,
    conn: Tx | None = None,
) -> StockLot:
    async def work(unit: _Unit[Tx]) -> StockLot:
        await unit.books.lock_stock(unit.tx, location_id, lot_number)
        after = await unit.stock(location_id, lot_number, command(unit))
        return readmodel.stock_lot(after.state, unit.now)

    return await _run(ledger, work, metadata, conn)


async def open_vial(
    ledger: Ledger[Tx], location_id: str, lot_number: str, *, metadata: Metadata | None = None
) -> StockLot:
    """Open one sealed vial (refused for a recalled or expired lot)."""
    return await _on_stock(
        ledger, location_id, lot_number, lambda unit: OpenVials(now=unit.now), metadata=metadata
    )


async def waste(
    ledger: Ledger[Tx],
    location_id: str,
    lot_number: str,
    doses: int,
    reason: WasteReason,
    *,
    metadata: Metadata | None = None,
) -> StockLot:
    """Record doses lost at a location."""
    return await _on_stock(
        ledger,
        location_id,
        lot_number,
        lambda unit: WasteDoses(doses=doses, reason=reason, now=unit.now),
        metadata=metadata,
    )


async def expire_open_vials(
    ledger: Ledger[Tx], location_id: str, lot_number: str, *, metadata: Metadata | None = None
) -> StockLot:
    """Record the loss of open vials past their usable time."""
    return await _on_stock(
        ledger,
        location_id,
        lot_number,
        lambda unit: ExpireOpenVials(now=unit.now),
        metadata=metadata,
    )


async def consume(
    ledger: Ledger[Tx], conn: Tx, event: DoseAdministered, envelope: Envelope
) -> None:
    """A dose was administered: take it from the site's stock, in the consumer's transaction.

    The dose stands whatever the count says; if the stock cannot account for
    it, a StockDiscrepancyDetected is recorded instead.
    """
    at = event.administered_at
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    metadata = Metadata.caused_by(envelope, occurred_at=at)
    command = ConsumeDose(
        dose_id=event.dose_id,
        site_id=event.site_id,
        lot_number=event.lot_number,
        product_code=event.product_code,
        at=at,
    )
    await _on_stock(
        ledger, event.site_id, event.lot_number, lambda _: command, metadata=metadata, conn=conn
    )


# --- time passing --------------------------------------------------------------------


async def sweep(ledger: Ledger[Tx]) -> SweepResult:
    """Expire lots past their expiry date and open vials past their usable time."""
    now = ledger.clock()
    lots = await ledger.books.lots_past_expiry(now.date())
    for lot_number in lots:
        await expire_lot(ledger, lot_number)
    stale = await ledger.books.stocks_with_stale_vials(now)
    for location_id, lot_number in stale:
        await expire_open_vials(ledger, location_id, lot_number)
    return SweepResult(lots_expired=len(lots), stocks_with_expired_vials=len(stale))


# --- reactions ------------------------------------------------------------------
#
# What inventory does when other contexts' events arrive.
#
# - DeliveryReceived (supply): every lot of the delivery is received at its warehouse,
#   as `receive_lot` does for a lot received by hand.
# - AllocationApproved (supply): every approved line becomes a planned shipment
#   (`create_shipment`, id from the line); dispatch and receipt stay people's, over HTTP.
# - DoseAdministered: the dose is taken from that lot's stock at that site
#   (opening a sealed vial if none is open); when the count cannot account for
#   it, a StockDiscrepancyDetected is recorded instead - the dose stands.
# - DoseVoided and DoseCorrected change nothing here: a record entered in error
#   does not put a dose back into a vial (the vial was opened and its usable
#   time runs anyway). Stock is reconciled by recording waste, not by editing
#   consumption. They are not subscribed to, so the consumer skips them.
#
# Handlers get only the consumer's connection; they reach the running app's
# Ledger through a `Provided` that the app's start-up fills (services/inventory/app.py).
# A handler runs in the consumer's savepoint: a ConcurrencyConflict (another
# writer on the same stream) is re-decided by the consumer's own retries, and
# redeliveries are filtered by the consumer (processed_events) and again by the
# Stock itself (a dose id is counted once).


async def receive_delivery(
    ledger: Ledger[Tx], conn: Tx, event: DeliveryReceived, envelope: Envelope
) -> list[str]:
    """Supply received a delivery: each of its lots enters stock at the warehouse.

    Returns the lots refused (e.g. a lot number someone received by hand already):
    supply checked the rest, so a refusal is an operator's to look into, not a retry's.
    """
    metadata = Metadata.caused_by(envelope)
    refused: list[str] = []
    for lot in event.lots:
        command = ReceiveLot(
            lot_number=lot.lot_number,
            product_code=event.product_code,
            manufacturer_code=event.manufacturer_code,
            expiry_date=lot.expiry_date,
            vials=lot.vials,
            doses_per_vial=lot.doses_per_vial,
            storage=cast(Storage, lot.storage),
            location_id=event.location_id,
            today=event.received_on,
        )
        try:
            await receive_lot(ledger, command, metadata=metadata, conn=conn)
        except DomainError as refusal:
            log.warning(
                "lot of a delivery refused",
                extra={"lot_number": lot.lot_number, "code": refusal.code},
            )
            refused.append(lot.lot_number)
    return refused


async def create_approved_shipments(
    ledger: Ledger[Tx], conn: Tx, event: AllocationApproved, envelope: Envelope
) -> list[str]:
    """Supply approved allocation lines: each becomes a planned shipment here.

    Shipment ids come from the line, so a redelivered approval creates nothing twice;
    a line the source can no longer send is refused (returned) and stays unshipped,
    as supply's run shows.
    """
    metadata = Metadata.caused_by(envelope)
    refused: list[str] = []
    for line in event.shipments:
        try:
            await create_shipment(
                ledger,
                shipment_id=line.shipment_id,
                lot_number=line.lot_number,
                from_location=line.from_location,
                to_location=line.to_location,
                vials=line.vials,
                metadata=metadata,
                conn=conn,
            )
        except DomainError as refusal:
            if refusal.code != "shipment_exists":
                log.warning(
                    "approved shipment refused",
                    extra={"shipment_id": line.shipment_id, "code": refusal.code},
                )
                refused.append(line.shipment_id)
    return refused


def build_reactions(ledger: Callable[[], Ledger[Connection]]) -> Reactions:
    """Inventory's reactions, given the ledger of the running app."""
    reactions = Reactions()

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose_administered(
        conn: Connection, event: DoseAdministered, envelope: Envelope
    ) -> None:
        await consume(ledger(), conn, event, envelope)

    @reactions.on(supply.CONTEXT, DeliveryReceived)
    async def delivery_received(
        conn: Connection, event: DeliveryReceived, envelope: Envelope
    ) -> None:
        await receive_delivery(ledger(), conn, event, envelope)

    @reactions.on(supply.CONTEXT, AllocationApproved)
    async def allocation_approved(
        conn: Connection, event: AllocationApproved, envelope: Envelope
    ) -> None:
        await create_approved_shipments(ledger(), conn, event, envelope)

    return reactions
