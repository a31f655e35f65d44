"""Start, watch and stop the service processes (for `make run` and the e2e tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from immunreg.config import DEFAULT_PORTS, REPLICA_PORT_STEP, service_port
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE, topic_namespace
from immunreg.localinfra._proc import log, pid_alive, port_open, read_pid, stop_pid
from immunreg.messaging.topics import delete_namespace
from immunreg.paths import REPO_ROOT, state_dir

# Ctrl-C must stop the whole stack within 15 s: services get this much of it, Kafka
# (kafka.STOP_SECONDS) and PostgreSQL the rest. A service past it is killed; what it had
# committed waits in its outbox for the next start.
STOP_SECONDS = 9.0


def run_dir() -> Path:
    path = state_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class ServiceProcess:
    """One running `immunreg serve NAME`."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    logfile: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def start_services(
    names: list[str],
    env: dict[str, str],
    ports: dict[str, int] | None = None,
    replicas: int = 1,
) -> list[ServiceProcess]:
    """Start `replicas` processes of each service, logs in <state>/logs/<name>[-<port>].log.

    Replica r of a service listens REPLICA_PORT_STEP * r above its port; all replicas
    share the service's schema, so its consumer group and its relay lock. Refuses
    (before starting any) when a port is taken: a stale service left on it would
    otherwise answer the readiness probe in the new one's place.
    """
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    chosen: list[tuple[str, int, int]] = []
    for name in names:
        first = (ports or {}).get(name) or service_port(name)
        chosen += [
            (name, replica, first + REPLICA_PORT_STEP * replica) for replica in range(replicas)
        ]
    _check_free([(name, port) for name, _, port in chosen])
    started: list[ServiceProcess] = []
    for name, replica, port in chosen:
        logfile = logs / (f"{name}-{replica}.log" if replica else f"{name}.log")
        process = subprocess.Popen(
            [sys.executable, "-m", "immunreg.cli", "serve", name],
            env={**os.environ, **env, f"{name.upper()}_PORT": str(port)},
            stdout=logfile.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        _pid_file(name, port).write_text(str(process.pid))
        started.append(ServiceProcess(name, port, process, logfile))
    return started


def start_mailbox() -> ServiceProcess:
    """Start the local mailbox (`immunreg mailbox`: SMTP and an SMS gateway that keep every
    message); stopped with the services, by its pid file."""
    from immunreg.localinfra.mailbox import mailbox_ports

    smtp_port, http_port = mailbox_ports()
    return _start_helper("mailbox", http_port, [("mailbox SMTP", smtp_port)])


def start_portal() -> ServiceProcess:
    """Start the citizens' portal (`immunreg portal`: static pages calling the services);
    stopped with the services, by its pid file."""
    from immunreg.config import portal_port

    return _start_helper("portal", portal_port())


def _start_helper(
    command: str, port: int, other_ports: list[tuple[str, int]] | None = None
) -> ServiceProcess:
    """`immunreg <command>`, a process beside the services answering /readyz on `port`."""
    _check_free([(command, port), *(other_ports or [])])
    logfile = state_dir() / "logs" / f"{command}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "immunreg.cli", command],
        stdout=logfile.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    _pid_file(command, port).write_text(str(process.pid))
    return ServiceProcess(command, port, process, logfile)


def _pid_file(name: str, port: int) -> Path:
    return run_dir() / f"{name}-{port}.pid"


def _check_free(ports: list[tuple[str, int]]) -> None:
    for name, port in ports:
        pid = read_pid(_pid_file(name, port))
        if pid and pid_alive(pid):
            raise RuntimeError(
                f"{name} already runs on port {port} (pid {pid}); `make stop` stops it"
            )
        if port_open("127.0.0.1", port):
            raise RuntimeError(
                f"port {port} for {name} is taken by another program; stop it, "
                f"or give {name} another port with {name.upper()}_PORT"
            )


def wait_ready(processes: list[ServiceProcess], seconds: float = 90) -> None:
    """Wait until every service answers /readyz with 200, or fail with its log."""
    deadline = time.monotonic() + seconds
    pending = list(processes)
    while pending and time.monotonic() < deadline:
        for proc in list(pending):
            if proc.process.poll() is not None:
                tail = proc.logfile.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{proc.name} exited during start-up:\n{tail}")
            if proc.ready():
                log(f"{proc.name} ready at {proc.url}")
                pending.remove(proc)
        time.sleep(0.3)
    if pending:
        names = ", ".join(p.name for p in pending)
        raise RuntimeError(f"not ready after {seconds:.0f}s: {names} (see {state_dir()}/logs)")


def stop_services(processes: list[ServiceProcess] | None = None) -> list[int]:
    """SIGTERM every service (graceful shutdown), SIGKILL any still alive after STOP_SECONDS.

    Without `processes`, stops every service this checkout's pid files name.
    Returns the ports the stopped services listened on.
    """
    if processes is not None:
        for proc in processes:
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for proc in processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                proc.process.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
            _pid_file(proc.name, proc.port).unlink(missing_ok=True)
        return [proc.port for proc in processes]
    ports: list[int] = []
    for pid_file in sorted(run_dir().glob("*.pid")):
        name, _, port = pid_file.stem.rpartition("-")
        if port.isdigit() and pid_alive(read_pid(pid_file)):
            ports.append(int(port))
        stop_pid(pid_file, name or pid_file.stem, seconds=STOP_SECONDS)
    return ports


@dataclass
class IsolatedStack:
    """Services started with their own ports, schemas and topics, beside anything else
    running.

    For the e2e tests, benchmarks and load tests: each run's schemas (hence consumer
    groups) and topics (`<namespace><run>.`, under the caller's namespace) are its own,
    so it neither disturbs `make run` nor another run, nor hears them: a holder in one
    stack never offers keys for another stack's citizens, a projection never counts
    another stack's doses.
    """

    processes: list[ServiceProcess]
    schemas: dict[str, str]
    dsn: str
    bootstrap: str
    namespace: str

    @property
    def urls(self) -> dict[str, str]:
        return {p.name: p.url for p in self.processes}

    @classmethod
    def start(
        cls, endpoints: dict[str, str], names: list[str], port_base: int, run: str
    ) -> IsolatedStack:
        """Start `names` on port_base + (default port - 8080) and wait until ready."""
        ports = {name: port_base + DEFAULT_PORTS[name] - 8080 for name in names}
        schemas = {name: f"{run}_{name}" for name in names}
        namespace = f"{topic_namespace()}{run}."
        env = {"RELAY_POLL_INTERVAL": "0.1", **endpoints, TOPIC_NAMESPACE_VARIABLE: namespace}
        for name in names:
            env[f"{name.upper()}_DB_SCHEMA"] = schemas[name]
        stack = cls(
            start_services(names, env, ports),
            schemas,
            endpoints["DATABASE_URL"],
            endpoints["KAFKA_BOOTSTRAP_SERVERS"],
            namespace,
        )
        try:
            wait_ready(stack.processes)
        except BaseException:
            stack.stop()
            raise
        return stack

    def stop(self) -> None:
        """Stop the processes, drop every schema they made (theirs and `<schema>_*`) and
        delete the run's topics."""
        stop_services(self.processes)
        asyncio.run(_drop_schemas(self.dsn, list(self.schemas.values())))
        asyncio.run(delete_namespace(self.bootstrap, self.namespace))


async def _drop_schemas(dsn: str, schemas: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for schema in schemas:
            # A service may keep more schemas named after its own (projections'
            # read models: <schema>_m<timestamp>).
            more = await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                schema.replace("_", "\\_") + "\\_%",
            )
            for name in [schema, *(r["nspname"] for r in more)]:
                await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()
