"""inventory.events.v1: lots, shipments and stock at warehouses and sites.

Locations are ids: the national warehouse, district warehouses and sites
share one id space (e.g. `WH-NATIONAL`, `WH-RS-14`, `SITE-0042`).
"""

from __future__ import annotations

from datetime import date, datetime

from immunreg.contracts.envelope import Context, Event


class LotReceived(Event, frozen=True, kw_only=True):
    lot_number: str
    product_code: str
    manufacturer_code: str
    expiry_date: date
    vials: int
    doses_per_vial: int
    storage: str
    location_id: str


class ShipmentDispatched(Event, frozen=True, kw_only=True):
    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int


class ShipmentReceived(Event, frozen=True, kw_only=True):
    shipment_id: str
    lot_number: str
    product_code: str
    to_location: str
    vials_received: int
    vials_lost: int = 0


class VialOpened(Event, frozen=True, kw_only=True):
    site_id: str
    lot_number: str
    product_code: str
    doses: int
    usable_until: datetime


class DosesWasted(Event, frozen=True, kw_only=True):
    site_id: str
    lot_number: str
    product_code: str
    doses: int
    reason: str


class OpenedVialExpired(Event, frozen=True, kw_only=True):
    site_id: str
    lot_number: str
    product_code: str
    doses_lost: int


class DoseConsumed(Event, frozen=True, kw_only=True):
    site_id: str
    lot_number: str
    product_code: str
    dose_id: str


class LotRecalled(Event, frozen=True, kw_only=True):
    lot_number: str
    product_code: str
    reason: str
    locations: list[str] = []


class LotExpired(Event, frozen=True, kw_only=True):
    lot_number: str
    product_code: str
    expiry_date: date


class StockDiscrepancyDetected(Event, frozen=True, kw_only=True):
    """A dose was recorded that the stock count says could not have been given."""

    site_id: str
    lot_number: str
    product_code: str
    dose_id: str
    reason: str


class StockLevelChanged(Event, frozen=True, kw_only=True):
    """Usable doses of a product at a location, after any change (what booking plans with)."""

    location_id: str
    product_code: str
    doses_available: int
    earliest_expiry: date | None = None


CONTEXT = Context(
    "inventory",
    [
        LotReceived,
        ShipmentDispatched,
        ShipmentReceived,
        VialOpened,
        DosesWasted,
        OpenedVialExpired,
        DoseConsumed,
        LotRecalled,
        LotExpired,
        StockDiscrepancyDetected,
        StockLevelChanged,
    ],
)
