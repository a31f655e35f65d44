"""The storage interface under the event store: what a backend must do, nothing more.

`EventStore` (store.py) loads aggregates, decides, snapshots and retries; a
recorder only keeps streams. There are two: PostgreSQL (postgres.py), which
the services run on, and memory (memory.py), which handler unit tests run on.
Both pass one contract suite (tests/eventstore_contract.py).

`Tx` is the backend's transaction handle. A PostgreSQL one is a connection, so
the services write their read models in the same transaction as their events;
every method takes it as `tx`, and without one runs in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from immunreg.contracts.envelope import Envelope

Tx = TypeVar("Tx")


class Recorder(Protocol[Tx]):
    """Append-only streams with a transactional outbox, and one snapshot per stream."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: everything written through its handle commits together or not at all."""
        ...

    def statement(self) -> AbstractAsyncContextManager[Tx]:
        """A handle for work whose writes are one statement: it commits by itself, with no
        transaction around it (PostgreSQL's BEGIN and COMMIT are two more round trips).
        Writes through it are atomic only one statement at a time."""
        ...

    async def insert_events(
        self,
        stream_id: str,
        expected_version: int,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: Tx | None = None,
    ) -> None:
        """Append `envelopes` (versions expected_version + 1, ...) and their outbox rows.

        `outbox` is (topic, one payload per envelope), written with the stream's id
        as key. Raises ConcurrencyConflict, writing nothing, when the stream is not
        at `expected_version`.
        """
        ...

    async def insert_events_many(
        self,
        appends: Sequence[tuple[str, int, Sequence[Envelope]]],
        outbox: tuple[str, Sequence[bytes]],
        tx: Tx | None = None,
    ) -> None:
        """`insert_events` for several streams at once: each `(stream_id, expected_version,
        envelopes)` appended after its version, `outbox` one payload per envelope in that
        order, keyed by its stream. All or nothing: raises ConcurrencyConflict, writing
        nothing, when any stream is not at its expected version."""
        ...

    async def insert_streams(
        self,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: Tx | None = None,
    ) -> None:
        """Start many new streams at once: `envelopes` are each stream's first events
        (versions from 1, one stream type), `outbox` one payload per envelope, keyed by
        its stream. Raises ConcurrencyConflict, writing nothing, when any stream exists."""
        ...

    async def select_events(
        self, stream_id: str, after_version: int = 0, tx: Tx | None = None
    ) -> list[Envelope]:
        """The stream's events after `after_version`, in version order."""
        ...

    async def select_events_after(
        self, after: Mapping[str, int], tx: Tx | None = None
    ) -> dict[str, list[Envelope]]:
        """Each stream's events after its version in `after`, in version order (a stream
        with none is left out)."""
        ...

    async def select_snapshots(
        self, stream_ids: Sequence[str], tx: Tx | None = None
    ) -> dict[str, tuple[int, bytes]]:
        """The snapshots of those streams that have one."""
        ...

    async def select_snapshot_and_events(
        self, stream_id: str, tx: Tx | None = None
    ) -> tuple[tuple[int, bytes] | None, list[Envelope]]:
        """The stream's snapshot as (version, encoded state), if it has one, and its events
        after the snapshot (all of them without one), in version order."""
        ...

    async def select_snapshot(
        self, stream_id: str, tx: Tx | None = None
    ) -> tuple[int, bytes] | None:
        """The stream's snapshot as (version, encoded state), if it has one."""
        ...

    async def upsert_snapshot(
        self, stream_id: str, version: int, state: bytes, tx: Tx | None = None
    ) -> None:
        """Keep `state` as of `version`, replacing an older snapshot only."""
        ...
