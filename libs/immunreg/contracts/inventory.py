"""inventory.events.v1: lots, shipments and stock at warehouses and sites.

Locations are ids: the national warehouse, district warehouses and sites
share one id space (e.g. `WH-NATIONAL`, `WH-RS-14`, `SITE-0042`).

Three kinds of stream publish here:

- a lot's lifecycle (`lot-<lot>`): LotReceived, LotRecalled, LotExpired;
- a shipment's lifecycle (`shipment-<id>`): ShipmentCreated, ShipmentDispatched,
  ShipmentReceived;
- the ledger of one lot at one location (`stock-<location>:<lot>`): StockReceived,
  StockDispatched, VialOpened, DosesWasted, OpenedVialExpired, DoseConsumed,
  StockDiscrepancyDetected, StockRecalled, StockExpired.

Every fact is published once: count vials at a location from the ledger events,
and lot or shipment milestones from the lifecycle events, never both.
StockLevelChanged (`level-<location>:<product>`) summarises a location's usable
doses of one product whenever that number changes.
"""

from __future__ import annotations

from datetime import date, datetime

from immunreg.contracts.envelope import Context, Event


class LotReceived(Event):
    lot_number: str
    product_code: str
    manufacturer_code: str
    expiry_date: date
    vials: int
    doses_per_vial: int
    storage: str
    location_id: str


class ShipmentCreated(Event):
    """A shipment was planned; no vial has moved yet."""

    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int


class ShipmentDispatched(Event):
    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int


class ShipmentReceived(Event):
    shipment_id: str
    lot_number: str
    product_code: str
    to_location: str
    vials_received: int
    vials_lost: int = 0
    from_location: str = ""
    loss_reason: str | None = None


class StockReceived(Event):
    """Sealed vials of a lot arrived at a location (a new lot, or a shipment)."""

    location_id: str
    lot_number: str
    product_code: str
    vials: int
    doses_per_vial: int
    expiry_date: date
    shipment_id: str | None = None


class StockDispatched(Event):
    """Sealed vials left a location for a shipment."""

    location_id: str
    lot_number: str
    product_code: str
    vials: int
    shipment_id: str
    to_location: str


class VialOpened(Event):
    site_id: str
    lot_number: str
    product_code: str
    doses: int
    usable_until: datetime


class DosesWasted(Event):
    site_id: str
    lot_number: str
    product_code: str
    doses: int
    reason: str


class OpenedVialExpired(Event):
    site_id: str
    lot_number: str
    product_code: str
    doses_lost: int
    usable_until: datetime | None = None


class DoseConsumed(Event):
    site_id: str
    lot_number: str
    product_code: str
    dose_id: str


class LotRecalled(Event):
    lot_number: str
    product_code: str
    reason: str
    locations: list[str] = []


class LotExpired(Event):
    lot_number: str
    product_code: str
    expiry_date: date


class StockRecalled(Event):
    """A recalled lot's stock at one location: nothing more may be used or shipped."""

    location_id: str
    lot_number: str
    product_code: str
    reason: str
    sealed_vials: int
    open_doses: int


class StockExpired(Event):
    """An expired lot's stock at one location: nothing more may be used or shipped."""

    location_id: str
    lot_number: str
    product_code: str
    expiry_date: date
    sealed_vials: int
    open_doses: int


class StockDiscrepancyDetected(Event):
    """A dose was recorded that the stock count says could not have been given."""

    site_id: str
    lot_number: str
    product_code: str
    dose_id: str
    reason: str


class StockLevelChanged(Event):
    """Usable doses of a product at a location, after any change (what booking plans with)."""

    location_id: str
    product_code: str
    doses_available: int
    earliest_expiry: date | None = None


CONTEXT = Context(
    "inventory",
    [
        LotReceived,
        ShipmentCreated,
        ShipmentDispatched,
        ShipmentReceived,
        StockReceived,
        StockDispatched,
        VialOpened,
        DosesWasted,
        OpenedVialExpired,
        DoseConsumed,
        LotRecalled,
        LotExpired,
        StockRecalled,
        StockExpired,
        StockDiscrepancyDetected,
        StockLevelChanged,
    ],
)
