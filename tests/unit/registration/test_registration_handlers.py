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
from services.registration.domain import CitizenState, Erase, Preferences, Register, Withdraw
from services.registration.handlers import Prepare, Prepared, run_command

CID = "c-aaaaaaaaaaaaaaaaaaaa"
KEY = CitizenKey(key_id="k1", key=b"\0" * 32)


class FakeBooks:
    """The key table and the read model as dicts (written at once: no rollback here)."""

    def __init__(self) -> None:
        self.keys: dict[str, CitizenKey] = {}
        self.rows: dict[str, tuple[int, str]] = {}  # citizen id -> (version, last event type)

    async def keep_key(self, tx: MemoryTransaction, citizen_id: str, key: CitizenKey) -> None:
        self.keys[citizen_id] = key

    async def destroy_key(self, tx: MemoryTransaction, citizen_id: str) -> None:
        self.keys.pop(citizen_id, None)

    async def record(
        self, tx: MemoryTransaction, citizen_id: str, envelope: Envelope, event: Event
    ) -> None:
        self.rows[citizen_id] = (envelope.version, envelope.type)


def registering(new_key: CitizenKey | None = KEY) -> Prepare[MemoryTransaction]:
    async def prepare(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
        command = Register(
            citizen_id=CID,
            birth_date=date(1960, 3, 4),
            sex="female",
            municipality_code="70092",
            preferences=Preferences(priority_group="general"),
            consent=Consent(data_processing=True),
            channel="online",
            personal=Sealed(key_id="k1", nonce="bm9uY2U=", ciphertext="Y2lwaGVy"),
        )
        return Prepared(command, new_key=new_key)

    return prepare


def simply(command: Withdraw | Erase) -> Prepare[MemoryTransaction]:
    async def prepare(tx: MemoryTransaction, loaded: Loaded[CitizenState]) -> Prepared:
        return Prepared(command)

    return prepare


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def books() -> FakeBooks:
    return FakeBooks()


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
    withdraw = simply(Withdraw(citizen_id=CID, reason="moved abroad"))

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
            await run_command(store, FakeBooks(), CID, registering())
        return await inner(tx, loaded)

    with pytest.raises(Conflict):
        await run_command(store, books, CID, racing)

    assert runs == 2
    assert len(await store.load(CID)) == 1
    assert books.keys == {} and books.rows == {}, "the losing attempt's books are not written"
