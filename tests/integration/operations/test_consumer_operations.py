"""The operator's commands on a real PostgreSQL and Kafka: group status and lag, a reset that
replays a read model, and a backup restored into a service that then catches up from Kafka.

The services are the example tallies (tests/integration/example): a writer appends Counted
events, a reader sums them into `tally_totals`; the reader can be stopped and started
again as an operator would. The commands run as the operator runs them, `immunreg ...` in
a process of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp.test_utils import TestClient

from immunreg.config import Settings
from immunreg.contracts.envelope import Context
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.paths import REPO_ROOT
from tally import tally_context

from ..conftest import unique_name
from ..example.tallies import READ_MODEL_SQL, reader, writer
from ..example.test_example_context import client_for, wait_for_total


def tally_settings(name: str, role: str, dsn: str, bootstrap: str, keys: Path) -> Settings:
    """The settings of the writer (`w`) or the reader (`r`) of the tallies `name`."""
    return Settings(
        service=role,
        db_schema=f"{name}_{role}",
        database_url=dsn,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(ensure_dev_keys(keys)[1]),
        relay_poll_interval=0.1,
    )


# Far beyond what a command takes; a hung one fails the test instead of holding up the suite.
COMMAND_SECONDS = 90


@dataclass
class Tallies:
    """A writer and a reader that the test stops and starts."""

    name: str
    context: Context
    dsn: str
    bootstrap: str
    keys: Path
    schema_file: Path
    writer: TestClient  # type: ignore[type-arg]
    auth: dict[str, str]
    reader: TestClient | None = None  # type: ignore[type-arg]

    async def start_reader(self) -> TestClient:  # type: ignore[type-arg]
        settings = tally_settings(self.name, "r", self.dsn, self.bootstrap, self.keys)
        self.reader = await client_for(reader(self.context, self.schema_file), settings)
        return self.reader

    async def stop_reader(self) -> None:
        assert self.reader is not None
        await self.reader.close()
        self.reader = None

    async def add(self, tally: str, amount: int) -> None:
        response = await self.writer.post(
            f"/v1/tallies/{tally}/additions", json={"amount": amount}, headers=self.auth
        )
        assert response.status == 201, await response.text()

    async def stored_total(self, tally: str) -> int | None:
        conn = await asyncpg.connect(self.dsn)
        try:
            total: int | None = await conn.fetchval(
                f"SELECT total FROM {self.name}_r.tally_totals WHERE tally_id = $1", tally
            )
            return total
        finally:
            await conn.close()

    async def immunreg(self, *args: str, ok: bool = True) -> tuple[str, str]:
        """`immunreg ARGS` for the reader (service `r`), as an operator runs it."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "immunreg.cli",
            *args,
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "DATABASE_URL": self.dsn,
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "R_DB_SCHEMA": f"{self.name}_r",
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), COMMAND_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"immunreg {' '.join(args)} gave no answer") from None
        assert (process.returncode == 0) == ok, (process.returncode, err.decode())
        return out.decode(), err.decode()

    async def status(self) -> dict[str, Any]:
        out, _ = await self.immunreg(
            "consumers", "status", "r", "--topic", self.context.topic, "--json"
        )
        status: dict[str, Any] = msgspec.json.decode(out)
        return status

    async def lag(self) -> int:
        return sum(p["lag"] for p in (await self.status())["partitions"])


@pytest.fixture
async def tallies(dsn: str, bootstrap: str, tmp_path: Path) -> AsyncIterator[Tallies]:
    name = unique_name()
    private, _ = ensure_dev_keys(tmp_path / "keys")
    schema_file = tmp_path / "reader.sql"
    schema_file.write_text(READ_MODEL_SQL)
    context = tally_context(name)
    token = issue_token(private.read_bytes(), Role.ADMIN, subject="operator-test")
    keys = tmp_path / "keys"
    writer_client = await client_for(
        writer(context), tally_settings(name, "w", dsn, bootstrap, keys)
    )
    running = Tallies(
        name,
        context,
        dsn,
        bootstrap,
        keys,
        schema_file,
        writer_client,
        {"Authorization": f"Bearer {token}"},
    )
    await running.start_reader()
    try:
        yield running
    finally:
        if running.reader is not None:
            await running.stop_reader()
        await writer_client.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name}_w CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {name}_r CASCADE")
        finally:
            await conn.close()


async def eventually_lag(tallies: Tallies, expected: int) -> None:
    deadline = time.monotonic() + 60
    while (lag := await tallies.lag()) != expected:
        assert time.monotonic() < deadline, f"lag {lag}, expected {expected}"
        await asyncio.sleep(0.5)


async def test_status_shows_members_and_lag_and_a_reset_replays_a_read_model(
    tallies: Tallies,
) -> None:
    for amount in (5, 7):
        await tallies.add("t1", amount)
    assert tallies.reader is not None
    await wait_for_total(tallies.reader, "t1", 12)

    status = await tallies.status()
    assert status["group"] == f"{tallies.name}_r"
    assert status["members"] == 1 and status["state"] == "Stable"
    assert {p["topic"] for p in status["partitions"]} == {tallies.context.topic}
    assert all(p["lag"] == 0 for p in status["partitions"])
    assert any(p["next_offset"] for p in status["partitions"])
    table, _ = await tallies.immunreg("consumers", "status", "r", "--topic", tallies.context.topic)
    assert f"group {tallies.name}_r: Stable, 1 member(s), lag 0" in table

    # A running replica would write its positions straight back.
    _, refused = await tallies.immunreg(
        "consumers", "reset", "r", "--topic", tallies.context.topic, "--to-beginning", ok=False
    )
    assert "stop every replica" in refused

    await tallies.stop_reader()
    await tallies.add("t1", 30)
    await eventually_lag(tallies, 1)
    assert (await tallies.status())["members"] == 0

    # Replay the read model from scratch: empty it, rewind, forget what was applied.
    conn = await asyncpg.connect(tallies.dsn)
    try:
        await conn.execute(f"TRUNCATE {tallies.name}_r.tally_totals")
    finally:
        await conn.close()
    moved, _ = await tallies.immunreg(
        "consumers",
        "reset",
        "r",
        "--topic",
        tallies.context.topic,
        "--to-beginning",
        "--forget-processed",
    )
    assert "BEFORE" in moved and "forgot the event ids" in moved
    assert await tallies.lag() == 3

    reader = await tallies.start_reader()
    await wait_for_total(reader, "t1", 42)
    await eventually_lag(tallies, 0)
    assert await tallies.stored_total("t1") == 42


async def test_a_restored_service_catches_up_from_kafka(tallies: Tallies, tmp_path: Path) -> None:
    assert tallies.reader is not None
    await tallies.add("t2", 5)
    await wait_for_total(tallies.reader, "t2", 5)
    archive = tmp_path / "reader.dump"
    out, _ = await tallies.immunreg("backup", "r", "--out", str(archive))
    assert archive.stat().st_size > 0 and "backed up" in out

    for amount in (7, 30):
        await tallies.add("t2", amount)
    await wait_for_total(tallies.reader, "t2", 42)

    _, refused = await tallies.immunreg("restore", "r", str(archive), ok=False)
    assert "stop every replica" in refused
    assert await tallies.stored_total("t2") == 42

    await tallies.stop_reader()
    await tallies.immunreg("restore", "r", str(archive))
    assert await tallies.stored_total("t2") == 5
    assert await tallies.lag() == 2

    # Started on the restored schema, the reader reads on from the archive's positions: the
    # two later events are applied, the first (processed in the archive) is not applied again.
    reader = await tallies.start_reader()
    await wait_for_total(reader, "t2", 42)
    await eventually_lag(tallies, 0)
    assert await tallies.stored_total("t2") == 42


async def test_a_restore_refuses_an_archive_of_another_schema(
    tallies: Tallies, tmp_path: Path
) -> None:
    archive = tmp_path / "writer.dump"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "immunreg.cli",
        "backup",
        "w",
        "--out",
        str(archive),
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": tallies.dsn, "W_DB_SCHEMA": f"{tallies.name}_w"},
    )
    assert await process.wait() == 0
    await tallies.stop_reader()
    _, refused = await tallies.immunreg("restore", "r", str(archive), ok=False)
    assert f"holds no schema {tallies.name}_r" in refused
    assert await tallies.stored_total("t3") is None
    conn = await asyncpg.connect(tallies.dsn)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", f"{tallies.name}_r"
        )
    finally:
        await conn.close()
