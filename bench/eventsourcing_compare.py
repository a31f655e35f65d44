"""Our event-store append beside the `eventsourcing` library's PostgreSQL recorder.

Run with `.venv/bin/python -m bench.eventsourcing_compare [--quick]` (or `make bench`).

Same database, same event (about 300 bytes of JSON), same number of concurrent
writers, each on a stream of its own, one event per append, for the same time:

- ours: `EventStore.append` (asyncpg), the event and its outbox row in one statement;
- theirs: `PostgresApplicationRecorder.insert_events` (psycopg 3, a thread per writer),
  which locks its table for each insert so that notification ids follow commit order
  (the price of a gap-free log; ours orders by transaction id instead, see
  docs/ARCHITECTURE.md).

Ours runs again after theirs: on a shared, noisy machine the two runs of ours show how
much the machine itself moved meanwhile. Figures go to bench/results.json under
"eventsourcing_compare"; a summary is printed. Schemas are throwaway (dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from bench.common import percentile, progress
from bench.foundation import (
    append_run,
    bench_context,
    fresh_schema,
    make_event,
    pg_target,
    unique_schema,
)
from bench.results import postgres_version, record

SECTION = "eventsourcing_compare"
WRITERS = 8


def theirs(dsn: str, writers: int, seconds: float) -> dict[str, Any]:
    """`writers` threads inserting one stored event at a time into their own aggregates."""
    target = pg_target(dsn)
    schema = unique_schema("eventsourcing")
    datastore = PostgresDatastore(
        target.database,
        target.host,
        target.port,
        target.user,
        target.password or "",
        pool_size=writers,
        schema=schema,
    )
    recorder = PostgresApplicationRecorder(datastore, events_table_name="stored_events")
    with datastore.transaction(commit=True) as cursor:
        cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    recorder.create_table()
    state = msgspec.json.encode(make_event(1))
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def writer(_: int) -> int:
        aggregate = uuid.uuid4()
        version = 0
        mine: list[float] = []
        while time.perf_counter() < deadline:
            version += 1
            event = StoredEvent(aggregate, version, "bench:BenchRecorded", state)
            started = time.perf_counter()
            recorder.insert_events([event])
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)
        return version

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=writers) as pool:
            total = sum(pool.map(writer, range(writers)))
        elapsed = time.perf_counter() - started
        stored = _count(datastore, schema)
    finally:
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        datastore.close()
    latencies.sort()
    return {
        "writers": writers,
        "appends": total,
        "stored": stored,
        "appends_per_s": round(total / elapsed, 1),
        "p50_ms": round(1000 * percentile(latencies, 50), 3),
        "p99_ms": round(1000 * percentile(latencies, 99), 3),
    }


def _count(datastore: PostgresDatastore, schema: str) -> int:
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(f"SELECT count(*) AS n FROM {schema}.stored_events")
        row = cursor.fetchone()
    return int(row["n"]) if row else 0


async def ours(dsn: str, writers: int, seconds: float) -> dict[str, Any]:
    """The foundation benchmark's append run at the same concurrency, counted back."""
    async with fresh_schema(dsn, "compare", writers) as (schema, pool):
        from immunreg.eventstore.store import EventStore

        figures = await append_run(
            EventStore(pool),
            bench_context("compare"),
            label="c",
            writers=writers,
            per_append=1,
            seconds=seconds,
        )
        figures["stored"] = await pool.fetchval(f"SELECT count(*) FROM {schema}.events")
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.eventsourcing_compare")
    parser.add_argument("--quick", action="store_true", help="3 s per run instead of 10")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 10.0

    from immunreg.localinfra import up

    dsn = up()["DATABASE_URL"]
    progress(f"ours: {WRITERS} writers, {seconds:g}s")
    first = asyncio.run(ours(dsn, WRITERS, seconds))
    progress(f"eventsourcing {WRITERS} writers, {seconds:g}s")
    library = theirs(dsn, WRITERS, seconds)
    progress(f"ours again: {WRITERS} writers, {seconds:g}s")
    again = asyncio.run(ours(dsn, WRITERS, seconds))
    complete = all(r["stored"] == r["appends"] for r in (first, library, again))
    mean_ours = (first["appends_per_s"] + again["appends_per_s"]) / 2
    figures = {
        "seconds": seconds,
        "ours": first,
        "eventsourcing": library,
        "ours_again": again,
        "ours_vs_eventsourcing": round(mean_ours / library["appends_per_s"], 2),
        "every_append_stored": complete,
    }
    record(SECTION, figures, postgres=postgres_version(dsn))
    print(
        f"append, {WRITERS} writers, 1 event each: ours {first['appends_per_s']:,.0f}/s "
        f"(p99 {first['p99_ms']} ms), eventsourcing {library['appends_per_s']:,.0f}/s "
        f"(p99 {library['p99_ms']} ms), ours again {again['appends_per_s']:,.0f}/s; "
        f"ours/theirs {figures['ours_vs_eventsourcing']}x"
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
