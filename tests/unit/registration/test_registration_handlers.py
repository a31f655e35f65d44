"""Registration's command path on the in-memory event store: the pattern for handler tests.

`handlers.run_command` runs here exactly as in the service; only the store
(InMemoryEventStore) and the books (a fake of the key table and read model)
are swapped. Each test checks what a command appended, what it put in the
outbox for Kafka, and what it wrote beside the stream, with no PostgreSQL.
"""

from __future__ import annotations

from datetime import date

import pytest

from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Envelope, Event, decode_envelope
from immunreg.contracts.registration import CONTEXT, Consent
from immunreg.domain import Conflict, Loaded
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.memory import InMemoryEventStore, MemoryTransaction
from immunreg.sealing import CitizenKey
from services.registration.domain import (
    CITIZEN,
    CitizenState,
    Erase,
    Preferences,
    Register,
    Withdraw,
)
from services.registration.handlers import (
    AlreadyRegistered,
    NewRegistration,
    Prepare,
    Prepared,
    run_command,
    run_registration,
)
from services.registration.keys import is_citizen_id

CID = "c-aaaaaaaaaaaaaaaaaaaa"
OTHER = "c-bbbbbbbbbbbbbbbbbbbb"
NATIONAL = "hash-of-0101990710008"
KEY = CitizenKey(key_id="k1", key=b"\0" * 32)


class FakeBooks:
    """The key table and the read model as dicts (written at once: no rollback here)."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store
        self.registered_new = 0  # registrations written by `register_new`
        self.keys: dict[str, CitizenKey] = {}
        self.rows: dict[str, tuple[int, str]] = {}  # citizen id -> (version, last event type)
        self.index: dict[str, str] = {}  # national-id hash -> citizen id
        self.claims_lost = 0  # how many claims another registration (as OTHER) wins first

    async def citizen_of(self, tx: MemoryTransaction, national_key: str) -> str | None:
        return self.index.get(national_key)

    async def claim(self, tx: MemoryTransaction, national_key: str, citizen_id: str) -> bool:
        if self.claims_lost:
            self.claims_lost -= 1
            self.index[national_key] = OTHER  # what the winner indexed
            return False
        self.index[national_key] = citizen_id
        return True

    async def unindex(self, tx: MemoryTransaction, citizen_id: str) -> None:
        self.index = {k: v for k, v in self.index.items() if v != citizen_id}

    async def keep_key(self, tx: MemoryTransaction, citizen_id: str, key: CitizenKey) -> None:
        self.keys[citizen_id] = key

    async def destroy_key(self, tx: MemoryTransaction, citizen_id: str) -> None:
        self.keys.pop(citizen_id, None)

    async def record(
        self, tx: MemoryTransaction, citizen_id: str, envelope: Envelope, event: Event
    ) -> None:
        self.rows[citizen_id] = (envelope.version, envelope.type)

    async def register_new(self, tx: MemoryTransaction, new: NewRegistration) -> bool:
        legacy = new.legacy_id is not None and await self.store.load(new.legacy_id, conn=tx)
        if legacy or new.national_key in self.index:
            return False
        if not await self.claim(tx, new.national_key, new.citizen_id):
            return False
        await self.store.write_planned(tx, CITIZEN, new.planned)
        await self.keep_key(tx, new.citizen_id, new.key)
        [envelope], [event] = new.planned.outcome.events, new.planned.events
        await self.record(tx, new.citizen_id, envelope, event)
        self.registered_new += 1
        return True


def registering(
    new_key: CitizenKey | None = KEY, citizen_id: str = CID
) -> Prepare[MemoryTransaction]:
    async def prepare(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
        command = Register(
            citizen_id=citizen_id,
            birth_date=date(1960, 3, 4),
            sex="female",
            municipality_code="70092",
            preferences=Preferences(priority_group="general"),
            consent=Consent(data_processing=True),
            channel="online",
            personal=Sealed(key_id="k1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy"),
            health=Sealed(key_id="k1", nonce="aGVhbHRo", ciphertext="Y29uZGl0aW9ucw=="),
        )
        return Prepared(command, new_key=new_key if loaded.state.status != "withdrawn" else None)

    return prepare


def simply(command: Withdraw | Erase) -> Prepare[MemoryTransaction]:
    async def prepare(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
        return Prepared(command)

    return prepare


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def books(store: InMemoryEventStore) -> FakeBooks:
    return FakeBooks(store)


async def test_registering_appends_publishes_and_keeps_the_key(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    outcome = await run_command(store, books, CID, registering())

    assert outcome.version == 1 and outcome.state.status == "active"
    [stored] = await store.load(CID)
    assert stored.type == "CitizenRegistered" and stored.version == 1
    [row] = store.memory.outbox
    assert (row.topic, row.key) == (CONTEXT.topic, CID)
    assert decode_envelope(row.payload).event_id == stored.event_id
    assert books.keys == {CID: KEY}
    assert books.rows == {CID: (1, "CitizenRegistered")}


async def test_a_second_registration_is_refused_and_writes_nothing(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await run_command(store, books, CID, registering())

    with pytest.raises(Conflict) as refused:
        await run_command(store, books, CID, registering(new_key=CitizenKey("k2", b"\1" * 32)))

    assert refused.value.code == "already_registered"
    assert len(await store.load(CID)) == 1 and len(store.memory.outbox) == 1
    assert books.keys == {CID: KEY}, "the first key stays"


async def test_erasing_destroys_the_key(store: InMemoryEventStore, books: FakeBooks) -> None:
    await run_command(store, books, CID, registering())

    outcome = await run_command(store, books, CID, simply(Erase(citizen_id=CID)))

    assert outcome.state.status == "erased"
    assert books.keys == {}
    assert books.rows[CID] == (outcome.version, "CitizenErased")


async def test_an_if_match_with_a_stale_version_is_final(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await run_command(store, books, CID, registering())
    withdraw = simply(Withdraw(citizen_id=CID))

    with pytest.raises(ConcurrencyConflict):
        await run_command(store, books, CID, withdraw, expected_version=0)

    outcome = await run_command(store, books, CID, withdraw, expected_version=1)
    assert outcome.state.status == "withdrawn" and outcome.version == 2


async def test_a_conflict_is_resolved_by_deciding_again(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    """Someone registers the citizen between our load and our append: we decide again
    on the new state, which refuses (already registered) instead of overwriting."""
    runs = 0
    inner = registering()

    async def racing(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
        nonlocal runs
        runs += 1
        if runs == 1:
            await run_command(store, FakeBooks(store), CID, registering())
        return await inner(tx, loaded)

    with pytest.raises(Conflict):
        await run_command(store, books, CID, racing)

    assert runs == 2
    assert len(await store.load(CID)) == 1
    assert books.keys == {} and books.rows == {}, "the losing attempt's books are not written"


# --- registering a national id: the index, random ids ------------------------------------


async def register_national(
    store: InMemoryEventStore, books: FakeBooks, *, legacy_id: str | None = None
) -> str:
    citizen_id, _ = await run_registration(
        store, books, NATIONAL, lambda cid: registering(citizen_id=cid), legacy_id=legacy_id
    )
    return citizen_id


async def test_a_national_id_gets_a_random_id_indexed_with_its_registration(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    citizen_id = await register_national(store, books)

    assert is_citizen_id(citizen_id) and citizen_id != CID
    assert books.index == {NATIONAL: citizen_id}
    assert [e.type for e in await store.load(citizen_id)] == ["CitizenRegistered"]
    with pytest.raises(AlreadyRegistered) as refused:
        await register_national(store, books)
    assert refused.value.citizen_id == citizen_id and refused.value.code == "already_registered"


async def test_registering_again_after_a_withdrawal_keeps_the_id(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await register_national(store, books)
    await run_command(store, books, first, simply(Withdraw(citizen_id=first)))

    assert await register_national(store, books) == first


async def test_erasure_unindexes_and_a_new_registration_gets_a_new_id(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await register_national(store, books)
    await run_command(store, books, first, simply(Erase(citizen_id=first)))

    assert books.index == {}, "nothing links the national id to the erased citizen"
    second = await register_national(store, books)
    assert second != first and books.index == {NATIONAL: second}


async def test_losing_the_index_to_a_concurrent_registration_decides_again(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await run_command(store, books, OTHER, registering(citizen_id=OTHER))
    books.claims_lost = 1  # another registration indexed the national id as OTHER first

    with pytest.raises(AlreadyRegistered) as refused:
        await register_national(store, books)

    assert refused.value.citizen_id == OTHER
    assert books.index == {NATIONAL: OTHER}
    assert [r.key for r in store.memory.outbox] == [OTHER], "the loser appended nothing"


async def test_a_registration_from_before_random_ids_is_found_by_its_old_id(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await run_command(store, books, CID, registering())  # made when ids were keyed hashes
    await run_command(store, books, CID, simply(Withdraw(citizen_id=CID)))

    assert await register_national(store, books, legacy_id=CID) == CID
    assert books.index == {NATIONAL: CID}


async def test_an_erased_registration_from_before_random_ids_is_not_taken_up_again(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await run_command(store, books, CID, registering())
    await run_command(store, books, CID, simply(Erase(citizen_id=CID)))

    assert await register_national(store, books, legacy_id=CID) != CID


async def test_a_first_registration_is_written_at_once_and_a_later_one_decides_again(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await register_national(store, books)
    assert books.registered_new == 1 and books.keys[first] == KEY
    assert books.rows[first] == (1, "CitizenRegistered")

    with pytest.raises(AlreadyRegistered):
        await register_national(store, books)
    await run_command(store, books, first, simply(Withdraw(citizen_id=first)))
    assert await register_national(store, books) == first
    assert books.registered_new == 1, "only a national id never indexed goes the short way"
    assert [e.type for e in await store.load(first)] == [
        "CitizenRegistered",
        "RegistrationWithdrawn",
        "CitizenRegistered",
    ]


async def test_a_prepare_that_refuses_the_new_id_is_decided_by_the_general_path(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await register_national(store, books)
    await run_command(store, books, first, simply(Withdraw(citizen_id=first)))

    def only(citizen_id: str) -> Prepare[MemoryTransaction]:
        # As a citizen token bound to `first` does: any other id is refused.
        async def prepare(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
            if citizen_id != first:
                raise PermissionError(citizen_id)
            return await registering(citizen_id=citizen_id)(tx, loaded)

        return prepare

    assert (await run_registration(store, books, NATIONAL, only))[0] == first
