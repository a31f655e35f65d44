"""Two checkouts on one machine, and `immunreg run` stopped with Ctrl-C.

A second checkout is simulated as a newcomer has it: its own state folder, none of
the first one's environment. On the first one's ports it must refuse, naming what
holds them, and write nothing anywhere; moved with IMMUNREG_PORT_OFFSET it runs
beside the first, and Ctrl-C stops everything it started within 15 s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from immunreg.config import DEFAULT_PORTS
from immunreg.localinfra._proc import pid_alive, port_open
from immunreg.localinfra.stack import (
    free_offset,
    local_kafka,
    local_postgres,
    share_jars,
    stack_ports,
)
from immunreg.paths import REPO_ROOT, state_dir

from ..support.ports import free_port

# The contract of `make run`: Ctrl-C stops everything within this.
CTRL_C_SECONDS = 15.0
# Variables a second checkout would not have: they name the first one's servers and run.
FIRST_CHECKOUTS_VARIABLES = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "IMMUNREG_TOPIC_NAMESPACE",
    "IMMUNREG_KEYS_DIR",
    "IMMUNREG_PORT_OFFSET",
)


def _second_checkout_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FIRST_CHECKOUTS_VARIABLES}
    env.update(IMMUNREG_STATE_DIR=str(state), **extra)
    return env


def _immunreg(*args: str) -> list[str]:
    return [sys.executable, "-m", "immunreg.cli", *args]


async def _schemas(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["nspname"] for r in await conn.fetch("SELECT nspname FROM pg_namespace")}
    finally:
        await conn.close()


@pytest.fixture
def second_state() -> Iterator[Path]:
    """A second checkout's state folder, sharing this checkout's Kafka jars (no Maven run).

    Under this checkout's state folder, not pytest's tmp: PostgreSQL runs as its own
    user, which cannot enter root's private tmp folders.
    """
    state = state_dir() / "test-runs" / f"second-{uuid.uuid4().hex[:8]}"
    share_jars(state / "kafka" / "libs")
    yield state
    # Whatever the test did, leave no server of the second checkout behind.
    subprocess.run(
        _immunreg("stop"), env=_second_checkout_env(state), capture_output=True, check=False
    )
    shutil.rmtree(state, ignore_errors=True)


def test_a_second_checkout_on_the_same_ports_refuses_and_writes_nothing(
    second_state: Path, infra: dict[str, str]
) -> None:
    ours = local_postgres()
    if not ours.running():
        pytest.skip("the suite runs on a PostgreSQL named in DATABASE_URL, not its own")
    before = asyncio.run(_schemas(infra["DATABASE_URL"]))
    env = _second_checkout_env(
        second_state,
        IMMUNREG_PG_PORT=str(ours.port),
        IMMUNREG_KAFKA_PORT=str(local_kafka().port),
    )
    result = subprocess.run(
        _immunreg("infra", "up"), env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert f"port {ours.port} is taken by a PostgreSQL serving {ours.data_dir}" in result.stderr
    assert "IMMUNREG_PORT_OFFSET" in result.stderr
    assert not (second_state / "postgres" / "data").exists()
    assert asyncio.run(_schemas(infra["DATABASE_URL"])) == before


def test_a_foreign_kafka_is_refused_and_the_database_started_for_it_is_stopped(
    second_state: Path, infra: dict[str, str]
) -> None:
    kafka = local_kafka()
    if not kafka.running():
        pytest.skip("the suite runs on a Kafka named in KAFKA_BOOTSTRAP_SERVERS")
    pg_port = free_port()
    env = _second_checkout_env(
        second_state, IMMUNREG_PG_PORT=str(pg_port), IMMUNREG_KAFKA_PORT=str(kafka.port)
    )
    result = subprocess.run(
        _immunreg("infra", "up"), env=env, capture_output=True, text=True, check=False, timeout=180
    )
    assert result.returncode == 1, result.stderr
    assert "starting Kafka failed" in result.stderr
    assert f"port {kafka.port} is taken by a Kafka cluster" in result.stderr
    # The PostgreSQL this failed start-up began is gone again.
    assert not port_open("127.0.0.1", pg_port)


def test_run_beside_the_first_checkout_and_ctrl_c_stops_everything(second_state: Path) -> None:
    offset = free_offset()
    env = _second_checkout_env(second_state, IMMUNREG_PORT_OFFSET=str(offset))
    log = second_state / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            _immunreg("run", "--no-demo"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,  # a process group of its own, as a terminal gives
        )
        try:
            _wait_for(lambda: "Ctrl-C (or" in log.read_text(), run, log, seconds=240)
            service_pids = [int(p.read_text()) for p in (second_state / "run").glob("*.pid")]
            broker_pid = int((second_state / "kafka" / "broker.pid").read_text())
            # Every service, the local mailbox and the citizens' portal.
            assert len(service_pids) == len(DEFAULT_PORTS) + 2
            # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(CTRL_C_SECONDS)
            except subprocess.TimeoutExpired:
                pytest.fail(f"still running {CTRL_C_SECONDS}s after Ctrl-C:\n{log.read_text()}")
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    text = log.read_text()
    assert run.returncode == 0, text[-3000:]
    still_open = [p for p in stack_ports(offset) if port_open("127.0.0.1", p)]
    assert still_open == [], text[-3000:]
    assert [p for p in [*service_pids, broker_pid] if pid_alive(p)] == []
    assert not (second_state / "postgres" / "data" / "postmaster.pid").exists()


def _wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"immunreg run exited early:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"immunreg run was not up after {seconds}s:\n{log.read_text()[-3000:]}")
