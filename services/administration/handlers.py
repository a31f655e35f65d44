"""Every command and reaction of administration, apart from HTTP.

Commands (each one transaction; a conflicting append rolls it back and decides again):
- `record_dose`: lock the citizen's row (two doses of one citizen are judged one after
  the other), load the DoseRecord, gather the citizen, lot and history, assess, decide,
  append, bring the `doses` read model up;
- `correct_dose`, `void_dose`: the same on an existing record, honouring If-Match;
- `report_adverse_event`: a report against a recorded dose.
Each seals the event's health details under the citizen's key (keys.py), kept in the
same transaction when the command made it.
Queries: `read_dose`, `read_citizen_record`.
Reactions: `reactions`, the table of what other contexts' events do to the read models.

Commands are written against any event store (`StreamStore[Tx]`) and any `DoseBooks[Tx]`
(the read models they read and write in the same transaction), so they run on
PostgreSQL in the service and in memory in the unit tests
(tests/unit/administration/test_administration_handlers.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from msgspec import UnsetType

from immunreg.contracts import booking, inventory, registration
from immunreg.contracts.booking import SiteDefined
from immunreg.contracts.envelope import Context, Envelope, Event, Metadata, new_id_text
from immunreg.contracts.inventory import LotExpired, LotRecalled, LotReceived, ShipmentReceived
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    RegistrationWithdrawn,
)
from immunreg.domain import Loaded, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import StreamStore
from immunreg.http.auth import Principal, Role
from immunreg.messaging.reactions import Reactions
from immunreg.reference.vaccines import VaccineCatalog
from immunreg.sealing import CitizenKey

from . import keys, readmodel
from .domain import (
    Administer,
    Aggregates,
    Correct,
    DetailsErased,
    DoseState,
    Void,
    assess_dose,
    corrected_facts,
    dose_facts,
    dose_id_for,
    dose_stream,
    report_stream,
    require_not_voided,
    require_override_right,
    require_past,
)
from .domain import ReportAdverseEvent as Report
from .keys import DetailsSealer
from .readmodel import Administering, Executor
from .rules import CitizenFacts, DoseRequest, LotFacts, PriorDose
from .schemas import (
    CitizenDoses,
    CorrectDose,
    DoseView,
    RecordDose,
    ReportAdverseEvent,
    VoidDose,
)

Tx = TypeVar("Tx")
# The books only take the transaction handle (never return one), hence contravariant.
Tx_contra = TypeVar("Tx_contra", contravariant=True)
T = TypeVar("T")

COMMAND_ATTEMPTS = 5

# What a citizen is told on asking for another citizen's record (403 other_citizen).
OTHER_CITIZEN = "a citizen may read only their own record"


class DoseNotFound(LookupError):
    """No dose is recorded under the id asked for (404)."""


class CitizenNotFound(LookupError):
    """No citizen is known under the id asked for (404)."""


class DoseBooks(Protocol[Tx_contra]):
    """The read models a dose command reads and writes, in its own transaction."""

    async def lock_citizen(self, tx: Tx_contra, citizen_id: str) -> CitizenFacts | None:
        """The citizen, their row locked until the transaction ends."""
        ...

    async def citizen(self, tx: Tx_contra, citizen_id: str) -> CitizenFacts | None:
        """The citizen as registration's events describe them."""
        ...

    async def lot(self, tx: Tx_contra, lot_number: str, site_id: str) -> LotFacts | None:
        """The lot as inventory's events describe it, and whether it reached the site."""
        ...

    async def history(
        self, tx: Tx_contra, citizen_id: str, *, excluding: str | None = None
    ) -> list[PriorDose]:
        """The citizen's doses that count, oldest first (`excluding` one being corrected)."""
        ...

    async def site_municipality(self, tx: Tx_contra, site_id: str) -> str | None:
        """The municipality of the site, as booking defined it."""
        ...

    async def administering(
        self, tx: Tx_contra, citizen_id: str, lot_number: str, site_id: str
    ) -> Administering:
        """What `lot`, `history`, `citizen_key` and `site_municipality` say for a new dose,
        read together."""
        ...

    async def citizen_key(self, tx: Tx_contra, citizen_id: str) -> CitizenKey | None:
        """The key the citizen's details are sealed with; None before the first, or erased."""
        ...

    async def keep_citizen_key(self, tx: Tx_contra, citizen_id: str, key: CitizenKey) -> None:
        """Keep a key a command just made."""
        ...

    async def record(self, tx: Tx_contra, envelope: Envelope, event: Event) -> None:
        """Bring the dose and adverse-event rows up to an event just appended (its
        details opened with the citizen's key)."""
        ...


class PostgresBooks:
    """The service's books: its read-model tables (readmodel.py)."""

    async def lock_citizen(self, tx: Connection, citizen_id: str) -> CitizenFacts | None:
        return await readmodel.lock_citizen(tx, citizen_id)

    async def citizen(self, tx: Connection, citizen_id: str) -> CitizenFacts | None:
        return await readmodel.fetch_citizen(tx, citizen_id)

    async def lot(self, tx: Connection, lot_number: str, site_id: str) -> LotFacts | None:
        return await readmodel.fetch_lot(tx, lot_number, site_id)

    async def history(
        self, tx: Connection, citizen_id: str, *, excluding: str | None = None
    ) -> list[PriorDose]:
        return await readmodel.fetch_history(tx, citizen_id, excluding=excluding)

    async def site_municipality(self, tx: Connection, site_id: str) -> str | None:
        return await readmodel.fetch_site_municipality(tx, site_id)

    async def administering(
        self, tx: Connection, citizen_id: str, lot_number: str, site_id: str
    ) -> Administering:
        return await readmodel.fetch_administering(tx, citizen_id, lot_number, site_id)

    async def citizen_key(self, tx: Connection, citizen_id: str) -> CitizenKey | None:
        return await keys.fetch_citizen_key(tx, citizen_id)

    async def keep_citizen_key(self, tx: Connection, citizen_id: str, key: CitizenKey) -> None:
        await keys.store_citizen_key(tx, citizen_id, key)

    async def record(self, tx: Connection, envelope: Envelope, event: Event) -> None:
        await readmodel.apply_dose_event(tx, envelope, event)


@dataclass(frozen=True)
class DoseRecording:
    """What recording a dose did: `created` False when the same dose was already recorded."""

    dose_id: str
    created: bool
    version: int
    state: DoseState


async def _sealer(
    books: DoseBooks[Tx], tx: Tx, citizen_id: str, citizen: CitizenFacts | None
) -> DetailsSealer:
    """What seals the citizen's details in this command (their row is locked)."""
    erased = _erased(citizen)
    key = None if erased else await books.citizen_key(tx, citizen_id)
    return DetailsSealer(citizen_id, key, erased=erased)


def _erased(citizen: CitizenFacts | None) -> bool:
    return citizen is not None and citizen.status == "erased"


async def _keep_books(
    books: DoseBooks[Tx],
    tx: Tx,
    envelopes: Sequence[Envelope],
    context: Context,
    sealer: DetailsSealer,
) -> None:
    """Keep the key the events were sealed with if they made it, then bring the read
    model up to them (same transaction)."""
    if sealer.new_key is not None and envelopes:
        await books.keep_citizen_key(tx, sealer.citizen_id, sealer.new_key)
    for envelope in envelopes:
        await books.record(tx, envelope, context.read(envelope))


# --- commands --------------------------------------------------------------------------------


async def record_dose(
    store: StreamStore[Tx],
    books: DoseBooks[Tx],
    aggregates: Aggregates,
    dose: RecordDose,
    *,
    caller: Principal,
    catalog: VaccineCatalog,
    now: datetime,
    metadata: Metadata | None = None,
) -> DoseRecording:
    """Record a dose, or find it already recorded (the dose id names the vaccination)."""
    caller.require_site(dose.site_id)
    may_override = caller.role is Role.ADMIN
    require_override_right(may_override, dose.override_reason)
    require_past("administered_at", dose.administered_at, now)
    dose_id = dose_id_for(dose.citizen_id, dose.lot_number, dose.dose_number, dose.administered_at)
    stream = dose_stream(dose_id)
    request = DoseRequest(
        citizen_id=dose.citizen_id,
        site_id=dose.site_id,
        lot_number=dose.lot_number,
        product_code=dose.product_code,
        dose_number=dose.dose_number,
        administered_at=dose.administered_at,
    )
    aggregate = aggregates.dose

    async def work(tx: Tx) -> Outcome[DoseState] | Loaded[DoseState]:
        citizen = await books.lock_citizen(tx, dose.citizen_id)
        loaded = await store.load_state(aggregate, stream, tx)
        if loaded.version > 0:
            return loaded  # the same dose, sent again
        # One read for what the checks and the event need (the citizen is locked).
        found = await books.administering(tx, dose.citizen_id, dose.lot_number, dose.site_id)
        violations = assess_dose(request, citizen, found.lot, found.history, catalog)
        assert citizen is not None  # else citizen_unknown refused it
        erased = _erased(citizen)
        sealer = DetailsSealer(dose.citizen_id, None if erased else found.key, erased=erased)
        facts = dose_facts(
            dose_id=dose_id,
            request=request,
            citizen=citizen,
            series_length=catalog[dose.product_code].series_length,
            site_municipality_code=found.site_municipality or "",
            vaccinator_id=dose.vaccinator_id,
            appointment_id=dose.appointment_id,
            injection_site=dose.injection_site,
        )
        command = Administer(
            facts=facts,
            seal=sealer,
            violations=violations,
            override_reason=dose.override_reason,
            may_override=may_override,
        )
        outcome = await store.decide_and_append(
            tx, aggregate, stream, loaded, command, metadata=metadata
        )
        await _keep_books(books, tx, outcome.events, aggregate.context, sealer)
        return outcome

    result = await store.transact(work, attempts=COMMAND_ATTEMPTS)
    if isinstance(result, Loaded):
        require_not_voided(result.state)
        return DoseRecording(dose_id, created=False, version=result.version, state=result.state)
    return DoseRecording(dose_id, created=True, version=result.version, state=result.state)


async def _change_dose(
    store: StreamStore[Tx],
    books: DoseBooks[Tx],
    aggregates: Aggregates,
    dose_id: str,
    command_for: Callable[[Tx, DoseState, DetailsSealer], Awaitable[Correct | Void]],
    *,
    caller: Principal,
    expected_version: int | None,
    metadata: Metadata | None,
) -> Outcome[DoseState]:
    """Load the dose, check the caller may change it, decide, append, update the read
    model: one transaction. With `expected_version` (If-Match) a conflict is final."""
    aggregate = aggregates.dose
    stream = dose_stream(dose_id)

    async def work(tx: Tx) -> Outcome[DoseState]:
        loaded = await store.load_state(aggregate, stream, tx)
        facts = loaded.state.facts
        if facts is None:
            raise DoseNotFound(dose_id)
        caller.require_site(facts.site_id)
        citizen = await books.lock_citizen(tx, facts.citizen_id)
        loaded = await store.load_state(aggregate, stream, tx)  # as of the lock
        if expected_version is not None and loaded.version != expected_version:
            raise ConcurrencyConflict(stream, expected_version)
        sealer = await _sealer(books, tx, facts.citizen_id, citizen)
        command = await command_for(tx, loaded.state, sealer)
        outcome = await store.decide_and_append(
            tx, aggregate, stream, loaded, command, metadata=metadata
        )
        await _keep_books(books, tx, outcome.events, aggregate.context, sealer)
        return outcome

    return await store.transact(
        work, attempts=COMMAND_ATTEMPTS, retry_conflicts=expected_version is None
    )


async def correct_dose(
    store: StreamStore[Tx],
    books: DoseBooks[Tx],
    aggregates: Aggregates,
    dose_id: str,
    correction: CorrectDose,
    *,
    caller: Principal,
    catalog: VaccineCatalog,
    now: datetime,
    expected_version: int | None = None,
    metadata: Metadata | None = None,
) -> Outcome[DoseState]:
    """Re-state a dose record (fields left out keep their value), judged by the same rules
    as a new dose with this dose left out of the history."""
    may_override = caller.role is Role.ADMIN
    require_override_right(may_override, correction.override_reason)
    if not isinstance(correction.administered_at, UnsetType):
        require_past("administered_at", correction.administered_at, now)

    async def command_for(tx: Tx, state: DoseState, sealer: DetailsSealer) -> Correct | Void:
        current = state.facts
        assert current is not None
        request = DoseRequest(
            citizen_id=current.citizen_id,
            site_id=current.site_id,
            lot_number=_given(correction.lot_number, current.lot_number),
            product_code=_given(correction.product_code, current.product_code),
            dose_number=_given(correction.dose_number, current.dose_number),
            administered_at=_given(correction.administered_at, current.administered_at),
        )
        citizen = await books.citizen(tx, current.citizen_id)
        lot = await books.lot(tx, request.lot_number, current.site_id)
        history = await books.history(tx, current.citizen_id, excluding=current.dose_id)
        violations = assess_dose(request, citizen, lot, history, catalog)
        assert citizen is not None  # else citizen_unknown refused it
        facts = corrected_facts(
            current,
            request,
            citizen,
            catalog[request.product_code].series_length,
            vaccinator_id=_given(correction.vaccinator_id, current.vaccinator_id),
            appointment_id=_given(correction.appointment_id, current.appointment_id),
            injection_site=_given(correction.injection_site, current.injection_site),
        )
        return Correct(
            facts=facts,
            reason=correction.reason,
            seal=sealer,
            violations=violations,
            override_reason=correction.override_reason,
            may_override=may_override,
        )

    return await _change_dose(
        store,
        books,
        aggregates,
        dose_id,
        command_for,
        caller=caller,
        expected_version=expected_version,
        metadata=metadata,
    )


async def void_dose(
    store: StreamStore[Tx],
    books: DoseBooks[Tx],
    aggregates: Aggregates,
    dose_id: str,
    void: VoidDose,
    *,
    caller: Principal,
    expected_version: int | None = None,
    metadata: Metadata | None = None,
) -> Outcome[DoseState]:
    """Mark a dose record entered in error (nothing is deleted); voiding again changes nothing."""

    async def command_for(tx: Tx, state: DoseState, sealer: DetailsSealer) -> Correct | Void:
        return Void(reason=void.reason, seal=sealer)

    return await _change_dose(
        store,
        books,
        aggregates,
        dose_id,
        command_for,
        caller=caller,
        expected_version=expected_version,
        metadata=metadata,
    )


async def report_adverse_event(
    store: StreamStore[Tx],
    books: DoseBooks[Tx],
    aggregates: Aggregates,
    report: ReportAdverseEvent,
    *,
    caller: Principal,
    now: datetime,
    metadata: Metadata | None = None,
) -> str:
    """Report an adverse event against a recorded dose; the new report's id."""
    report_id = new_id_text()

    async def work(tx: Tx) -> None:
        dose = await store.load_state(aggregates.dose, dose_stream(report.dose_id), tx)
        if dose.state.facts is None:
            raise DoseNotFound(report.dose_id)
        citizen_id = dose.state.facts.citizen_id
        caller.require_own(citizen_id, OTHER_CITIZEN)
        sealer = await _sealer(books, tx, citizen_id, await books.lock_citizen(tx, citizen_id))
        command = Report(
            report_id=report_id,
            dose=dose.state,
            symptoms=list(report.symptoms),
            onset_at=report.onset_at,
            serious=report.serious,
            outcome=report.outcome,
            reporter_role=caller.role.value,
            description=report.description,
            now=now,
            seal=sealer,
        )
        outcome = await store.execute_in(
            tx, aggregates.adverse_event, report_stream(report_id), command, metadata=metadata
        )
        await _keep_books(books, tx, outcome.events, aggregates.adverse_event.context, sealer)

    await store.transact(work, attempts=COMMAND_ATTEMPTS)
    return report_id


def _given(value: T | UnsetType, default: T) -> T:
    """What a correction says of a field, or what the record holds when it says nothing."""
    return default if isinstance(value, UnsetType) else value


# --- queries ---------------------------------------------------------------------------------


async def read_dose(db: Executor, dose_id: str, catalog: VaccineCatalog) -> DoseView:
    """The dose as it stands (corrections applied), with its adverse events."""
    view = await readmodel.dose_view(db, dose_id, catalog)
    if view is None:
        raise DoseNotFound(dose_id)
    return view


async def refuse_if_erased(db: Executor, citizen_id: str) -> None:
    """An erased citizen's doses are not served (410, as nothing more is written of them)."""
    citizen = await readmodel.fetch_citizen(db, citizen_id)
    if citizen is not None and citizen.status == "erased":
        raise DetailsErased()


async def read_citizen_record(
    db: Executor, citizen_id: str, catalog: VaccineCatalog
) -> tuple[CitizenFacts, CitizenDoses]:
    """The citizen and every dose recorded for them; unknown or erased citizens refused."""
    citizen = await readmodel.fetch_citizen(db, citizen_id)
    if citizen is None:
        raise CitizenNotFound(citizen_id)
    if citizen.status == "erased":
        raise DetailsErased()
    doses = await readmodel.citizen_dose_views(db, citizen_id, catalog)
    return citizen, CitizenDoses(citizen_id=citizen_id, doses=doses)


# --- reactions: other contexts' events keep the read models ---------------------------------
#
# The consumer group is the service's schema; every reaction runs in the consumer's
# transaction (write only through `conn`) and redeliveries are filtered for it.
# - registration: CitizenRegistered (birth date, sex, municipality; never names),
#   RegistrationWithdrawn (the citizen may still be vaccinated), CitizenErased
#   (their key deleted, so no sealed detail of theirs opens again; birth date, sex,
#   municipality and every reason, symptom, outcome and description in the read
#   model dropped; no new record for them);
# - inventory: LotReceived (the lot's product and expiry, and that it is at its
#   location), ShipmentReceived (the lot is at the destination), LotRecalled,
#   LotExpired. The per-location ledger events repeat these facts and are skipped;
# - booking: SiteDefined (a site's municipality, carried on DoseAdministered).
#   Appointment events are not followed: an appointment id on a dose is carried as
#   given (booking matches it to its own appointment).

reactions = Reactions()


@reactions.on(registration.CONTEXT, CitizenRegistered)
async def citizen_registered(
    conn: Connection, event: CitizenRegistered, envelope: Envelope
) -> None:
    """Keep what the rules need of a new citizen (no names)."""
    await readmodel.citizen_registered(
        conn,
        event.citizen_id,
        envelope.version,
        birth_date=event.birth_date,
        sex=event.sex,
        municipality_code=event.municipality_code,
    )


@reactions.on(registration.CONTEXT, RegistrationWithdrawn)
async def registration_withdrawn(
    conn: Connection, event: RegistrationWithdrawn, envelope: Envelope
) -> None:
    """Mark the citizen withdrawn (a dose given to them is still recorded)."""
    await readmodel.citizen_withdrawn(conn, event.citizen_id, envelope.version)


@reactions.on(registration.CONTEXT, CitizenErased)
async def citizen_erased(conn: Connection, event: CitizenErased, envelope: Envelope) -> None:
    """Delete the citizen's key and shred what the read model keeps of them to what
    statistics need; no record can be made for them any more."""
    await keys.destroy_citizen_key(conn, event.citizen_id)
    await readmodel.citizen_erased(conn, event.citizen_id, envelope.version)


@reactions.on(inventory.CONTEXT, LotReceived)
async def lot_received(conn: Connection, event: LotReceived, envelope: Envelope) -> None:
    """Keep the lot's product and expiry, and that it is at its location."""
    await readmodel.lot_described(conn, event.lot_number, event.product_code, event.expiry_date)
    await readmodel.lot_at_site(
        conn, event.location_id, event.lot_number, event.product_code, envelope.occurred_at
    )


@reactions.on(inventory.CONTEXT, ShipmentReceived)
async def shipment_received(conn: Connection, event: ShipmentReceived, envelope: Envelope) -> None:
    """A shipment that brought vials puts its lot at the destination."""
    if event.vials_received > 0:
        await readmodel.lot_at_site(
            conn, event.to_location, event.lot_number, event.product_code, envelope.occurred_at
        )


@reactions.on(inventory.CONTEXT, LotRecalled)
async def lot_recalled(conn: Connection, event: LotRecalled, envelope: Envelope) -> None:
    """Keep when the lot was recalled (doses given before stay fine)."""
    await readmodel.lot_recalled(
        conn, event.lot_number, event.product_code, event.reason, envelope.occurred_at
    )


@reactions.on(inventory.CONTEXT, LotExpired)
async def lot_expired(conn: Connection, event: LotExpired, envelope: Envelope) -> None:
    """Mark the lot expired."""
    await readmodel.lot_expired(conn, event.lot_number, event.product_code, event.expiry_date)


@reactions.on(booking.CONTEXT, SiteDefined)
async def site_defined(conn: Connection, event: SiteDefined, envelope: Envelope) -> None:
    """Keep the site's name and municipality (carried on each dose given there)."""
    await readmodel.site_defined(conn, event.site_id, event.name, event.municipality_code)
