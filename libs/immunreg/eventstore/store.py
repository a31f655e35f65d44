"""The PostgreSQL event store: append with an expected version, load a stream.

Events and their outbox rows are written by one statement, so they commit
together or not at all. An aggregate is loaded from its newest snapshot plus
the events after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from immunreg.contracts.envelope import Context, Envelope, Event, Metadata, encode_envelope
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.signal import OutboxSignal
from immunreg.observability.metrics import Metrics

S = TypeVar("S")
C = TypeVar("C")
T = TypeVar("T")

_APPEND = """
WITH guard AS (
    SELECT 1 WHERE $2::int = 0
       OR EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND version = $2::int)
), appended AS (
    INSERT INTO events (stream_id, version, stream_type, event_id, type, schema_version,
                        data, occurred_at, recorded_at, correlation_id, causation_id)
    SELECT $1, e.version, $3, e.event_id, e.type, e.schema_version, e.data::jsonb,
           e.occurred_at, e.recorded_at, e.correlation_id, e.causation_id
    FROM unnest($4::int[], $5::uuid[], $6::text[], $7::int[], $8::text[],
                $9::timestamptz[], $10::timestamptz[], $11::uuid[], $12::uuid[])
         AS e(version, event_id, type, schema_version, data, occurred_at, recorded_at,
              correlation_id, causation_id),
         guard
    RETURNING event_id
)
INSERT INTO outbox (topic, key, payload)
SELECT $13, $1, p.payload
FROM unnest($14::bytea[]) WITH ORDINALITY AS p(payload, n)
WHERE (SELECT count(*) FROM appended) = cardinality($4::int[])
RETURNING id
"""

_LOAD = """
SELECT version, stream_type, event_id, type, schema_version, data::text AS data,
       occurred_at, recorded_at, correlation_id, causation_id
FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version
"""


def _row_to_envelope(stream_id: str, row: asyncpg.Record) -> Envelope:
    return Envelope(
        event_id=row["event_id"],
        stream_id=stream_id,
        stream_type=row["stream_type"],
        version=row["version"],
        type=row["type"],
        schema_version=row["schema_version"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        data=msgspec.Raw(row["data"].encode()),
    )


@dataclass(frozen=True)
class Aggregate(Generic[S, C]):
    """An aggregate's pure functions and how its stream is stored.

    `decide(state, command) -> events` refuses by raising a DomainError;
    `evolve(state, event) -> state` never refuses (events are facts).
    """

    stream_type: str
    context: Context
    initial: Callable[[], S]
    evolve: Callable[[S, Any], S]
    decide: Callable[[S, C], Sequence[Event]]
    state_type: type[S] | None = None
    snapshot_every: int = 100


@dataclass(frozen=True)
class Loaded(Generic[S]):
    """An aggregate's state as of `version` (0: the stream does not exist yet)."""

    state: S
    version: int


@dataclass(frozen=True)
class Outcome(Generic[S]):
    """What a command did: the events appended, the new state and version."""

    state: S
    version: int
    events: list[Envelope]


class EventStore:
    """Append-only event streams in one service's schema, with a transactional outbox."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        signal: OutboxSignal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.signal = signal
        self.metrics = metrics

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction for appends together with other writes; wakes the relay on commit."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                yield conn
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
        conn: Connection | None = None,
    ) -> list[Envelope]:
        """Append events after `expected_version`, with their outbox rows, atomically.

        Raises ConcurrencyConflict when the stream is no longer at that version.
        With `conn`, the append joins the caller's transaction.
        """
        if not events:
            return []
        envelopes = [
            context.envelope(
                event,
                stream_id=stream_id,
                stream_type=stream_type,
                version=expected_version + i,
                metadata=metadata,
            )
            for i, event in enumerate(events, start=1)
        ]
        args = (
            stream_id,
            expected_version,
            stream_type,
            [e.version for e in envelopes],
            [e.event_id for e in envelopes],
            [e.type for e in envelopes],
            [e.schema_version for e in envelopes],
            [bytes(e.data).decode() for e in envelopes],
            [e.occurred_at for e in envelopes],
            [e.recorded_at for e in envelopes],
            [e.correlation_id for e in envelopes],
            [e.causation_id for e in envelopes],
            context.topic,
            [encode_envelope(e) for e in envelopes],
        )
        started = time.perf_counter()
        try:
            if conn is None:
                rows = await self.pool.fetch(_APPEND, *args)
            else:
                rows = await conn.fetch(_APPEND, *args)
        except asyncpg.UniqueViolationError as exc:
            self._conflict()
            raise ConcurrencyConflict(stream_id, expected_version) from exc
        if len(rows) != len(envelopes):
            self._conflict()
            raise ConcurrencyConflict(stream_id, expected_version)
        if self.metrics is not None:
            self.metrics.append_latency.observe(time.perf_counter() - started)
            for envelope in envelopes:
                self.metrics.events_appended.labels(envelope.type).inc()
        if conn is None:
            self._wake()
        return envelopes

    def _conflict(self) -> None:
        if self.metrics is not None:
            self.metrics.append_conflicts.inc()

    async def load(
        self, stream_id: str, after_version: int = 0, conn: Connection | None = None
    ) -> list[Envelope]:
        """The stream's events after `after_version`, in order."""
        executor = conn if conn is not None else self.pool
        rows = await executor.fetch(_LOAD, stream_id, after_version)
        return [_row_to_envelope(stream_id, row) for row in rows]

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        version = await self.pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return int(version)

    async def load_state(
        self,
        aggregate: Aggregate[S, Any],
        stream_id: str,
        conn: Connection | None = None,
    ) -> Loaded[S]:
        """Rebuild an aggregate: the newest snapshot, then every later event."""
        executor = conn if conn is not None else self.pool
        state = aggregate.initial()
        version = 0
        if aggregate.state_type is not None:
            snap = await executor.fetchrow(
                "SELECT version, state FROM snapshots WHERE stream_id = $1", stream_id
            )
            if snap is not None:
                state = msgspec.msgpack.decode(snap["state"], type=aggregate.state_type)
                version = snap["version"]
        for envelope in await self.load(stream_id, version, conn):
            if aggregate.context.knows(envelope.type):
                state = aggregate.evolve(state, aggregate.context.read(envelope))
            version = envelope.version
        return Loaded(state, version)

    async def transact(
        self,
        work: Callable[[Connection], Awaitable[T]],
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
        conn: Connection,
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
        conn: Connection,
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
        events = aggregate.decide(loaded.state, command)
        if not events:
            return Outcome(loaded.state, loaded.version, [])
        envelopes = await self.append(
            stream_id,
            aggregate.stream_type,
            loaded.version,
            events,
            context=aggregate.context,
            metadata=metadata,
            conn=conn,
        )
        state = loaded.state
        for event in events:
            state = aggregate.evolve(state, event)
        version = loaded.version + len(events)
        await self._maybe_snapshot(aggregate, stream_id, loaded.version, version, state, conn=conn)
        return Outcome(state, version, envelopes)

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

        async def work(conn: Connection) -> Outcome[S]:
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

    async def _maybe_snapshot(
        self,
        aggregate: Aggregate[S, Any],
        stream_id: str,
        before: int,
        after: int,
        state: S,
        *,
        conn: Connection | None = None,
    ) -> None:
        every = aggregate.snapshot_every
        if aggregate.state_type is None or every <= 0 or after // every == before // every:
            return
        await self.save_snapshot(stream_id, after, state, conn)

    async def save_snapshot(
        self, stream_id: str, version: int, state: object, conn: Connection | None = None
    ) -> None:
        """Store a state as of `version`, replacing an older snapshot only.

        With `conn`, the snapshot joins the caller's transaction (so it can never
        describe events that were rolled back).
        """
        executor = conn if conn is not None else self.pool
        await executor.execute(
            """
            INSERT INTO snapshots (stream_id, version, state) VALUES ($1, $2, $3)
            ON CONFLICT (stream_id) DO UPDATE
                SET version = excluded.version, state = excluded.state, taken_at = now()
                WHERE snapshots.version < excluded.version
            """,
            stream_id,
            version,
            msgspec.msgpack.encode(state),
        )
