"""Back up and restore one service's schema with pg_dump and pg_restore.

A backup is one custom-format archive of the schema: its events, outbox, consumer
positions, processed event ids and read models, taken in one snapshot. Restoring
replaces the schema with the archive's. Run the restore with every replica of the
service stopped (it refuses while any of them is connected); when they start again:

- the consumers seek to the positions in the archive and read from Kafka what came
  after, skipping what the archive records as processed: the read models catch up;
- the relay reads the tail of each topic, deletes outbox rows it had published
  before the archive was taken and publishes the rest.

Events a publisher appended after the backup are not in the archive, though other
services have them from Kafka: restore a publisher only to the same point as its
database (PostgreSQL's own point-in-time recovery), or into a fresh environment.
The outbox orders rows by transaction id, which only grows within one PostgreSQL
cluster: restore into the cluster the archive came from (or a physical copy of it).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg

from immunreg.eventstore.database import check_schema_name
from immunreg.localinfra._proc import run
from immunreg.localinfra.postgres import find_pg_bin


def pg_tool(name: str) -> str:
    """pg_dump, pg_restore or psql: beside the server (same version), or on the PATH."""
    folder = find_pg_bin()
    if folder is not None and (folder / name).exists():
        return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is missing: install Debian's postgresql-client")
    return found


def back_up(dsn: str, schema: str, archive: Path) -> None:
    """Write the schema, in one consistent snapshot, to `archive` (pg_dump custom format)."""
    check_schema_name(schema)
    archive.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            pg_tool("pg_dump"),
            "--format=custom",
            f"--schema={schema}",
            "--no-owner",
            "--no-privileges",
            f"--file={archive}",
            dsn,
        ]
    )


def restore(dsn: str, schema: str, archive: Path) -> None:
    """Replace the schema with the archive's, all or nothing; refused while the service runs."""
    check_schema_name(schema)
    connected = asyncio.run(_connected(dsn, schema))
    if connected:
        raise RuntimeError(
            f"{connected} connection(s) of {schema} are open: stop every replica first"
        )
    listed = run([pg_tool("pg_restore"), "--list", str(archive)]).stdout
    if f"SCHEMA - {schema} " not in listed:
        raise RuntimeError(f"{archive} holds no schema {schema}")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "restore.sql"
        run(
            [
                pg_tool("pg_restore"),
                "--no-owner",
                "--no-privileges",
                f"--file={script}",
                str(archive),
            ]
        )
        # One transaction drops the schema and loads the archive: a failure leaves it as it was.
        run(
            [
                pg_tool("psql"),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--command=DROP SCHEMA IF EXISTS {schema} CASCADE",
                f"--file={script}",
                dsn,
            ]
        )


async def _connected(dsn: str, schema: str) -> int:
    # Every connection of a service names its schema: the pool `<schema>`, the relay
    # `<schema>-relay` (immunreg.eventstore.database, .relay).
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name IN ($1, $1 || '-relay')",
            schema,
        )
        return count
    finally:
        await conn.close()
