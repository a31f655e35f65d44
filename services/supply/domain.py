"""Supply's pure decisions: contracts and their deliveries, allocation runs, replenishment.

Stream ids:
    contract-<contract_id>                 Contract: recorded, deliveries received
    allocation-run-<run_id>                AllocationRun: requested -> proposed | failed
                                           -> decided
    replenishment-<site_id>:<product>      Replenishment: alert raised / cleared

A contract's delivered doses count against its tranches in order of expected date
(the earliest tranche is filled first); a tranche is late when its date has passed
and it is not wholly delivered. Lots a delivery brings are inventory's to receive:
the DeliveryReceived event carries them, and inventory reacts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date
from typing import Literal

import msgspec

from immunreg.contracts.envelope import Event
from immunreg.contracts.supply import (
    CONTEXT,
    AllocationApproved,
    AllocationProposed,
    AllocationRunDecided,
    AllocationRunFailed,
    AllocationRunRequested,
    ApprovedShipment,
    ContractRecorded,
    DeliveredLot,
    DeliveryReceived,
    ProductBalance,
    ProposedShipment,
    ReplenishmentAlertCleared,
    ReplenishmentAlertRaised,
    Tranche,
)
from immunreg.domain import Aggregate, Conflict, NotFound, RuleViolation
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

NATIONAL_WAREHOUSE = "WH-NATIONAL"
# Inventory's rules for the ids it is given: a delivery's lots and an approval's
# shipments must pass them there too.
LOCATION_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$"
LOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_ID_LENGTH = 40  # a run's shipment ids are `<run_id>-<line>`: inventory takes 64
MAX_HORIZON_DAYS = 28
# Lines per event: a national run proposes thousands; these keep each event a few
# hundred kB, well under Kafka's 1 MB message limit.
PROPOSED_PER_EVENT = 500
APPROVED_PER_EVENT = 500

RunStatus = Literal["none", "requested", "proposed", "failed", "decided"]
Decision = Literal["approve", "reject", "edit"]

_ID = re.compile(ID_PATTERN)


def contract_stream(contract_id: str) -> str:
    """The stream of a supply contract."""
    return f"contract-{contract_id}"


def run_stream(run_id: str) -> str:
    """The stream of an allocation run."""
    return f"allocation-run-{run_id}"


def replenishment_stream(site_id: str, product_code: str) -> str:
    """The stream of one site's supply of one product."""
    return f"replenishment-{site_id}:{product_code}"


def is_id(value: str) -> bool:
    """Could be a contract, delivery or run id (anything else names nothing: 404)."""
    return 0 < len(value) <= MAX_ID_LENGTH and _ID.match(value) is not None


def shipment_id(run_id: str, line: int) -> str:
    """The shipment an approved line becomes: deterministic, so a redelivery makes one."""
    return f"{run_id}-{line}"


# --- Contract ------------------------------------------------------------------------


class Contract(Struct):
    """A supply contract with a manufacturer and what has arrived against it."""

    contract_id: str = ""
    manufacturer_code: str = ""
    product_code: str = ""
    total_doses: int = 0
    tranches: tuple[Tranche, ...] = ()
    reference: str = ""
    delivered_doses: int = 0
    deliveries: tuple[DeliveryReceived, ...] = ()
    lot_numbers: frozenset[str] = frozenset()


class RecordContract(Struct):
    contract_id: str
    manufacturer_code: str
    product_code: str
    total_doses: int
    tranches: tuple[Tranche, ...]
    reference: str = ""


class ReceiveDelivery(Struct):
    delivery_id: str
    location_id: str
    received_on: date
    lots: tuple[DeliveredLot, ...]


ContractCommand = RecordContract | ReceiveDelivery


def decide_contract(state: Contract, command: ContractCommand) -> Sequence[Event]:
    """Record a contract, or receive a delivery against it."""
    if isinstance(command, RecordContract):
        if state.contract_id:
            raise Conflict("contract_exists", f"contract {state.contract_id} is already recorded")
        return [_record(command)]
    if not state.contract_id:
        raise NotFound("contract_not_found", "no contract with this id")
    return [_deliver(state, command)]


def _record(command: RecordContract) -> ContractRecorded:
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
    ids = [t.tranche_id for t in command.tranches]
    if len(set(ids)) != len(ids):
        raise RuleViolation("duplicate_tranche", "tranche ids must differ", field="tranches")
    if sum(t.doses for t in command.tranches) != command.total_doses:
        raise RuleViolation(
            "tranches_do_not_add_up",
            f"the tranches' doses must add up to total_doses ({command.total_doses})",
            field="tranches",
        )
    tranches = sorted(command.tranches, key=lambda t: (t.expected_date, t.tranche_id))
    return ContractRecorded(
        contract_id=command.contract_id,
        manufacturer_code=command.manufacturer_code,
        product_code=command.product_code,
        total_doses=command.total_doses,
        tranches=tranches,
        reference=command.reference,
    )


def _deliver(state: Contract, command: ReceiveDelivery) -> DeliveryReceived:
    if any(d.delivery_id == command.delivery_id for d in state.deliveries):
        raise Conflict("delivery_already_received", "this delivery was already received")
    product = vaccine_catalog()[state.product_code]
    numbers = [lot.lot_number for lot in command.lots]
    for index, lot in enumerate(command.lots):
        where = f"lots[{index}]"
        if lot.lot_number in state.lot_numbers or numbers.count(lot.lot_number) > 1:
            raise Conflict(
                "lot_already_received",
                f"lot {lot.lot_number} is already part of this contract",
                field=f"{where}.lot_number",
            )
        if lot.doses_per_vial != product.doses_per_vial:
            raise RuleViolation(
                "doses_per_vial_mismatch",
                f"a vial of {product.name} holds {product.doses_per_vial} doses in the catalog",
                field=f"{where}.doses_per_vial",
            )
        if lot.expiry_date <= command.received_on:
            raise RuleViolation(
                "expired_on_arrival",
                "the lot's expiry date must be after the day it is received",
                field=f"{where}.expiry_date",
            )
    doses = sum(lot.vials * lot.doses_per_vial for lot in command.lots)
    outstanding = state.total_doses - state.delivered_doses
    if doses > outstanding:
        raise RuleViolation(
            "over_delivery",
            f"the delivery holds {doses} doses; the contract has {outstanding} outstanding",
            field="lots",
        )
    return DeliveryReceived(
        contract_id=state.contract_id,
        delivery_id=command.delivery_id,
        product_code=state.product_code,
        manufacturer_code=state.manufacturer_code,
        location_id=command.location_id,
        received_on=command.received_on,
        lots=list(command.lots),
        doses=doses,
    )


def evolve_contract(state: Contract, event: Event) -> Contract:
    """Apply a contract event."""
    if isinstance(event, ContractRecorded):
        return Contract(
            contract_id=event.contract_id,
            manufacturer_code=event.manufacturer_code,
            product_code=event.product_code,
            total_doses=event.total_doses,
            tranches=tuple(event.tranches),
            reference=event.reference,
        )
    if isinstance(event, DeliveryReceived):
        return msgspec.structs.replace(
            state,
            delivered_doses=state.delivered_doses + event.doses,
            deliveries=(*state.deliveries, event),
            lot_numbers=state.lot_numbers | {lot.lot_number for lot in event.lots},
        )
    return state


CONTRACT = Aggregate[Contract, ContractCommand](
    stream_type="Contract",
    context=CONTEXT,
    initial=Contract,
    evolve=evolve_contract,
    decide=decide_contract,
    state_type=Contract,
)


class TranchePosition(Struct):
    tranche_id: str
    expected_date: date
    doses: int
    delivered: int
    outstanding: int
    late: bool


class ContractPosition(Struct):
    delivered: int
    outstanding: int
    late: int
    tranches: list[TranchePosition]


def contract_position(state: Contract, today: date) -> ContractPosition:
    """Delivered, outstanding and late doses; deliveries fill tranches earliest first."""
    left = state.delivered_doses
    tranches: list[TranchePosition] = []
    for tranche in state.tranches:
        delivered = min(left, tranche.doses)
        left -= delivered
        outstanding = tranche.doses - delivered
        tranches.append(
            TranchePosition(
                tranche_id=tranche.tranche_id,
                expected_date=tranche.expected_date,
                doses=tranche.doses,
                delivered=delivered,
                outstanding=outstanding,
                late=outstanding > 0 and tranche.expected_date < today,
            )
        )
    return ContractPosition(
        delivered=state.delivered_doses,
        outstanding=state.total_doses - state.delivered_doses,
        late=sum(t.outstanding for t in tranches if t.late),
        tranches=tranches,
    )


# --- AllocationRun -------------------------------------------------------------------


class LineDecision(Struct):
    line: int
    decision: Decision
    vials: int | None = None  # for "edit"


class AllocationRun(Struct):
    """A planning run: what was asked, what it proposed, and what a person decided."""

    run_id: str = ""
    status: RunStatus = "none"
    from_day: date | None = None
    horizon_days: int = 0
    requested_by: str = ""
    lines: tuple[ProposedShipment, ...] = ()
    balances: tuple[ProductBalance, ...] = ()
    failure: str | None = None
    approved: tuple[ApprovedShipment, ...] = ()
    rejected: int = 0
    decided_by: str = ""


class RequestRun(Struct):
    run_id: str
    from_day: date
    horizon_days: int
    today: date
    requested_by: str = ""


class RecordProposal(Struct):
    """The planner's result, per product (every product of the plan, even with no line)."""

    lines: tuple[ProposedShipment, ...]
    balances: tuple[ProductBalance, ...]


class FailRun(Struct):
    reason: str


class DecideRun(Struct):
    """Per-line decisions; lines not named take `others`."""

    decisions: tuple[LineDecision, ...]
    others: Literal["approve", "reject"] = "reject"
    decided_by: str = ""


RunCommand = RequestRun | RecordProposal | FailRun | DecideRun


def run_violations(from_day: date, horizon_days: int, today: date) -> list[tuple[str, str]]:
    """(field, reason) for every bad parameter of a run request."""
    found: list[tuple[str, str]] = []
    if from_day < today:
        found.append(("from_day", "must be today or later"))
    if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
        found.append(("horizon_days", f"must be between 1 and {MAX_HORIZON_DAYS}"))
    return found


def decide_run(state: AllocationRun, command: RunCommand) -> Sequence[Event]:
    """Request, record the proposal of, fail, or decide an allocation run."""
    if isinstance(command, RequestRun):
        if state.status != "none":
            raise Conflict("run_exists", f"allocation run {state.run_id} exists")
        problems = run_violations(command.from_day, command.horizon_days, command.today)
        if problems:
            field, reason = problems[0]
            raise RuleViolation("invalid_run", reason, field=field)
        return [
            AllocationRunRequested(
                run_id=command.run_id,
                from_day=command.from_day,
                horizon_days=command.horizon_days,
                requested_by=command.requested_by,
            )
        ]
    if state.status == "none":
        raise NotFound("run_not_found", "no allocation run with this id")
    if isinstance(command, RecordProposal | FailRun):
        if state.status != "requested":
            return []  # planned already (another replica, or a retry after a crash)
        if isinstance(command, FailRun):
            return [AllocationRunFailed(run_id=state.run_id, reason=command.reason)]
        events: list[Event] = []
        for balance in command.balances:
            lines = [x for x in command.lines if x.product_code == balance.product_code]
            for start in range(0, max(len(lines), 1), PROPOSED_PER_EVENT):
                events.append(
                    AllocationProposed(
                        run_id=state.run_id,
                        product_code=balance.product_code,
                        lines=lines[start : start + PROPOSED_PER_EVENT],
                        balance=balance if start == 0 else None,
                    )
                )
        return events
    return _decide(state, command)


def _decide(state: AllocationRun, command: DecideRun) -> list[Event]:
    if state.status == "decided":
        raise Conflict("run_already_decided", "this run's lines were already decided")
    if state.status != "proposed":
        raise Conflict("run_not_proposed", f"the run is {state.status}, not proposed")
    lines = {line.line: line for line in state.lines}
    decided: dict[int, LineDecision] = {}
    for index, decision in enumerate(command.decisions):
        where = f"decisions[{index}]"
        line = lines.get(decision.line)
        if line is None:
            raise RuleViolation("unknown_line", "the run has no such line", field=f"{where}.line")
        if decision.line in decided:
            raise RuleViolation("line_twice", "a line is decided once", field=f"{where}.line")
        if decision.decision == "edit":
            most = line.vials + line.why.leaves_behind
            if decision.vials is None or not 1 <= decision.vials <= most:
                raise RuleViolation(
                    "invalid_vials",
                    f"an edited line ships between 1 and {most} vials (the source's stock)",
                    field=f"{where}.vials",
                )
        elif decision.vials is not None:
            raise RuleViolation(
                "vials_without_edit", "vials are given only to edit a line", field=f"{where}.vials"
            )
        decided[decision.line] = decision
    approved: list[ApprovedShipment] = []
    for number, line in sorted(lines.items()):
        chosen = decided.get(number)
        action = chosen.decision if chosen else command.others
        if action == "reject":
            continue
        vials = chosen.vials if chosen and chosen.vials is not None else line.vials
        approved.append(
            ApprovedShipment(
                line=number,
                shipment_id=shipment_id(state.run_id, number),
                lot_number=line.lot_number,
                product_code=line.product_code,
                from_location=line.from_location,
                to_location=line.to_location,
                vials=vials,
                edited=action == "edit",
            )
        )
    events: list[Event] = [
        AllocationApproved(run_id=state.run_id, shipments=approved[i : i + APPROVED_PER_EVENT])
        for i in range(0, len(approved), APPROVED_PER_EVENT)
    ]
    events.append(
        AllocationRunDecided(
            run_id=state.run_id,
            approved=len(approved),
            edited=sum(1 for a in approved if a.edited),
            rejected=len(lines) - len(approved),
            decided_by=command.decided_by,
        )
    )
    return events


def evolve_run(state: AllocationRun, event: Event) -> AllocationRun:
    """Apply an allocation-run event."""
    if isinstance(event, AllocationRunRequested):
        return AllocationRun(
            run_id=event.run_id,
            status="requested",
            from_day=event.from_day,
            horizon_days=event.horizon_days,
            requested_by=event.requested_by,
        )
    if isinstance(event, AllocationProposed):
        return msgspec.structs.replace(
            state,
            status="proposed",
            lines=tuple(sorted((*state.lines, *event.lines), key=lambda x: x.line)),
            balances=(*state.balances, *([event.balance] if event.balance else [])),
        )
    if isinstance(event, AllocationRunFailed):
        return msgspec.structs.replace(state, status="failed", failure=event.reason)
    if isinstance(event, AllocationApproved):
        return msgspec.structs.replace(state, approved=(*state.approved, *event.shipments))
    if isinstance(event, AllocationRunDecided):
        return msgspec.structs.replace(
            state, status="decided", rejected=event.rejected, decided_by=event.decided_by
        )
    return state


ALLOCATION_RUN = Aggregate[AllocationRun, RunCommand](
    stream_type="AllocationRun",
    context=CONTEXT,
    initial=AllocationRun,
    evolve=evolve_run,
    decide=decide_run,
    state_type=AllocationRun,
)


# --- Replenishment -------------------------------------------------------------------


class Replenishment(Struct):
    """Whether a site's supply of a product is on alert."""

    site_id: str = ""
    product_code: str = ""
    alert: bool = False
    days_of_supply: float | None = None


class ObserveSupply(Struct):
    """What a site holds and will use of a product, as of now."""

    site_id: str
    product_code: str
    doses_on_hand: int  # at the site and on their way to it
    daily_demand: float  # booked doses a day over the coming days
    threshold_days: float


def days_of_supply(doses_on_hand: int, daily_demand: float) -> float | None:
    """How many days the doses last at the booked rate (None: nothing is booked)."""
    if daily_demand <= 0:
        return None
    return round(max(doses_on_hand, 0) / daily_demand, 2)


def decide_replenishment(state: Replenishment, command: ObserveSupply) -> Sequence[Event]:
    """Raise an alert when days of supply fall below the threshold; clear it when not."""
    days = days_of_supply(command.doses_on_hand, command.daily_demand)
    short = days is not None and days < command.threshold_days
    if short and not state.alert:
        assert days is not None
        return [
            ReplenishmentAlertRaised(
                site_id=command.site_id,
                product_code=command.product_code,
                days_of_supply=days,
                threshold_days=command.threshold_days,
                doses_on_hand=command.doses_on_hand,
                daily_demand=round(command.daily_demand, 2),
            )
        ]
    if state.alert and not short:
        return [
            ReplenishmentAlertCleared(
                site_id=command.site_id,
                product_code=command.product_code,
                days_of_supply=days,
                threshold_days=command.threshold_days,
            )
        ]
    return []


def evolve_replenishment(state: Replenishment, event: Event) -> Replenishment:
    """Apply a replenishment event."""
    if isinstance(event, ReplenishmentAlertRaised):
        return Replenishment(
            site_id=event.site_id,
            product_code=event.product_code,
            alert=True,
            days_of_supply=event.days_of_supply,
        )
    if isinstance(event, ReplenishmentAlertCleared):
        return Replenishment(
            site_id=event.site_id,
            product_code=event.product_code,
            alert=False,
            days_of_supply=event.days_of_supply,
        )
    return state


REPLENISHMENT = Aggregate[Replenishment, ObserveSupply](
    stream_type="Replenishment",
    context=CONTEXT,
    initial=Replenishment,
    evolve=evolve_replenishment,
    decide=decide_replenishment,
    state_type=Replenishment,
)
