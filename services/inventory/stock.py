"""The Stock aggregate: one lot at one location (`stock-<location>:<lot>`).

It holds the capacity invariants: vials leave only if they are there, a vial
is opened only from a usable lot, doses come out of open vials. A dose that was
administered is never refused: when the count says it could not have been
given, the ledger records a StockDiscrepancyDetected instead of going negative.

Open vials are kept in order of `usable_until`; every decision that touches
them first expires the ones past their usable time (as of the decision's
clock), so `evolve` can always take doses from the first open vial.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal

import msgspec

from immunreg.contracts.envelope import Event
from immunreg.contracts.inventory import (
    CONTEXT,
    DoseConsumed,
    DosesWasted,
    OpenedVialExpired,
    StockDiscrepancyDetected,
    StockDispatched,
    StockExpired,
    StockRecalled,
    StockReceived,
    VialOpened,
)
from immunreg.domain import Aggregate, Conflict, NotFound
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

from .domain import Lot, LotStatus, is_expired

StockStatus = Literal["none", "active", "recalled", "expired"]
WasteReason = Literal[
    "vial_broken", "dropped", "contaminated", "cold_chain_break", "drawing_error", "other"
]
DiscrepancyReason = Literal[
    "lot_not_held", "lot_recalled", "lot_expired", "product_mismatch", "no_doses_left"
]
DEFAULT_OPENED_VIAL_HOURS = 6


class OpenVial(msgspec.Struct, frozen=True):
    """A punctured vial: doses left, and until when they may be used."""

    doses_left: int
    usable_until: datetime


class Stock(Struct):
    """What one location holds of one lot."""

    location_id: str = ""
    lot_number: str = ""
    product_code: str = ""
    doses_per_vial: int = 0
    expiry_date: date | None = None
    sealed_vials: int = 0
    open_vials: tuple[OpenVial, ...] = ()
    status: StockStatus = "none"
    doses_consumed: int = 0
    doses_wasted: int = 0
    discrepancies: int = 0
    dose_ids: frozenset[str] = frozenset()


class AddVials(Struct):
    """Sealed vials arrive (a lot received here, or a shipment); `lot_status` as of now."""

    location_id: str
    lot_number: str
    product_code: str
    doses_per_vial: int
    expiry_date: date
    vials: int
    lot_status: LotStatus = "active"
    recall_reason: str = ""
    shipment_id: str | None = None


def arriving(
    lot: Lot, location_id: str, vials: int, *, today: date, shipment_id: str | None = None
) -> AddVials:
    """Vials of `lot` arriving at a location, with the lot's status as of `today`."""
    assert lot.expiry_date is not None
    status = lot.status
    if status == "active" and is_expired(lot.expiry_date, today):
        status = "expired"
    return AddVials(
        location_id=location_id,
        lot_number=lot.lot_number,
        product_code=lot.product_code,
        doses_per_vial=lot.doses_per_vial,
        expiry_date=lot.expiry_date,
        vials=vials,
        lot_status=status,
        recall_reason=lot.recall_reason or "",
        shipment_id=shipment_id,
    )


class TakeVials(Struct):
    """Sealed vials leave for a shipment."""

    shipment_id: str
    to_location: str
    vials: int
    today: date


class OpenVials(Struct):
    """Open one sealed vial."""

    now: datetime


class WasteDoses(Struct):
    """Doses lost (with a reason): from open vials first, then opening sealed ones."""

    doses: int
    reason: WasteReason
    now: datetime


class ConsumeDose(Struct):
    """A dose was administered from this lot here at `at` (a fact, never refused)."""

    dose_id: str
    site_id: str
    lot_number: str
    product_code: str
    at: datetime


class ExpireOpenVials(Struct):
    """Record the loss of open vials past their usable time."""

    now: datetime


class RecallStock(Struct):
    """The lot was recalled: this location's vials may no longer be used or shipped."""

    reason: str


class ExpireStock(Struct):
    """The lot passed its expiry date (a no-op before then)."""

    today: date


StockCommand = (
    AddVials
    | TakeVials
    | OpenVials
    | WasteDoses
    | ConsumeDose
    | ExpireOpenVials
    | RecallStock
    | ExpireStock
)


# --- questions about a stock (pure) ------------------------------------------------


def opened_vial_hours(product_code: str) -> int:
    """How long an opened vial of the product may be used (catalog)."""
    product = vaccine_catalog().get(product_code)
    return product.opened_vial_hours if product else DEFAULT_OPENED_VIAL_HOURS


def open_doses(state: Stock, at: datetime | None = None) -> int:
    """Doses left in open vials (only those still usable at `at`, when given)."""
    return sum(v.doses_left for v in state.open_vials if at is None or v.usable_until > at)


def is_usable(state: Stock, today: date) -> bool:
    """Whether doses may come from this stock today."""
    return state.status == "active" and not is_expired(state.expiry_date, today)


def usable_doses(state: Stock, at: datetime) -> int:
    """Doses this location can still give from this lot at `at`."""
    if not is_usable(state, at.date()):
        return 0
    return state.sealed_vials * state.doses_per_vial + open_doses(state, at)


def next_vial_expiry(state: Stock) -> datetime | None:
    """When the next open vial runs out of usable time."""
    return state.open_vials[0].usable_until if state.open_vials else None


def check_usable(state: Stock, today: date) -> None:
    """Refuse to take anything from a lot that is not held, recalled or expired."""
    if state.status == "none":
        raise NotFound("stock_not_found", "this location holds no vials of this lot")
    if state.status == "recalled":
        raise Conflict("lot_recalled", f"lot {state.lot_number} has been recalled")
    if state.status == "expired" or is_expired(state.expiry_date, today):
        raise Conflict("lot_expired", f"lot {state.lot_number} has expired")


def check_can_ship(state: Stock, vials: int, today: date) -> None:
    """Refuse a shipment of more sealed vials than the location holds, or of an unusable lot."""
    if state.status == "none":
        raise Conflict(
            "insufficient_stock", "the location holds no vials of this lot", field="vials"
        )
    check_usable(state, today)
    if state.sealed_vials < vials:
        raise Conflict(
            "insufficient_stock",
            f"{state.location_id} holds {state.sealed_vials} sealed vials of lot "
            f"{state.lot_number}, fewer than the {vials} requested",
            field="vials",
        )


# --- decisions ---------------------------------------------------------------------


def decide_stock(state: Stock, command: StockCommand) -> Sequence[Event]:
    """What happens to the stock of one lot at one location."""
    if isinstance(command, AddVials):
        return _add_vials(state, command)
    if isinstance(command, ConsumeDose):
        return _consume(state, command)
    if isinstance(command, ExpireOpenVials):
        return _expire_open_vials(state, command.now)
    if isinstance(command, RecallStock):
        if state.status not in ("active", "expired"):
            return []
        return [_recalled(state, command.reason)]
    if isinstance(command, ExpireStock):
        if state.status != "active" or not is_expired(state.expiry_date, command.today):
            return []
        assert state.expiry_date is not None
        return [
            StockExpired(
                location_id=state.location_id,
                lot_number=state.lot_number,
                product_code=state.product_code,
                expiry_date=state.expiry_date,
                sealed_vials=state.sealed_vials,
                open_doses=open_doses(state),
            )
        ]
    if isinstance(command, TakeVials):
        check_can_ship(state, command.vials, command.today)
        return [
            StockDispatched(
                location_id=state.location_id,
                lot_number=state.lot_number,
                product_code=state.product_code,
                vials=command.vials,
                shipment_id=command.shipment_id,
                to_location=command.to_location,
            )
        ]
    if isinstance(command, OpenVials):
        check_usable(state, command.now.date())
        if state.sealed_vials < 1:
            raise Conflict("no_sealed_vials", "no sealed vial of this lot is left here")
        return [*_expire_open_vials(state, command.now), _opened(state, command.now)]
    return _waste(state, command)


def _add_vials(state: Stock, command: AddVials) -> list[Event]:
    events: list[Event] = []
    if command.vials > 0:
        events.append(
            StockReceived(
                location_id=command.location_id,
                lot_number=command.lot_number,
                product_code=command.product_code,
                vials=command.vials,
                doses_per_vial=command.doses_per_vial,
                expiry_date=command.expiry_date,
                shipment_id=command.shipment_id,
            )
        )
    after = _evolve_all(state, events)
    if after.status == "active" and command.lot_status == "recalled":
        events.append(_recalled(after, command.recall_reason))
    elif after.status == "active" and command.lot_status == "expired":
        events.append(
            StockExpired(
                location_id=after.location_id,
                lot_number=after.lot_number,
                product_code=after.product_code,
                expiry_date=command.expiry_date,
                sealed_vials=after.sealed_vials,
                open_doses=open_doses(after),
            )
        )
    return events


def _consume(state: Stock, command: ConsumeDose) -> list[Event]:
    if command.dose_id in state.dose_ids:
        return []  # the same dose again: already counted (or already flagged)
    reason: DiscrepancyReason | None = None
    if state.status == "none":
        reason = "lot_not_held"
    elif state.status == "recalled":
        reason = "lot_recalled"
    elif state.status == "expired" or is_expired(state.expiry_date, command.at.date()):
        reason = "lot_expired"
    elif command.product_code != state.product_code:
        reason = "product_mismatch"
    events: list[Event] = []
    if reason is None:
        events = _expire_open_vials(state, command.at)
        current = _evolve_all(state, events)
        if not current.open_vials and current.sealed_vials > 0:
            events.append(_opened(current, command.at))
        elif not current.open_vials:
            reason = "no_doses_left"
    if reason is not None:
        return [
            StockDiscrepancyDetected(
                site_id=command.site_id,
                lot_number=command.lot_number,
                product_code=command.product_code,
                dose_id=command.dose_id,
                reason=reason,
            )
        ]
    events.append(
        DoseConsumed(
            site_id=state.location_id,
            lot_number=state.lot_number,
            product_code=state.product_code,
            dose_id=command.dose_id,
        )
    )
    return events


def _waste(state: Stock, command: WasteDoses) -> list[Event]:
    check_usable(state, command.now.date())
    events: list[Event] = _expire_open_vials(state, command.now)
    current = _evolve_all(state, events)
    available = open_doses(current) + current.sealed_vials * current.doses_per_vial
    if command.doses > available:
        raise Conflict(
            "insufficient_doses",
            f"only {available} doses of this lot are left here",
            field="doses",
        )
    missing = command.doses - open_doses(current)
    while missing > 0:
        opened = _opened(current, command.now)
        events.append(opened)
        current = evolve_stock(current, opened)
        missing -= current.doses_per_vial
    events.append(
        DosesWasted(
            site_id=state.location_id,
            lot_number=state.lot_number,
            product_code=state.product_code,
            doses=command.doses,
            reason=command.reason,
        )
    )
    return events


def _expire_open_vials(state: Stock, now: datetime) -> list[Event]:
    return [
        OpenedVialExpired(
            site_id=state.location_id,
            lot_number=state.lot_number,
            product_code=state.product_code,
            doses_lost=vial.doses_left,
            usable_until=vial.usable_until,
        )
        for vial in state.open_vials
        if vial.usable_until <= now
    ]


def _opened(state: Stock, now: datetime) -> VialOpened:
    return VialOpened(
        site_id=state.location_id,
        lot_number=state.lot_number,
        product_code=state.product_code,
        doses=state.doses_per_vial,
        usable_until=now + timedelta(hours=opened_vial_hours(state.product_code)),
    )


def _recalled(state: Stock, reason: str) -> StockRecalled:
    return StockRecalled(
        location_id=state.location_id,
        lot_number=state.lot_number,
        product_code=state.product_code,
        reason=reason,
        sealed_vials=state.sealed_vials,
        open_doses=open_doses(state),
    )


# --- evolution ---------------------------------------------------------------------


def _take_doses(vials: tuple[OpenVial, ...], doses: int) -> tuple[OpenVial, ...]:
    """Take doses from the first open vials; emptied vials are gone. Never negative."""
    left: list[OpenVial] = []
    for vial in vials:
        taken = min(doses, vial.doses_left)
        doses -= taken
        if vial.doses_left - taken > 0:
            left.append(OpenVial(vial.doses_left - taken, vial.usable_until))
    return tuple(left)


def _without(vials: tuple[OpenVial, ...], usable_until: datetime | None) -> tuple[OpenVial, ...]:
    for i, vial in enumerate(vials):
        if usable_until is None or vial.usable_until == usable_until:
            return vials[:i] + vials[i + 1 :]
    return vials


def evolve_stock(state: Stock, event: Event) -> Stock:
    """Apply a ledger event; counts never go below zero."""
    replace = msgspec.structs.replace
    if isinstance(event, StockReceived):
        if state.status == "none":
            state = replace(
                state,
                location_id=event.location_id,
                lot_number=event.lot_number,
                product_code=event.product_code,
                doses_per_vial=event.doses_per_vial,
                expiry_date=event.expiry_date,
                status="active",
            )
        return replace(state, sealed_vials=state.sealed_vials + event.vials)
    if isinstance(event, StockDispatched):
        return replace(state, sealed_vials=max(state.sealed_vials - event.vials, 0))
    if isinstance(event, VialOpened):
        vials = sorted(
            (*state.open_vials, OpenVial(event.doses, event.usable_until)),
            key=lambda v: v.usable_until,
        )
        return replace(state, sealed_vials=max(state.sealed_vials - 1, 0), open_vials=tuple(vials))
    if isinstance(event, DoseConsumed):
        return replace(
            state,
            open_vials=_take_doses(state.open_vials, 1),
            doses_consumed=state.doses_consumed + 1,
            dose_ids=state.dose_ids | {event.dose_id},
        )
    if isinstance(event, DosesWasted):
        return replace(
            state,
            open_vials=_take_doses(state.open_vials, event.doses),
            doses_wasted=state.doses_wasted + event.doses,
        )
    if isinstance(event, OpenedVialExpired):
        return replace(state, open_vials=_without(state.open_vials, event.usable_until))
    if isinstance(event, StockRecalled):
        return replace(state, status="recalled")
    if isinstance(event, StockExpired):
        return replace(state, status="expired") if state.status == "active" else state
    if isinstance(event, StockDiscrepancyDetected):
        return replace(
            state,
            location_id=state.location_id or event.site_id,
            lot_number=state.lot_number or event.lot_number,
            product_code=state.product_code or event.product_code,
            discrepancies=state.discrepancies + 1,
            dose_ids=state.dose_ids | {event.dose_id},
        )
    return state


def _evolve_all(state: Stock, events: Sequence[Event]) -> Stock:
    for event in events:
        state = evolve_stock(state, event)
    return state


STOCK = Aggregate[Stock, StockCommand](
    stream_type="Stock",
    context=CONTEXT,
    initial=Stock,
    evolve=evolve_stock,
    decide=decide_stock,
    state_type=Stock,
    snapshot_every=100,
)
