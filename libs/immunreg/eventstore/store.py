"""The event store: load an aggregate, decide, append with an expected version.

`StreamStore` does this over any recorder (recorder.py): it rebuilds state from
the newest snapshot plus the events after it, appends what `decide` returned
with its outbox rows, snapshots, and re-decides on a conflict. `EventStore` is
the one the services run on (PostgreSQL, built from a pool); handler unit tests
use `InMemoryEventStore` (memory.py) and the same code runs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from immunreg.contracts.envelope import (
    Context,
    Envelope,
    Event,
    Metadata,
    encode_envelope,
    utcnow,
)
from immunreg.domain import Aggregate, Loaded, Outcome
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.postgres import Along, PostgresRecorder
from immunreg.eventstore.recorder import Recorder, Tx
from immunreg.eventstore.signal import OutboxSignal
from immunreg.observability.metrics import Metrics

S = TypeVar("S")
# start_streams hands the event loop back this often while it decides and encodes.
YIELD_EVERY = 100
C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class Planned(Generic[S]):
    """What a command decided on a loaded stream, not yet written: its envelopes (and the
    events in them) and the state and version after them (`StreamStore.plan`)."""

    outcome: Outcome[S]
    events: list[Event]
    loaded_version: int


def _envelopes(
    context: Context,
    stream_id: str,
    stream_type: str,
    expected_version: int,
    events: Sequence[Event],
    *,
    metadata: Metadata | None,
) -> list[Envelope]:
    return [
        context.envelope(
            event,
            stream_id=stream_id,
            stream_type=stream_type,
            version=expected_version + i,
            metadata=metadata,
        )
        for i, event in enumerate(events, start=1)
    ]


class StreamStore(Generic[Tx]):
    """Append-only event streams with a transactional outbox, over one recorder."""

    def __init__(
        self,
        recorder: Recorder[Tx],
        *,
        signal: OutboxSignal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.recorder = recorder
        self.signal = signal
        self.metrics = metrics

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction for appends together with other writes; wakes the relay on commit."""
        async with self.recorder.transaction() as tx:
            yield tx
        self._wake()

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Tx]:
        """A handle for work whose writes are one statement (e.g. `append_planned` with
        all of a command's writes along): no transaction around it; wakes the relay after."""
        async with self.recorder.statement() as tx:
            yield tx
        self._wake()

    def _wake(self) -> None:
        if self.signal is not None:
            self.signal.wake()

    async def append(
        self,
        stream_id: str,
        stream_type: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        context: Context,
        metadata: Metadata | None = None,
        conn: Tx | None = None,
    ) -> list[Envelope]:
        """Append events after `expected_version`, with their outbox rows, atomically.

        Raises ConcurrencyConflict when the stream is no longer at that version.
        With `conn`, the append joins the caller's transaction.
        """
        if not events:
            return []
        envelopes = _envelopes(
            context, stream_id, stream_type, expected_version, events, metadata=metadata
        )
        outbox = (context.topic, [encode_envelope(e) for e in envelopes])
        await self._measured(
            self.recorder.insert_events(stream_id, expected_version, envelopes, outbox, conn),
            envelopes,
        )
        if conn is None:
            self._wake()
        return envelopes

    async def load(
        self, stream_id: str, after_version: int = 0, conn: Tx | None = None
    ) -> list[Envelope]:
        """The stream's events after `after_version`, in order."""
        return await self.recorder.select_events(stream_id, after_version, conn)

    async def load_state(
        self,
        aggregate: Aggregate[S, Any],
        stream_id: str,
        conn: Tx | None = None,
    ) -> Loaded[S]:
        """Rebuild an aggregate: the newest snapshot, then every later event (one read)."""
        state = aggregate.initial()
        version = 0
        if aggregate.state_type is None:
            envelopes = await self.load(stream_id, 0, conn)
        else:
            snapshot, envelopes = await self.recorder.select_snapshot_and_events(stream_id, conn)
            if snapshot is not None:
                version, encoded = snapshot
                state = msgspec.msgpack.decode(encoded, type=aggregate.state_type)
        for envelope in envelopes:
            if aggregate.context.knows(envelope.type):
                state = aggregate.evolve(state, aggregate.context.read(envelope))
            version = envelope.version
        return Loaded(state, version)

    async def load_states(
        self,
        aggregate: Aggregate[S, Any],
        stream_ids: Sequence[str],
        conn: Tx | None = None,
    ) -> dict[str, Loaded[S]]:
        """Rebuild many aggregates of one kind with two reads in all (snapshots, then
        every later event), as `load_state` does one."""
        loaded = {stream_id: Loaded(aggregate.initial(), 0) for stream_id in stream_ids}
        if aggregate.state_type is not None:
            for stream_id, (version, encoded) in (
                await self.recorder.select_snapshots(stream_ids, conn)
            ).items():
                state = msgspec.msgpack.decode(encoded, type=aggregate.state_type)
                loaded[stream_id] = Loaded(state, version)
        after = {stream_id: one.version for stream_id, one in loaded.items()}
        for stream_id, envelopes in (await self.recorder.select_events_after(after, conn)).items():
            state, version = loaded[stream_id].state, loaded[stream_id].version
            for envelope in envelopes:
                if aggregate.context.knows(envelope.type):
                    state = aggregate.evolve(state, aggregate.context.read(envelope))
                version = envelope.version
            loaded[stream_id] = Loaded(state, version)
        return loaded

    async def transact(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        attempts: int = 5,
        retry_conflicts: bool = True,
    ) -> T:
        """Run `work` in one transaction; on a ConcurrencyConflict roll back and run it again.

        `work` loads and decides afresh each time, so a conflict is resolved by
        re-deciding, never by overwriting. With `retry_conflicts=False` (an
        If-Match) the conflict is raised at once.
        """
        for _ in range(attempts):
            try:
                async with self.transaction() as conn:
                    return await work(conn)
            except ConcurrencyConflict:
                if not retry_conflicts:
                    raise
        raise ConcurrencyConflict("(transaction)", -1)

    async def execute_in(
        self,
        conn: Tx,
        aggregate: Aggregate[S, C],
        stream_id: str,
        command: C,
        *,
        metadata: Metadata | None = None,
        expected_version: int | None = None,
    ) -> Outcome[S]:
        """Load, decide and append on the caller's connection (inside its transaction)."""
        loaded = await self.load_state(aggregate, stream_id, conn)
        if expected_version is not None and loaded.version != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version)
        return await self.decide_and_append(
            conn, aggregate, stream_id, loaded, command, metadata=metadata
        )

    async def decide_and_append(
        self,
        conn: Tx,
        aggregate: Aggregate[S, C],
        stream_id: str,
        loaded: Loaded[S],
        command: C,
        *,
        metadata: Metadata | None = None,
    ) -> Outcome[S]:
        """Decide on an already loaded state and append after its version.

        For commands that need the loaded state to be prepared (e.g. to unseal
        what the stream holds) before deciding.
        """
        planned = self.plan(aggregate, stream_id, loaded, command, metadata=metadata)
        if planned.events:
            await self.write_planned(conn, aggregate, planned)
        return planned.outcome

    def plan(
        self,
        aggregate: Aggregate[S, C],
        stream_id: str,
        loaded: Loaded[S],
        command: C,
        *,
        metadata: Metadata | None = None,
    ) -> Planned[S]:
        """Decide on a loaded state and make the envelopes, writing nothing: for a caller
        that writes them with its own writes in one statement (`EventStore.append_planned`)."""
        events = aggregate.decide(loaded.state, command)
        state = loaded.state
        for event in events:
            state = aggregate.evolve(state, event)
        envelopes = _envelopes(
            aggregate.context,
            stream_id,
            aggregate.stream_type,
            loaded.version,
            events,
            metadata=metadata,
        )
        return Planned(
            Outcome(state, loaded.version + len(events), envelopes), list(events), loaded.version
        )

    async def write_planned(
        self, conn: Tx, aggregate: Aggregate[S, Any], planned: Planned[S]
    ) -> None:
        """Append what `plan` decided (events and outbox rows, one write) on the caller's
        connection, and snapshot when due. Raises ConcurrencyConflict as `append` does."""
        outcome = planned.outcome
        stream_id = outcome.events[0].stream_id
        outbox = (aggregate.context.topic, [encode_envelope(e) for e in outcome.events])
        await self._measured(
            self.recorder.insert_events(
                stream_id, planned.loaded_version, outcome.events, outbox, conn
            ),
            outcome.events,
        )
        await self._maybe_snapshot(
            aggregate, stream_id, planned.loaded_version, outcome.version, outcome.state, conn=conn
        )

    async def write_planned_many(
        self, conn: Tx, aggregate: Aggregate[S, Any], planned: Sequence[Planned[S]]
    ) -> None:
        """`write_planned` for several streams of one aggregate with one write (all of
        them, or on a ConcurrencyConflict none), in the order given: a caller that appends
        to many streams in one transaction pays one round trip, not one per stream."""
        written = [p for p in planned if p.outcome.events]
        if not written:
            return
        envelopes = [e for p in written for e in p.outcome.events]
        outbox = (aggregate.context.topic, [encode_envelope(e) for e in envelopes])
        await self._measured(
            self.recorder.insert_events_many(
                [
                    (p.outcome.events[0].stream_id, p.loaded_version, p.outcome.events)
                    for p in written
                ],
                outbox,
                conn,
            ),
            envelopes,
        )
        for p in written:
            outcome = p.outcome
            await self._maybe_snapshot(
                aggregate,
                outcome.events[0].stream_id,
                p.loaded_version,
                outcome.version,
                outcome.state,
                conn=conn,
            )

    async def start_streams(
        self,
        conn: Tx,
        aggregate: Aggregate[S, C],
        commands: Sequence[tuple[str, C]],
        *,
        metadata: Metadata | None = None,
    ) -> list[Outcome[S]]:
        """Decide each `(stream_id, command)` on a new stream and append all their events
        with one write, on the caller's connection: for many streams that begin together
        under fresh ids (a scheduling run's appointments). A stream that exists already is
        a ConcurrencyConflict, and nothing is written."""
        outcomes: list[Outcome[S]] = []
        envelopes: list[Envelope] = []
        recorded_at = utcnow()  # one write, one moment (and one clock read, not thousands)
        for n, (stream_id, command) in enumerate(commands, start=1):
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # thousands of streams: let other requests in between
            state = aggregate.initial()
            events = aggregate.decide(state, command)
            stream_envelopes = [
                aggregate.context.envelope(
                    event,
                    stream_id=stream_id,
                    stream_type=aggregate.stream_type,
                    version=version,
                    metadata=metadata,
                    recorded_at=recorded_at,
                )
                for version, event in enumerate(events, start=1)
            ]
            for event in events:
                state = aggregate.evolve(state, event)
            envelopes += stream_envelopes
            outcomes.append(Outcome(state, len(events), stream_envelopes))
        if not envelopes:
            return outcomes
        outbox = (aggregate.context.topic, [encode_envelope(e) for e in envelopes])
        await self._measured(self.recorder.insert_streams(envelopes, outbox, conn), envelopes)
        if aggregate.snapshot_every <= max(outcome.version for outcome in outcomes):
            for (stream_id, _), outcome in zip(commands, outcomes, strict=True):
                await self._maybe_snapshot(
                    aggregate, stream_id, 0, outcome.version, outcome.state, conn=conn
                )
        return outcomes

    async def execute(
        self,
        aggregate: Aggregate[S, C],
        stream_id: str,
        command: C,
        *,
        metadata: Metadata | None = None,
        expected_version: int | None = None,
        attempts: int = 5,
    ) -> Outcome[S]:
        """Load, decide, append; on a conflict load again and re-decide.

        With `expected_version` (an If-Match), a stale version is not retried:
        the caller's view is out of date and ConcurrencyConflict is raised.
        """

        async def work(conn: Tx) -> Outcome[S]:
            return await self.execute_in(
                conn,
                aggregate,
                stream_id,
                command,
                metadata=metadata,
                expected_version=expected_version,
            )

        return await self.transact(
            work, attempts=attempts, retry_conflicts=expected_version is None
        )

    async def _measured(self, insert: Awaitable[T], envelopes: Sequence[Envelope]) -> T:
        """Run one recorder insert, counting conflicts, latency and events appended (none
        when the insert answers False: a gate let nothing through)."""
        started = time.perf_counter()
        try:
            result = await insert
        except ConcurrencyConflict:
            if self.metrics is not None:
                self.metrics.append_conflicts.inc()
            raise
        if self.metrics is not None and result is not False:
            self.metrics.append_latency.observe(time.perf_counter() - started)
            # Counted per type, not per event: start_streams appends thousands at once.
            for type_name, count in Counter(e.type for e in envelopes).items():
                self.metrics.events_appended.labels(type_name).inc(count)
        return result

    async def _maybe_snapshot(
        self,
        aggregate: Aggregate[S, Any],
        stream_id: str,
        before: int,
        after: int,
        state: S,
        *,
        conn: Tx | None = None,
    ) -> None:
        every = aggregate.snapshot_every
        if aggregate.state_type is None or every <= 0 or after // every == before // every:
            return
        await self.save_snapshot(stream_id, after, state, conn)

    async def save_snapshot(
        self, stream_id: str, version: int, state: object, conn: Tx | None = None
    ) -> None:
        """Store a state as of `version`, replacing an older snapshot only.

        With `conn`, the snapshot joins the caller's transaction (so it can never
        describe events that were rolled back).
        """
        await self.recorder.upsert_snapshot(stream_id, version, msgspec.msgpack.encode(state), conn)


class EventStore(StreamStore[Connection]):
    """The services' event store: streams in one service's PostgreSQL schema."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        signal: OutboxSignal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.postgres = PostgresRecorder(pool)
        super().__init__(self.postgres, signal=signal, metrics=metrics)
        self.pool = pool

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        return await self.postgres.stream_version(stream_id)

    async def append_along(
        self,
        conn: Connection,
        stream_id: str,
        stream_type: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        along: Along,
        context: Context,
        metadata: Metadata | None = None,
    ) -> list[Envelope] | None:
        """`append` with `along`'s writes in the same statement, in the caller's transaction
        (or alone, `statement`); None, with no event appended, when `along`'s gate (or the
        expected version) let nothing through."""
        envelopes = _envelopes(
            context, stream_id, stream_type, expected_version, events, metadata=metadata
        )
        outbox = (context.topic, [encode_envelope(e) for e in envelopes])
        appended = await self._measured(
            self.postgres.insert_events_along(
                stream_id, expected_version, envelopes, outbox, tx=conn, along=along
            ),
            envelopes,
        )
        return envelopes if appended else None

    async def append_planned(
        self,
        conn: Connection,
        aggregate: Aggregate[S, Any],
        planned: Planned[S],
        along: Along,
    ) -> bool:
        """Append what `plan` decided (events and outbox rows) and `along`'s writes in one
        statement, in the caller's transaction; False, with no event appended, when
        `along`'s gate let nothing through. Raises ConcurrencyConflict as `append` does."""
        outcome = planned.outcome
        if not outcome.events:
            raise ValueError("nothing to append: the command decided no events")
        stream_id = outcome.events[0].stream_id
        outbox = (aggregate.context.topic, [encode_envelope(e) for e in outcome.events])
        appended = await self._measured(
            self.postgres.insert_events_along(
                stream_id, planned.loaded_version, outcome.events, outbox, tx=conn, along=along
            ),
            outcome.events,
        )
        if appended:
            await self._maybe_snapshot(
                aggregate,
                stream_id,
                planned.loaded_version,
                outcome.version,
                outcome.state,
                conn=conn,
            )
        return appended
