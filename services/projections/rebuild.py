"""Rebuilding a read model beside the live one (`immunreg projections rebuild`).

`rebuild` makes a `building` model beside the active one and consumes every topic
from offset 0 with its new group, until its positions reach the end offsets taken when
it started (and then, briefly, those taken once it got there). It stops its consumer,
fills coverage's running sums from the daily cells the replay kept (Projector), and,
in one transaction, retires the active model and activates the new one. After a
grace period it drops the retired schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from immunreg.childprocess import start_child, stop_children, until_told_to_stop
from immunreg.contracts.topics import dlq_topic
from immunreg.eventstore.database import (
    create_pool,
)
from immunreg.gcpause import paused_gc
from immunreg.messaging.connection import client_options
from immunreg.messaging.consumer import EventConsumer
from immunreg.messaging.topics import ensure_topics
from immunreg.observability.metrics import Metrics
from immunreg.tasks import TASK_STOP_SECONDS, stop_tasks

from .handlers import Sources, build_reactions
from .models import (
    activate,
    create_model,
    drop_model,
    prepare_control,
)
from .projector import begin_replay, finish_replay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuildReport:
    """What a rebuild did, and how fast."""

    schema: str
    retired: str | None
    events: int  # offsets replayed in the first pass (from the beginning to the end at start)
    seconds: float  # first pass: empty model to caught up with the end at start
    total_seconds: float  # until the swap
    dropped: bool

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


Offsets = dict[TopicPartition, int]


async def topic_offsets(bootstrap: str, topics: list[str]) -> tuple[Offsets, Offsets]:
    """(beginning, end) offsets of every partition of `topics`, as read_committed sees them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_options(),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        partitions: list[TopicPartition] = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            for _ in range(50):
                if found:
                    break
                await consumer._client.force_metadata_update()
                found = consumer.partitions_for_topic(topic)
                if not found:
                    await asyncio.sleep(0.1)
            partitions += [TopicPartition(topic, p) for p in sorted(found or ())]
        if not partitions:
            return {}, {}
        return (
            await consumer.beginning_offsets(partitions),
            await consumer.end_offsets(partitions),
        )
    finally:
        await consumer.stop()


async def stored_positions(pool: asyncpg.Pool, group: str) -> Offsets:
    """Where a group stands, per partition, as stored with its model."""
    rows = await pool.fetch(
        "SELECT topic, partition, next_offset FROM consumer_positions WHERE group_id = $1", group
    )
    return {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}


async def _only_markers_left(
    bootstrap: str, behind: dict[TopicPartition, tuple[int, int]]
) -> set[TopicPartition]:
    """Partitions whose offsets from the stored position to the end hold no event.

    A transactional producer (the relay) ends each transaction with a commit
    marker, which takes an offset but is never delivered: a consumer that has
    applied everything can stand one offset (or more, after aborts) short of
    the end offset.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_options(),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    done: set[TopicPartition] = set()
    try:
        await consumer.start()
        consumer.assign(list(behind))
        for tp, (position, _) in behind.items():
            consumer.seek(tp, position)
        seen: set[TopicPartition] = set()
        records = await consumer.getmany(timeout_ms=1000)
        for tp, messages in records.items():
            if any(m.offset < behind[tp][1] for m in messages):
                seen.add(tp)
        for tp, (_, end) in behind.items():
            if tp not in seen and await consumer.position(tp) >= end:
                done.add(tp)
    finally:
        await consumer.stop()
    return done


async def wait_caught_up(
    pool: asyncpg.Pool,
    group: str,
    bootstrap: str,
    beginnings: Offsets,
    ends: Offsets,
    *,
    progress: Callable[[int, int], None] | None = None,
    poll: float = 0.25,
) -> None:
    """Wait until the group's stored positions reach `ends` (or only markers remain)."""
    total = sum(ends[tp] - beginnings.get(tp, 0) for tp in ends)
    finished: set[TopicPartition] = set()
    last: Offsets = {}
    stalled_since = time.monotonic()
    while True:
        stored = await stored_positions(pool, group)
        behind = {
            tp: (stored.get(tp, beginnings.get(tp, 0)), end)
            for tp, end in ends.items()
            if tp not in finished and stored.get(tp, beginnings.get(tp, 0)) < end
        }
        if progress is not None:
            done = sum(
                min(stored.get(tp, beginnings.get(tp, 0)), end) - beginnings.get(tp, 0)
                for tp, end in ends.items()
            )
            progress(done, total)
        if not behind:
            return
        if stored != last:
            last, stalled_since = stored, time.monotonic()
        elif time.monotonic() - stalled_since > 1.0:
            finished |= await _only_markers_left(bootstrap, behind)
            stalled_since = time.monotonic()
            continue
        await asyncio.sleep(poll)


async def replay_pool(dsn: str, schema: str) -> asyncpg.Pool:
    """The connections of a rebuild's consumers (in each of its processes).

    Each batch commits its effect with its position, and a rebuild that fails is
    dropped whole: a commit lost in a crash costs nothing, so none waits for a flush.
    Its tables grow from empty under batches of key lookups: priced as random reads
    from disk, a few thousand keys looked like a whole-table scan to the planner, and
    the scans grew with the model.
    """
    return await create_pool(
        dsn,
        schema,
        min_size=1,
        max_size=4,
        settings={"synchronous_commit": "off", "random_page_cost": "1.1"},
    )


def replay_members(
    pool: asyncpg.Pool,
    bootstrap: str,
    schema: str,
    sources: Sources,
    *,
    members: int,
    batch_size: int,
    metrics: Metrics | None = None,
) -> list[EventConsumer]:
    """Members of the model's group, each with its own projector and connection: while
    one waits for PostgreSQL another decodes and folds."""
    return [
        EventConsumer(
            pool,
            bootstrap,
            group_id=schema,
            # Counters summed and coverage's running sums filled once at the end, not
            # per batch: a replay moves the same cells in every batch, in any order of
            # days, and each earlier day moves every later week.
            reactions=build_reactions(sources, replay=True),
            metrics=metrics,
            batch_size=batch_size,
        )
        for _ in range(members)
    ]


async def start_helper(
    dsn: str, bootstrap: str, schema: str, sources: Sources, *, members: int, batch_size: int
) -> asyncio.subprocess.Process:
    """A helper process with `members` more consumers of the model's group.

    Its stdin is its lifeline (immunreg.childprocess): it stops when `stop_helpers`
    closes it, and when this process ends in any way, so no helper outlives a failed
    rebuild.
    """
    return await start_child(
        "services.projections.replayer",
        dsn,
        bootstrap,
        schema,
        sources.prefix(),
        str(members),
        str(batch_size),
    )


async def stop_helpers(
    helpers: list[asyncio.subprocess.Process], seconds: float = TASK_STOP_SECONDS + 5
) -> None:
    """Stop every helper, waiting for each; those that do not stop in `seconds` are
    killed (a killed helper's open transaction is rolled back: it wrote nothing)."""
    await stop_children(helpers, seconds)
    for helper in helpers:
        if helper.returncode:
            log.warning("a rebuild helper failed", extra={"returncode": helper.returncode})


async def serve_helper(
    dsn: str, bootstrap: str, schema: str, sources: Sources, *, members: int, batch_size: int
) -> None:
    """A helper process's life (services/projections/replayer.py): `members` members of
    the model's group, until it is told to stop (its stdin's end, or SIGTERM)."""
    pool = await replay_pool(dsn, schema)
    try:
        consumers = replay_members(
            pool, bootstrap, schema, sources, members=members, batch_size=batch_size
        )
        with paused_gc():  # as the rebuild's own members (see `rebuild`)
            tasks = [asyncio.create_task(consumer.run()) for consumer in consumers]
            try:
                await until_told_to_stop()
            finally:
                await stop_tasks(tasks)
    finally:
        await pool.close()


async def rebuild(
    dsn: str,
    bootstrap: str,
    control: str,
    sources: Sources,
    *,
    batch_size: int = 5000,
    members: int = 2,
    processes: int = 2,
    grace: float = 10.0,
    keep_old: bool = False,
    partitions: int = 3,
    metrics: Metrics | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Build a new model from offset 0 beside the active one, then swap it in.

    `members` consumers of the model's group in each of `processes` processes (this one
    and `processes - 1` helpers, `python -m services.projections.replayer`).
    """
    control_pool = await create_pool(dsn, control, min_size=1, max_size=2)
    try:
        await prepare_control(control_pool, control)
        topics = sources.topics()
        await ensure_topics(bootstrap, [*topics, *map(dlq_topic, topics)], partitions)
        beginnings, ends = await topic_offsets(bootstrap, topics)
        async with control_pool.acquire() as conn:
            schema = await create_model(dsn, conn, control, "building")
        log.info("rebuilding", extra={"schema": schema, "events": sum(ends.values())})
        started = time.perf_counter()
        pool = await replay_pool(dsn, schema)
        try:
            async with pool.acquire() as conn:
                await begin_replay(conn)
            consumers = replay_members(
                pool,
                bootstrap,
                schema,
                sources,
                members=members,
                batch_size=batch_size,
                metrics=metrics,
            )
            # The cyclic collector off while the members replay: a replay allocates
            # millions of short-lived objects, and each burst made the collector walk
            # the whole heap again. In a replay of 1,050,002 events the helper process
            # spent 4.2 s of CPU in it (74 full collections) and it freed 692 objects.
            # Reference counting frees the batches; it runs again once the members stop.
            with paused_gc():
                tasks = [asyncio.create_task(consumer.run()) for consumer in consumers]
                helpers: list[asyncio.subprocess.Process] = []
                try:
                    # More processes in the group: Python folds on one core per process.
                    for _ in range(processes - 1):
                        helpers.append(
                            await start_helper(
                                dsn,
                                bootstrap,
                                schema,
                                sources,
                                members=members,
                                batch_size=batch_size,
                            )
                        )
                    await wait_caught_up(
                        pool, schema, bootstrap, beginnings, ends, progress=progress
                    )
                    first_pass = time.perf_counter() - started
                    # What arrived during the replay: usually a short second pass.
                    beginnings_now, ends_now = await topic_offsets(bootstrap, topics)
                    await wait_caught_up(pool, schema, bootstrap, beginnings_now, ends_now)
                finally:
                    await stop_tasks(tasks)
                    # Every member stopped, in this process and the others, before the
                    # staged deltas are summed: a helper's batch committed after the merge
                    # would be lost.
                    await stop_helpers(helpers)
            async with pool.acquire() as conn, conn.transaction():
                await finish_replay(conn)
        except BaseException:
            await pool.close()
            with contextlib.suppress(Exception):
                await drop_model(control_pool, schema, status="failed")
            raise
        await pool.close()
        retired = await activate(control_pool, schema)
        total_seconds = time.perf_counter() - started
        dropped = False
        if retired is not None and not keep_old:
            # Give live services time to notice the swap and stop their consumers.
            await asyncio.sleep(grace)
            await drop_model(control_pool, retired)
            dropped = True
        return RebuildReport(
            schema=schema,
            retired=retired,
            events=sum(ends[tp] - beginnings.get(tp, 0) for tp in ends),
            seconds=first_pass,
            total_seconds=total_seconds,
            dropped=dropped,
        )
    finally:
        await control_pool.close()
