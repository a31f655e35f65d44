"""What booking does when other contexts' events arrive.

Every handler runs in the consumer's transaction (`conn`): its appends go through an
EventStore on that connection, so they commit together with the consumer's position
(exactly once). Topics are not ordered relative to each other, so each handler copes
with arriving "early" (a dose for a citizen booking has not heard of yet is kept, and
the next dose is planned once the registration arrives).

registration.events.v1
- CitizenRegistered: the citizen joins the waiting list (registration order = the
  event's recorded_at). Registering again after a withdrawal puts them at the back.
- PreferencesChanged: new preferences, group and conditions; an open appointment for a
  product the citizen no longer accepts or may not have is cancelled (they wait again).
- RegistrationWithdrawn, CitizenErased: open appointments are cancelled; erasure also
  drops the birth date, municipality and conditions held here.

inventory.events.v1
- StockLevelChanged: `site_stock` (a location id is a site id), newest version wins.

administration.events.v1
- DoseAdministered: the appointment is attended (by its id, else the citizen's open one
  for that dose); an open appointment the dose makes pointless is cancelled; then the
  next dose of the series is booked inside [min, max interval] from the dose's day, same
  product: the same site if it has a slot and stock, else the preferred or home
  municipality or the district (not "anywhere": a second dose far away is left to the
  next run instead). Nothing free -> the citizen waits for the next scheduling run.
  Boosters are NOT booked here: the booster window opens months later, beyond any
  planned capacity; the citizen becomes due (outside_horizon until then) and a nightly
  run books them once the window enters its horizon.
- DoseVoided: the dose did not happen. It no longer counts; an open appointment booked
  for the dose after it is cancelled ("dose_voided") and the citizen waits for the
  voided dose again (booked by the next run).
- DoseCorrected: the record is replaced; an open appointment that no longer fits the
  corrected series (dose number, product or interval window) is cancelled likewise.
"""

from __future__ import annotations

from datetime import date, timedelta

from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.envelope import Envelope, Metadata
from immunreg.contracts.inventory import StockLevelChanged
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from immunreg.domain import DomainError
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import EventStore
from immunreg.messaging.reactions import Reactions
from immunreg.reference.geography import municipalities

from . import readmodel
from .config import BookingConfig
from .eligibility import unsuitable
from .ranking import district_of, explain
from .scheduler import plan
from .slots import BookingRequest, Slots

NEXT_DOSE_SEARCH_DAYS = 14  # when the interval window is already closed (overdue)


class Runtime:
    """The running app's event store and settings, for handlers that only get a connection."""

    def __init__(self) -> None:
        self._store: EventStore | None = None
        self.config = BookingConfig()

    def fill(self, store: EventStore | None, config: BookingConfig | None = None) -> None:
        self._store = store
        if config is not None:
            self.config = config

    @property
    def store(self) -> EventStore:
        if self._store is None:
            # A ConnectionError makes the consumer roll the batch back and read it again
            # later, instead of dead-lettering a message that is fine.
            raise ConnectionError("the booking service has not started yet")
        return self._store


def _metadata(envelope: Envelope) -> Metadata:
    return Metadata(correlation_id=envelope.correlation_id, causation_id=envelope.event_id)


_REGISTERED = """
INSERT INTO citizens AS c (citizen_id, status, version, birth_date, municipality_code,
    preferred_municipality_code, priority_group, conditions, vaccine_preferences,
    registered_at)
VALUES ($1, 'active', $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'active', version = excluded.version, birth_date = excluded.birth_date,
    municipality_code = excluded.municipality_code,
    preferred_municipality_code = excluded.preferred_municipality_code,
    priority_group = excluded.priority_group, conditions = excluded.conditions,
    vaccine_preferences = excluded.vaccine_preferences,
    registered_at = excluded.registered_at, updated_at = now()
WHERE c.version < excluded.version
"""

_PREFERENCES = """
UPDATE citizens SET version = $2, priority_group = $3, conditions = $4,
    vaccine_preferences = $5, preferred_municipality_code = $6, updated_at = now()
WHERE citizen_id = $1 AND version < $2
RETURNING status
"""

_WITHDRAWN = """
UPDATE citizens SET version = $2, status = 'withdrawn', updated_at = now()
WHERE citizen_id = $1 AND version < $2
"""

_ERASED = """
INSERT INTO citizens AS c (citizen_id, status, version) VALUES ($1, 'erased', $2)
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'erased', version = excluded.version, birth_date = NULL,
    municipality_code = NULL, preferred_municipality_code = NULL, priority_group = NULL,
    conditions = '{}', vaccine_preferences = '{}', updated_at = now()
WHERE c.version < excluded.version
"""

_STOCK = """
INSERT INTO site_stock AS s (site_id, product_code, doses_available, earliest_expiry, version)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (site_id, product_code) DO UPDATE SET
    doses_available = excluded.doses_available, earliest_expiry = excluded.earliest_expiry,
    version = excluded.version, updated_at = now()
WHERE s.version < excluded.version
"""

_DOSE = """
INSERT INTO doses (dose_id, citizen_id, site_id, product_code, dose_number, booster,
                   administered_on)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (dose_id) DO NOTHING
RETURNING dose_id
"""


def build_reactions(runtime: Runtime) -> Reactions:
    """Booking's reactions, bound to the runtime of one app."""
    reactions = Reactions()

    def slots(envelope: Envelope) -> Slots:
        return Slots(runtime.store, _metadata(envelope))

    # --- registration -----------------------------------------------------------------

    @reactions.on(registration.CONTEXT, CitizenRegistered)
    async def citizen_registered(
        conn: Connection, event: CitizenRegistered, envelope: Envelope
    ) -> None:
        await conn.execute(
            _REGISTERED,
            event.citizen_id,
            envelope.version,
            event.birth_date,
            event.municipality_code,
            event.preferred_municipality_code,
            event.priority_group,
            event.conditions,
            event.vaccine_preferences,
            envelope.recorded_at,
        )

    @reactions.on(registration.CONTEXT, PreferencesChanged)
    async def preferences_changed(
        conn: Connection, event: PreferencesChanged, envelope: Envelope
    ) -> None:
        status = await conn.fetchval(
            _PREFERENCES,
            event.citizen_id,
            envelope.version,
            event.priority_group,
            event.conditions,
            event.vaccine_preferences,
            event.preferred_municipality_code,
        )
        if status == "active":
            await _reconcile(conn, slots(envelope), event.citizen_id, "preferences_changed")

    @reactions.on(registration.CONTEXT, RegistrationWithdrawn)
    async def withdrawn(conn: Connection, event: RegistrationWithdrawn, envelope: Envelope) -> None:
        await conn.execute(_WITHDRAWN, event.citizen_id, envelope.version)
        await _cancel_open(conn, slots(envelope), event.citizen_id, "registration_withdrawn")

    @reactions.on(registration.CONTEXT, CitizenErased)
    async def erased(conn: Connection, event: CitizenErased, envelope: Envelope) -> None:
        await conn.execute(_ERASED, event.citizen_id, envelope.version)
        await _cancel_open(conn, slots(envelope), event.citizen_id, "citizen_erased")

    # --- inventory --------------------------------------------------------------------

    @reactions.on(inventory.CONTEXT, StockLevelChanged)
    async def stock_level(conn: Connection, event: StockLevelChanged, envelope: Envelope) -> None:
        await conn.execute(
            _STOCK,
            event.location_id,
            event.product_code,
            event.doses_available,
            event.earliest_expiry,
            envelope.version,
        )

    # --- administration ---------------------------------------------------------------

    @reactions.on(administration.CONTEXT, DoseAdministered)
    async def dose_administered(
        conn: Connection, event: DoseAdministered, envelope: Envelope
    ) -> None:
        fresh = await conn.fetchval(
            _DOSE,
            event.dose_id,
            event.citizen_id,
            event.site_id,
            event.product_code,
            event.dose_number,
            event.booster,
            event.administered_at.astimezone(runtime.config.timezone).date(),
        )
        if fresh is None:
            return  # this dose was recorded already
        s = slots(envelope)
        await _attend(conn, s, event)
        today = runtime.config.today()
        await book_next_dose(conn, s, event.citizen_id, today=today)

    @reactions.on(administration.CONTEXT, DoseVoided)
    async def dose_voided(conn: Connection, event: DoseVoided, envelope: Envelope) -> None:
        await conn.execute("UPDATE doses SET voided = true WHERE dose_id = $1", event.dose_id)
        await _reconcile(conn, slots(envelope), event.citizen_id, "dose_voided")

    @reactions.on(administration.CONTEXT, DoseCorrected)
    async def dose_corrected(conn: Connection, event: DoseCorrected, envelope: Envelope) -> None:
        await conn.execute(
            """
            INSERT INTO doses (dose_id, citizen_id, site_id, product_code, dose_number, booster,
                               administered_on)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (dose_id) DO UPDATE SET site_id = excluded.site_id,
                product_code = excluded.product_code, dose_number = excluded.dose_number,
                booster = excluded.booster, administered_on = excluded.administered_on
            """,
            event.dose_id,
            event.citizen_id,
            event.site_id,
            event.product_code,
            event.dose_number,
            event.booster,
            event.administered_at.astimezone(runtime.config.timezone).date(),
        )
        await _reconcile(conn, slots(envelope), event.citizen_id, "dose_corrected")

    return reactions


async def _cancel_open(conn: Connection, slots: Slots, citizen_id: str, reason: str) -> None:
    row = await readmodel.open_appointment(conn, citizen_id)
    if row is not None:
        await slots.cancel(conn, row["appointment_id"], reason)


async def _reconcile(conn: Connection, slots: Slots, citizen_id: str, reason: str) -> None:
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
        conditions=list(citizen["conditions"] or ()),
        preferences=list(citizen["vaccine_preferences"] or ()),
    )
    if why is not None:
        await slots.cancel(conn, row["appointment_id"], f"{reason}: {why}")


async def _attend(conn: Connection, slots: Slots, event: DoseAdministered) -> None:
    target = None
    if event.appointment_id is not None:
        target = await readmodel.appointment(conn, event.appointment_id)
        if target is not None and target["citizen_id"] != event.citizen_id:
            target = None  # not this citizen's: ignore the reference
    if target is None:
        target = await readmodel.open_appointment(conn, event.citizen_id)
        if target is not None and target["dose_number"] != event.dose_number:
            target = None
    if target is not None and target["status"] in ("booked", "missed"):
        await slots.attend(conn, target["appointment_id"], event.dose_id)
    other = await readmodel.open_appointment(conn, event.citizen_id)
    if other is not None and other["dose_number"] <= event.dose_number:
        await slots.cancel(conn, other["appointment_id"], "dose_recorded_elsewhere")


async def book_next_dose(
    conn: Connection, slots: Slots, citizen_id: str, *, today: date
) -> str | None:
    """Book the next dose of the citizen's series if one is due; the appointment id, or None.

    Runs in a savepoint: if the slot is taken meanwhile (a conflict), nothing is booked
    and the citizen waits for the next scheduling run; the caller's work stands.
    """
    if await readmodel.open_appointment(conn, citizen_id) is not None:
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
    muni = {s.site_id: s.municipality_code for s in supply.sites}
    request = BookingRequest(
        citizen_id=citizen_id,
        dose_number=proposal.dose_number,
        booster=proposal.booster,
        reason=explain(proposal.decision(citizen, muni[proposal.site_id])),
    )
    try:
        async with conn.transaction():
            reservation = await slots.reserve(
                conn,
                site_id=proposal.site_id,
                day=proposal.day,
                product_code=proposal.product_code,
                requests=[request],
                today=today,
            )
    except (ConcurrencyConflict, DomainError):
        return None
    return reservation.booked[0][1] if reservation.booked else None
