"""Inventory's pure decisions about lots and shipments (the Stock ledger is in stock.py).

Stream ids:
    lot-<lot_number>                 Lot: received, recalled, expired
    shipment-<shipment_id>           Shipment: created -> dispatched -> received
    stock-<location_id>:<lot_number> Stock of one lot at one location (stock.py)
    level-<location_id>:<product>    StockLevelChanged of one product at one location

Location ids cannot contain `:`, so `stock-` and `level-` ids are unambiguous
even though lot numbers and product codes may contain `-` and `/`.
A lot is usable through its expiry date (UTC days) and expired the day after.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Literal

import msgspec

from immunreg.contracts.envelope import Event
from immunreg.contracts.inventory import (
    CONTEXT,
    LotExpired,
    LotRecalled,
    LotReceived,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentReceived,
)
from immunreg.domain import Aggregate, Conflict, NotFound, RuleViolation
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

NATIONAL_WAREHOUSE = "WH-NATIONAL"
LOCATION_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$"
LOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
SHIPMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_ID_LENGTH = 40
MAX_SHIPMENT_ID_LENGTH = 64  # room for a UUID

Storage = Literal["ultra_cold", "frozen", "refrigerated"]
LotStatus = Literal["none", "active", "recalled", "expired"]
ShipmentStatus = Literal["none", "created", "dispatched", "received"]


def lot_stream(lot_number: str) -> str:
    """The stream of a lot's lifecycle."""
    return f"lot-{lot_number}"


def shipment_stream(shipment_id: str) -> str:
    """The stream of a shipment's lifecycle."""
    return f"shipment-{shipment_id}"


def stock_stream(location_id: str, lot_number: str) -> str:
    """The ledger of one lot at one location."""
    return f"stock-{location_id}:{lot_number}"


def level_stream(location_id: str, product_code: str) -> str:
    """Where StockLevelChanged of one product at one location is recorded."""
    return f"level-{location_id}:{product_code}"


def is_expired(expiry_date: date | None, today: date) -> bool:
    """A lot may be used through its expiry date, not after."""
    return expiry_date is not None and today > expiry_date


# --- ids in a path, and who may see what ------------------------------------------

_LOCATION = re.compile(LOCATION_PATTERN)
_LOT = re.compile(LOT_PATTERN)
_SHIPMENT = re.compile(SHIPMENT_ID_PATTERN)


def is_location_id(value: str) -> bool:
    """Could name a site or warehouse (anything else names nothing: 404, not 422)."""
    return len(value) <= MAX_ID_LENGTH and _LOCATION.match(value) is not None


def is_lot_number(value: str) -> bool:
    """Could be a lot number."""
    return len(value) <= MAX_ID_LENGTH and _LOT.match(value) is not None


def is_shipment_id(value: str) -> bool:
    """Could be a shipment id (longer than other ids: it may be a UUID)."""
    return len(value) <= MAX_SHIPMENT_ID_LENGTH and _SHIPMENT.match(value) is not None


def may_see_shipment(
    *, site_staff: bool, site_id: str | None, from_location: str, to_location: str
) -> bool:
    """Site staff see only shipments leaving or reaching their own site; other readers all."""
    return not site_staff or site_id in (from_location, to_location)


# --- Lot ---------------------------------------------------------------------------


class Lot(Struct):
    """A manufacturer's lot as received at the national level."""

    lot_number: str = ""
    product_code: str = ""
    manufacturer_code: str = ""
    expiry_date: date | None = None
    doses_per_vial: int = 0
    storage: str = ""
    location_id: str = ""
    vials: int = 0
    status: LotStatus = "none"
    recall_reason: str | None = None


class ReceiveLot(Struct):
    """Logistics take a manufacturer's lot into a warehouse."""

    lot_number: str
    product_code: str
    manufacturer_code: str
    expiry_date: date
    vials: int
    today: date
    doses_per_vial: int | None = None
    storage: Storage | None = None
    location_id: str = NATIONAL_WAREHOUSE


class RecallLot(Struct):
    """No further dose may come from the lot; `locations` are told."""

    reason: str
    locations: tuple[str, ...] = ()


class ExpireLot(Struct):
    """The lot's expiry date has passed (a no-op before then)."""

    today: date


LotCommand = ReceiveLot | RecallLot | ExpireLot


def decide_lot(state: Lot, command: LotCommand) -> Sequence[Event]:
    """Receive, recall or expire a lot."""
    if isinstance(command, ReceiveLot):
        return _receive_lot(state, command)
    if state.status == "none":
        raise NotFound("lot_not_found", "no lot with this number has been received")
    if isinstance(command, RecallLot):
        if state.status == "recalled":
            raise Conflict("lot_already_recalled", "the lot is already recalled")
        return [
            LotRecalled(
                lot_number=state.lot_number,
                product_code=state.product_code,
                reason=command.reason,
                locations=list(command.locations),
            )
        ]
    if state.status != "active" or not is_expired(state.expiry_date, command.today):
        return []
    assert state.expiry_date is not None
    return [
        LotExpired(
            lot_number=state.lot_number,
            product_code=state.product_code,
            expiry_date=state.expiry_date,
        )
    ]


def _receive_lot(state: Lot, command: ReceiveLot) -> Sequence[Event]:
    if state.status != "none":
        raise Conflict("lot_already_received", f"lot {state.lot_number} was already received")
    product = vaccine_catalog().get(command.product_code)
    if product is None:
        known = ", ".join(vaccine_catalog().codes())
        raise RuleViolation(
            "unknown_product", f"not a product of the catalog ({known})", field="product_code"
        )
    if command.manufacturer_code != product.manufacturer_code:
        raise RuleViolation(
            "manufacturer_mismatch",
            f"{product.name} is made by {product.manufacturer_code}",
            field="manufacturer_code",
        )
    doses_per_vial = command.doses_per_vial or product.doses_per_vial
    if doses_per_vial != product.doses_per_vial:
        raise RuleViolation(
            "doses_per_vial_mismatch",
            f"a vial of {product.name} holds {product.doses_per_vial} doses in the catalog",
            field="doses_per_vial",
        )
    if is_expired(command.expiry_date, command.today):
        raise RuleViolation(
            "expired_on_arrival", "the lot's expiry date has passed", field="expiry_date"
        )
    return [
        LotReceived(
            lot_number=command.lot_number,
            product_code=product.product_code,
            manufacturer_code=product.manufacturer_code,
            expiry_date=command.expiry_date,
            vials=command.vials,
            doses_per_vial=doses_per_vial,
            storage=command.storage or product.storage,
            location_id=command.location_id,
        )
    ]


def evolve_lot(state: Lot, event: Event) -> Lot:
    """Apply a lot event."""
    if isinstance(event, LotReceived):
        return Lot(
            lot_number=event.lot_number,
            product_code=event.product_code,
            manufacturer_code=event.manufacturer_code,
            expiry_date=event.expiry_date,
            doses_per_vial=event.doses_per_vial,
            storage=event.storage,
            location_id=event.location_id,
            vials=event.vials,
            status="active",
        )
    if isinstance(event, LotRecalled):
        return msgspec.structs.replace(state, status="recalled", recall_reason=event.reason)
    if isinstance(event, LotExpired) and state.status == "active":
        return msgspec.structs.replace(state, status="expired")
    return state


LOT = Aggregate[Lot, LotCommand](
    stream_type="Lot",
    context=CONTEXT,
    initial=Lot,
    evolve=evolve_lot,
    decide=decide_lot,
    state_type=Lot,
)


# --- Shipment ----------------------------------------------------------------------


class Shipment(Struct):
    """Vials of one lot on their way from one location to another."""

    shipment_id: str = ""
    lot_number: str = ""
    product_code: str = ""
    from_location: str = ""
    to_location: str = ""
    vials: int = 0
    status: ShipmentStatus = "none"
    vials_received: int = 0
    vials_lost: int = 0
    loss_reason: str | None = None


class CreateShipment(Struct):
    """Plan a shipment (vials leave only when it is dispatched)."""

    shipment_id: str
    lot_number: str
    product_code: str
    from_location: str
    to_location: str
    vials: int


class DispatchShipment(Struct):
    """The vials leave `from_location` (the Stock there decides whether they can)."""


class ReceiveShipment(Struct):
    """The vials arrive; those not received are recorded as lost in transit."""

    vials_received: int
    vials_lost: int | None = None
    loss_reason: str | None = None


ShipmentCommand = CreateShipment | DispatchShipment | ReceiveShipment


def decide_shipment(state: Shipment, command: ShipmentCommand) -> Sequence[Event]:
    """Create, dispatch or receive a shipment."""
    if isinstance(command, CreateShipment):
        if state.status != "none":
            raise Conflict("shipment_exists", f"shipment {state.shipment_id} already exists")
        if command.from_location == command.to_location:
            raise RuleViolation(
                "same_location", "a shipment must go to another location", field="to_location"
            )
        return [
            ShipmentCreated(
                shipment_id=command.shipment_id,
                lot_number=command.lot_number,
                product_code=command.product_code,
                from_location=command.from_location,
                to_location=command.to_location,
                vials=command.vials,
            )
        ]
    if state.status == "none":
        raise NotFound("shipment_not_found", "no shipment with this id")
    if isinstance(command, DispatchShipment):
        if state.status != "created":
            raise Conflict("shipment_already_dispatched", "the shipment was already dispatched")
        return [
            ShipmentDispatched(
                shipment_id=state.shipment_id,
                lot_number=state.lot_number,
                product_code=state.product_code,
                from_location=state.from_location,
                to_location=state.to_location,
                vials=state.vials,
            )
        ]
    return _receive_shipment(state, command)


def _receive_shipment(state: Shipment, command: ReceiveShipment) -> Sequence[Event]:
    if state.status == "created":
        raise Conflict("shipment_not_dispatched", "the shipment has not been dispatched")
    if state.status == "received":
        raise Conflict("shipment_already_received", "the shipment was already received")
    received = command.vials_received
    if received > state.vials:
        raise RuleViolation(
            "more_than_shipped",
            f"the shipment carried {state.vials} vials",
            field="vials_received",
        )
    lost = state.vials - received if command.vials_lost is None else command.vials_lost
    if received + lost != state.vials:
        raise RuleViolation(
            "vials_unaccounted",
            f"received and lost vials must add up to the {state.vials} shipped",
            field="vials_lost",
        )
    return [
        ShipmentReceived(
            shipment_id=state.shipment_id,
            lot_number=state.lot_number,
            product_code=state.product_code,
            to_location=state.to_location,
            vials_received=received,
            vials_lost=lost,
            from_location=state.from_location,
            loss_reason=(command.loss_reason or "lost_in_transit") if lost else None,
        )
    ]


def evolve_shipment(state: Shipment, event: Event) -> Shipment:
    """Apply a shipment event."""
    if isinstance(event, ShipmentCreated):
        return Shipment(
            shipment_id=event.shipment_id,
            lot_number=event.lot_number,
            product_code=event.product_code,
            from_location=event.from_location,
            to_location=event.to_location,
            vials=event.vials,
            status="created",
        )
    if isinstance(event, ShipmentDispatched):
        return msgspec.structs.replace(state, status="dispatched")
    if isinstance(event, ShipmentReceived):
        return msgspec.structs.replace(
            state,
            status="received",
            vials_received=event.vials_received,
            vials_lost=event.vials_lost,
            loss_reason=event.loss_reason,
        )
    return state


SHIPMENT = Aggregate[Shipment, ShipmentCommand](
    stream_type="Shipment",
    context=CONTEXT,
    initial=Shipment,
    evolve=evolve_shipment,
    decide=decide_shipment,
    state_type=Shipment,
)
