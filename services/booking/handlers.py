"""Booking's commands and reactions: every unit of work that changes a stream.

Commands (app.py's routes and jobs.py call these; each is one `store.transact` unit of
work, or one per batch):

    define_site     DefineSite on site-<id>, holding the site lock exclusively
    change_day      ChangeCapacity on siteday-<id>-<day>; closing cancels the day's
                    open appointments (domain.cancelled_by)
    reschedule      move an appointment: Reserve on the new SiteDay, Release on the old
    cancel          Cancel an appointment and Release its slot
    run_scheduler   a scheduling run: plan (scheduler.planned, pure, in parts) and
                    reserve per (site, product) in batches while it plans
                    (committer.py), reporting progress
    mark_no_shows   Miss every appointment whose day has ended

Reactions to other contexts' events: the table `build_reactions` makes (see its
docstring for what each one does).

Both build on the appointment units of work in appointments.py (`reserve`,
`cancel_appointment`, `move_appointment`, `attend`, `miss`), which change an
appointment, its SiteDay and the read models on one connection inside the caller's
transaction (a command's, or the consumer's); a ConcurrencyConflict rolls the whole
unit back and it is decided again.

Invariants and how they hold under any concurrency:

- No slot is overbooked: SlotsReserved is appended to `siteday-<site>-<day>` at the
  version the free count was computed from (domain.py).
- One open appointment per citizen: the appointment's row goes in with
  `ON CONFLICT DO NOTHING` on the partial unique index of open appointments; a citizen
  someone else booked meanwhile is simply not booked again ("already_booked").
- No more bookings of a product at a site than its stock: the `site_stock` row is
  locked (FOR UPDATE) before the count of open appointments of that product at that
  site from today on is subtracted from the doses available, so bookings of one product
  at one site queue there. Missing row = no stock.
- A site's default capacity cannot change under a booking: bookings hold a shared
  advisory lock on the site, a redefinition the exclusive one.

Lock order, to keep deadlocks out: site lock, stock row, then the claims (citizen ids
sorted), then the SiteDays' appends in date order (all of a batch's in one statement),
then appointment streams (fresh ids, all in one write). A deadlock that still
happens (e.g. with a consumer batch) aborts the unit, and callers treat it as not done.

A scheduling run loads the waiting citizens and the free capacity and stock from the
read models and plans (planning.py; a national run in a planner process of its own,
planworker.py), committing the proposals per (site, product) as the plan hands them on
in transactions of up to COMMIT_BATCH bookings over one or more days (committer.py),
each through `reserve_days`, which
re-checks capacity, stock and the citizen's claim under the database's guarantees.
A proposal that no longer fits (another run or a citizen took the slot meanwhile) is
planned again from fresh read models, up to REPLAN_PASSES times; what still does not
fit is left waiting as "slot_taken". A citizen someone else booked meanwhile counts as
`booked_elsewhere`, not as waiting.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg
import msgspec

from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.booking import SiteDefined
from immunreg.contracts.envelope import Envelope, Metadata
from immunreg.contracts.inventory import StockLevelChanged
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from immunreg.domain import DomainError, NotFound, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import EventStore
from immunreg.messaging.reactions import Reactions
from immunreg.reference.geography import municipalities

from . import readmodel
from .appointments import (
    BookingRequest,
    attend,
    cancel_appointment,
    miss,
    move_appointment,
    reserve,
    site_for_booking,
)
from .committer import Committer, Report
from .config import BookingConfig
from .domain import (
    SITE,
    SITEDAY,
    AppointmentState,
    ChangeCapacity,
    DefineSite,
    Violation,
    cancelled_by,
    reschedule_violations,
    site_stream,
    siteday_stream,
)
from .eligibility import SLOT_TAKEN, unsuitable
from .noshow import select_no_shows
from .planning import Planner, PlanRequest, plan_here
from .ranking import district_of, explain
from .scheduler import plan
from .schemas import DayView, RunCounts

log = logging.getLogger(__name__)

REPLAN_PASSES = 3
NEXT_DOSE_SEARCH_DAYS = 14  # when the interval window is already closed (overdue)


# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteSaved:
    """What defining a site did: whether it was new, and the stream's version now."""

    created: bool
    version: int


async def define_site(
    store: EventStore,
    definition: SiteDefined,
    *,
    expected_version: int | None = None,
    metadata: Metadata | None = None,
) -> SiteSaved:
    """Create or replace a site's definition; with `expected_version` (If-Match) a
    conflict is final (412). Lowering the default keeps appointments already made."""
    site_id = definition.site_id
    stream = site_stream(site_id)

    async def work(conn: Connection) -> SiteSaved:
        # The exclusive site lock: no booking reads the old default from now on.
        await site_for_booking(store, conn, site_id, exclusive=True)
        loaded = await store.load_state(SITE, stream, conn)
        if expected_version is not None and loaded.version != expected_version:
            raise ConcurrencyConflict(stream, expected_version)
        outcome = await store.decide_and_append(
            conn, SITE, stream, loaded, DefineSite(definition=definition), metadata=metadata
        )
        if outcome.events:
            await readmodel.save_site(conn, definition, outcome.version)
        return SiteSaved(created=loaded.version == 0, version=outcome.version)

    return await store.transact(work, retry_conflicts=expected_version is None)


async def change_day(
    store: EventStore, command: ChangeCapacity, *, metadata: Metadata | None = None
) -> DayView:
    """Set a day's capacity or close it; the day as it now is, with what closing cancelled.

    NotFound("site_not_found") when the site was never defined.
    """
    site_id, day = command.site_id, command.day
    stream = siteday_stream(site_id, day)

    async def work(conn: Connection) -> DayView:
        site = await site_for_booking(store, conn, site_id)
        if not site.defined:
            raise NotFound("site_not_found", f"no site {site_id}")
        outcome = await store.execute_in(conn, SITEDAY, stream, command, metadata=metadata)
        if outcome.events:
            await readmodel.save_site_day(conn, site_id, day, command.capacity, command.closed)
        cancelled = 0
        reason = cancelled_by(command)
        if reason is not None:
            for appointment_id in await readmodel.open_appointment_ids(conn, site_id, day):
                await cancel_appointment(store, conn, appointment_id, reason, metadata=metadata)
                cancelled += 1
        state = (await store.load_state(SITEDAY, stream, conn)).state
        return DayView(
            site_id=site_id,
            day=day,
            capacity=state.capacity(site.daily_capacity()),
            closed=state.closed,
            override=state.override is not None,
            booked={k: v for k, v in sorted(state.booked.items()) if v},
            cancelled=cancelled,
        )

    return await store.transact(work)


async def reschedule_violations_of(
    db: readmodel.Executor, appointment: asyncpg.Record, *, day: date, site_id: str, today: date
) -> list[Violation]:
    """What the read models say against moving `appointment` (domain.reschedule_violations)."""
    site_known = site_id == appointment["site_id"] or await readmodel.site_exists(db, site_id)
    found = await readmodel.citizen(db, appointment["citizen_id"])
    citizen, due = found if found is not None else (None, None)
    return reschedule_violations(
        day=day,
        today=today,
        site_known=site_known,
        product_code=appointment["product_code"],
        birth_date=citizen["birth_date"] if citizen is not None else None,
        due=due,
    )


async def reschedule(
    store: EventStore,
    appointment_id: str,
    *,
    site_id: str,
    day: date,
    today: date,
    metadata: Metadata | None = None,
) -> Outcome[AppointmentState]:
    """Move an appointment to another day (and site) with a free slot and stock."""

    async def work(conn: Connection) -> Outcome[AppointmentState]:
        return await move_appointment(
            store, conn, appointment_id, site_id=site_id, day=day, today=today, metadata=metadata
        )

    return await store.transact(work)


async def cancel(
    store: EventStore, appointment_id: str, reason: str, *, metadata: Metadata | None = None
) -> bool:
    """Cancel an appointment; whether this call cancelled it (False: it was already)."""

    async def work(conn: Connection) -> bool:
        outcome = await cancel_appointment(store, conn, appointment_id, reason, metadata=metadata)
        return bool(outcome.events)

    return await store.transact(work)


async def _no_report(counts: RunCounts) -> None:
    return None


async def run_scheduler(
    store: EventStore,
    *,
    run_id: str,
    from_day: date,
    horizon_days: int,
    today: date,
    config: BookingConfig,
    metadata: Metadata | None = None,
    report: Report = _no_report,
    planner: Planner = plan_here,
) -> RunCounts:
    """Book every waiting citizen that fits between from_day and from_day + horizon.

    `planner` loads and plans, handing the bookings on in parts as it plans them
    (planning.py; planworker.plan_in_a_process plans in a process of its own), and each
    (site, product) group commits while the plan goes on (committer.py). Each batch
    commits on its own (exactly once: a citizen's claim on one open appointment), and
    `report` hears the counts after each. Citizens whose slot was taken meanwhile are
    planned again here, up to REPLAN_PASSES times in all.
    """
    counts = RunCounts()
    waiting: Counter[str] = Counter()
    request = PlanRequest(
        run_id=run_id,
        from_day=from_day,
        horizon_days=horizon_days,
        today=today,
        allow_anywhere=config.allow_anywhere,
    )
    retry: list[str] | None = None
    for attempt in range(REPLAN_PASSES):
        committer = Committer(
            store,
            counts,
            today=today,
            config=config,
            metadata=metadata,
            report=report,
            replanning=None if retry is None else len(retry),
        )
        if retry is None:
            planning = planner(store.pool, request, committer)
        else:  # a few citizens: planned here
            counts.replanned += len(retry)
            again = msgspec.structs.replace(request, citizen_ids=retry)
            planning = plan_here(store.pool, again, committer)
        retry = await committer.run(planning)
        # Left waiting by this pass's plan: final (only taken slots are planned again).
        waiting.update(committer.waiting)
        if not retry:
            break
        if attempt == REPLAN_PASSES - 1:
            waiting[SLOT_TAKEN] += len(retry)
    counts.waiting = dict(sorted((reason, n) for reason, n in waiting.items() if n))
    await report(counts)
    log.info("scheduling run done", extra={"run_id": run_id, "booked": counts.booked})
    return counts


async def mark_no_shows(
    store: EventStore, *, now: datetime, config: BookingConfig, limit: int = 1000
) -> int:
    """Mark every appointment whose day has ended and is still open AppointmentMissed."""
    today = now.astimezone(config.timezone).date()
    marked = 0
    while True:
        candidates = await readmodel.open_appointments_before(store.pool, today, limit)
        for appointment_id in select_no_shows(candidates, now, config.timezone):

            async def work(conn: Connection, appointment_id: str = appointment_id) -> int:
                return len((await miss(store, conn, appointment_id)).events)

            if await store.transact(work):
                marked += 1
        if len(candidates) < limit:
            return marked


# --- reactions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dependencies:
    """What booking's reactions need of the running app (see `Provided`)."""

    store: EventStore
    config: BookingConfig


def build_reactions(dependencies: Callable[[], Dependencies]) -> Reactions:
    """Booking's reactions, given the dependencies of the running app.

    Every handler runs in the consumer's transaction (`conn`): its appends go through
    the event store on that connection, so they commit together with the consumer's
    position (exactly once). Topics are not ordered relative to each other, so each
    handler copes with arriving "early" (a dose for a citizen booking has not heard of
    yet is kept, and the next dose is planned once the registration arrives).

    registration.events.v1
    - CitizenRegistered: the citizen joins the waiting list (registration order = the
      event's recorded_at). Registering again after a withdrawal puts them at the back.
    - PreferencesChanged: new preferences, group and ruled-out products; an open appointment
      for a product the citizen no longer accepts or may not have is cancelled.
    - RegistrationWithdrawn, CitizenErased: open appointments are cancelled; erasure
      also drops the birth date, municipality and ruled-out products held here.

    inventory.events.v1
    - StockLevelChanged: `site_stock` (a location id is a site id), newest version wins.

    administration.events.v1
    - DoseAdministered: the appointment is attended (by its id, else the citizen's open
      one for that dose); an open appointment the dose makes pointless is cancelled;
      then the next dose of the series is booked (`book_next_dose`). Boosters are NOT
      booked here: the booster window opens months later, beyond any planned capacity;
      the citizen becomes due (outside_horizon until then) and a nightly run books them
      once the window enters its horizon.
    - DoseVoided: the dose did not happen. It no longer counts; an open appointment
      booked for the dose after it is cancelled ("dose_voided") and the citizen waits
      for the voided dose again (booked by the next run).
    - DoseCorrected: the record is replaced; an open appointment that no longer fits
      the corrected series (dose number, product or interval window) is cancelled.
    """
    reactions = Reactions()

    def administered_on(event: DoseAdministered | DoseCorrected) -> date:
        return event.administered_at.astimezone(dependencies().config.timezone).date()

    async def cancel_open(conn: Connection, cause: Envelope, citizen_id: str, reason: str) -> None:
        await _cancel_open(
            conn, dependencies().store, Metadata.caused_by(cause), citizen_id, reason
        )

    async def reconcile(conn: Connection, cause: Envelope, citizen_id: str, reason: str) -> None:
        await _reconcile(conn, dependencies().store, Metadata.caused_by(cause), citizen_id, reason)

    # --- registration -----------------------------------------------------------------

    @reactions.on(registration.CONTEXT, CitizenRegistered)
    async def citizen_registered(
        conn: Connection, event: CitizenRegistered, envelope: Envelope
    ) -> None:
        await readmodel.citizen_registered(conn, event, envelope.version, envelope.recorded_at)

    @reactions.on(registration.CONTEXT, PreferencesChanged)
    async def preferences_changed(
        conn: Connection, event: PreferencesChanged, envelope: Envelope
    ) -> None:
        status = await readmodel.preferences_changed(conn, event, envelope.version)
        if status == "active":
            await reconcile(conn, envelope, event.citizen_id, "preferences_changed")

    @reactions.on(registration.CONTEXT, RegistrationWithdrawn)
    async def withdrawn(conn: Connection, event: RegistrationWithdrawn, envelope: Envelope) -> None:
        await readmodel.citizen_withdrawn(conn, event.citizen_id, envelope.version)
        await cancel_open(conn, envelope, event.citizen_id, "registration_withdrawn")

    @reactions.on(registration.CONTEXT, CitizenErased)
    async def erased(conn: Connection, event: CitizenErased, envelope: Envelope) -> None:
        await readmodel.citizen_erased(conn, event.citizen_id, envelope.version)
        await cancel_open(conn, envelope, event.citizen_id, "citizen_erased")

    # --- inventory --------------------------------------------------------------------

    @reactions.on(inventory.CONTEXT, StockLevelChanged)
    async def stock_level(conn: Connection, event: StockLevelChanged, envelope: Envelope) -> None:
        await readmodel.stock_level_changed(conn, event, envelope.version)

    # --- administration ---------------------------------------------------------------

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose_administered(
        conn: Connection, event: DoseAdministered, envelope: Envelope
    ) -> None:
        if not await readmodel.dose_recorded(conn, event, administered_on(event)):
            return  # this dose was recorded already
        store, metadata = dependencies().store, Metadata.caused_by(envelope)
        has_open = await _attend(conn, store, metadata, event)
        today = dependencies().config.today()
        await book_next_dose(
            conn, store, event.citizen_id, today=today, metadata=metadata, has_open=has_open
        )

    @reactions.on(administration.CONTEXT, DoseVoided)
    async def dose_voided(conn: Connection, event: DoseVoided, envelope: Envelope) -> None:
        await readmodel.dose_voided(conn, event.dose_id)
        await reconcile(conn, envelope, event.citizen_id, "dose_voided")

    @reactions.on(administration.CONTEXT, DoseCorrected)
    async def dose_corrected(conn: Connection, event: DoseCorrected, envelope: Envelope) -> None:
        await readmodel.dose_corrected(conn, event, administered_on(event))
        await reconcile(conn, envelope, event.citizen_id, "dose_corrected")

    return reactions


async def _cancel_open(
    conn: Connection, store: EventStore, metadata: Metadata, citizen_id: str, reason: str
) -> None:
    row = await readmodel.open_appointment(conn, citizen_id)
    if row is not None:
        await cancel_appointment(store, conn, row["appointment_id"], reason, metadata=metadata)


async def _reconcile(
    conn: Connection, store: EventStore, metadata: Metadata, citizen_id: str, reason: str
) -> None:
    """Cancel the citizen's open appointment if it no longer fits who they are now."""
    row = await readmodel.open_appointment(conn, citizen_id)
    if row is None:
        return
    found = await readmodel.citizen(conn, citizen_id)
    if found is None:
        return
    citizen, due = found
    why = unsuitable(
        product_code=row["product_code"],
        dose_number=row["dose_number"],
        day=row["day"],
        due=due,
        ruled_out=readmodel.ruled_out_of(citizen),
        preferences=list(citizen["vaccine_preferences"] or ()),
    )
    if why is not None:
        await cancel_appointment(
            store, conn, row["appointment_id"], f"{reason}: {why}", metadata=metadata
        )


async def _attend(
    conn: Connection, store: EventStore, metadata: Metadata, event: DoseAdministered
) -> bool | None:
    """Attend the appointment the dose was given at, cancel an open one it makes moot;
    whether the citizen has an open appointment now (None: not known, read it again)."""
    target = None
    opened: asyncpg.Record | None = None  # the citizen's open appointment, once read
    read = False
    if event.appointment_id is not None:
        target = await readmodel.appointment(conn, event.appointment_id)
        if target is not None and target["citizen_id"] != event.citizen_id:
            target = None  # not this citizen's: ignore the reference
    if target is None:
        target = opened = await readmodel.open_appointment(conn, event.citizen_id)
        read = True
        if target is not None and target["dose_number"] != event.dose_number:
            target = None
    attended = target is not None and target["status"] in ("booked", "missed")
    if attended:
        assert target is not None
        await attend(store, conn, target["appointment_id"], event.dose_id, metadata=metadata)
    # Read again only when attending may have changed what is open.
    other = (
        opened
        if read and not attended
        else await readmodel.open_appointment(conn, event.citizen_id)
    )
    if other is not None and other["dose_number"] <= event.dose_number:
        await cancel_appointment(
            store, conn, other["appointment_id"], "dose_recorded_elsewhere", metadata=metadata
        )
        return None
    return other is not None


async def book_next_dose(
    conn: Connection,
    store: EventStore,
    citizen_id: str,
    *,
    today: date,
    metadata: Metadata | None = None,
    has_open: bool | None = None,
) -> str | None:
    """Book the next dose of the citizen's series if one is due; the appointment id, or None.

    `has_open`: whether the citizen has an open appointment, if the caller just read it
    in this transaction (None: read it here).

    Inside [min, max interval] from the last dose, same product: the same site if it has
    a slot and stock, else the preferred or home municipality or the district (not
    "anywhere": a second dose far away is left to the next run instead). Runs in a
    savepoint: if the slot is taken meanwhile (a conflict), nothing is booked and the
    citizen waits for the next scheduling run; the caller's work stands.
    """
    if has_open is None:
        has_open = await readmodel.open_appointment(conn, citizen_id) is not None
    if has_open:
        return None
    found = await readmodel.citizen(conn, citizen_id)
    if found is None:
        return None  # not registered (yet): the registration event will make them wait
    row, due = found
    if row["status"] != "active" or due is None or due.booster or due.product_code is None:
        return None
    start = max(due.earliest or today, today + timedelta(days=1))
    end = due.latest if due.latest is not None and due.latest >= start else None
    end = end or start + timedelta(days=NEXT_DOSE_SEARCH_DAYS - 1)
    days = (end - start).days + 1
    citizen = readmodel.citizen_from_row(row, due)
    near = {c for c in (citizen.municipality_code, citizen.preferred_municipality_code) if c}
    districts = {district_of(c) for c in near} - {None}
    near |= {m.code for m in municipalities().values() if m.district_code in districts}
    site_ids = set(await readmodel.site_ids_near(conn, sorted(near)))
    if due.anchor_site:
        site_ids.add(due.anchor_site)
    supply = await readmodel.supply(conn, start, days, today, sorted(site_ids))
    result = plan(
        [citizen],
        supply.sites,
        supply.capacity,
        supply.stock,
        start=start,
        days=days,
        allow_anywhere=False,
    )
    if not result.bookings:
        return None
    proposal = result.bookings[0]
    municipality_of = {s.site_id: s.municipality_code for s in supply.sites}
    request = BookingRequest(
        citizen_id=citizen_id,
        dose_number=proposal.dose_number,
        booster=proposal.booster,
        reason=explain(proposal.decision(citizen, municipality_of[proposal.site_id])),
    )
    try:
        async with conn.transaction():
            reservation = await reserve(
                store,
                conn,
                site_id=proposal.site_id,
                day=proposal.day,
                product_code=proposal.product_code,
                requests=[request],
                today=today,
                metadata=metadata,
            )
    except (ConcurrencyConflict, DomainError):
        return None
    return reservation.booked[0][1] if reservation.booked else None
