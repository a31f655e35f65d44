"""A whole immunreg of its own for fault tests: PostgreSQL, Kafka and every service.

Faults kill brokers and restart databases, so the stack under test must not be
the one the rest of the suite (or `make run`) uses: it gets its own state folder,
its own ports (a free IMMUNREG_PORT_OFFSET), its own keys and its own servers.
Every service runs as its own process, as in production.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from immunreg.config import (
    DEFAULT_KAFKA_PORT,
    DEFAULT_PORTS,
    DEFAULT_POSTGRES_PORT,
    REPLICA_PORT_STEP,
)
from immunreg.contracts.topics import all_topics
from immunreg.http.auth import ensure_dev_keys
from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.postgres import LocalPostgres
from immunreg.localinfra.services import ServiceProcess, start_services, stop_services, wait_ready
from immunreg.localinfra.stack import free_offset, share_jars
from immunreg.messaging.positions import group_membership
from immunreg.messaging.topics import ensure_topics, wait_for_kafka
from immunreg.paths import keys_dir


@dataclass
class FaultStack:
    """PostgreSQL, Kafka and the services, each of which a test may kill or restart."""

    root: Path
    offset: int
    postgres: LocalPostgres
    kafka: LocalKafka
    env: dict[str, str] = field(default_factory=dict)
    replicas: dict[str, list[ServiceProcess]] = field(default_factory=dict)

    @classmethod
    def start(cls, root: Path, names: list[str]) -> FaultStack:
        """Start the servers and every service in names; return once all are ready."""
        offset = free_offset(replicas=2)
        kafka = LocalKafka(
            root / "kafka",
            port=DEFAULT_KAFKA_PORT + offset,
            controller_port=DEFAULT_KAFKA_PORT + offset + 1,
            heap="384m",
        )
        share_jars(kafka.libs)
        stack = cls(
            root, offset, LocalPostgres(root / "postgres", DEFAULT_POSTGRES_PORT + offset), kafka
        )
        try:
            ensure_dev_keys(keys_dir())  # the session's keys: the tests sign their tokens
            dsn = stack.postgres.start()
            bootstrap = stack.kafka.start()
            stack._prepare_topics(bootstrap)
            stack.env = {
                "DATABASE_URL": dsn,
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "RELAY_POLL_INTERVAL": "0.1",
            }
            for name in names:
                stack.replicas[name] = start_services([name], stack.env, {name: stack.port(name)})
            wait_ready(stack.processes, seconds=180)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _prepare_topics(self, bootstrap: str) -> None:
        async def prepare() -> None:
            await wait_for_kafka(bootstrap, seconds=90)
            await ensure_topics(bootstrap, all_topics(), partitions=3)

        asyncio.run(prepare())

    def port(self, name: str, replica: int = 0) -> int:
        """Where replica `replica` of service `name` listens."""
        return DEFAULT_PORTS[name] + self.offset + replica * REPLICA_PORT_STEP

    @property
    def processes(self) -> list[ServiceProcess]:
        return [p for group in self.replicas.values() for p in group]

    @property
    def urls(self) -> dict[str, str]:
        """The first replica of each service (where the traffic goes)."""
        return {name: group[0].url for name, group in self.replicas.items() if group}

    @property
    def replica_urls(self) -> dict[str, list[str]]:
        """Every replica of each service (where the traffic spreads its requests)."""
        return {name: [p.url for p in group] for name, group in self.replicas.items()}

    # Faults ---------------------------------------------------------------------------

    def kill(self, name: str, replica: int = 0) -> None:
        """kill -9 a service process: no shutdown, no flush, no commit."""
        process = self.replicas[name][replica].process
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def restart(self, name: str, replica: int = 0) -> None:
        """Start a killed service again on its port and wait until it is ready."""
        [fresh] = start_services([name], self.env, {name: self.port(name, replica)})
        self.replicas[name][replica] = fresh
        wait_ready([fresh], seconds=120)

    def add_replica(self, name: str) -> None:
        """A second process of the same service: same schema, consumer group and relay lock."""
        replica = len(self.replicas[name])
        [fresh] = start_services([name], self.env, {name: self.port(name, replica)})
        self.replicas[name].append(fresh)
        wait_ready([fresh], seconds=120)

    def retire(self, name: str, replica: int) -> None:
        """kill -9 one replica and leave it dead: the others carry on without it."""
        self.kill(name, replica)
        del self.replicas[name][replica]

    def relay_leaders(self, name: str) -> list[int]:
        """Which replicas of `name` say they hold the relay lock (immunreg_relay_leading 1)."""
        return [i for i, p in enumerate(self.replicas[name]) if _gauge(p, "immunreg_relay_leading")]

    def group_settled(self, name: str) -> bool:
        """Whether the consumer group of `name` is stable with exactly its live replicas."""
        state, members = asyncio.run(group_membership(self.env["KAFKA_BOOTSTRAP_SERVERS"], name))
        return state == "Stable" and members == len(self.replicas[name])

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets but answers nothing (a hung consumer)."""
        self.replicas[name][0].process.send_signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.replicas[name][0].process.send_signal(signal.SIGCONT)

    def restart_server(self, server: LocalKafka | LocalPostgres, down_seconds: float) -> float:
        """Stop Kafka (controlled) or PostgreSQL (fast: sessions are cut), leave it down a
        while, start it again; return seconds from the restart until every service is ready."""
        server.stop()
        time.sleep(down_seconds)
        started = time.monotonic()
        server.start()
        return time.monotonic() - started + self.wait_ready()

    def wait_ready(self, seconds: float = 180) -> float:
        """Wait until every service answers /readyz with 200; return how long it took."""
        started = time.monotonic()
        pending = list(self.processes)
        while pending:
            pending = [p for p in pending if not _ready(p)]
            if pending and time.monotonic() - started > seconds:
                names = ", ".join(p.name for p in pending)
                raise AssertionError(f"not ready {seconds:.0f}s after the fault: {names}")
            if pending:
                time.sleep(0.2)
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop the services, Kafka and PostgreSQL (whatever of them is running)."""
        for process in self.processes:
            if process.process.poll() is None:
                process.process.send_signal(signal.SIGCONT)  # a paused one cannot stop
        stop_services(self.processes)
        self.kafka.stop()
        self.postgres.stop()


def _gauge(process: ServiceProcess, metric: str) -> float:
    """A label-less gauge from a process's /metrics (0 when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{process.url}/metrics", timeout=3) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0
    for family in text_string_to_metric_families(text):
        if family.name == metric:
            return float(sum(sample.value for sample in family.samples))
    return 0.0


def _ready(process: ServiceProcess) -> bool:
    try:
        with urllib.request.urlopen(f"{process.url}/readyz", timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
