"""Inventory's command path on the in-memory event store.

`handlers.receive_lot`, `create_shipment`, `dispatch_shipment`, `receive_shipment` and
`waste` run here exactly as in the service; only the store (InMemoryEventStore) and the
books (a fake of the read models) are swapped. The row locks, the SQL of the read
models and the reaction (which runs in the consumer's PostgreSQL transaction) stay in
tests/integration/inventory.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from immunreg.contracts import supply
from immunreg.contracts.envelope import Envelope
from immunreg.contracts.inventory import CONTEXT
from immunreg.domain import Conflict, NotFound, RuleViolation
from immunreg.eventstore.memory import InMemoryEventStore, MemoryTransaction
from services.inventory import handlers
from services.inventory.domain import (
    NATIONAL_WAREHOUSE,
    Lot,
    ReceiveLot,
    ReceiveShipment,
    Shipment,
    level_stream,
    lot_stream,
    shipment_stream,
    stock_stream,
)
from services.inventory.handlers import Ledger
from services.inventory.readmodel import PublishedLevel
from services.inventory.schemas import StockLot

NOW = datetime(2021, 5, 1, 9, 0, tzinfo=UTC)
LOT = "EW0150"
SITE = "SITE-0001"
COMIRNATY = "EU/1/20/1528"  # six doses a vial
PFIZER = "ORG-100030215"


class FakeBooks:
    """The read models as dicts, and the lot history as the event types it was given."""

    def __init__(self) -> None:
        self.lots: dict[str, Lot] = {}
        self.shipments: dict[str, Shipment] = {}
        self.stock: dict[tuple[str, str], StockLot] = {}
        self.levels: dict[tuple[str, str], PublishedLevel] = {}
        self.history: list[str] = []

    async def lock_lot(self, tx: MemoryTransaction, lot_number: str, *, exclusive: bool) -> None:
        pass  # one task at a time: nothing to queue behind

    async def lock_stock(self, tx: MemoryTransaction, location_id: str, lot_number: str) -> None:
        pass

    async def lock_holders(
        self, tx: MemoryTransaction, lot_number: str, statuses: list[str]
    ) -> list[str]:
        return sorted(
            view.location_id
            for view in self.stock.values()
            if view.lot_number == lot_number and view.status in statuses
        )

    async def save_history(
        self, tx: MemoryTransaction, lot_number: str, events: list[Envelope]
    ) -> None:
        self.history.extend(e.type for e in events)

    async def save_lot(self, tx: MemoryTransaction, state: Lot, version: int) -> None:
        self.lots[state.lot_number] = state

    async def save_shipment(self, tx: MemoryTransaction, state: Shipment, version: int) -> None:
        self.shipments[state.shipment_id] = state

    async def save_stock(self, tx: MemoryTransaction, view: StockLot, version: int) -> None:
        self.stock[view.location_id, view.lot_number] = view

    async def lock_level(
        self, tx: MemoryTransaction, location_id: str, product_code: str
    ) -> PublishedLevel:
        return self.levels.get((location_id, product_code), PublishedLevel(0, None, 0))

    async def computed_level(
        self, tx: MemoryTransaction, location_id: str, product_code: str
    ) -> tuple[int, date | None]:
        held = [
            view
            for view in self.stock.values()
            if (view.location_id, view.product_code) == (location_id, product_code)
        ]
        usable = [
            view.expiry_date
            for view in held
            if view.doses_available > 0 and view.expiry_date is not None
        ]
        return sum(view.doses_available for view in held), min(usable, default=None)

    async def save_level(
        self,
        tx: MemoryTransaction,
        *,
        location_id: str,
        product_code: str,
        doses: int,
        earliest: date | None,
        version: int,
    ) -> None:
        self.levels[location_id, product_code] = PublishedLevel(doses, earliest, version)

    async def lots_past_expiry(self, today: date) -> list[str]:
        return []

    async def stocks_with_stale_vials(self, now: datetime) -> list[tuple[str, str]]:
        return []


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def books() -> FakeBooks:
    return FakeBooks()


@pytest.fixture
def ledger(store: InMemoryEventStore, books: FakeBooks) -> Ledger[MemoryTransaction]:
    return Ledger(store, books, clock=lambda: NOW)


def lot(vials: int = 10) -> ReceiveLot:
    return ReceiveLot(
        lot_number=LOT,
        product_code=COMIRNATY,
        manufacturer_code=PFIZER,
        expiry_date=date(2021, 8, 31),
        vials=vials,
        today=NOW.date(),
    )


async def types(store: InMemoryEventStore, stream_id: str) -> list[str]:
    return [e.type for e in await store.load(stream_id)]


async def shipped(
    ledger: Ledger[MemoryTransaction], vials: int, *, shipment_id: str = "SH-1"
) -> Shipment:
    """A shipment from the national warehouse to the site, created and dispatched."""
    await handlers.create_shipment(
        ledger,
        shipment_id=shipment_id,
        lot_number=LOT,
        from_location=NATIONAL_WAREHOUSE,
        to_location=SITE,
        vials=vials,
    )
    return await handlers.dispatch_shipment(ledger, shipment_id)


async def test_a_received_lot_enters_the_warehouses_stock_and_its_level(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    received = await handlers.receive_lot(ledger, lot(10))

    assert (received.status, received.doses_per_vial, received.location_id) == (
        "active",
        6,
        NATIONAL_WAREHOUSE,
    )
    assert await types(store, lot_stream(LOT)) == ["LotReceived"]
    assert await types(store, stock_stream(NATIONAL_WAREHOUSE, LOT)) == ["StockReceived"]
    assert await types(store, level_stream(NATIONAL_WAREHOUSE, COMIRNATY)) == ["StockLevelChanged"]
    assert {row.topic for row in store.memory.outbox} == {CONTEXT.topic}
    assert len(store.memory.outbox) == 3
    assert books.stock[NATIONAL_WAREHOUSE, LOT].sealed_vials == 10
    assert books.levels[NATIONAL_WAREHOUSE, COMIRNATY] == PublishedLevel(60, date(2021, 8, 31), 1)
    assert books.history == ["LotReceived", "StockReceived"]


async def test_a_lot_number_is_received_once_and_the_second_stores_nothing(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    await handlers.receive_lot(ledger, lot(10))

    with pytest.raises(Conflict) as refused:
        await handlers.receive_lot(ledger, lot(5))

    assert refused.value.code == "lot_already_received"
    assert len(store.memory.outbox) == 3


async def test_a_dispatched_shipment_takes_the_vials_from_the_source(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))

    shipment = await shipped(ledger, 4)

    assert (shipment.status, shipment.vials) == ("dispatched", 4)
    assert await types(store, shipment_stream("SH-1")) == ["ShipmentCreated", "ShipmentDispatched"]
    assert await types(store, stock_stream(NATIONAL_WAREHOUSE, LOT)) == [
        "StockReceived",
        "StockDispatched",
    ]
    assert books.stock[NATIONAL_WAREHOUSE, LOT].sealed_vials == 6
    assert books.levels[NATIONAL_WAREHOUSE, COMIRNATY].doses_available == 36
    assert books.shipments["SH-1"].status == "dispatched"


async def test_a_shipment_of_vials_the_source_does_not_hold_stores_nothing(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    await handlers.receive_lot(ledger, lot(3))

    with pytest.raises(Conflict) as refused:
        await shipped(ledger, 4)

    assert (refused.value.code, refused.value.field) == ("insufficient_stock", "vials")
    assert await types(store, shipment_stream("SH-1")) == []
    assert len(store.memory.outbox) == 3


async def test_a_shipment_of_an_unknown_lot_is_refused(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    with pytest.raises(RuleViolation) as refused:
        await shipped(ledger, 1)

    assert (refused.value.code, refused.value.field) == ("unknown_lot", "lot_number")
    assert store.memory.outbox == []


async def test_a_received_shipment_stocks_the_site_with_what_arrived(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))
    await shipped(ledger, 4)

    shipment = await handlers.receive_shipment(
        ledger,
        "SH-1",
        ReceiveShipment(vials_received=3, vials_lost=1, loss_reason="broken in transit"),
    )

    assert (shipment.status, shipment.vials_received, shipment.vials_lost) == ("received", 3, 1)
    assert await types(store, stock_stream(SITE, LOT)) == ["StockReceived"]
    assert books.stock[SITE, LOT].sealed_vials == 3
    assert books.levels[SITE, COMIRNATY] == PublishedLevel(18, date(2021, 8, 31), 1)


async def test_vials_unaccounted_for_refuse_the_receipt_and_store_nothing(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))
    await shipped(ledger, 4)
    published = len(store.memory.outbox)

    with pytest.raises(RuleViolation) as refused:
        await handlers.receive_shipment(
            ledger, "SH-1", ReceiveShipment(vials_received=3, vials_lost=0)
        )

    assert refused.value.code == "vials_unaccounted"
    assert len(store.memory.outbox) == published
    assert (SITE, LOT) not in books.stock


async def test_an_unknown_shipment_cannot_be_dispatched_or_received(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    with pytest.raises(NotFound) as not_dispatched:
        await handlers.dispatch_shipment(ledger, "SH-404")
    with pytest.raises(NotFound) as not_received:
        await handlers.receive_shipment(ledger, "SH-404", ReceiveShipment(vials_received=1))

    assert not_dispatched.value.code == not_received.value.code == "shipment_not_found"
    assert store.memory.outbox == []


async def test_waste_opens_a_vial_and_lowers_the_sites_level(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))
    await shipped(ledger, 2)
    await handlers.receive_shipment(ledger, "SH-1", ReceiveShipment(vials_received=2))

    stock = await handlers.waste(ledger, SITE, LOT, 2, "dropped")

    assert (stock.sealed_vials, stock.open_vials, stock.open_doses) == (1, 1, 4)
    assert (stock.doses_wasted, stock.doses_available) == (2, 10)
    assert await types(store, stock_stream(SITE, LOT)) == [
        "StockReceived",
        "VialOpened",
        "DosesWasted",
    ]
    assert books.levels[SITE, COMIRNATY].doses_available == 10


async def test_waste_beyond_the_doses_held_is_refused_and_stores_nothing(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    await handlers.receive_lot(ledger, lot(1))
    published = len(store.memory.outbox)

    with pytest.raises(Conflict) as refused:
        await handlers.waste(ledger, NATIONAL_WAREHOUSE, LOT, 7, "cold_chain_break")

    assert (refused.value.code, refused.value.field) == ("insufficient_doses", "doses")
    assert len(store.memory.outbox) == published


async def test_waste_where_the_lot_is_not_held_is_not_found(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore
) -> None:
    with pytest.raises(NotFound) as refused:
        await handlers.waste(ledger, SITE, LOT, 1, "dropped")

    assert refused.value.code == "stock_not_found"
    assert store.memory.outbox == []


# --- supply's events -------------------------------------------------------------------


def supply_envelope(event: supply.DeliveryReceived | supply.AllocationApproved) -> Envelope:
    return supply.CONTEXT.envelope(
        event, stream_id="contract-C1", stream_type="Contract", version=1
    )


async def test_a_delivery_supply_received_enters_stock_and_a_lot_received_already_is_skipped(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))
    delivered = supply.DeliveryReceived(
        contract_id="C1",
        delivery_id="D1",
        product_code=COMIRNATY,
        manufacturer_code=PFIZER,
        location_id=NATIONAL_WAREHOUSE,
        received_on=NOW.date(),
        lots=[
            supply.DeliveredLot(
                lot_number=number,
                expiry_date=date(2021, 8, 31),
                vials=20,
                doses_per_vial=6,
                storage="ultra_cold",
            )
            for number in (LOT, "LOT-NEW")
        ],
        doses=240,
    )
    async with store.transaction() as tx:
        refused = await handlers.receive_delivery(ledger, tx, delivered, supply_envelope(delivered))
    assert refused == [LOT]
    assert await types(store, lot_stream("LOT-NEW")) == ["LotReceived"]
    assert books.stock[NATIONAL_WAREHOUSE, "LOT-NEW"].sealed_vials == 20
    assert books.stock[NATIONAL_WAREHOUSE, LOT].sealed_vials == 10


async def test_approved_lines_become_shipments_once_and_one_the_source_cannot_send_is_refused(
    ledger: Ledger[MemoryTransaction], store: InMemoryEventStore, books: FakeBooks
) -> None:
    await handlers.receive_lot(ledger, lot(10))
    approved = supply.AllocationApproved(
        run_id="R1",
        shipments=[
            supply.ApprovedShipment(
                line=n,
                shipment_id=f"R1-{n}",
                lot_number=LOT,
                product_code=COMIRNATY,
                from_location=NATIONAL_WAREHOUSE,
                to_location=SITE,
                vials=vials,
            )
            for n, vials in ((1, 4), (2, 11))
        ],
    )
    for _ in range(2):  # a redelivery creates nothing twice
        async with store.transaction() as tx:
            refused = await handlers.create_approved_shipments(
                ledger, tx, approved, supply_envelope(approved)
            )
        assert refused == ["R1-2"]
    assert await types(store, shipment_stream("R1-1")) == ["ShipmentCreated"]
    assert await types(store, shipment_stream("R1-2")) == []
    assert books.shipments["R1-1"].vials == 4
