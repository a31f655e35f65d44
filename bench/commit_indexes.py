"""What each index a scheduling run's commit maintains costs PostgreSQL per booking.

Run with `.venv/bin/python -m bench.commit_indexes [--bookings N] [--rounds R]`.

A booking's contract rows, as the real commit writes them: its appointment row (the
COPY of `readmodel.claim_appointments`), its AppointmentBooked event row and its
message in the transaction's packed outbox row (the recorder's two COPYs), in
transactions of 1,000 bookings of one site, into a fresh schema with the event store's
and booking's DDL applied (`apply_schema`, as a service starts). Measured: the
backend's own CPU (/proc, user + system) during each COPY, per row, and the WAL it
wrote (bytes per row; the server must have no other writer meanwhile), with every
index the DDL makes and then with each one dropped in turn (R rounds, the
configurations alternating): the difference is what that index costs a booking. The
server must be local (`localinfra.up()`): its backend's /proc is read.

Figures go to bench/results.json under "commit_indexes".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.foundation import unique_schema
from bench.results import postgres_version, record
from immunreg import localinfra
from immunreg.contracts.envelope import new_id_text
from immunreg.eventstore.database import Connection, apply_schema, create_pool
from immunreg.eventstore.packing import pack
from immunreg.eventstore.postgres import _EVENT_COLUMNS, _PACKED_COLUMNS
from services.booking.app import SCHEMA_FILE
from services.booking.readmodel import _CLAIM_COLUMNS

SECTION = "commit_indexes"
BATCH = 1_000
TABLES = ("appointments", "events", "outbox")
# (table, index or constraint) each COPY maintains; "" is the schema as it is.
DROPS = (
    ("", ""),
    ("appointments", "appointments_pkey"),
    ("appointments", "appointments_one_open_per_citizen"),
    ("appointments", "appointments_citizen"),
    ("appointments", "appointments_site_day"),
    ("appointments", "appointments_open_by_day"),
    ("appointments", "appointments_open_by_site_product"),
    ("events", "events_pkey"),
    ("events", "events_event_id_key"),
    ("events", "events_type_recorded"),
    ("outbox", "outbox_pkey"),
    ("outbox", "outbox_position"),
)


# WAL written since an LSN: deterministic where the CPU is noisy (this server's only
# writer during the bench is this backend).
_WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::bigint"


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drop(conn: Connection, table: str, name: str) -> None:
    if not name:
        return
    constraint = await conn.fetchval(
        "SELECT 1 FROM pg_constraint WHERE conname = $1 AND connamespace = "
        "current_schema()::regnamespace",
        name,
    )
    if constraint:
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    else:  # the schema may no longer make it (events_type_recorded): make it to measure it
        await conn.execute(f"DROP INDEX IF EXISTS {name}")


async def _ensure_measured(conn: Connection) -> None:
    # An index the current DDL dropped is made again, so "with" means the same set always.
    await conn.execute(
        "CREATE INDEX IF NOT EXISTS events_type_recorded ON events (type, recorded_at)"
    )


async def one(dsn: str, bookings: int, table: str, name: str, seed: int) -> dict[str, float]:
    """Backend CPU (us per row) of each table's COPY with `name` dropped."""
    schema = unique_schema("idx")
    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        await apply_schema(pool, schema, [SCHEMA_FILE])
        async with pool.acquire() as conn:
            await _ensure_measured(conn)
            await _drop(conn, table, name)
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            rng = random.Random(seed)
            citizens = rng.sample(range(10**9), bookings)
            spent = dict.fromkeys(TABLES, 0.0)
            wal = dict.fromkeys(TABLES, 0)
            first = date(2027, 1, 4)
            for start in range(0, bookings, BATCH):
                site = f"SITE-{rng.randrange(400):04d}"
                batch = sorted(f"CIT-{n:09d}" for n in citizens[start : start + BATCH])
                ids = [new_id_text() for _ in batch]
                now = datetime.now(UTC)
                rows: dict[str, list[tuple[object, ...]]] = {
                    "appointments": [
                        (
                            i,
                            c,
                            site,
                            "70092",
                            first + timedelta(days=rng.randrange(14)),
                            "EU/1/20/1528",
                            1,
                            False,
                            "booked",
                            "health_worker, tier 0",
                            "run",
                        )
                        for i, c in zip(ids, batch, strict=True)
                    ],
                    "events": [
                        (
                            f"appointment-{i}",
                            1,
                            "Appointment",
                            uuid.UUID(i),
                            "AppointmentBooked",
                            1,
                            f'{{"appointment_id": "{i}", "citizen_id": "{c}"}}',
                            now,
                            now,
                            None,
                            None,
                        )
                        for i, c in zip(ids, batch, strict=True)
                    ],
                    "outbox": [
                        (
                            "booking.appointments",
                            None,
                            pack([f"appointment-{i}" for i in ids], [os.urandom(300) for _ in ids]),
                            len(ids),
                        )
                    ],
                }
                columns = {
                    "appointments": _CLAIM_COLUMNS,
                    "events": _EVENT_COLUMNS,
                    "outbox": _PACKED_COLUMNS,
                }
                async with conn.transaction():
                    for t in TABLES:
                        lsn = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
                        before = _cpu(pid)
                        await conn.copy_records_to_table(t, records=rows[t], columns=columns[t])
                        spent[t] += _cpu(pid) - before
                        wal[t] += await conn.fetchval(_WAL_SINCE, lsn)
            return {t: spent[t] / bookings * 1e6 for t in TABLES} | {
                f"{t}_wal_bytes": wal[t] / bookings for t in TABLES
            }
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


async def measure(dsn: str, bookings: int, rounds: int) -> dict[str, object]:
    seen: dict[str, list[dict[str, float]]] = {name or "(every index)": [] for _, name in DROPS}
    for r in range(rounds):
        for table, name in DROPS:
            figures = await one(dsn, bookings, table, name, seed=r)
            seen[name or "(every index)"].append(figures)
            print(
                r, name or "(every index)", {t: round(v, 1) for t, v in figures.items()}, flush=True
            )
    medians = {
        name: {k: round(statistics.median(f[k] for f in runs), 1) for k in runs[0]}
        for name, runs in seen.items()
    }
    every = medians["(every index)"]
    return {
        "bookings": bookings,
        "rounds": rounds,
        "us_per_booking_median": medians,
        # What dropping each index saves its table's COPY, per booking (median of rounds).
        "index_cost_us": {
            name: round(every[table] - medians[name][table], 1) for table, name in DROPS if name
        },
        "index_wal_bytes": {
            name: round(every[f"{table}_wal_bytes"] - medians[name][f"{table}_wal_bytes"])
            for table, name in DROPS
            if name
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.commit_indexes", description=__doc__)
    parser.add_argument("--bookings", type=int, default=94_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    dsn = localinfra.up()["DATABASE_URL"]
    figures = asyncio.run(measure(dsn, args.bookings, args.rounds))
    record(SECTION, figures, postgres=postgres_version(dsn))
    print(f"index cost per booking (us of PostgreSQL CPU): {figures['index_cost_us']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
