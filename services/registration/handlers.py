"""Registration's command path, apart from HTTP: load, prepare, decide, append, keep the books.

`run_command` (a known citizen) and `run_registration` (a national id) are written
against any event store (`StreamStore[Tx]`) and any `CitizenBooks[Tx]` (the key table,
the national-id index and the `citizens` read model), so the same code runs on
PostgreSQL in the service and in memory in the unit tests
(tests/unit/registration/test_registration_handlers.py).

Citizen ids are random (`keys.new_citizen_id`): nothing derives one from a national id.
The national-id index (a keyed hash of the national id -> the citizen id) finds the
citizen a registration is for; it is written in the registration's transaction, its
key is unique, so of two concurrent first registrations of one national id the second
waits for the first and decides again (409), and erasure deletes the row, so afterwards
nothing links the national id to the erased citizen's id. The common case, a national id
never registered, is decided first for a new random id and written with one statement
(`CitizenBooks.register_new`: the index entry is its gate); when the index already has
the national id nothing is written and the general path loads and decides.

The reactions (`build_reactions`): links of citizens to sites, the grants of each
citizen's data key to the holders that offer a key for it (`grant_to_holder`), and the
holders' pooled keys, filed for first registrations (`pooled.keep_offers`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from immunreg.contracts import administration, booking, certificates, notifications
from immunreg.contracts.administration import DoseAdministered, DoseCorrected
from immunreg.contracts.booking import AppointmentBooked, AppointmentRescheduled
from immunreg.contracts.common import HolderKeyOffered, HolderKeysPooled
from immunreg.contracts.envelope import Context, Envelope, Event, Metadata
from immunreg.contracts.registration import (
    CONTEXT,
    CitizenErased,
    CitizenRegistered,
    grant_context,
)
from immunreg.domain import Conflict, Loaded, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.postgres import Along
from immunreg.eventstore.store import EventStore, Planned, StreamStore
from immunreg.messaging.reactions import Provided, Reactions
from immunreg.sealing import WRAP_ALG, X25519_BYTES, CitizenKey, wrap_key

from . import readmodel
from .contacts import contacts_indexed, index_contacts
from .domain import (
    CITIZEN,
    KEY_GRANTS,
    CitizenState,
    Command,
    Grant,
    GrantsState,
    Register,
    grants_stream_id,
)
from .keys import (
    KeyRing,
    destroy_citizen_key,
    fetch_key_for_grant,
    keep_citizen_key,
    new_citizen_id,
    store_citizen_key,
)
from .pooled import PooledKeys, keep_offers

log = logging.getLogger(__name__)

Tx = TypeVar("Tx")
# The books only take the transaction handle (never return one), hence contravariant.
Tx_contra = TypeVar("Tx_contra", contravariant=True)

COMMAND_ATTEMPTS = 5


@dataclass(frozen=True)
class Prepared:
    """A command ready to decide, and the new data key to keep if it registers the citizen."""

    command: Command
    new_key: CitizenKey | None = None


# Turns the loaded state into a command: may read through the transaction (e.g. the
# citizen's key, to re-seal personal data), so it runs again when the command does.
Prepare = Callable[[Tx, Loaded[CitizenState]], Awaitable[Prepared]]


class AlreadyRegistered(Conflict):
    """The national id is registered, as `citizen_id` (409)."""

    def __init__(self, citizen_id: str) -> None:
        super().__init__("already_registered", "this national id is already registered")
        self.citizen_id = citizen_id


class CitizenBooks(Protocol[Tx_contra]):
    """What a command writes beside the Citizen stream, in the same transaction."""

    async def keep_key(self, tx: Tx_contra, citizen_id: str, key: CitizenKey) -> None:
        """Keep the data key a registration sealed the personal data with."""
        ...

    async def destroy_key(self, tx: Tx_contra, citizen_id: str) -> None:
        """Forget the data key: what it sealed can never be read again (erasure)."""
        ...

    async def citizen_of(self, tx: Tx_contra, national_key: str) -> str | None:
        """The citizen the national id (its keyed hash) is registered as, if any."""
        ...

    async def claim(self, tx: Tx_contra, national_key: str, citizen_id: str) -> bool:
        """Index the national id as this citizen; False when another transaction indexed
        it first (this one waits for that one to end)."""
        ...

    async def unindex(self, tx: Tx_contra, citizen_id: str) -> None:
        """Forget which national id the citizen is (erasure)."""
        ...

    async def record(
        self, tx: Tx_contra, citizen_id: str, envelope: Envelope, event: Event
    ) -> None:
        """Bring the citizen's read-model row up to the event."""
        ...

    async def register_new(self, tx: Tx_contra, new: NewRegistration) -> bool:
        """All of a first registration's writes at once: the national-id index, the events
        and their outbox rows, the key, the read model and the contact index; False, with
        none of them written, when the national id is indexed already or the citizen's
        id from before random ids (`legacy_id`) has events."""
        ...


@dataclass(frozen=True)
class NewRegistration:
    """A registration decided for a new random citizen id, not yet written."""

    national_key: str
    legacy_id: str | None
    planned: Planned[CitizenState]
    key: CitizenKey

    @property
    def citizen_id(self) -> str:
        """The new citizen's id (the stream the events are for)."""
        return self.planned.outcome.events[0].stream_id


class PostgresBooks:
    """The service's books: the `citizen_keys` table and the `citizens` read model."""

    def __init__(self, ring: KeyRing, store: EventStore) -> None:
        self.ring = ring
        self.store = store

    async def keep_key(self, tx: Connection, citizen_id: str, key: CitizenKey) -> None:
        await store_citizen_key(tx, self.ring, citizen_id, key)

    async def destroy_key(self, tx: Connection, citizen_id: str) -> None:
        await destroy_citizen_key(tx, citizen_id)

    async def citizen_of(self, tx: Connection, national_key: str) -> str | None:
        return await readmodel.citizen_of_national_id(tx, national_key)

    async def claim(self, tx: Connection, national_key: str, citizen_id: str) -> bool:
        return await readmodel.index_national_id(tx, national_key, citizen_id)

    async def unindex(self, tx: Connection, citizen_id: str) -> None:
        await readmodel.unindex_national_id(tx, citizen_id)

    async def record(
        self, tx: Connection, citizen_id: str, envelope: Envelope, event: Event
    ) -> None:
        await readmodel.apply_event(tx, citizen_id, envelope.version, envelope.recorded_at, event)
        await index_contacts(tx, self.ring, citizen_id, event)

    async def register_new(self, tx: Connection, new: NewRegistration) -> bool:
        [envelope] = new.planned.outcome.events
        [event] = new.planned.events
        if not isinstance(event, CitizenRegistered):
            raise TypeError(f"a new registration decided {envelope.type}")
        citizen_id = new.citizen_id
        along = Along(
            [
                readmodel.national_id_claim(new.national_key, citizen_id, new.legacy_id),
                ("gate", "SELECT 1 FROM claimed", ()),
                keep_citizen_key(self.ring, citizen_id, new.key, gate="gate"),
                readmodel.registered_row(
                    citizen_id, envelope.version, envelope.recorded_at, event, gate="gate"
                ),
                contacts_indexed(self.ring, citizen_id, new.key, event, gate="gate"),
            ]
        )
        return await self.store.append_planned(tx, CITIZEN, new.planned, along)


async def run_command(
    store: StreamStore[Tx],
    books: CitizenBooks[Tx],
    citizen_id: str,
    prepare: Prepare[Tx],
    *,
    metadata: Metadata | None = None,
    expected_version: int | None = None,
    attempts: int = COMMAND_ATTEMPTS,
) -> Outcome[CitizenState]:
    """Load, prepare, decide, append, keep keys and read model: one transaction.

    A conflicting append rolls everything back and the command is decided
    again; with `expected_version` (If-Match) a conflict is final (412).
    """

    async def work(tx: Tx) -> Outcome[CitizenState]:
        loaded = await store.load_state(CITIZEN, citizen_id, tx)
        if expected_version is not None and loaded.version != expected_version:
            raise ConcurrencyConflict(citizen_id, expected_version)
        prepared = await prepare(tx, loaded)
        return await _decide_and_keep(
            store, books, tx, citizen_id, loaded=loaded, prepared=prepared, metadata=metadata
        )

    return await store.transact(work, attempts=attempts, retry_conflicts=expected_version is None)


async def _decide_and_keep(
    store: StreamStore[Tx],
    books: CitizenBooks[Tx],
    tx: Tx,
    citizen_id: str,
    *,
    loaded: Loaded[CitizenState],
    prepared: Prepared,
    metadata: Metadata | None,
) -> Outcome[CitizenState]:
    outcome = await store.decide_and_append(
        tx, CITIZEN, citizen_id, loaded, prepared.command, metadata=metadata
    )
    events = [CONTEXT.read(envelope) for envelope in outcome.events]
    if prepared.new_key is not None and any(isinstance(e, CitizenRegistered) for e in events):
        await books.keep_key(tx, citizen_id, prepared.new_key)
    if any(isinstance(e, CitizenErased) for e in events):
        await books.destroy_key(tx, citizen_id)
        await books.unindex(tx, citizen_id)
    for envelope, event in zip(outcome.events, events, strict=True):
        await books.record(tx, citizen_id, envelope, event)
    return outcome


async def run_registration(
    store: StreamStore[Tx],
    books: CitizenBooks[Tx],
    national_key: str,
    prepare_for: Callable[[str], Prepare[Tx]],
    *,
    legacy_id: str | None = None,
    metadata: Metadata | None = None,
    attempts: int = COMMAND_ATTEMPTS,
    pooled: PooledKeys | None = None,
) -> tuple[str, Outcome[CitizenState]]:
    """Register the national id (its keyed hash `national_key`): the citizen it is indexed
    as (registering again after a withdrawal), else a new random citizen id; the citizen
    id and the outcome. `prepare_for(citizen_id)` makes the command once the id is known.

    `pooled`: the holders' pooled keys this process holds; a first registration grants
    its data key to one of each holder's (`pooled.py`), a holder with none at hand gets
    it by its per-citizen offer, as every other registration does.

    `legacy_id` is the id the national id had when ids were keyed hashes of it: a
    registration made then, not erased, is indexed under it when it registers again.
    Already registered: `AlreadyRegistered` (409), nothing written.
    """

    async def new_citizen(tx: Tx) -> tuple[str, Outcome[CitizenState]] | None:
        # The common case, a national id never registered, in one statement: decided for a
        # new random id first, written only if nothing is indexed under the national id
        # (else nothing is written and the general path below finds what is). The new
        # data key is wrapped to the holders' pooled keys at hand (`offered`), the grants
        # carried in CitizenRegistered.
        citizen_id, loaded = new_citizen_id(), Loaded(CITIZEN.initial(), 0)
        try:
            prepared = await prepare_for(citizen_id)(tx, loaded)
            command = prepared.command
            if offered and prepared.new_key is not None and isinstance(command, Register):
                grants = [k.grant(citizen_id, prepared.new_key) for k in offered]
                command = msgspec.structs.replace(command, grants=grants)
            planned = store.plan(CITIZEN, citizen_id, loaded, command, metadata=metadata)
        except Exception:  # the general path below decides again, and raises it again
            return None
        if prepared.new_key is None or [type(e) for e in planned.events] != [CitizenRegistered]:
            return None
        new = NewRegistration(national_key, legacy_id, planned, prepared.new_key)
        if not await books.register_new(tx, new):
            return None
        return citizen_id, planned.outcome

    async def work(tx: Tx) -> tuple[str, Outcome[CitizenState]]:
        citizen_id = await books.citizen_of(tx, national_key)
        indexed = citizen_id is not None
        loaded: Loaded[CitizenState] | None = None
        if citizen_id is None and legacy_id is not None:
            legacy = await store.load_state(CITIZEN, legacy_id, tx)
            if legacy.version > 0 and legacy.state.status != "erased":
                citizen_id, loaded = legacy_id, legacy
        if citizen_id is None:
            # 100 random bits: no stream has this id, so there is nothing to load (were
            # there one, the append at version 0 would conflict and this run again).
            citizen_id, loaded = new_citizen_id(), Loaded(CITIZEN.initial(), 0)
        if not indexed and not await books.claim(tx, national_key, citizen_id):
            # A concurrent registration of this national id committed first: roll back
            # and decide again, against the citizen it registered.
            raise ConcurrencyConflict(citizen_id, 0)
        if loaded is None:
            loaded = await store.load_state(CITIZEN, citizen_id, tx)
        prepared = await prepare_for(citizen_id)(tx, loaded)
        try:
            outcome = await _decide_and_keep(
                store, books, tx, citizen_id, loaded=loaded, prepared=prepared, metadata=metadata
            )
        except Conflict as refused:
            if refused.code == "already_registered":
                raise AlreadyRegistered(citizen_id) from refused
            raise
        return citizen_id, outcome

    # Taken before the statement (a batch is fetched when they ran out): each is used at
    # most once, so a registration that is then not written leaves them unused for good.
    offered = await pooled.take() if pooled is not None else []
    try:
        # One statement, so no transaction around it (BEGIN and COMMIT are round trips).
        async with store.statement() as tx:
            registered = await new_citizen(tx)
    except ConcurrencyConflict:  # the new id's stream exists: 100 random bits said otherwise
        registered = None
    if registered is not None:
        return registered
    return await store.transact(work, attempts=attempts)


# --- reactions -------------------------------------------------------------------------
#
# Registration follows no other context's data but this: an appointment booked or moved
# to a site, a dose given or corrected at one, links the citizen to that site, so its
# staff may read the citizen's vaccination view (the route's linked reach); and a holder's
# offer of a key for a citizen's data key is answered with the key, wrapped to it.


async def citizen_met_at_site(
    conn: Connection,
    event: AppointmentBooked | AppointmentRescheduled | DoseAdministered | DoseCorrected,
    envelope: Envelope,
) -> None:
    """Link the citizen to the site the appointment or the dose is at."""
    await readmodel.link_citizen_to_site(
        conn, event.citizen_id, event.site_id, envelope.occurred_at
    )


@dataclass(frozen=True)
class Granting:
    """What granting needs besides the consumer's connection."""

    store: EventStore
    ring: KeyRing


async def grant_to_holder(
    store: StreamStore[Connection],
    ring: KeyRing,
    conn: Connection,
    holder: str,
    event: HolderKeyOffered,
    *,
    metadata: Metadata | None = None,
) -> bool:
    """Grant the citizen's data key to `holder`, wrapped to the key it offered; whether a
    grant was appended. Nothing when the citizen was erased, or the offer was for a data
    key the citizen no longer has (an erasure and a new registration crossed it). The key
    row is held until commit, so an erasure waits for a grant under way, and the grant is
    appended before `CitizenErased` or not at all. The key and what the grants stream says
    of this offer are one read, the grant one append."""
    stream = grants_stream_id(event.citizen_id)
    found = await fetch_key_for_grant(conn, ring, event.citizen_id, stream, event.public_key)
    if found is None or found.key.key_id != event.data_key_id:
        return False
    key = found.key
    try:
        public = base64.b64decode(event.public_key, validate=True)
    except (binascii.Error, ValueError):
        public = b""
    if len(public) != X25519_BYTES:
        log.warning("%s offered a key that is not an X25519 public key", holder)
        return False
    command = Grant(
        citizen_id=event.citizen_id,
        recipient=holder,
        holder_key=event.public_key,
        data_key_id=key.key_id,
        wrapped_key=wrap_key(public, key.key, grant_context(event.citizen_id, holder)),
        wrap_alg=WRAP_ALG,
    )
    # What deciding a grant needs of the stream: its version and whether this key has one.
    granted = frozenset({event.public_key}) if found.granted else frozenset[str]()
    loaded = Loaded(GrantsState(granted=granted), found.version)
    outcome = await store.decide_and_append(
        conn, KEY_GRANTS, stream, loaded, command, metadata=metadata
    )
    return bool(outcome.events)


Handler = Callable[[Connection, Any, Envelope], Awaitable[None]]


def _granting_to(holder: Context, granting: Provided[Granting]) -> Handler:
    # The holder is the topic's owner, never the event's own claim: only the service that
    # may write to `<holder>.events.v1` gets grants in its name.
    async def holder_key_offered(
        conn: Connection, event: HolderKeyOffered, envelope: Envelope
    ) -> None:
        deps = granting()
        await grant_to_holder(
            deps.store, deps.ring, conn, holder.name, event, metadata=Metadata.caused_by(envelope)
        )

    return holder_key_offered


def _pooled_by(holder: Context) -> Handler:
    async def holder_keys_pooled(
        conn: Connection, event: HolderKeysPooled, envelope: Envelope
    ) -> None:
        await keep_offers(conn, holder.name, envelope.stream_id, event)

    return holder_keys_pooled


def build_reactions(granting: Provided[Granting]) -> Reactions:
    """Every reaction of the service; the grants use what the running app provides."""
    reactions = Reactions()
    for context, event_type in (
        (booking.CONTEXT, AppointmentBooked),
        (booking.CONTEXT, AppointmentRescheduled),
        (administration.CONTEXT, DoseAdministered),
        (administration.CONTEXT, DoseCorrected),
    ):
        reactions.add(context, event_type, citizen_met_at_site)
    for holder in (certificates.CONTEXT, notifications.CONTEXT):
        reactions.add(holder, HolderKeyOffered, _granting_to(holder, granting))
        reactions.add(holder, HolderKeysPooled, _pooled_by(holder))
    return reactions
