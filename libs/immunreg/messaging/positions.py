"""Consumer groups as an operator sees them: where each stands, and moving it.

A group's positions live in PostgreSQL (`<schema>.consumer_positions`, one row per
topic partition, written in the same transaction as the effects), not in Kafka's
committed offsets: the group's name is the service's schema. So the status reads
the rows and compares them with each partition's end in Kafka, and a reset rewrites
the rows.

A reset is refused while the group has members: a running consumer stores positions
with `GREATEST(stored, new)` and would put a rewound position straight back. Scale
the service to zero (or stop it), reset, start it again: on assignment every replica
seeks to the stored positions.

Rewinding alone replays nothing that was applied: each applied event id is in
`processed_events` and is skipped. `forget_processed` deletes the group's ids so the
events are applied again; only for handlers whose effect is an upsert of the event's
facts (read models), never for ones that append events or send things.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from immunreg.eventstore.database import check_schema_name
from immunreg.messaging.connection import client_options
from immunreg.messaging.topics import topic_partitions

# Past this many offsets behind, the lag is the offsets' difference (reading every message
# of a long backlog to count it would cost more than the number is worth).
COUNT_AT_MOST = 10_000
# Empty polls (half a second each) after which the rest of a partition is taken to be markers.
EMPTY_POLLS = 6


class PartitionPosition(msgspec.Struct, frozen=True, kw_only=True):
    """Where a group stands on one partition."""

    topic: str
    partition: int
    next_offset: int | None  # None: never consumed (a new group starts at the beginning)
    end_offset: int
    # Messages not applied yet (0 when caught up, though transaction markers take offsets).
    lag: int
    updated_at: str | None


class GroupStatus(msgspec.Struct, frozen=True, kw_only=True):
    """A consumer group: its members in Kafka and its positions in PostgreSQL."""

    group: str
    state: str
    members: int
    partitions: list[PartitionPosition]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


class Moved(msgspec.Struct, frozen=True, kw_only=True):
    """One partition's position before and after a reset."""

    topic: str
    partition: int
    before: int | None
    after: int


async def group_status(dsn: str, schema: str, bootstrap: str, topics: list[str]) -> GroupStatus:
    """The group `schema` on `topics` (and any other topic it has positions for)."""
    check_schema_name(schema)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT topic, partition, next_offset, updated_at FROM {schema}"
            ".consumer_positions WHERE group_id = $1",
            schema,
        )
    finally:
        await conn.close()
    stored = {(r["topic"], r["partition"]): r for r in rows}
    wanted = sorted(set(topics) | {topic for topic, _ in stored})
    state, members = await group_membership(bootstrap, schema)
    consumer = _reader(bootstrap)
    partitions: list[PartitionPosition] = []
    try:
        await consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in wanted
            for p in await topic_partitions(consumer, topic)
        ]
        # One assignment for the whole count: changing it while a fetch is in flight can
        # leave that fetch unanswered and stop() waiting for it.
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            row = stored.get((tp.topic, tp.partition))
            next_offset = row["next_offset"] if row else None
            start = next_offset if next_offset is not None else 0
            partitions.append(
                PartitionPosition(
                    topic=tp.topic,
                    partition=tp.partition,
                    next_offset=next_offset,
                    end_offset=ends[tp],
                    lag=await _messages_between(consumer, tp, start, ends[tp]),
                    updated_at=row["updated_at"].isoformat() if row else None,
                )
            )
    finally:
        await consumer.stop()
    return GroupStatus(group=schema, state=state, members=members, partitions=partitions)


async def reset_positions(
    dsn: str,
    schema: str,
    bootstrap: str,
    topic: str,
    *,
    to: int | datetime | str,
    partition: int | None = None,
    forget_processed: bool = False,
) -> list[Moved]:
    """Move the group `schema` on `topic` (one partition, or all) and return what moved.

    `to`: "beginning", "end", an offset (with `partition`), or a time (the first
    offset at or after it in each partition).
    """
    check_schema_name(schema)
    state, members = await group_membership(bootstrap, schema)
    if members:
        raise RuntimeError(
            f"consumer group {schema} has {members} member(s) ({state}): stop every replica "
            "of the service first, or it would put its positions straight back"
        )
    if isinstance(to, int) and partition is None:
        raise ValueError("an offset names one partition: give the partition too")
    targets = await _targets(bootstrap, topic, to, partition)
    moved: list[Moved] = []
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            table = f"{schema}.consumer_positions"
            for tp_partition, offset in sorted(targets.items()):
                before = await conn.fetchval(
                    f"SELECT next_offset FROM {table} "
                    "WHERE group_id = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
                    schema,
                    topic,
                    tp_partition,
                )
                await conn.execute(
                    f"INSERT INTO {table} (group_id, topic, partition, next_offset) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition) "
                    "DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()",
                    schema,
                    topic,
                    tp_partition,
                    offset,
                )
                moved.append(
                    Moved(topic=topic, partition=tp_partition, before=before, after=offset)
                )
            if forget_processed:
                await conn.execute(
                    f"DELETE FROM {schema}.processed_events WHERE group_id = $1", schema
                )
    finally:
        await conn.close()
    return moved


async def _targets(
    bootstrap: str, topic: str, to: int | datetime | str, partition: int | None
) -> dict[int, int]:
    consumer = _reader(bootstrap)
    try:
        await consumer.start()
        numbers = await topic_partitions(consumer, topic)
        if partition is not None:
            if partition not in numbers:
                raise ValueError(f"{topic} has no partition {partition}")
            numbers = [partition]
        tps = [TopicPartition(topic, p) for p in numbers]
        if to == "beginning":
            found = await consumer.beginning_offsets(tps)
        elif to == "end":
            found = await consumer.end_offsets(tps)
        elif isinstance(to, datetime):
            ends = await consumer.end_offsets(tps)
            stamps = await consumer.offsets_for_times(
                {tp: int(to.timestamp() * 1000) for tp in tps}
            )
            found = {tp: stamp.offset if stamp else ends[tp] for tp, stamp in stamps.items()}
        elif isinstance(to, int):
            found = dict.fromkeys(tps, to)
        else:
            raise ValueError(f"cannot move a group to {to!r}")
        return {tp.partition: offset for tp, offset in found.items()}
    finally:
        await consumer.stop()


async def group_membership(bootstrap: str, group: str) -> tuple[str, int]:
    """The group's state in Kafka ("Empty", "Stable", ...) and how many members it has
    ("Dead", 0 for a group Kafka does not know)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=30000
    )
    try:
        await admin.start()
        [response] = await admin.describe_consumer_groups([group])
        # DescribeGroups v0+: groups = [(error_code, group_id, state, protocol_type,
        # protocol, members, ...)]
        [described] = response.groups
        state, members = described[2], described[5]
        return (state or "Dead"), len(members)
    finally:
        await admin.close()


async def _messages_between(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> int:
    """Committed messages at offsets [start, end) of an assigned partition.

    Counted up to COUNT_AT_MOST, estimated from the offsets beyond: transaction markers
    take offsets but are not messages, so a group that is caught up can stand short of
    the end."""
    if end - start > COUNT_AT_MOST:
        return end - start
    consumer.seek(tp, start)
    counted = 0
    empty_polls = 0
    # Past the last message the position steps over the markers to the end; a fetch that
    # is merely slow (a loaded broker) gives empty polls first, so a few are allowed.
    while await consumer.position(tp) < end and empty_polls < EMPTY_POLLS:
        batch = await consumer.getmany(tp, timeout_ms=500)
        empty_polls = 0 if batch else empty_polls + 1
        counted += sum(1 for r in batch.get(tp, []) if r.offset < end)
    return counted


def _reader(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_options(),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
