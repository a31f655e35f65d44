"""The outbox relay: publishes every committed outbox row to Kafka exactly once.

Order. Rows are read in (tx_id, id) order and only once the transaction that
wrote them is older than every transaction still running
(`tx_id < pg_snapshot_xmin(pg_current_snapshot())`). Any row that commits later
therefore sorts after every row already read, so the relay never skips a
late-committing row and publishes in one total order, which keeps each
stream's events in version order on their partition.

Exactly once. Each batch is one Kafka transaction from a transactional
producer whose id is fixed per service schema; starting a new one fences the
old incarnation and aborts whatever it left open. Published rows are then
deleted. If the process dies between the Kafka commit and the delete, the next
incarnation reads the committed tail of each partition, finds the newest
position it published there (a header on every message), and deletes the rows
at or before it instead of sending them again.

Packed rows. A bulk write (a scheduling run's new appointments) packs its messages
into a few rows (packing.py); each is published as its messages, in order, at its
row's position, all in one Kafka transaction, so the rules above hold per row. A
packed row's own key is NULL: a relay of an earlier release fails on it before it
sends anything of the batch and lets go of the lead, so during a rolling upgrade such
rows wait for a relay that can publish them instead of going out as one message.

One relay per schema. A session advisory lock on the relay's own connection
elects one publisher among a service's replicas; if that connection dies,
the lock goes with it and another replica takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.producer.message_accumulator import BatchBuilder

from immunreg.eventstore.locks import try_lock_for_session
from immunreg.eventstore.packing import unpack
from immunreg.eventstore.signal import OutboxSignal
from immunreg.messaging.access import relay_id
from immunreg.messaging.connection import client_options
from immunreg.messaging.partitions import partition_for, partitions_for
from immunreg.messaging.transactions import kafka_transaction
from immunreg.observability.metrics import Metrics

log = logging.getLogger(__name__)

POSITION_HEADER = "immunreg-position"
RELAY_HEADER = "immunreg-relay"
# How the relay's transactional producer sends (with its `transactional_id`): every
# replica acknowledges, no duplicates on retry, 2 ms for a batch to fill.
PRODUCER_OPTIONS: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "linger_ms": 2,
    "max_batch_size": 256 * 1024,
}

Position = tuple[int, int]
# What the publish loop reads: an outbox row as read, or one message of a packed row.
Message = Any  # an asyncpg.Record, or a _PackedMessage

# A packed row's payload (packing.py: up to 1,000 messages, stored out of line) is not
# read here: only the rows a batch takes are read, by _PACKED_PAYLOAD. The relay counts
# the messages itself: a running sum in SQL (a window) put every batch of single rows,
# a registration's or a dose's, through a copy of each row for nothing.
_READY = """
SELECT id, tx_id::text::bigint AS tx, topic, key,
       CASE WHEN packed IS NULL THEN payload END AS payload, headers::text AS headers, packed
FROM outbox
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, id
LIMIT $1
"""

_PACKED_PAYLOAD = "SELECT payload FROM outbox WHERE id = $1"


# The ids name the rows; the (tx_id, id) range around them is there for the planner.
# `id = ANY(...)` alone, planned generically on an outbox whose statistics were taken
# while it was nearly empty, was run as a scan of the whole outbox_position index (its
# second column matches), so every delete cost the whole backlog: 0.2-0.7 s each, the
# largest statement of a scheduling run. The range makes either index a short scan.
_DELETE_PUBLISHED = """
DELETE FROM outbox
WHERE (tx_id, id) >= ($1::text::xid8, $2::bigint) AND (tx_id, id) <= ($3::text::xid8, $4::bigint)
  AND id = ANY($5::bigint[])
"""


# What one publish_batch read, named by its first and last position alone. Exact: every
# row it read had tx_id < xmin, so every transaction that could put a row between the
# two had ended before the read, and the read, a prefix of (tx_id, id) order, took all
# of them; a row committed since sorts after the last. Without delete_published's list
# of ids, PostgreSQL compares no row with a thousand of them (`= ANY` of a parameter is
# a linear search).
_DELETE_READ = """
DELETE FROM outbox
WHERE (tx_id, id) >= ($1::text::xid8, $2::bigint) AND (tx_id, id) <= ($3::text::xid8, $4::bigint)
"""


async def delete_published(conn: asyncpg.Connection, rows: list[Position]) -> None:
    """Delete the outbox rows at these (tx, id) positions (published, or found in Kafka)."""
    if not rows:
        return
    first, last = min(rows), max(rows)
    await conn.execute(
        _DELETE_PUBLISHED,
        str(first[0]),
        first[1],
        str(last[0]),
        last[1],
        [row_id for _, row_id in rows],
    )


def _append(batch: BatchBuilder, key: bytes, value: bytes, headers: list[Any]) -> bool:
    """Add one message to a record batch; False when the batch is full."""
    return batch.append(key=key, value=value, timestamp=None, headers=headers) is not None


class _PackedMessage:
    """One message of a packed row, read as the loop reads a row: its own key and payload,
    the rest (position, topic, headers) its row's."""

    __slots__ = ("key", "payload", "row")

    def __init__(self, row: asyncpg.Record, key: str, payload: bytes) -> None:
        self.row, self.key, self.payload = row, key, payload

    def __getitem__(self, name: str) -> Any:
        if name == "key":
            return self.key
        if name == "payload":
            return self.payload
        return self.row[name]


def _taken(rows: list[asyncpg.Record], messages: int) -> tuple[list[asyncpg.Record], int]:
    """The first rows, in order, until they hold `messages` messages (a packed row counts
    as its messages; the first row is always taken, and the last may go past), and how
    many of them are packed."""
    held = packed = 0
    for n, row in enumerate(rows):
        if held >= messages:
            return rows[:n], packed
        if row["packed"] is None:
            held += 1
        else:
            held += row["packed"]
            packed += 1
    return rows, packed


def _first_key(row: asyncpg.Record) -> bytes:
    """A row's key; a packed row's (whose own is NULL) is its first message's: the row
    was published whole in one Kafka transaction, so any message's partition tells."""
    key: str = row["key"] if row["key"] is not None else unpack(row["payload"])[0][0]
    return key.encode()


def encode_position(position: Position) -> bytes:
    return b"%d:%d" % position


def decode_position(raw: bytes) -> Position:
    tx, _, row = raw.decode().partition(":")
    return int(tx), int(row)


async def published_tail(
    bootstrap: str, topic: str, partitions: list[int], relay_id: str, window: int = 200
) -> dict[int, Position]:
    """The newest position this relay committed to each partition of topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_options(),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    found: dict[int, Position] = {}
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            span = window
            while tp.partition not in found:
                start = max(starts[tp], ends[tp] - span)
                if start >= ends[tp]:
                    break
                newest = await _newest_position(consumer, tp, start, ends[tp], relay_id)
                if newest is not None:
                    found[tp.partition] = newest
                if start == starts[tp]:
                    break
                span *= 4
    finally:
        await consumer.stop()
    return found


async def _newest_position(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, relay_id: str
) -> Position | None:
    consumer.seek(tp, start)
    newest: Position | None = None
    relay = relay_id.encode()
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for message in batch.get(tp, []):
            headers = dict(message.headers or ())
            if headers.get(RELAY_HEADER) == relay and POSITION_HEADER in headers:
                position = decode_position(headers[POSITION_HEADER])
                newest = position if newest is None else max(newest, position)
        if not batch:
            # Only control records (transaction markers) remain before `end`.
            break
    return newest


class OutboxRelay:
    """Moves one schema's outbox to Kafka; run it as a task inside the service."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        bootstrap: str,
        *,
        signal: OutboxSignal,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.bootstrap = bootstrap
        self.signal = signal
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._failures = 0
        self.relay_id = relay_id(schema)
        self._partitions: dict[str, list[int]] = {}
        self._backlog_seen_at = 0.0
        self.leading = asyncio.Event()
        self._finishing = asyncio.Event()

    async def run(self) -> None:
        """Publish until cancelled or finished; a failure restarts from recovery after a pause.

        Kafka or PostgreSQL down only delays publishing: the relay retries for
        ever, always from the oldest unpublished row, so it never skips one.
        """
        while not self._finishing.is_set():
            try:
                await self._lead_and_publish()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; restarting", extra={"schema": self.schema})
            self._lead(False)
            if not self._finishing.is_set():
                # Doubling, capped low: the outage costs few log lines, and once
                # Kafka is back the backlog moves within max_retry_delay.
                self._failures += 1
                delay = self.retry_delay * 2 ** min(self._failures - 1, 10)
                await asyncio.sleep(min(delay, self.max_retry_delay))

    def _lead(self, leading: bool) -> None:
        # The gauge shows operators (and the replicas test) which replica publishes.
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        if self.metrics is not None:
            self.metrics.relay_leading.set(1 if leading else 0)

    def finish(self) -> None:
        """Publish what is committed now, then return from run() (for a graceful shutdown).

        A relay that does not lead returns at once: flushing is the leader's job.
        """
        self._finishing.set()
        self.signal.wake()

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.dsn,
            server_settings={
                "search_path": f"{self.schema},public",
                "application_name": f"{self.schema}-relay",
                # The outbox fills and empties within seconds, so its statistics are
                # mostly wrong; taken while it was empty, they made _READY a scan and
                # sort of the whole backlog per batch (30-180 ms at 100,000 rows). The
                # one order it wants is outbox_position's: no sort, ever, here.
                "enable_sort": "off",
            },
        )

    async def _lead_and_publish(self) -> None:
        conn = await self._connect()
        try:
            while not await try_lock_for_session(conn, self.relay_id):
                if self._finishing.is_set():
                    return
                await asyncio.sleep(self.poll_interval * 4)
            await conn.add_listener(self.signal.channel, self.signal.external)
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                **client_options(),
                transactional_id=self.relay_id,
                **PRODUCER_OPTIONS,
            )
            try:
                await producer.start()
                await self._recover(conn, producer)
                self._lead(True)
                self._failures = 0
                log.info("outbox relay leading", extra={"schema": self.schema})
                while True:
                    # Only a batch read after finish() was called proves the rows
                    # committed before it are out; one read earlier may miss them.
                    finishing = self._finishing.is_set()
                    published = await self.publish_batch(conn, producer)
                    if published < self.batch_size:
                        if finishing:
                            log.info("outbox relay flushed", extra={"schema": self.schema})
                            return
                        await self.signal.wait(self.poll_interval)
            finally:
                await producer.stop()
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _partition_count(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        if topic not in self._partitions:
            partitions = await producer.partitions_for(topic)
            if not partitions:
                raise RuntimeError(f"topic {topic!r} does not exist")
            self._partitions[topic] = sorted(partitions)
        return self._partitions[topic]

    async def _recover(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> None:
        """Delete outbox rows that a previous incarnation published but did not delete."""
        topics = [r["topic"] for r in await conn.fetch("SELECT DISTINCT topic FROM outbox")]
        for topic in topics:
            partitions = await self._partition_count(producer, topic)
            tail = await published_tail(self.bootstrap, topic, partitions, self.relay_id)
            if not tail:
                continue
            newest = max(tail.values())
            rows = await conn.fetch(
                "SELECT id, tx_id::text::bigint AS tx, key, "
                "CASE WHEN packed IS NOT NULL THEN payload END AS payload FROM outbox "
                "WHERE topic = $1 AND (tx_id, id) <= ($2::text::xid8, $3::bigint)",
                topic,
                str(newest[0]),
                newest[1],
            )
            done = [
                (r["tx"], r["id"])
                for r in rows
                if (pos := tail.get(partition_for(_first_key(r), len(partitions))))
                and (r["tx"], r["id"]) <= pos
            ]
            if done:
                await delete_published(conn, done)
                log.warning(
                    "relay recovered rows already in Kafka",
                    extra={"schema": self.schema, "topic": topic, "rows": len(done)},
                )

    async def publish_batch(self, conn: asyncpg.Connection, producer: AIOKafkaProducer) -> int:
        """Publish ready rows, about batch_size messages, in one Kafka transaction; return
        how many messages (a packed row's whole, so it may be a row's more)."""
        rows = await conn.fetch(_READY, self.batch_size)
        await self._observe_backlog(conn)
        if not rows:
            return 0
        started = asyncio.get_running_loop().time()
        rows, packed = _taken(rows, self.batch_size)
        # A packed row becomes its messages, each a row of its own to the loop below
        # (same position); single rows go through as they are read.
        messages: Sequence[Message] = await self._unpacked(conn, rows, packed) if packed else rows
        keys = [message["key"].encode() for message in messages]
        where = await self._partitions_of(producer, messages, keys)
        relay = (RELAY_HEADER, self.relay_id.encode())
        async with kafka_transaction(producer) as deliveries:
            # One record batch per partition, filled here and handed over whole: far
            # less work per message than producer.send (a future, a metadata check and
            # an accumulator lookup each), which was most of the relay's time. A
            # partition's batches are handed over in row order.
            open_batches: dict[tuple[str, int], BatchBuilder] = {}
            headers: list[tuple[str, bytes]] = []
            headed = None  # the row whose headers those are: a packed row's messages share
            for row, key, at in zip(messages, keys, where, strict=True):
                source = row.row if isinstance(row, _PackedMessage) else row
                if source is not headed:
                    headed = source
                    headers = [(POSITION_HEADER, encode_position((row["tx"], row["id"]))), relay]
                    if row["headers"] != "[]":
                        extra: list[Any] = json.loads(row["headers"])
                        headers.extend((str(k), str(v).encode()) for k, v in extra)
                batch = open_batches.get(at)
                if batch is None or not _append(batch, key, row["payload"], headers):
                    if batch is not None:  # full: hand it over, start the next one
                        deliveries.append(await producer.send_batch(batch, at[0], partition=at[1]))
                    batch = open_batches[at] = producer.create_batch()
                    if not _append(batch, key, row["payload"], headers):
                        raise ValueError(f"outbox row {row['id']} is larger than a batch")
            for (topic, partition), batch in open_batches.items():
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
        first, last = rows[0], rows[-1]
        await conn.execute(_DELETE_READ, str(first["tx"]), first["id"], str(last["tx"]), last["id"])
        if self.metrics is not None:
            self.metrics.relay_batch_latency.observe(asyncio.get_running_loop().time() - started)
            counts: dict[str, int] = defaultdict(int)
            for row in rows:
                counts[row["topic"]] += row["packed"] or 1
            for topic, count in counts.items():
                self.metrics.relay_published.labels(topic).inc(count)
        return len(messages)

    async def _unpacked(
        self, conn: asyncpg.Connection, rows: list[asyncpg.Record], packed: int
    ) -> list[Message]:
        """The rows with each packed one replaced by its messages, in order: each a row
        with the packed row's position, topic and headers and a message's key and payload
        (the payload read here, by the row's id)."""
        messages: list[Message] = []
        for row in rows:
            if row["packed"] is None:
                messages.append(row)
                continue
            payload = await conn.fetchval(_PACKED_PAYLOAD, row["id"])
            messages.extend(_PackedMessage(row, key, value) for key, value in unpack(payload))
        return messages

    async def _partitions_of(
        self, producer: AIOKafkaProducer, rows: Sequence[Message], keys: list[bytes]
    ) -> list[tuple[str, int]]:
        """(topic, partition) of each row: the keys of one topic hashed together."""
        by_topic: dict[str, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_topic[row["topic"]].append(i)
        where: list[tuple[str, int]] = [("", 0)] * len(rows)
        for topic, indexes in by_topic.items():
            count = len(await self._partition_count(producer, topic))
            chosen = partitions_for([keys[i] for i in indexes], count)
            for i, partition in zip(indexes, chosen, strict=True):
                where[i] = (topic, partition)
        return where

    async def _observe_backlog(self, conn: asyncpg.Connection) -> None:
        # At most once a second: count(*) over a large backlog is not free.
        now = asyncio.get_running_loop().time()
        if self.metrics is None or now - self._backlog_seen_at < 1.0:
            return
        self._backlog_seen_at = now
        row = await conn.fetchrow(
            "SELECT coalesce(sum(coalesce(packed, 1)), 0) AS n, "
            "extract(epoch FROM clock_timestamp() - min(created_at)) AS age FROM outbox"
        )
        assert row is not None
        self.metrics.outbox_backlog.set(row["n"])
        self.metrics.outbox_lag.set(float(row["age"] or 0.0))
