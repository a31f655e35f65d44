"""Supply's commands and reactions: every unit of work that changes a stream or a table.

Commands (app.py's routes and the service's background jobs call these; each is one
`store.transact` unit of work: the stream's events and its view row together):

    record_contract      RecordContract on contract-<id>
    receive_delivery     ReceiveDelivery on contract-<id> (inventory receives the lots)
    request_run          RequestRun on allocation-run-<id> (202: planned in the background)
    plan_run             the planner (allocation.plan, pure, in a thread) on a snapshot of
                         the read model, then RecordProposal (or FailRun)
    decide_run           DecideRun: approved lines become AllocationApproved (inventory
                         creates the shipments)
    observe              ObserveSupply on replenishment-<site>:<product>
    sweep_replenishment  observe every site-product with bookings or an open alert

Commands are written against any event store (`StreamStore[Tx]`) and any
`SupplyBooks[Tx]` (the view rows written beside the streams), so they run on
PostgreSQL in the service and in memory in the unit tests
(tests/unit/supply/test_supply_handlers.py).

A crash at any point loses nothing accepted: a run request is an event before the
202 is sent, and a run still `requested` after a restart is planned then (the
proposal is decided on the run's stream, so two replicas planning the same run append
it once: the second decides nothing).

Reactions (`build_reactions`) only keep supply's read model of other contexts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeVar

from immunreg.contracts import administration, booking, inventory, registration
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.booking import (
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
    SiteCapacityChanged,
    SiteDefined,
)
from immunreg.contracts.envelope import Envelope, Metadata
from immunreg.contracts.inventory import (
    LotExpired,
    LotRecalled,
    LotReceived,
    ShipmentCreated,
    ShipmentDispatched,
    ShipmentReceived,
    StockDispatched,
    StockExpired,
    StockLevelChanged,
    StockRecalled,
    StockReceived,
    VialOpened,
)
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from immunreg.domain import Aggregate, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.store import StreamStore
from immunreg.messaging.reactions import Reactions

from . import readmodel
from .allocation import AllocationInput, plan
from .domain import (
    ALLOCATION_RUN,
    CONTRACT,
    REPLENISHMENT,
    AllocationRun,
    Contract,
    DecideRun,
    FailRun,
    ObserveSupply,
    ReceiveDelivery,
    RecordContract,
    RecordProposal,
    Replenishment,
    RequestRun,
    contract_stream,
    days_of_supply,
    replenishment_stream,
    run_stream,
)

log = logging.getLogger(__name__)

S = TypeVar("S")
C = TypeVar("C")
Tx = TypeVar("Tx")
# The books only take the transaction handle (never return one), hence contravariant.
Tx_contra = TypeVar("Tx_contra", contravariant=True)

# The planner's input for (from_day, horizon_days, today): the read model in service.
Inputs = Callable[[date, int, date], Awaitable[AllocationInput]]


class SupplyBooks(Protocol[Tx_contra]):
    """The view rows a command writes beside its stream, in the same transaction."""

    async def save_contract(self, tx: Tx_contra, state: Contract, version: int) -> None:
        """Bring the contract's row up to its state."""
        ...

    async def save_run(self, tx: Tx_contra, state: AllocationRun, version: int) -> None:
        """Bring the run's row up to its state."""
        ...

    async def save_alert(self, tx: Tx_contra, state: Replenishment, version: int) -> None:
        """Bring the site-product's alert row up to its state."""
        ...


class PostgresBooks:
    """The service's books: its view tables (readmodel.py)."""

    async def save_contract(self, tx: Connection, state: Contract, version: int) -> None:
        await readmodel.save_contract(tx, state, version)

    async def save_run(self, tx: Connection, state: AllocationRun, version: int) -> None:
        await readmodel.save_run(tx, state, version)

    async def save_alert(self, tx: Connection, state: Replenishment, version: int) -> None:
        await readmodel.save_alert(tx, state, version)


@dataclass(frozen=True)
class Supply:
    """What supply's commands run with: the store, the books, the planner's input."""

    store: StreamStore[Any]
    books: SupplyBooks[Any]
    inputs: Inputs


async def _execute(
    store: StreamStore[Tx],
    aggregate: Aggregate[S, C],
    stream_id: str,
    command: C,
    save: Callable[[Tx, S, int], Awaitable[None]],
    *,
    metadata: Metadata | None = None,
) -> Outcome[S]:
    """Decide on the stream and save its view in one unit of work (re-decided on conflict)."""

    async def work(tx: Tx) -> Outcome[S]:
        outcome = await store.execute_in(tx, aggregate, stream_id, command, metadata=metadata)
        if outcome.events:
            await save(tx, outcome.state, outcome.version)
        return outcome

    return await store.transact(work)


async def record_contract(
    supply: Supply, command: RecordContract, *, metadata: Metadata | None = None
) -> Contract:
    """Record a supply contract."""
    stream = contract_stream(command.contract_id)
    outcome = await _execute(
        supply.store, CONTRACT, stream, command, supply.books.save_contract, metadata=metadata
    )
    return outcome.state


async def receive_delivery(
    supply: Supply, contract_id: str, command: ReceiveDelivery, *, metadata: Metadata | None = None
) -> Contract:
    """Receive a delivery against a contract; inventory takes its lots into stock."""
    stream = contract_stream(contract_id)
    outcome = await _execute(
        supply.store, CONTRACT, stream, command, supply.books.save_contract, metadata=metadata
    )
    return outcome.state


async def request_run(
    supply: Supply, command: RequestRun, *, metadata: Metadata | None = None
) -> AllocationRun:
    """Accept a run; the planner picks it up (plan_run)."""
    outcome = await _execute(
        supply.store,
        ALLOCATION_RUN,
        run_stream(command.run_id),
        command,
        supply.books.save_run,
        metadata=metadata,
    )
    return outcome.state


async def plan_run(supply: Supply, run_id: str, *, today: date) -> AllocationRun:
    """Plan a requested run: read its input, plan in a thread, record the proposal.

    A planner that raises fails the run (its reason recorded) instead of leaving it
    requested for ever; an infrastructure error leaves it requested, for the next try.
    """
    loaded = await supply.store.load_state(ALLOCATION_RUN, run_stream(run_id))
    run = loaded.state
    if run.status != "requested" or run.from_day is None:
        return run
    data = await supply.inputs(run.from_day, run.horizon_days, today)
    command: RecordProposal | FailRun
    try:
        # In a thread: a national plan takes a while, and the event loop keeps serving.
        result = await asyncio.to_thread(plan, data)
        command = RecordProposal(lines=tuple(result.lines), balances=tuple(result.balances))
    except (ArithmeticError, KeyError, ValueError) as error:
        log.exception("allocation run %s could not be planned", run_id)
        command = FailRun(reason=f"{type(error).__name__}: {error}")
    outcome = await _execute(
        supply.store, ALLOCATION_RUN, run_stream(run_id), command, supply.books.save_run
    )
    return outcome.state


async def decide_run(
    supply: Supply, run_id: str, command: DecideRun, *, metadata: Metadata | None = None
) -> AllocationRun:
    """Approve, edit or reject a run's lines; approved lines go to inventory as shipments."""
    outcome = await _execute(
        supply.store,
        ALLOCATION_RUN,
        run_stream(run_id),
        command,
        supply.books.save_run,
        metadata=metadata,
    )
    return outcome.state


async def observe(supply: Supply, command: ObserveSupply) -> Replenishment:
    """Raise or clear a site-product's replenishment alert."""
    stream = replenishment_stream(command.site_id, command.product_code)
    outcome = await _execute(supply.store, REPLENISHMENT, stream, command, supply.books.save_alert)
    return outcome.state


async def sweep_replenishment(
    supply: Supply,
    observations: Sequence[tuple[str, str, int, float]],
    *,
    threshold_days: float,
    open_alerts: frozenset[tuple[str, str]],
) -> int:
    """Observe each (site, product, doses, daily demand); returns alerts raised.

    Only site-products whose alert would change are run through their stream, so a
    quiet sweep of a whole country appends nothing and loads nothing.
    """
    raised = 0
    for site_id, product, doses, daily in observations:
        days = days_of_supply(doses, daily)
        short = days is not None and days < threshold_days
        if short == ((site_id, product) in open_alerts):
            continue
        state = await observe(
            supply,
            ObserveSupply(
                site_id=site_id,
                product_code=product,
                doses_on_hand=doses,
                daily_demand=daily,
                threshold_days=threshold_days,
            ),
        )
        raised += state.alert
    return raised


# --- reactions ---------------------------------------------------------------------------


def build_reactions() -> Reactions:
    """Supply's reactions: its read model of sites, demand and stock (readmodel.py).

    booking.events.v1
    - SiteDefined, SiteCapacityChanged: sites, their districts and capacity by day.
    - AppointmentBooked / Rescheduled: booked demand per site, day and product;
      Attended, Missed, Cancelled: no longer demand.

    registration.events.v1 and administration.events.v1
    - CitizenRegistered, PreferencesChanged: where a citizen waits and for what (their
      first preference); RegistrationWithdrawn, CitizenErased: no longer waiting;
      DoseAdministered completing the series: no longer waiting.

    inventory.events.v1
    - LotReceived, LotRecalled, LotExpired: lots' storage and whether they may be shipped.
    - StockReceived, StockDispatched, VialOpened, StockRecalled, StockExpired: sealed
      vials per location and lot (what warehouses may ship).
    - StockLevelChanged: usable doses per location and product, newest version wins.
    - ShipmentCreated, Dispatched, Received: what is on its way (planned or on the road).

    Every handler is one idempotent statement on the consumer's connection: the
    consumer filters redeliveries, and topics are not ordered relative to each other,
    so each row is written by the one stream that owns it.
    """
    reactions = Reactions()

    @reactions.on(booking.CONTEXT, SiteDefined)
    async def site_defined(conn: Connection, event: SiteDefined, envelope: Envelope) -> None:
        await readmodel.site_defined(conn, event)

    @reactions.on(booking.CONTEXT, SiteCapacityChanged)
    async def site_day(conn: Connection, event: SiteCapacityChanged, envelope: Envelope) -> None:
        await readmodel.site_day(conn, event)

    @reactions.on(booking.CONTEXT, AppointmentBooked)
    async def booked(conn: Connection, event: AppointmentBooked, envelope: Envelope) -> None:
        await readmodel.appointment_booked(conn, event)

    @reactions.on(booking.CONTEXT, AppointmentRescheduled)
    async def moved(conn: Connection, event: AppointmentRescheduled, envelope: Envelope) -> None:
        await readmodel.appointment_moved(conn, event)

    async def closed(
        conn: Connection,
        event: AppointmentAttended | AppointmentMissed | AppointmentCancelled,
        envelope: Envelope,
    ) -> None:
        await readmodel.appointment_closed(conn, event.appointment_id)

    for ended in (AppointmentAttended, AppointmentMissed, AppointmentCancelled):
        reactions.add(booking.CONTEXT, ended, closed)

    @reactions.on(registration.CONTEXT, CitizenRegistered)
    async def registered(conn: Connection, event: CitizenRegistered, envelope: Envelope) -> None:
        await readmodel.citizen_registered(conn, event)

    @reactions.on(registration.CONTEXT, PreferencesChanged)
    async def preferences(conn: Connection, event: PreferencesChanged, envelope: Envelope) -> None:
        await readmodel.preferences_changed(conn, event)

    async def gone(
        conn: Connection, event: RegistrationWithdrawn | CitizenErased, envelope: Envelope
    ) -> None:
        await readmodel.citizen_gone(conn, event.citizen_id)

    for leaving in (RegistrationWithdrawn, CitizenErased):
        reactions.add(registration.CONTEXT, leaving, gone)

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose(conn: Connection, event: DoseAdministered, envelope: Envelope) -> None:
        if event.series_complete:
            await readmodel.series_complete(conn, event.citizen_id)

    @reactions.on(inventory.CONTEXT, LotReceived)
    async def lot_received(conn: Connection, event: LotReceived, envelope: Envelope) -> None:
        await readmodel.lot_received(conn, event)

    @reactions.on(inventory.CONTEXT, LotRecalled)
    async def lot_recalled(conn: Connection, event: LotRecalled, envelope: Envelope) -> None:
        await readmodel.lot_unusable(conn, event.lot_number, "recalled")

    @reactions.on(inventory.CONTEXT, LotExpired)
    async def lot_expired(conn: Connection, event: LotExpired, envelope: Envelope) -> None:
        await readmodel.lot_unusable(conn, event.lot_number, "expired")

    @reactions.on(inventory.CONTEXT, StockReceived)
    async def stock_received(conn: Connection, event: StockReceived, envelope: Envelope) -> None:
        await readmodel.stock_received(conn, event)

    @reactions.on(inventory.CONTEXT, StockDispatched)
    async def dispatched(conn: Connection, event: StockDispatched, envelope: Envelope) -> None:
        await readmodel.stock_taken(conn, event.location_id, event.lot_number, event.vials)

    @reactions.on(inventory.CONTEXT, VialOpened)
    async def opened(conn: Connection, event: VialOpened, envelope: Envelope) -> None:
        await readmodel.stock_taken(conn, event.site_id, event.lot_number, 1)

    async def unusable(
        conn: Connection, event: StockRecalled | StockExpired, envelope: Envelope
    ) -> None:
        await readmodel.stock_unusable(conn, event.location_id, event.lot_number)

    for ending in (StockRecalled, StockExpired):
        reactions.add(inventory.CONTEXT, ending, unusable)

    @reactions.on(inventory.CONTEXT, StockLevelChanged)
    async def level(conn: Connection, event: StockLevelChanged, envelope: Envelope) -> None:
        await readmodel.level(conn, event, envelope.version)

    @reactions.on(inventory.CONTEXT, ShipmentCreated)
    async def created(conn: Connection, event: ShipmentCreated, envelope: Envelope) -> None:
        await readmodel.shipment_created(conn, event)

    @reactions.on(inventory.CONTEXT, ShipmentDispatched)
    async def on_road(conn: Connection, event: ShipmentDispatched, envelope: Envelope) -> None:
        await readmodel.shipment_status(conn, event.shipment_id, "dispatched")

    @reactions.on(inventory.CONTEXT, ShipmentReceived)
    async def arrived(conn: Connection, event: ShipmentReceived, envelope: Envelope) -> None:
        await readmodel.shipment_status(conn, event.shipment_id, "received")

    return reactions
