"""The event store's contract: one suite, run against every recorder.

A backend's test module subclasses `EventStoreContract` and provides the
`backend` fixture: tests/integration/eventstore/test_postgres_contract.py runs
it on PostgreSQL, tests/unit/foundation/test_memory_contract.py in memory. A
handler unit test is only as good as the in-memory store is faithful, and this
suite is what says it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from immunreg.contracts.envelope import Context, Metadata, decode_envelope
from immunreg.domain import Aggregate, RuleViolation
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import StreamStore
from tally import Add, Counted, TallyState, tally_aggregate, tally_context


@dataclasses.dataclass(frozen=True)
class Backend:
    """One store under test, and how to read what its append put in the outbox."""

    store: StreamStore[Any]
    outbox: Callable[[], Awaitable[list[tuple[str, str, bytes]]]]  # (topic, key, payload)


class EventStoreContract:
    """What every recorder must do; subclasses provide the `backend` fixture."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a backend's test class provides its store")

    @pytest.fixture
    def context(self) -> Context:
        # A name of its own, so the topic the outbox rows name is private to the test.
        return tally_context(f"contract{uuid.uuid4().hex[:10]}")

    @staticmethod
    def tally(context: Context, snapshot_every: int = 100) -> Aggregate[TallyState, Add]:
        return tally_aggregate(context, snapshot_every)

    # --- append and load -------------------------------------------------------

    async def test_appended_events_load_back_in_version_order(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        await store.append("a", "Tally", 0, [Counted(amount=1), Counted(amount=2)], context=context)
        await store.append("a", "Tally", 2, [Counted(amount=3)], context=context)
        await store.append("b", "Tally", 0, [Counted(amount=9)], context=context)

        loaded = await store.load("a")

        assert [e.version for e in loaded] == [1, 2, 3]
        assert [context.read(e) for e in loaded] == [Counted(amount=n) for n in (1, 2, 3)]
        assert {e.stream_id for e in loaded} == {"a"} and loaded[0].stream_type == "Tally"
        assert [e.version for e in await store.load("a", after_version=1)] == [2, 3]
        assert await store.load("nobody") == []

    async def test_the_envelope_keeps_the_metadata(
        self, backend: Backend, context: Context
    ) -> None:
        metadata = Metadata(correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
        [written] = await backend.store.append(
            "m", "Tally", 0, [Counted(amount=1)], context=context, metadata=metadata
        )
        [stored] = await backend.store.load("m")
        assert stored.event_id == written.event_id
        assert stored.correlation_id == metadata.correlation_id
        assert stored.causation_id == metadata.causation_id

    async def test_loading_again_gives_the_same_events_and_state(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        for amount in (1, 2, 3):
            await store.execute(aggregate, "again", Add(amount=amount))

        assert await store.load("again") == await store.load("again")
        first = await store.load_state(aggregate, "again")
        assert first == await store.load_state(aggregate, "again")
        assert first.version == 3 and first.state == TallyState(total=6, count=3)

    # --- optimistic concurrency ------------------------------------------------

    async def test_two_writers_at_the_same_version_one_wins(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        await store.append("c", "Tally", 0, [Counted(amount=1)], context=context)

        results = await asyncio.gather(
            store.append("c", "Tally", 1, [Counted(amount=10)], context=context),
            store.append("c", "Tally", 1, [Counted(amount=20)], context=context),
            return_exceptions=True,
        )

        wins = [r for r in results if isinstance(r, list)]
        losses = [r for r in results if isinstance(r, ConcurrencyConflict)]
        assert len(wins) == 1 and len(losses) == 1
        stored = await store.load("c")
        assert [e.version for e in stored] == [1, 2]
        assert stored[1].event_id == wins[0][0].event_id
        assert len(await backend.outbox()) == 2, "the loser wrote no outbox row"

    async def test_an_expected_version_ahead_of_the_stream_is_a_conflict(
        self, backend: Backend, context: Context
    ) -> None:
        with pytest.raises(ConcurrencyConflict):
            await backend.store.append("x", "Tally", 3, [Counted(amount=1)], context=context)
        assert await backend.store.load("x") == []
        assert await backend.outbox() == []

    async def test_concurrent_commands_are_retried_by_re_deciding(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)

        await asyncio.gather(
            *(store.execute(aggregate, "busy", Add(amount=1), attempts=50) for _ in range(20))
        )

        loaded = await store.load_state(aggregate, "busy")
        assert loaded.version == 20 and loaded.state.total == 20

    async def test_an_if_match_with_a_stale_version_is_not_retried(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        await store.execute(aggregate, "im", Add(amount=1))
        await store.execute(aggregate, "im", Add(amount=1))

        with pytest.raises(ConcurrencyConflict):
            await store.execute(aggregate, "im", Add(amount=5), expected_version=1)
        assert (await store.load_state(aggregate, "im")).state.total == 2

    async def test_a_refused_command_appends_nothing(
        self, backend: Backend, context: Context
    ) -> None:
        with pytest.raises(RuleViolation):
            await backend.store.execute(self.tally(context), "r", Add(amount=0))
        assert await backend.store.load("r") == []
        assert await backend.outbox() == []

    # --- the outbox --------------------------------------------------------------

    async def test_every_appended_event_has_its_outbox_row(
        self, backend: Backend, context: Context
    ) -> None:
        written = await backend.store.append(
            "o", "Tally", 0, [Counted(amount=1), Counted(amount=2)], context=context
        )

        rows = await backend.outbox()

        assert [(topic, key) for topic, key, _ in rows] == [(context.topic, "o")] * 2
        published = [decode_envelope(payload) for _, _, payload in rows]
        assert [e.event_id for e in published] == [e.event_id for e in written]
        assert [e.version for e in published] == [1, 2]

    async def test_streams_started_together_load_back_each_with_its_outbox_rows(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        async with store.transaction() as tx:
            outcomes = await store.start_streams(
                tx, aggregate, [("s1", Add(amount=1)), ("s2", Add(amount=2))]
            )
        assert [(o.version, o.state.total) for o in outcomes] == [(1, 1), (1, 2)]
        for stream, amount in (("s1", 1), ("s2", 2)):
            (loaded,) = await store.load(stream)
            assert loaded.version == 1 and context.read(loaded) == Counted(amount=amount)
        rows = await backend.outbox()
        assert [(topic, key) for topic, key, _ in rows] == [
            (context.topic, "s1"),
            (context.topic, "s2"),
        ]
        published = [decode_envelope(payload) for _, _, payload in rows]
        assert [e.event_id for e in published] == [o.events[0].event_id for o in outcomes]

    async def test_appends_to_several_streams_in_one_write_load_back_with_their_outbox_rows(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        await store.execute(aggregate, "m1", Add(amount=1))
        before = len(await backend.outbox())
        async with store.transaction() as tx:
            planned = [
                store.plan(aggregate, stream, await store.load_state(aggregate, stream, tx), cmd)
                for stream, cmd in (("m1", Add(amount=2)), ("m2", Add(amount=5)))
            ]
            await store.write_planned_many(tx, aggregate, planned)
        assert [(s.version, s.state.total) for s in [p.outcome for p in planned]] == [
            (2, 3),
            (1, 5),
        ]
        for stream, versions in (("m1", [1, 2]), ("m2", [1])):
            assert [e.version for e in await store.load(stream)] == versions
        rows = (await backend.outbox())[before:]
        assert [key for _, key, _ in rows] == ["m1", "m2"]
        published = [decode_envelope(payload).event_id for _, _, payload in rows]
        assert published == [p.outcome.events[0].event_id for p in planned]

    @pytest.mark.parametrize("s2_at", [1, 3], ids=["behind", "ahead"])
    async def test_appends_to_several_streams_with_one_at_a_wrong_version_write_nothing(
        self, backend: Backend, context: Context, s2_at: int
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        await store.execute(aggregate, "s1", Add(amount=1))
        await store.execute(aggregate, "s2", Add(amount=1))
        await store.execute(aggregate, "s2", Add(amount=1))  # s2 is at version 2
        stale = dataclasses.replace(await store.load_state(aggregate, "s2"), version=s2_at)
        before = await backend.outbox()
        with pytest.raises(ConcurrencyConflict):
            async with store.transaction() as tx:
                fresh = await store.load_state(aggregate, "s1", tx)
                await store.write_planned_many(
                    tx,
                    aggregate,
                    [
                        store.plan(aggregate, "s1", fresh, Add(amount=1)),
                        store.plan(aggregate, "s2", stale, Add(amount=1)),
                    ],
                )
        assert [e.version for e in await store.load("s1")] == [1]
        assert [e.version for e in await store.load("s2")] == [1, 2]
        assert await backend.outbox() == before

    async def test_loading_many_streams_at_once_equals_loading_each(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context, snapshot_every=2)  # "snap" gets a snapshot
        for amount in (1, 2, 3):
            await store.execute(aggregate, "snap", Add(amount=amount))
        await store.execute(aggregate, "one", Add(amount=7))
        streams = ["snap", "one", "none"]
        async with store.transaction() as tx:
            await store.execute_in(tx, aggregate, "one", Add(amount=1))  # its own write too
            together = await store.load_states(aggregate, streams, tx)
            each = {s: await store.load_state(aggregate, s, tx) for s in streams}
        assert together == each
        assert [(together[s].state.total, together[s].version) for s in streams] == [
            (6, 3),
            (8, 2),
            (0, 0),
        ]

    async def test_starting_a_stream_that_exists_is_a_conflict_and_writes_nothing(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        await store.append("taken", "Tally", 0, [Counted(amount=5)], context=context)
        before = await backend.outbox()
        with pytest.raises(ConcurrencyConflict):
            async with store.transaction() as tx:
                await store.start_streams(
                    tx, aggregate, [("fresh", Add(amount=1)), ("taken", Add(amount=1))]
                )
        assert await store.load("fresh") == []
        assert [e.version for e in await store.load("taken")] == [1]
        assert await backend.outbox() == before

    # --- transactions ------------------------------------------------------------

    async def test_a_failed_transaction_leaves_nothing(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store

        class Boom(Exception):
            pass

        with pytest.raises(Boom):
            async with store.transaction() as tx:
                await store.append("f", "Tally", 0, [Counted(amount=1)], context=context, conn=tx)
                assert [e.version for e in await store.load("f", conn=tx)] == [1]
                raise Boom

        assert await store.load("f") == []
        assert await backend.outbox() == []

    async def test_a_transaction_is_seen_by_others_only_once_it_commits(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        async with store.transaction() as tx:
            await store.append("t", "Tally", 0, [Counted(amount=1)], context=context, conn=tx)
            assert await store.load("t") == []
        assert [e.version for e in await store.load("t")] == [1]

    async def test_two_transactions_at_the_same_version_one_commits(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store

        async def write(amount: int) -> None:
            async with store.transaction() as tx:
                await store.append(
                    "race", "Tally", 0, [Counted(amount=amount)], context=context, conn=tx
                )
                # Hold the transaction open while the other one writes: PostgreSQL makes
                # the second insert wait for the first commit, memory refuses at commit.
                await asyncio.sleep(0.05)

        results = await asyncio.gather(write(1), write(2), return_exceptions=True)

        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyConflict", "NoneType"]
        assert [e.version for e in await store.load("race")] == [1]
        assert len(await backend.outbox()) == 1

    async def test_a_conflict_on_one_stream_rolls_back_every_stream_of_the_transaction(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        aggregate = self.tally(context)
        await store.execute(aggregate, "busy", Add(amount=1))
        runs = 0

        async def move(tx: Any) -> None:
            nonlocal runs
            runs += 1
            await store.execute_in(tx, aggregate, "quiet", Add(amount=5))
            if runs == 1:
                # Someone else appends to "busy" between our load and our append.
                await store.execute(aggregate, "busy", Add(amount=100))
            loaded = await store.load_state(aggregate, "busy", tx)
            stale = dataclasses.replace(loaded, version=1) if runs == 1 else loaded
            await store.decide_and_append(tx, aggregate, "busy", stale, Add(amount=5))

        await store.transact(move)

        assert runs == 2, "the conflict must re-run the whole unit of work"
        assert (await store.load_state(aggregate, "quiet")).state.total == 5, "no double append"
        assert (await store.load_state(aggregate, "busy")).state.total == 106

    # --- snapshots ---------------------------------------------------------------

    async def test_snapshots_give_the_same_state_as_a_full_replay(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        with_snapshots = self.tally(context, snapshot_every=10)
        for amount in range(1, 26):
            await store.execute(with_snapshots, "s", Add(amount=amount))

        snapshot = await store.recorder.select_snapshot("s")
        assert snapshot is not None and snapshot[0] == 20
        from_snapshot = await store.load_state(with_snapshots, "s")
        no_snapshots = dataclasses.replace(with_snapshots, state_type=None, snapshot_every=0)
        replayed = await store.load_state(no_snapshots, "s")
        assert from_snapshot == replayed
        assert replayed.state.total == sum(range(1, 26)) and replayed.version == 25

    async def test_an_older_snapshot_never_replaces_a_newer_one(
        self, backend: Backend, context: Context
    ) -> None:
        store = backend.store
        await store.save_snapshot("n", 20, TallyState(total=20))
        await store.save_snapshot("n", 10, TallyState(total=10))
        snapshot = await store.recorder.select_snapshot("n")
        assert snapshot is not None and snapshot[0] == 20
