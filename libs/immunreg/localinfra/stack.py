"""Bring the whole local stack up or down: PostgreSQL, Kafka, topics."""

from __future__ import annotations

import asyncio
import os

from immunreg.contracts.topics import all_topics
from immunreg.localinfra._proc import log
from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.postgres import LocalPostgres, reachable
from immunreg.messaging.topics import ensure_topics, wait_for_kafka
from immunreg.paths import local_env_file, state_dir


def local_postgres() -> LocalPostgres:
    """The local server; IMMUNREG_PG_PORT moves it (e.g. for a second checkout)."""
    return LocalPostgres(
        state_dir() / "postgres", port=int(os.environ.get("IMMUNREG_PG_PORT", "55432"))
    )


def local_kafka() -> LocalKafka:
    """The local broker; IMMUNREG_KAFKA_PORT moves it (the controller takes the next port)."""
    port = int(os.environ.get("IMMUNREG_KAFKA_PORT", "59092"))
    return LocalKafka(state_dir() / "kafka", port=port, controller_port=port + 1)


def up(partitions: int | None = None) -> dict[str, str]:
    """Make PostgreSQL and Kafka reachable and the topics exist; return the endpoints.

    A server named in the environment is used as it is; otherwise a local one
    is started (and reused by later calls while it runs).
    """
    state_dir().mkdir(parents=True, exist_ok=True)
    dsn = os.environ.get("DATABASE_URL")
    if dsn and asyncio.run(reachable(dsn)):
        log("using the PostgreSQL named in DATABASE_URL")
    else:
        if dsn:
            log("DATABASE_URL is set but not reachable: starting a local PostgreSQL")
        dsn = local_postgres().start()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        log("using the Kafka cluster named in KAFKA_BOOTSTRAP_SERVERS")
    else:
        bootstrap = local_kafka().start()
    count = partitions or int(os.environ.get("KAFKA_PARTITIONS", "3"))

    async def prepare_kafka() -> None:
        await wait_for_kafka(bootstrap, seconds=90)
        await ensure_topics(bootstrap, all_topics(), partitions=count)

    asyncio.run(prepare_kafka())
    endpoints = {"DATABASE_URL": dsn, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    local_env_file().write_text("".join(f"{k}={v}\n" for k, v in endpoints.items()))
    return endpoints


def down() -> None:
    """Stop what `up` started locally (servers named in the environment are left alone)."""
    local_kafka().stop()
    local_postgres().stop()
    local_env_file().unlink(missing_ok=True)


def status() -> dict[str, str]:
    """A line per component for `immunreg infra status`."""
    pg = local_postgres()
    kafka = local_kafka()
    return {
        "postgres": "running" if (pg.data_dir / "postmaster.pid").exists() else "stopped",
        "kafka": "running" if kafka.running() else "stopped",
    }
