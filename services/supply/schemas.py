"""What the supply API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec

from immunreg.contracts.supply import ApprovedShipment, ProductBalance, ProposedShipment
from immunreg.structs import Struct

from .domain import (
    ID_PATTERN,
    LOCATION_PATTERN,
    LOT_PATTERN,
    MAX_HORIZON_DAYS,
    MAX_ID_LENGTH,
    NATIONAL_WAREHOUSE,
    Decision,
    RunStatus,
    TranchePosition,
)

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN, max_length=MAX_ID_LENGTH)]
LocationId = Annotated[str, msgspec.Meta(pattern=LOCATION_PATTERN, max_length=MAX_ID_LENGTH)]
LotNumber = Annotated[str, msgspec.Meta(pattern=LOT_PATTERN, max_length=MAX_ID_LENGTH)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Doses = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
Vials = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Storage = Literal["ultra_cold", "frozen", "refrigerated"]


# --- requests ----------------------------------------------------------------------


class TrancheIn(Struct, forbid_unknown_fields=True):
    """Doses the manufacturer is to deliver by a date (id defaults to T1, T2, ...)."""

    expected_date: date
    doses: Doses
    tranche_id: Id | None = None


class ContractIn(Struct, forbid_unknown_fields=True):
    """A supply contract; the tranches' doses add up to `total_doses`."""

    manufacturer_code: Code
    product_code: Code
    total_doses: Doses
    tranches: Annotated[list[TrancheIn], msgspec.Meta(min_length=1, max_length=200)]
    contract_id: Id | None = None
    reference: Annotated[str, msgspec.Meta(max_length=200)] = ""


class DeliveredLotIn(Struct, forbid_unknown_fields=True):
    """One lot of a delivery (doses per vial and storage default to the catalog's)."""

    lot_number: LotNumber
    expiry_date: date
    vials: Vials
    doses_per_vial: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    storage: Storage | None = None


class DeliveryIn(Struct, forbid_unknown_fields=True):
    """A delivery against a contract, received at a warehouse."""

    lots: Annotated[list[DeliveredLotIn], msgspec.Meta(min_length=1, max_length=500)]
    delivery_id: Id | None = None
    location_id: LocationId = NATIONAL_WAREHOUSE


class RunIn(Struct, forbid_unknown_fields=True):
    """Plan the days from `from_day` (default tomorrow) for `horizon_days`."""

    from_day: date | None = None
    horizon_days: Annotated[int, msgspec.Meta(ge=1, le=MAX_HORIZON_DAYS)] = 7


class LineDecisionIn(Struct, forbid_unknown_fields=True):
    """approve or reject a line, or edit its vials."""

    line: Annotated[int, msgspec.Meta(ge=1)]
    decision: Decision
    vials: Vials | None = None


class ApproveIn(Struct, forbid_unknown_fields=True):
    """Per-line decisions; lines not named take `others` (reject by default)."""

    decisions: Annotated[list[LineDecisionIn], msgspec.Meta(max_length=100_000)] = []
    others: Literal["approve", "reject"] = "reject"


# --- answers -----------------------------------------------------------------------


class DeliveryView(Struct):
    delivery_id: str
    location_id: str
    received_on: date
    doses: int
    lots: list[str]


class ContractView(Struct):
    contract_id: str
    manufacturer_code: str
    product_code: str
    total_doses: int
    delivered: int
    outstanding: int
    late: int
    tranches: list[TranchePosition]
    deliveries: list[DeliveryView]
    reference: str = ""


ShipmentStatus = Literal["requested", "created", "dispatched", "received"]


class ShipmentProgress(Struct):
    """An approved line and how far inventory has taken its shipment."""

    shipment: ApprovedShipment
    status: ShipmentStatus


class RunView(Struct):
    run_id: str
    status: RunStatus
    from_day: date | None
    horizon_days: int
    requested_by: str
    lines: list[ProposedShipment]
    balances: list[ProductBalance]
    shipments: list[ShipmentProgress]
    rejected: int = 0
    decided_by: str = ""
    failure: str | None = None


class AlertView(Struct):
    site_id: str
    product_code: str
    days_of_supply: float | None


class AlertList(Struct):
    items: list[AlertView]
