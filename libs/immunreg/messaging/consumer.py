"""The one consumer loop every service uses.

Each batch from a partition is applied in one PostgreSQL transaction together
with the group's position on that partition, so the effect and "how far we
got" commit together: a crash, a rebalance or a redelivery applies nothing
twice. Each message runs in its own savepoint; a message whose handler keeps
failing is retried with backoff, then written to `<topic>.dlq` through the
outbox (in the same transaction) and the partition moves on.

PostgreSQL, not Kafka's committed offsets, is the source of truth for where a
group stands; offsets are also committed to Kafka (at most once a second) so the
usual tools can show lag. A batch with nothing for this group (every event of a
type it does not react to) has no effect to commit: its position is stored by one
statement, without a transaction.

Every batch is first tried together: the batch's event ids go into
`processed_events` with one statement (a COPY for a large batch) and the handlers run
one after another in the batch's transaction with no savepoint each (two round trips
per message fewer, and one statement for the ids instead of one per message).
Reactions with a `BatchApplier` (read models that replay millions of events) go
further: their handlers only record, and the applier writes once per batch. If anything but the
infrastructure fails, the whole batch is rolled back and applied one message at a
time as above, so a bad message is still retried and dead-lettered on its own;
a handler's effects are its writes through `conn`, so running the good messages
again after that rollback applies each of them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from immunreg.contracts.envelope import Context, Envelope, Event, decode_envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.contracts.upcasting import UpcastError
from immunreg.eventstore.database import Connection
from immunreg.eventstore.signal import OutboxSignal
from immunreg.messaging.connection import client_options
from immunreg.messaging.reactions import Handler, Reactions
from immunreg.observability.metrics import Metrics

log = logging.getLogger(__name__)

# Seconds between commits of the positions to Kafka (see EventConsumer._commit_to_kafka).
KAFKA_COMMIT_EVERY = 1.0
# Events a group applies together at most (one transaction with its position).
BATCH_SIZE = 500
# Event ids a batch must have for `processed_events` to be written by COPY (see
# EventConsumer._claim_events); a rebuild's batches of thousands always are.
COPY_CLAIMS_FROM = 64

# Errors that say the database or network is unwell, not that the message is bad:
# the batch is rolled back and read again later instead of being dead-lettered.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    ConnectionError,
    OSError,
)


def _decoded(message: ConsumerRecord) -> Envelope | None:
    try:
        return decode_envelope(message.value)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return None  # dead-lettered when the batch is applied message by message


def reading_options(batch_size: int) -> dict[str, Any]:
    """How every consumer group reads (AIOKafkaConsumer keyword arguments): committed
    events only, from the first when the group is new, positions kept by the group
    itself, up to `batch_size` events a batch."""
    return {
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": batch_size,
        # Room for a whole batch from one partition in one fetch (about 1 KiB an
        # event): at Kafka's default 1 MiB a replay's batches stayed near a thousand.
        "max_partition_fetch_bytes": max(1 << 20, batch_size * 1024),
    }


@dataclass
class _Fallback:
    """Why a batch tried together is applied message by message: the event whose handler
    ran last, and what it raised when that handler failed (not the flush or a decode)."""

    event_id: uuid.UUID | None = None
    error: BaseException | None = None


class _Positions(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, seek each partition to the position stored in PostgreSQL."""

    def __init__(self, owner: EventConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        del revoked  # positions are already committed with each batch
        self.owner.joined.clear()  # rebalancing: set again on the next assignment

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.owner.seek_to_stored(list(assigned))
        self.owner.joined.set()
        self.owner.has_joined = True


class EventConsumer:
    """Consumes the topics of a service's Reactions as consumer group `group_id`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        group_id: str,
        reactions: Reactions,
        *,
        metrics: Metrics | None = None,
        signal: OutboxSignal | None = None,
        max_attempts: int = 3,
        backoff: float = 0.2,
        batch_size: int = BATCH_SIZE,
        retry_delay: float = 1.0,
    ) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.reactions = reactions
        self.metrics = metrics
        self.signal = signal
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.batch_size = batch_size
        self.retry_delay = retry_delay
        self.joined = asyncio.Event()
        # Joined at least once since start: not joined now means Kafka is down or
        # the group is rebalancing, not that the service is still starting.
        self.has_joined = False
        self._finishing = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._next_offsets: dict[TopicPartition, int] = {}
        self._kafka_offsets: dict[TopicPartition, int] = {}
        self._kafka_committed_at = 0.0

    async def run(self) -> None:
        """Consume until cancelled or finished; failures restart the consumer after a pause."""
        while not self._finishing.is_set():
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer failed; restarting", extra={"group": self.group_id})
            self.joined.clear()
            if not self._finishing.is_set():
                await asyncio.sleep(self.retry_delay)

    def finish(self) -> None:
        """Return from run() after the batch in hand, leaving the group (graceful shutdown).

        Each batch commits its position with its effect, so stopping between
        batches loses nothing and the next member starts where this one stopped.
        """
        self._finishing.set()

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            **client_options(),
            group_id=self.group_id,
            **reading_options(self.batch_size),
        )
        consumer.subscribe(self.reactions.topics, listener=_Positions(self))
        self._consumer = consumer
        try:
            # Inside the try: a start cancelled half-way must still be stopped.
            await consumer.start()
            while not self._finishing.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
                for tp, messages in batches.items():
                    if messages:
                        await self._apply_batch(consumer, tp, messages)
                await self._commit_to_kafka(consumer)  # what an idle second left uncommitted
                await self._observe_lag(consumer)
            await self._commit_to_kafka(consumer, now=True)
        finally:
            self._consumer = None
            await consumer.stop()

    async def seek_to_stored(self, partitions: list[TopicPartition]) -> None:
        """Position the consumer where PostgreSQL says this group stands."""
        consumer = self._consumer
        if consumer is None or not partitions:
            return
        rows = await self.pool.fetch(
            "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1",
            self.group_id,
        )
        stored = {(r["topic"], r["partition"]): r["next_offset"] for r in rows}
        fresh = [tp for tp in partitions if (tp.topic, tp.partition) not in stored]
        # Not seek_to_beginning(): it waits for the fetcher inside the rebalance
        # callback. Kafka's committed offsets are not trusted here either: a new
        # read model must start from the first event.
        beginnings = await consumer.beginning_offsets(fresh) if fresh else {}
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition), beginnings.get(tp))
            consumer.seek(tp, offset)

    async def _apply_batch(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, messages: list[ConsumerRecord]
    ) -> None:
        outcomes: list[str] | None = None
        envelopes = [_decoded(message) for message in messages]
        try:
            if all(e is not None and not self._handles(tp, e) for e in envelopes):
                # Nothing in it for this group: no effect to commit with the position, so
                # no transaction (a crash before this reads them again, to skip them again).
                await self._store_position(self.pool, tp, messages[-1].offset + 1)
                outcomes = ["skipped"] * len(messages)
                together: list[str] | _Fallback = outcomes
            else:
                together = await self._apply_together(tp, messages, envelopes)
            if isinstance(together, list):
                outcomes = together
            else:
                if together.error is not None:  # that was the failing handler's first attempt
                    await asyncio.sleep(self.backoff)
                outcomes = await self._apply_each(tp, messages, together)
        except INFRASTRUCTURE_ERRORS:
            log.exception("batch not applied; will read it again", extra={"group": self.group_id})
            consumer.seek(tp, messages[0].offset)
            await asyncio.sleep(self.retry_delay)
            return
        dead_lettered = "dead_lettered" in outcomes
        self._next_offsets[tp] = messages[-1].offset + 1
        # Handlers may append events (and dead letters go through the outbox):
        # wake the relay now rather than at its next poll.
        if self.signal is not None and (dead_lettered or "applied" in outcomes):
            self.signal.wake()
        if self.metrics is not None:
            for outcome in outcomes:
                self.metrics.consumer_processed.labels(self.group_id, tp.topic, outcome).inc()
        self._kafka_offsets[tp] = messages[-1].offset + 1
        await self._commit_to_kafka(consumer)

    async def _commit_to_kafka(self, consumer: AIOKafkaConsumer, *, now: bool = False) -> None:
        """Commit the positions to Kafka too, at most once per KAFKA_COMMIT_EVERY: only for
        tools that read Kafka's offsets (PostgreSQL holds the group's real positions), so
        not a round trip to the coordinator after every batch."""
        due = time.monotonic() >= self._kafka_committed_at + KAFKA_COMMIT_EVERY
        if not self._kafka_offsets or not (now or due):
            return
        offsets, self._kafka_offsets = self._kafka_offsets, {}
        self._kafka_committed_at = time.monotonic()
        with contextlib.suppress(Exception):  # e.g. a partition revoked meanwhile
            await consumer.commit(offsets)

    def _handles(self, tp: TopicPartition, envelope: Envelope) -> bool:
        return self.reactions.lookup(tp.topic, envelope.type) is not None

    async def _apply_each(
        self, tp: TopicPartition, messages: list[ConsumerRecord], tried: _Fallback
    ) -> list[str]:
        """The batch in one transaction, each message in its own savepoint (`tried`: the
        handler that failed when the batch was tried together has used one attempt)."""
        outcomes: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            stored = await self._lock_position(conn, tp)
            for message in messages:
                if stored is not None and message.offset < stored:
                    outcomes.append("duplicate")
                    continue
                outcomes.append(await self._apply_one(conn, tp, message, tried))
            await self._store_position(conn, tp, messages[-1].offset + 1)
        return outcomes

    async def _apply_together(
        self,
        tp: TopicPartition,
        messages: list[ConsumerRecord],
        envelopes: list[Envelope | None],
    ) -> list[str] | _Fallback:
        """The batch's fresh events handled in one go, without a savepoint each (with an
        applier: recorded by the handlers and written by one flush).

        A _Fallback when it must be applied one message at a time instead (a message
        cannot be decoded or handled, or the flush fails): nothing was written.
        """
        tried = _Fallback()
        if any(envelope is None for envelope in envelopes):
            return tried  # to be dead-lettered on its own
        applier = self.reactions.batch
        outcomes: list[str] = []
        newest: datetime | None = None
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                stored = await self._lock_position(conn, tp)
                pending: list[tuple[Envelope, Context, Handler]] = []
                for message, envelope in zip(messages, envelopes, strict=True):
                    if stored is not None and message.offset < stored:
                        outcomes.append("duplicate")
                        continue
                    if envelope is None:  # (checked above)
                        continue
                    entry = self.reactions.lookup(tp.topic, envelope.type)
                    if entry is None:
                        outcomes.append("skipped")
                        continue
                    pending.append((envelope, *entry))
                fresh = await self._claim_events(conn, [envelope for envelope, _, _ in pending])
                if applier is not None:
                    applier.begin()
                for envelope, context, handler in pending:
                    if envelope.event_id not in fresh:
                        outcomes.append("duplicate")  # applied before, or twice in this batch
                        continue
                    fresh.discard(envelope.event_id)
                    tried.event_id = envelope.event_id
                    await handler(conn, context.read(envelope), envelope)
                    tried.event_id = None
                    outcomes.append("applied")
                    if newest is None or envelope.recorded_at > newest:
                        newest = envelope.recorded_at
                if applier is not None:
                    await applier.flush(conn)
                await self._store_position(conn, tp, messages[-1].offset + 1)
        except INFRASTRUCTURE_ERRORS:
            if applier is not None:
                applier.discard()
            raise
        except Exception as exc:
            if applier is not None:
                applier.discard()
            if tried.event_id is not None and applier is None:
                tried.error = exc
            log.warning(
                "batch not applied at once; applying it message by message",
                extra={"group": self.group_id, "topic": tp.topic},
                exc_info=True,
            )
            return tried
        if newest is not None:
            self._observe_freshness(newest)
        return outcomes

    async def _claim_events(self, conn: Connection, envelopes: list[Envelope]) -> set[uuid.UUID]:
        """Record the events as processed by this group; the ids that were not already.

        A batch of COPY_CLAIMS_FROM ids or more goes in with one COPY, under a savepoint:
        its ids are almost never there already (that takes the same event at another
        offset: a topic republished), and COPY costs PostgreSQL far less than INSERT ...
        ON CONFLICT's speculative insertion, besides sending no ids back. If one is there,
        the savepoint undoes the COPY and the INSERT below tells which are new. A small
        batch goes straight to the INSERT: the savepoint's round trips would cost it more."""
        if not envelopes:  # a batch of events this group does not react to
            return set()
        ids = list(dict.fromkeys(envelope.event_id for envelope in envelopes))
        if len(ids) >= COPY_CLAIMS_FROM:
            try:
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "processed_events",
                        records=[(self.group_id, event_id) for event_id in ids],
                        columns=("group_id", "event_id"),
                    )
                return set(ids)
            except asyncpg.UniqueViolationError:
                pass  # one of them was processed before: let the INSERT sort them out
        rows = await conn.fetch(
            "INSERT INTO processed_events (group_id, event_id) "
            "SELECT $1, id FROM unnest($2::uuid[]) AS id "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            self.group_id,
            ids,
        )
        return {row[0] for row in rows}

    async def _lock_position(self, conn: Connection, tp: TopicPartition) -> int | None:
        stored: int | None = await conn.fetchval(
            "SELECT next_offset FROM consumer_positions "
            "WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
            self.group_id,
            tp.topic,
            tp.partition,
        )
        return stored

    async def _store_position(
        self, conn: Connection | asyncpg.Pool, tp: TopicPartition, offset: int
    ) -> None:
        await conn.execute(
            """
            INSERT INTO consumer_positions (group_id, topic, partition, next_offset)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (group_id, topic, partition) DO UPDATE
                SET next_offset = GREATEST(consumer_positions.next_offset,
                                           excluded.next_offset),
                    updated_at = now()
            """,
            self.group_id,
            tp.topic,
            tp.partition,
            offset,
        )

    async def _apply_one(
        self, conn: Connection, tp: TopicPartition, message: ConsumerRecord, tried: _Fallback
    ) -> str:
        try:
            envelope = decode_envelope(message.value)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            await self._dead_letter(conn, tp, message, f"undecodable envelope: {exc}")
            return "dead_lettered"
        entry = self.reactions.lookup(tp.topic, envelope.type)
        if entry is None:
            return "skipped"
        context, handler = entry
        error: BaseException | None = None
        first = 1
        if tried.error is not None and tried.event_id == envelope.event_id:
            error, first = tried.error, 2
        for attempt in range(first, self.max_attempts + 1):
            try:
                async with conn.transaction():  # a savepoint per message
                    fresh = await conn.fetchval(
                        "INSERT INTO processed_events (group_id, event_id) VALUES ($1, $2) "
                        "ON CONFLICT DO NOTHING RETURNING true",
                        self.group_id,
                        envelope.event_id,
                    )
                    if not fresh:
                        return "duplicate"
                    event = context.read(envelope)
                    await self._handle(conn, handler, event, envelope)
            except INFRASTRUCTURE_ERRORS:
                raise
            except (msgspec.DecodeError, msgspec.ValidationError, UpcastError) as exc:
                # A malformed event, or one no upcaster reads yet, will not get
                # better with retries: dead-letter it and replay it after the fix.
                error = exc
                break
            except Exception as exc:
                error = exc
                log.warning(
                    "handler failed",
                    extra={"group": self.group_id, "type": envelope.type, "attempt": attempt},
                    exc_info=True,
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            else:
                self._observe_freshness(envelope.recorded_at)
                return "applied"
        await self._dead_letter(conn, tp, message, f"{type(error).__name__}: {error}")
        return "dead_lettered"

    async def _handle(
        self, conn: Connection, handler: Handler, event: Event, envelope: Envelope
    ) -> None:
        applier = self.reactions.batch
        if applier is None:
            await handler(conn, event, envelope)
            return
        applier.begin()  # a batch of one message, inside its savepoint
        try:
            await handler(conn, event, envelope)
            await applier.flush(conn)
        except BaseException:
            applier.discard()
            raise

    async def _dead_letter(
        self, conn: Connection, tp: TopicPartition, message: ConsumerRecord, reason: str
    ) -> None:
        log.error(
            "message dead-lettered",
            extra={
                "group": self.group_id,
                "topic": tp.topic,
                "offset": message.offset,
                "reason": reason,
            },
        )
        headers = [
            ["dlq-group", self.group_id],
            ["dlq-reason", reason[:2000]],
            ["dlq-source-topic", tp.topic],
            ["dlq-source-partition", str(tp.partition)],
            ["dlq-source-offset", str(message.offset)],
            ["dlq-failed-at", datetime.now(UTC).isoformat()],
        ]
        await conn.execute(
            "INSERT INTO outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb)",
            dlq_topic(tp.topic),
            (message.key or b"").decode(errors="replace"),
            message.value or b"",
            json.dumps(headers),
        )

    def _observe_freshness(self, recorded_at: datetime) -> None:
        if self.metrics is None:
            return
        age = (datetime.now(UTC) - recorded_at).total_seconds()
        self.metrics.consumer_event_age.labels(self.group_id).observe(max(age, 0.0))
        self.metrics.projection_freshness.labels(self.group_id).set(recorded_at.timestamp())

    async def _observe_lag(self, consumer: AIOKafkaConsumer) -> None:
        if self.metrics is None:
            return
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            applied = self._next_offsets.get(tp)
            if highwater is None:
                continue
            # The fetch position has stepped over the relay's transaction markers,
            # which occupy offsets but are not messages: against the high
            # watermark alone, a caught-up consumer would show a lag of one.
            with contextlib.suppress(Exception):
                position = await asyncio.wait_for(consumer.position(tp), 0.1)
                applied = max(applied or 0, position)
            if applied is None:
                continue
            self.metrics.consumer_lag.labels(self.group_id, tp.topic, str(tp.partition)).set(
                max(highwater - applied, 0)
            )
