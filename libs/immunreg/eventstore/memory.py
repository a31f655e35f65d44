"""The in-memory recorder: streams, outbox and snapshots in dicts, for unit tests.

It keeps the PostgreSQL recorder's promises (the contract suite checks both):
an append at a stale version is refused and writes nothing; a transaction's
writes are seen only through its handle until it commits, and are dropped when
it fails. Asyncio runs one task at a time and nothing here awaits while it
checks and writes, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from immunreg.contracts.envelope import Envelope
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.store import StreamStore


@dataclass(frozen=True)
class OutboxRow:
    """What the PostgreSQL recorder would put in its `outbox` table for the relay."""

    topic: str
    key: str
    payload: bytes


@dataclass
class MemoryTransaction:
    """Writes waiting for commit; reads through it see them over what is committed."""

    events: dict[str, list[Envelope]] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    snapshots: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class InMemoryRecorder:
    """The recorder for tests without PostgreSQL; `outbox` lists what would be published."""

    def __init__(self) -> None:
        self.streams: dict[str, list[Envelope]] = {}
        self.outbox: list[OutboxRow] = []
        self.snapshots: dict[str, tuple[int, bytes]] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        """Stage writes; on a clean exit, commit them at once or raise ConcurrencyConflict."""
        tx = MemoryTransaction()
        yield tx
        self._commit(tx)

    def statement(self) -> AbstractAsyncContextManager[MemoryTransaction]:
        """A transaction: what a statement writes here is staged and committed at once."""
        return self.transaction()

    def _commit(self, tx: MemoryTransaction) -> None:
        # Another transaction may have committed to one of our streams since we
        # appended: PostgreSQL would have refused our insert then, so refuse all of it.
        for stream_id, expected in tx.expected.items():
            if self._version(stream_id) != expected:
                raise ConcurrencyConflict(stream_id, expected)
        for stream_id, envelopes in tx.events.items():
            self.streams[stream_id] = envelopes  # what was committed, then ours
        self.outbox.extend(tx.outbox)
        for stream_id, snapshot in tx.snapshots.items():
            self._keep_snapshot(self.snapshots, stream_id, snapshot)

    def _version(self, stream_id: str, tx: MemoryTransaction | None = None) -> int:
        events = self.streams.get(stream_id, [])
        staged = tx.events.get(stream_id, []) if tx is not None else []
        newest = staged or events
        return newest[-1].version if newest else 0

    async def insert_events(
        self,
        stream_id: str,
        expected_version: int,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: MemoryTransaction | None = None,
    ) -> None:
        """Append after `expected_version`, or refuse and write nothing."""
        if self._version(stream_id, tx) != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version)
        topic, payloads = outbox
        rows = [OutboxRow(topic, stream_id, payload) for payload in payloads]
        if tx is None:
            self.streams.setdefault(stream_id, []).extend(envelopes)
            self.outbox.extend(rows)
            return
        if stream_id not in tx.events:
            tx.expected[stream_id] = self._version(stream_id)
        tx.events.setdefault(stream_id, list(self.streams.get(stream_id, [])))
        tx.events[stream_id].extend(envelopes)
        tx.outbox.extend(rows)

    async def insert_events_many(
        self,
        appends: Sequence[tuple[str, int, Sequence[Envelope]]],
        outbox: tuple[str, Sequence[bytes]],
        tx: MemoryTransaction | None = None,
    ) -> None:
        """Append to several streams after their versions, or refuse and write nothing."""
        for stream_id, expected, _ in appends:
            if self._version(stream_id, tx) != expected:
                raise ConcurrencyConflict(stream_id, expected)
        topic, payloads = outbox
        at = 0
        for stream_id, expected, envelopes in appends:
            stream_payloads = payloads[at : at + len(envelopes)]
            at += len(envelopes)
            await self.insert_events(stream_id, expected, envelopes, (topic, stream_payloads), tx)

    async def insert_streams(
        self,
        envelopes: Sequence[Envelope],
        outbox: tuple[str, Sequence[bytes]],
        tx: MemoryTransaction | None = None,
    ) -> None:
        """Start many new streams, or refuse and write nothing."""
        topic, payloads = outbox
        by_stream: dict[str, list[tuple[Envelope, bytes]]] = {}
        for envelope, payload in zip(envelopes, payloads, strict=True):
            by_stream.setdefault(envelope.stream_id, []).append((envelope, payload))
        if any(self._version(stream_id, tx) != 0 for stream_id in by_stream):
            raise ConcurrencyConflict("(new streams)", 0)
        for stream_id, pairs in by_stream.items():
            await self.insert_events(
                stream_id, 0, [e for e, _ in pairs], (topic, [p for _, p in pairs]), tx
            )

    async def select_events(
        self, stream_id: str, after_version: int = 0, tx: MemoryTransaction | None = None
    ) -> list[Envelope]:
        """The stream's events after `after_version`, with the transaction's own."""
        staged = tx.events.get(stream_id) if tx is not None else None
        events = staged if staged is not None else self.streams.get(stream_id, [])
        return [e for e in events if e.version > after_version]

    async def select_events_after(
        self, after: Mapping[str, int], tx: MemoryTransaction | None = None
    ) -> dict[str, list[Envelope]]:
        """Each stream's events after its version, with the transaction's own."""
        found = {stream: await self.select_events(stream, v, tx) for stream, v in after.items()}
        return {stream: events for stream, events in found.items() if events}

    async def select_snapshots(
        self, stream_ids: Sequence[str], tx: MemoryTransaction | None = None
    ) -> dict[str, tuple[int, bytes]]:
        """The newest snapshot of each stream that has one."""
        found = {stream: await self.select_snapshot(stream, tx) for stream in stream_ids}
        return {stream: snapshot for stream, snapshot in found.items() if snapshot is not None}

    async def select_snapshot_and_events(
        self, stream_id: str, tx: MemoryTransaction | None = None
    ) -> tuple[tuple[int, bytes] | None, list[Envelope]]:
        """The newest snapshot, if any, and the events after it."""
        snapshot = await self.select_snapshot(stream_id, tx)
        after = snapshot[0] if snapshot is not None else 0
        return snapshot, await self.select_events(stream_id, after, tx)

    async def select_snapshot(
        self, stream_id: str, tx: MemoryTransaction | None = None
    ) -> tuple[int, bytes] | None:
        """The newest snapshot, the transaction's own included."""
        candidates = [self.snapshots.get(stream_id)]
        if tx is not None:
            candidates.append(tx.snapshots.get(stream_id))
        kept = [snapshot for snapshot in candidates if snapshot is not None]
        return max(kept, key=lambda snapshot: snapshot[0]) if kept else None

    async def upsert_snapshot(
        self, stream_id: str, version: int, state: bytes, tx: MemoryTransaction | None = None
    ) -> None:
        """Keep the snapshot unless a newer one is there already."""
        snapshots = self.snapshots if tx is None else tx.snapshots
        self._keep_snapshot(snapshots, stream_id, (version, state))

    @staticmethod
    def _keep_snapshot(
        snapshots: dict[str, tuple[int, bytes]], stream_id: str, snapshot: tuple[int, bytes]
    ) -> None:
        current = snapshots.get(stream_id)
        if current is None or current[0] < snapshot[0]:
            snapshots[stream_id] = snapshot


class InMemoryEventStore(StreamStore[MemoryTransaction]):
    """An event store on an InMemoryRecorder: what handler unit tests run commands on."""

    def __init__(self) -> None:
        self.memory = InMemoryRecorder()
        super().__init__(self.memory)
