"""What the inventory API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

from immunreg.structs import Struct

from .domain import (
    LOCATION_PATTERN,
    LOT_PATTERN,
    MAX_ID_LENGTH,
    MAX_SHIPMENT_ID_LENGTH,
    NATIONAL_WAREHOUSE,
    SHIPMENT_ID_PATTERN,
    Storage,
)
from .stock import WasteReason

LocationId = Annotated[str, msgspec.Meta(pattern=LOCATION_PATTERN, max_length=MAX_ID_LENGTH)]
LotNumber = Annotated[str, msgspec.Meta(pattern=LOT_PATTERN, max_length=MAX_ID_LENGTH)]
ShipmentId = Annotated[
    str, msgspec.Meta(pattern=SHIPMENT_ID_PATTERN, max_length=MAX_SHIPMENT_ID_LENGTH)
]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Vials = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]


# --- requests --------------------------------------------------------------------


class LotIn(Struct, forbid_unknown_fields=True):
    """A lot received from a manufacturer (doses per vial and storage default to the catalog's)."""

    lot_number: LotNumber
    product_code: Code
    manufacturer_code: Code
    expiry_date: date
    vials: Vials
    doses_per_vial: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    storage: Storage | None = None
    location_id: LocationId = NATIONAL_WAREHOUSE


class RecallIn(Struct, forbid_unknown_fields=True):
    """Why the lot is recalled."""

    reason: Reason


class ShipmentIn(Struct, forbid_unknown_fields=True):
    """A planned shipment; without an id, one is made (UUIDv7)."""

    lot_number: LotNumber
    to_location: LocationId
    vials: Vials
    from_location: LocationId = NATIONAL_WAREHOUSE
    shipment_id: ShipmentId | None = None


class ReceiptIn(Struct, forbid_unknown_fields=True):
    """What arrived; vials not received are lost (`vials_lost` defaults to the rest)."""

    vials_received: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    vials_lost: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    loss_reason: Reason | None = None


class WasteIn(Struct, forbid_unknown_fields=True):
    """Doses lost at a location, and why."""

    doses: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    reason: WasteReason


# --- answers ---------------------------------------------------------------------


class LotSummary(Struct):
    """A lot as received, and whether it may still be used."""

    lot_number: str
    product_code: str
    manufacturer_code: str
    expiry_date: date
    doses_per_vial: int
    storage: str
    location_id: str
    vials: int
    status: str
    recall_reason: str | None = None


class StockLot(Struct):
    """One lot at one location: vials, doses, status."""

    location_id: str
    lot_number: str
    product_code: str
    expiry_date: date | None
    doses_per_vial: int
    sealed_vials: int
    open_vials: int
    open_doses: int
    doses_available: int
    status: str
    doses_consumed: int = 0
    doses_wasted: int = 0
    discrepancies: int = 0
    next_vial_expiry: datetime | None = None


class ProductTotal(Struct):
    """Usable doses of one product at a location (as last published in StockLevelChanged)."""

    product_code: str
    doses_available: int
    earliest_expiry: date | None = None


class SiteStock(Struct):
    """Everything a location holds, per lot and per product."""

    location_id: str
    lots: list[StockLot]
    products: list[ProductTotal]


class ShipmentView(Struct):
    """A shipment and how far it has got."""

    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int
    status: str
    vials_received: int = 0
    vials_lost: int = 0
    loss_reason: str | None = None


class HistoryEntry(Struct):
    """One recorded event that touched the lot."""

    stream_id: str
    version: int
    type: str
    occurred_at: datetime
    recorded_at: datetime
    data: msgspec.Raw


class LotDetail(Struct):
    """A lot, where it is now, its shipments and its full history."""

    lot: LotSummary
    holdings: list[StockLot]
    shipments: list[ShipmentView]
    history: list[HistoryEntry]
