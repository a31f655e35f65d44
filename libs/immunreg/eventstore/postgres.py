"""The PostgreSQL recorder: streams, outbox and snapshots in one service's schema.

Events and their outbox rows are written by one statement, so they commit
together or not at all; the primary key (stream_id, version) is what makes two
writers at one expected version a conflict (see schema.sql).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec

from immunreg.contracts.envelope import Envelope
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.packing import PACK_MAX, pack

# The guard lets the insert through only when the stream is at the expected
# version; a writer that raced past the guard hits the primary key instead. The
# outbox insert sees how many events went in, so a refused append writes no outbox row.
# `{along}` is where writes that go in the same statement put their CTEs (`Along`), and
# `{gate}` makes the guard read theirs ("FROM gate": no row there, no append).
_APPEND_TEMPLATE = """
WITH {along}guard AS (
    SELECT 1 {gate} WHERE $2::int = 0
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
_APPEND = _APPEND_TEMPLATE.format(along="", gate="")
_APPEND_ARGS = 14
_PARAMETER = re.compile(r"\$(\d+)")


def _renumbered(sql: str, offset: int) -> str:
    return _PARAMETER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)


# One CTE of an `Along`: its name, its SQL (parameters from $1) and their arguments.
Cte = tuple[str, str, Sequence[object]]


@dataclass(frozen=True)
class Along:
    """Writes that go in an append's own statement, as data-modifying CTEs before it (one
    round trip for all of a command's writes). Each CTE's SQL numbers its parameters from
    $1; one of them must be named `gate`: the append happens only when it yields a row.
    The CTEs see neither the append nor each other's writes (one statement, one snapshot),
    so each writes only what its own inputs decide (e.g. `... FROM gate`)."""

    ctes: Sequence[Cte]

    def statement(self) -> tuple[str, list[object]]:
        """The CTEs' text, numbered after the append's parameters, and their arguments."""
        parts: list[str] = []
        args: list[object] = []
        for name, sql, values in self.ctes:
            numbered = _renumbered(sql, _APPEND_ARGS + len(args))
            parts.append(f"{name} AS ({numbered}),\n")
            args += values
        if "gate" not in {name for name, _, _ in self.ctes}:
            raise ValueError("an Along needs a CTE named gate")
        return "".join(parts), args


# Several streams' appends in one statement (`insert_events_many`): all of them, or
# none when any stream is not at its expected version (the guard counts the streams
# that are), as _APPEND does for one. A scheduling batch appends to up to 14 SiteDays:
# one round trip instead of 14, each of which cost about 200 us of the client's CPU.
_APPEND_MANY = """
WITH guard AS (
    SELECT 1 WHERE (
        SELECT count(*) FROM unnest($1::text[], $2::int[]) AS x(stream_id, expected)
        WHERE x.expected = 0
           OR EXISTS (SELECT 1 FROM events
                      WHERE stream_id = x.stream_id AND version = x.expected)
    ) = cardinality($1::text[])
), appended AS (
    INSERT INTO events (stream_id, version, stream_type, event_id, type, schema_version,
                        data, occurred_at, recorded_at, correlation_id, causation_id)
    SELECT e.stream_id, e.version, e.stream_type, e.event_id, e.type, e.schema_version,
           e.data::jsonb, e.occurred_at, e.recorded_at, e.correlation_id, e.causation_id
    FROM unnest($3::text[], $4::int[], $5::text[], $6::uuid[], $7::text[], $8::int[],
                $9::text[], $10::timestamptz[], $11::timestamptz[], $12::uuid[], $13::uuid[])
         AS e(stream_id, version, stream_type, event_id, type, schema_version, data,
              occurred_at, recorded_at, correlation_id, causation_id),
         guard
    RETURNING event_id
)
INSERT INTO outbox (topic, key, payload)
SELECT $14, p.key, p.payload
FROM unnest($3::text[], $15::bytea[]) WITH ORDINALITY AS p(key, payload, n)
WHERE (SELECT count(*) FROM appended) = cardinality($4::int[])
RETURNING id
"""


# New streams only (each from version 1) are written with COPY: no guard is needed
# (the primary key refuses a stream that exists, which aborts the whole COPY), and
# COPY's multi-row inserts cost PostgreSQL far less than INSERT ... SELECT FROM unnest.
# The outbox rows follow the events' order (stream by stream, by version).
_EVENT_COLUMNS = (
    "stream_id",
    "version",
    "stream_type",
    "event_id",
    "type",
    "schema_version",
    "data",
    "occurred_at",
    "recorded_at",
    "correlation_id",
    "causation_id",
)
_PACKED_COLUMNS = ("topic", "key", "payload", "packed")

_LOAD = """
SELECT version, stream_type, event_id, type, schema_version, data::text AS data,
       occurred_at, recorded_at, correlation_id, causation_id
FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version
"""

# A stream's snapshot (first row, `event_id` NULL) and every event after it, in one
# statement: `load_state`'s two reads in one round trip, both from one MVCC snapshot.
_LOAD_STATE = """
SELECT version, NULL AS stream_type, NULL::uuid AS event_id, NULL AS type,
       NULL::int AS schema_version, NULL AS data, NULL::timestamptz AS occurred_at,
       NULL::timestamptz AS recorded_at, NULL::uuid AS correlation_id,
       NULL::uuid AS causation_id, state
FROM snapshots WHERE stream_id = $1
UNION ALL
SELECT * FROM (
    SELECT version, stream_type, event_id, type, schema_version, data::text AS data,
           occurred_at, recorded_at, correlation_id, causation_id, NULL::bytea AS state
    FROM events
    WHERE stream_id = $1
      AND version > coalesce((SELECT version FROM snapshots WHERE stream_id = $1), 0)
    ORDER BY version
) later
"""

_LOAD_MANY = """
SELECT e.stream_id, e.version, e.stream_type, e.event_id, e.type, e.schema_version,
       e.data::text AS data, e.occurred_at, e.recorded_at, e.correlation_id, e.causation_id
FROM unnest($1::text[], $2::int[]) AS a(stream_id, after)
CROSS JOIN LATERAL (  -- one index range per stream, whatever the size of the table
    SELECT * FROM events WHERE stream_id = a.stream_id AND version > a.after
) e
ORDER BY e.stream_id, e.version
"""

_SAVE_SNAPSHOT = """
INSERT INTO snapshots (stream_id, version, state) VALUES ($1, $2, $3)
ON CONFLICT (stream_id) DO UPDATE
    SET version = excluded.version, state = excluded.state, taken_at = now()
    WHERE snapshots.version < excluded.version
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


def _event_columns(envelopes: Sequence[Envelope]) -> tuple[list[Any], ...]:
    """The events as one array per column, in the order _APPEND takes."""
    return (
        [e.version for e in envelopes],
        [e.event_id for e in envelopes],
        [e.type for e in envelopes],
        [e.schema_version for e in envelopes],
        [bytes(e.data).decode() for e in envelopes],
        [e.occurred_at for e in envelopes],
        [e.recorded_at for e in envelopes],
        [e.correlation_id for e in envelopes],
        [e.causation_id for e in envelopes],
    )


def _append_args(
    stream_id: str,
    expected_version: int,
    envelopes: Sequence[Envelope],
    outbox: tuple[str, Sequence[bytes]],
) -> tuple[Any, ...]:
    """_APPEND's arguments, $1 to $14."""
    topic, payloads = outbox
    return (
        stream_id,
        expected_version,
        envelopes[0].stream_type,
        *_event_columns(envelopes),
        topic,
        list(payloads),
    )


class PostgresRecorder:
    """The recorder the services run on; `tx` is an asyncpg connection in a transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection in a transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[Connection]:
        """A pooled connection, no transaction: each statement commits by itself."""
        async with self.pool.acquire() as conn:
            yield conn

    async def insert_events(
        self,
        stream_id: str,
        expected_version: int,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: Connection | None = None,
    ) -> None:
        """Append the events and their outbox rows in one statement (see _APPEND)."""
        args = _append_args(stream_id, expected_version, envelopes, outbox)
        try:
            if tx is None:
                rows = await self.pool.fetch(_APPEND, *args)
            else:
                rows = await tx.fetch(_APPEND, *args)
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict(stream_id, expected_version) from exc
        if len(rows) != len(envelopes):
            raise ConcurrencyConflict(stream_id, expected_version)

    async def insert_events_along(
        self,
        stream_id: str,
        expected_version: int,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        *,
        tx: Connection,
        along: Along,
    ) -> bool:
        """`insert_events` with `along`'s writes in the same statement; False when its gate
        (or the expected version) let nothing through: then the events are not written, and
        `along`'s CTEs wrote only what they wrote without the gate. The statement's text
        depends only on `along`'s, so the connection prepares it once."""
        ctes, extra = along.statement()
        sql = _APPEND_TEMPLATE.format(along=ctes, gate="FROM gate")
        args = _append_args(stream_id, expected_version, envelopes, outbox)
        try:
            rows = await tx.fetch(sql, *args, *extra)
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict(stream_id, expected_version) from exc
        return len(rows) == len(envelopes)

    async def insert_events_many(
        self,
        appends: Sequence[tuple[str, int, Sequence[Envelope]]],
        outbox: tuple[str, Sequence[bytes]],
        tx: Connection | None = None,
    ) -> None:
        """Append to several streams, each after its expected version, and their outbox
        rows, in one statement (see _APPEND_MANY): all of it or, on a conflict, nothing."""
        envelopes = [e for _, _, stream_envelopes in appends for e in stream_envelopes]
        topic, payloads = outbox
        versions, *columns = _event_columns(envelopes)
        args = (
            [stream_id for stream_id, _, _ in appends],
            [expected for _, expected, _ in appends],
            [e.stream_id for e in envelopes],
            versions,
            [e.stream_type for e in envelopes],
            *columns,
            topic,
            list(payloads),
        )
        executor = tx if tx is not None else self.pool
        try:
            rows = await executor.fetch(_APPEND_MANY, *args)
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict("(several streams)", -1) from exc
        if len(rows) != len(envelopes):
            raise ConcurrencyConflict("(several streams)", -1)

    async def insert_streams(
        self,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: Connection | None = None,
    ) -> None:
        """Start many streams: their events, then their messages in packed outbox rows,
        each with one COPY."""
        if tx is None:
            async with self.transaction() as conn:
                await self.insert_streams(envelopes, outbox, conn)
            return
        topic, payloads = outbox
        try:
            await tx.copy_records_to_table(
                "events",
                records=[
                    (
                        e.stream_id,
                        e.version,
                        e.stream_type,
                        e.event_id,
                        e.type,
                        e.schema_version,
                        bytes(e.data).decode(),
                        e.occurred_at,
                        e.recorded_at,
                        e.correlation_id,
                        e.causation_id,
                    )
                    for e in envelopes
                ],
                columns=_EVENT_COLUMNS,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConcurrencyConflict("(new streams)", 0) from exc
        # Packed rows (packing.py), with no key of their own (schema.sql says why).
        keys = [e.stream_id for e in envelopes]
        parts = [
            (keys[i : i + PACK_MAX], payloads[i : i + PACK_MAX])
            for i in range(0, len(keys), PACK_MAX)
        ]
        await tx.copy_records_to_table(
            "outbox",
            records=[(topic, None, pack(part, sent), len(part)) for part, sent in parts],
            columns=_PACKED_COLUMNS,
        )

    async def select_events(
        self, stream_id: str, after_version: int = 0, tx: Connection | None = None
    ) -> list[Envelope]:
        """The stream's events after `after_version`, in order."""
        executor = tx if tx is not None else self.pool
        rows = await executor.fetch(_LOAD, stream_id, after_version)
        return [_row_to_envelope(stream_id, row) for row in rows]

    async def select_events_after(
        self, after: Mapping[str, int], tx: Connection | None = None
    ) -> dict[str, list[Envelope]]:
        """Each stream's events after its version, with one statement."""
        executor = tx if tx is not None else self.pool
        rows = await executor.fetch(_LOAD_MANY, list(after), list(after.values()))
        found: dict[str, list[Envelope]] = {}
        for row in rows:
            stream_id = row["stream_id"]
            found.setdefault(stream_id, []).append(_row_to_envelope(stream_id, row))
        return found

    async def select_snapshots(
        self, stream_ids: Sequence[str], tx: Connection | None = None
    ) -> dict[str, tuple[int, bytes]]:
        """The snapshots of those streams that have one, with one statement."""
        executor = tx if tx is not None else self.pool
        rows = await executor.fetch(
            "SELECT stream_id, version, state FROM snapshots WHERE stream_id = ANY($1::text[])",
            list(stream_ids),
        )
        return {r["stream_id"]: (r["version"], r["state"]) for r in rows}

    async def select_snapshot_and_events(
        self, stream_id: str, tx: Connection | None = None
    ) -> tuple[tuple[int, bytes] | None, list[Envelope]]:
        """The stream's snapshot, if any, and its events after it, with one statement."""
        executor = tx if tx is not None else self.pool
        rows = await executor.fetch(_LOAD_STATE, stream_id)
        if rows and rows[0]["event_id"] is None:
            return (rows[0]["version"], rows[0]["state"]), [
                _row_to_envelope(stream_id, row) for row in rows[1:]
            ]
        return None, [_row_to_envelope(stream_id, row) for row in rows]

    async def select_snapshot(
        self, stream_id: str, tx: Connection | None = None
    ) -> tuple[int, bytes] | None:
        """The stream's snapshot row, if any."""
        executor = tx if tx is not None else self.pool
        row = await executor.fetchrow(
            "SELECT version, state FROM snapshots WHERE stream_id = $1", stream_id
        )
        return None if row is None else (row["version"], row["state"])

    async def upsert_snapshot(
        self, stream_id: str, version: int, state: bytes, tx: Connection | None = None
    ) -> None:
        """Store the snapshot unless a newer one is there already."""
        executor = tx if tx is not None else self.pool
        await executor.execute(_SAVE_SNAPSHOT, stream_id, version, state)

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it has no events)."""
        version = await self.pool.fetchval(
            "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return int(version)
