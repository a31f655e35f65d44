"""Bring the whole local stack up or down: PostgreSQL, Kafka, topics."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from immunreg.config import (
    DEFAULT_KAFKA_PORT,
    DEFAULT_PORTS,
    DEFAULT_POSTGRES_PORT,
    REPLICA_PORT_STEP,
    local_port,
)
from immunreg.contracts.topics import all_topics
from immunreg.localinfra._proc import log, port_open, step
from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.postgres import LocalPostgres, reachable
from immunreg.messaging.topics import ensure_topics, wait_for_kafka
from immunreg.outbound import DEFAULT_SMS_GATEWAY_PORT, DEFAULT_SMTP_PORT
from immunreg.paths import local_env_file, state_dir


def local_postgres() -> LocalPostgres:
    """The local server; IMMUNREG_PG_PORT or IMMUNREG_PORT_OFFSET moves it."""
    return LocalPostgres(
        state_dir() / "postgres", port=local_port("IMMUNREG_PG_PORT", DEFAULT_POSTGRES_PORT)
    )


def local_kafka() -> LocalKafka:
    """The local broker; IMMUNREG_KAFKA_PORT or IMMUNREG_PORT_OFFSET moves it (the
    controller takes the next port)."""
    port = local_port("IMMUNREG_KAFKA_PORT", DEFAULT_KAFKA_PORT)
    return LocalKafka(state_dir() / "kafka", port=port, controller_port=port + 1)


def share_jars(libs: Path) -> None:
    """Give another broker folder this checkout's Kafka jars (fetched once) as `libs`.

    A second local broker (the fault matrix's stack, a broker of a test's own, a second
    checkout in a test) then starts without a Maven run of its own.
    """
    own = local_kafka()
    own.ensure_jars()
    if not libs.exists():
        libs.parent.mkdir(parents=True, exist_ok=True)
        libs.symlink_to(own.libs)


# Offsets that put PostgreSQL and Kafka above Linux's default range for outgoing
# connections' local ports (32768-60999), where a random client socket could hold
# them, while the services stay below it.
SPARE_OFFSETS = range(5600, 6440, 41)


def stack_ports(offset: int, replicas: int = 1) -> list[int]:
    """Every port a local stack at this offset listens on (and its replicas')."""
    return [
        DEFAULT_POSTGRES_PORT + offset,
        DEFAULT_KAFKA_PORT + offset,
        DEFAULT_KAFKA_PORT + offset + 1,
        DEFAULT_SMTP_PORT + offset,  # the local mailbox
        DEFAULT_SMS_GATEWAY_PORT + offset,
        *(
            port + offset + REPLICA_PORT_STEP * replica
            for port in DEFAULT_PORTS.values()
            for replica in range(replicas)
        ),
    ]


def free_offset(replicas: int = 1) -> int:
    """An IMMUNREG_PORT_OFFSET at which a whole second stack finds every port free."""
    for offset in SPARE_OFFSETS:
        if not any(port_open("127.0.0.1", p, timeout=0.2) for p in stack_ports(offset, replicas)):
            return offset
    raise RuntimeError(f"no free port offset in {SPARE_OFFSETS}")


def up(partitions: int | None = None) -> dict[str, str]:
    """Make PostgreSQL and Kafka reachable and the topics exist; return the endpoints.

    A server named in the environment is used as it is; otherwise a local one
    is started (and reused by later calls while it runs).
    """
    state_dir().mkdir(parents=True, exist_ok=True)
    postgres, kafka = local_postgres(), local_kafka()
    # What this call starts, it stops again if a later step fails.
    started_here: list[LocalPostgres | LocalKafka] = []
    try:
        dsn = os.environ.get("DATABASE_URL")
        if dsn and asyncio.run(reachable(dsn)):
            log("using the PostgreSQL named in DATABASE_URL")
        else:
            if dsn:
                log("DATABASE_URL is set but not reachable: starting a local PostgreSQL")
            with step("starting PostgreSQL"):
                if not postgres.running():
                    started_here.append(postgres)
                dsn = postgres.start()
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            log("using the Kafka cluster named in KAFKA_BOOTSTRAP_SERVERS")
        else:
            with step("starting Kafka"):
                if not kafka.running():
                    started_here.append(kafka)
                bootstrap = kafka.start()
        count = partitions or int(os.environ.get("KAFKA_PARTITIONS", "3"))

        async def prepare_kafka() -> None:
            await wait_for_kafka(bootstrap, seconds=90)
            await ensure_topics(bootstrap, all_topics(), partitions=count)

        with step("creating the Kafka topics"):
            asyncio.run(prepare_kafka())
    except BaseException:
        for server in reversed(started_here):
            server.stop()
        raise
    endpoints = {"DATABASE_URL": dsn, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    local_env_file().write_text("".join(f"{k}={v}\n" for k, v in endpoints.items()))
    return endpoints


def down() -> list[int]:
    """Stop this checkout's local Kafka and PostgreSQL (servers named in the environment
    are never ours to stop); return the ports they listened on, to wait for."""
    kafka, postgres = local_kafka(), local_postgres()
    ports: list[int] = []
    if kafka.running():
        ports += [kafka.port, kafka.controller_port]
    kafka.stop()
    if postgres.running():
        ports.append(postgres.port)
    postgres.stop()
    local_env_file().unlink(missing_ok=True)
    return ports


def status() -> dict[str, str]:
    """A line per component for `immunreg infra status`."""
    pg = local_postgres()
    kafka = local_kafka()
    return {
        "postgres": "running" if pg.running() else "stopped",
        "kafka": "running" if kafka.running() else "stopped",
    }
