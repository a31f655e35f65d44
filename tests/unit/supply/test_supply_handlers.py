"""Supply's commands on the in-memory event store: what each appends, what it leaves in
the outbox for Kafka, and the view rows it writes beside the stream."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.supply import DeliveredLot, Tranche
from immunreg.domain import RuleViolation
from immunreg.eventstore.memory import InMemoryEventStore, MemoryTransaction
from immunreg.reference.vaccines import vaccine_catalog
from services.supply.allocation import AllocationInput, SiteSupply, WarehouseLot
from services.supply.domain import (
    AllocationRun,
    Contract,
    DecideRun,
    ReceiveDelivery,
    RecordContract,
    Replenishment,
    RequestRun,
    contract_stream,
    run_stream,
)
from services.supply.handlers import (
    Supply,
    decide_run,
    plan_run,
    receive_delivery,
    record_contract,
    request_run,
    sweep_replenishment,
)

TODAY = date(2026, 3, 1)
PRODUCT = vaccine_catalog()["EU/1/20/1528"]  # 6 doses a vial, ultra cold


class FakeBooks:
    """The view tables as dicts of (state, version)."""

    def __init__(self) -> None:
        self.contracts: dict[str, tuple[Contract, int]] = {}
        self.runs: dict[str, tuple[AllocationRun, int]] = {}
        self.alerts: dict[tuple[str, str], tuple[Replenishment, int]] = {}

    async def save_contract(self, tx: MemoryTransaction, state: Contract, version: int) -> None:
        self.contracts[state.contract_id] = (state, version)

    async def save_run(self, tx: MemoryTransaction, state: AllocationRun, version: int) -> None:
        self.runs[state.run_id] = (state, version)

    async def save_alert(self, tx: MemoryTransaction, state: Replenishment, version: int) -> None:
        self.alerts[(state.site_id, state.product_code)] = (state, version)


async def national_situation(start: date, days: int, today: date) -> AllocationInput:
    site = SiteSupply("SITE-0001", "70092", "RS-00", frozenset({"refrigerated", "ultra_cold"}))
    return AllocationInput(
        start=start,
        days=days,
        products={PRODUCT.product_code: PRODUCT.doses_per_vial},
        sites=[site],
        booked={("SITE-0001", start, PRODUCT.product_code): 8},
        lots=[
            WarehouseLot(
                "WH-NATIONAL",
                "LOT-1",
                PRODUCT.product_code,
                start + timedelta(days=60),
                6,
                "ultra_cold",
                10,
            )
        ],
    )


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def books() -> FakeBooks:
    return FakeBooks()


@pytest.fixture
def supply(store: InMemoryEventStore, books: FakeBooks) -> Supply:
    return Supply(store=store, books=books, inputs=national_situation)


def a_contract() -> RecordContract:
    return RecordContract(
        contract_id="C1",
        manufacturer_code=PRODUCT.manufacturer_code,
        product_code=PRODUCT.product_code,
        total_doses=600,
        tranches=(Tranche(tranche_id="T1", expected_date=TODAY, doses=600),),
    )


async def test_a_contract_and_its_delivery_are_recorded_published_and_viewed(
    store: InMemoryEventStore, books: FakeBooks, supply: Supply
) -> None:
    await record_contract(supply, a_contract())
    lot = DeliveredLot(
        lot_number="LOT-1",
        expiry_date=TODAY + timedelta(days=90),
        vials=50,
        doses_per_vial=6,
        storage="ultra_cold",
    )
    state = await receive_delivery(
        supply,
        "C1",
        ReceiveDelivery(
            delivery_id="D1", location_id="WH-NATIONAL", received_on=TODAY, lots=(lot,)
        ),
    )
    assert [e.type for e in await store.load(contract_stream("C1"))] == [
        "ContractRecorded",
        "DeliveryReceived",
    ]
    published = [decode_envelope(row.payload) for row in store.memory.outbox]
    assert [(e.type, row.key) for e, row in zip(published, store.memory.outbox, strict=True)] == [
        ("ContractRecorded", "contract-C1"),
        ("DeliveryReceived", "contract-C1"),
    ]
    assert books.contracts["C1"] == (state, 2) and state.delivered_doses == 300


async def test_a_refused_delivery_changes_nothing(
    store: InMemoryEventStore, books: FakeBooks, supply: Supply
) -> None:
    await record_contract(supply, a_contract())
    too_much = DeliveredLot(
        lot_number="LOT-1",
        expiry_date=TODAY + timedelta(days=90),
        vials=101,
        doses_per_vial=6,
        storage="ultra_cold",
    )
    with pytest.raises(RuleViolation, match="outstanding"):
        await receive_delivery(
            supply,
            "C1",
            ReceiveDelivery(
                delivery_id="D1", location_id="WH-NATIONAL", received_on=TODAY, lots=(too_much,)
            ),
        )
    assert len(await store.load(contract_stream("C1"))) == 1
    assert books.contracts["C1"][1] == 1 and len(store.memory.outbox) == 1


async def test_a_run_is_requested_planned_once_and_approved(
    store: InMemoryEventStore, books: FakeBooks, supply: Supply
) -> None:
    requested = await request_run(
        supply, RequestRun(run_id="R1", from_day=TODAY, horizon_days=3, today=TODAY)
    )
    assert books.runs["R1"][0].status == requested.status == "requested"
    planned = await plan_run(supply, "R1", today=TODAY)
    again = await plan_run(supply, "R1", today=TODAY)  # a second replica, or a retry
    assert planned == again and planned.status == "proposed"
    assert [(x.lot_number, x.vials, x.why.booked) for x in planned.lines] == [("LOT-1", 2, 8)]
    decided = await decide_run(supply, "R1", DecideRun(decisions=(), others="approve"))
    assert [e.type for e in await store.load(run_stream("R1"))] == [
        "AllocationRunRequested",
        "AllocationProposed",
        "AllocationApproved",
        "AllocationRunDecided",
    ]
    assert [s.shipment_id for s in decided.approved] == ["R1-1"]
    assert books.runs["R1"] == (decided, 4)
    assert {row.key for row in store.memory.outbox} == {run_stream("R1")}


async def test_a_sweep_raises_only_the_alerts_that_change(
    store: InMemoryEventStore, books: FakeBooks, supply: Supply
) -> None:
    observations = [("SITE-1", "P", 10, 10.0), ("SITE-2", "P", 100, 10.0), ("SITE-3", "P", 0, 0)]
    raised = await sweep_replenishment(
        supply, observations, threshold_days=3, open_alerts=frozenset()
    )
    assert raised == 1 and list(books.alerts) == [("SITE-1", "P")]
    raised = await sweep_replenishment(
        supply, observations, threshold_days=3, open_alerts=frozenset({("SITE-1", "P")})
    )
    assert raised == 0 and len(store.memory.outbox) == 1
    await sweep_replenishment(
        supply,
        [("SITE-1", "P", 50, 10.0)],
        threshold_days=3,
        open_alerts=frozenset({("SITE-1", "P")}),
    )
    assert [row.key for row in store.memory.outbox] == ["replenishment-SITE-1:P"] * 2
    assert not books.alerts[("SITE-1", "P")][0].alert
