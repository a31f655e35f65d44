"""supply.events.v1: procurement contracts, deliveries, allocation plans, replenishment.

Three kinds of stream publish here:

- a supply contract with a manufacturer (`contract-<id>`): ContractRecorded,
  DeliveryReceived (the lots it brought; inventory receives them into stock);
- an allocation run (`allocation-run-<id>`): AllocationRunRequested, AllocationProposed
  (per product, in chunks: the proposed shipments and why), AllocationRunFailed,
  AllocationApproved (one event per chunk of approved shipments: inventory creates
  them), AllocationRunDecided (the decision as a whole);
- a site's supply of one product (`replenishment-<site>:<product>`):
  ReplenishmentAlertRaised, ReplenishmentAlertCleared.

Shipments themselves stay inventory's: supply asks for them, inventory records them.
"""

from __future__ import annotations

from datetime import date

from immunreg.contracts.envelope import Context, Event
from immunreg.structs import Struct


class Tranche(Struct):
    """Doses a contract expects by a date."""

    tranche_id: str
    expected_date: date
    doses: int


class ContractRecorded(Event):
    contract_id: str
    manufacturer_code: str
    product_code: str
    total_doses: int
    tranches: list[Tranche]
    reference: str = ""


class DeliveredLot(Struct):
    """One manufacturer's lot in a delivery, as inventory will receive it."""

    lot_number: str
    expiry_date: date
    vials: int
    doses_per_vial: int
    storage: str


class DeliveryReceived(Event):
    """A delivery against a contract arrived at a warehouse; its lots enter stock there."""

    contract_id: str
    delivery_id: str
    product_code: str
    manufacturer_code: str
    location_id: str
    received_on: date
    lots: list[DeliveredLot]
    doses: int


class AllocationRunRequested(Event):
    run_id: str
    from_day: date
    horizon_days: int
    requested_by: str = ""


class LineReasons(Struct):
    """What a proposed shipment is for (doses of its product at its destination)."""

    booked: int
    waiting: int
    on_hand: int
    in_transit: int
    for_booked: int  # doses of this line that serve booked appointments
    for_waiting: int  # ... and waiting citizens
    first_use: date  # the first day the line's doses are needed
    last_use: date  # the last (the lot's expiry is on or after it)
    leaves_behind: int  # vials of the lot left at the source after the whole plan
    alert: bool = False  # the destination had an open replenishment alert


class ProposedShipment(Struct):
    line: int
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int
    doses: int
    expiry_date: date
    why: LineReasons


class ProductBalance(Struct):
    """One product across the plan: demand, what covers it, and what is due."""

    product_code: str
    booked: int
    booked_covered: int
    waiting: int
    waiting_covered: int
    shipped_doses: int
    due_from_contracts: int  # doses expected within the horizon
    unrouted_waiting: int = 0  # waiting citizens with no site in reach


class AllocationProposed(Event):
    """Proposed shipments of one product (a national run takes several events a product:
    the first carries the product's balance)."""

    run_id: str
    product_code: str
    lines: list[ProposedShipment]
    balance: ProductBalance | None = None


class AllocationRunFailed(Event):
    run_id: str
    reason: str


class ApprovedShipment(Struct):
    line: int
    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int
    edited: bool = False


class AllocationApproved(Event):
    """Approved lines of a run (one chunk): inventory creates these shipments."""

    run_id: str
    shipments: list[ApprovedShipment]


class AllocationRunDecided(Event):
    run_id: str
    approved: int
    edited: int
    rejected: int
    decided_by: str = ""


class ReplenishmentAlertRaised(Event):
    site_id: str
    product_code: str
    days_of_supply: float
    threshold_days: float
    doses_on_hand: int
    daily_demand: float


class ReplenishmentAlertCleared(Event):
    site_id: str
    product_code: str
    days_of_supply: float | None
    threshold_days: float


CONTEXT = Context(
    "supply",
    [
        ContractRecorded,
        DeliveryReceived,
        AllocationRunRequested,
        AllocationProposed,
        AllocationRunFailed,
        AllocationApproved,
        AllocationRunDecided,
        ReplenishmentAlertRaised,
        ReplenishmentAlertCleared,
    ],
)
