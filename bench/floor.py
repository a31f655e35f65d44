"""The floor: what the irreducible parts of one request cost on this machine, in CPU.

Run with `.venv/bin/python -m bench.floor [--quick]` (or `make bench`). Each part runs
at a fixed, open-loop rate near what one core can do, its load from a process of its
own; CPU is read from /proc for every process involved (server, client, PostgreSQL's
postmaster and backends, the Kafka broker, each consumer) at the start and the end of
a steady window (after a warm-up), and divided by the operations in that window:

1. http: the smallest app on the project's own factory (`immunreg.http.app.base_app`:
   the services' middleware stack, token check, msgspec) in a process of its own,
   answering `POST /v1/citizens` (the real `RegisterCitizen` body decoded, a
   `Registered` answered, 201), driven by the load generator's `register`
   (loadtests.day, loadtests.traffic: an admin token, an Idempotency-Key, a ledger
   line per request) from another process;
2. postgres: one statement inserting an event row and its outbox row in the
   project's schema (`apply_schema`; its own commit, fsync as this PostgreSQL runs
   it), through the project's pool from one process with several connections; then
   the same with 8 events and 8 outbox rows per statement;
3. kafka: a ~500-byte envelope produced as the relay produces (its transactional
   producer's options, one Kafka transaction for whatever is waiting, record
   batches per partition) and read by 7 consumer groups, each its own process
   reading as the services' consumers read (read_committed, their batch size),
   decoding each envelope;

plus certificate issue (sign) and its QR images (render) on one core, with
bench/certificates.py's own functions. Then the floor of a registration (1 request,
1 transaction, 1 event relayed and read by 7 groups, the generator's side) and of a
dose (the same plus a certificate signed and rendered): milliseconds of CPU, per
core-second, and the share of 2 cores the targets would take at the floor alone.
Figures go to bench/results.json under "floor".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from bench.common import progress
from bench.foundation import bench_context, fresh_schema, make_event, relay_like_headers
from bench.results import database_url, postgres_version, record
from immunreg.config import local_port
from immunreg.contracts.envelope import encode_envelope
from immunreg.eventstore.relay import PRODUCER_OPTIONS, _append
from immunreg.http.auth import ensure_dev_keys
from immunreg.messaging.connection import client_options
from immunreg.messaging.consumer import BATCH_SIZE, KAFKA_COMMIT_EVERY, _decoded, reading_options
from immunreg.messaging.partitions import partition_for
from immunreg.messaging.topics import delete_namespace, ensure_topics
from immunreg.paths import REPO_ROOT, keys_dir
from immunreg.reference.calendar import today

SECTION = "floor"
DEFAULT_PORT = 26480  # beside bench.idle_cpu's stack (26380), moved by the port offset
CONSUMER_GROUPS = 7  # the services that read another's events
PARTITIONS = 3  # Settings.kafka_partitions
ROWS_BATCHED = 8
CONNECTIONS = 8
START, END = "floor-window start", "floor-window end "
# Issue 16's targets on 2 cores.
TARGETS = {"registrations_per_s": 1500, "doses_per_s": 1000}
CORES = 2


@dataclass(frozen=True)
class Plan:
    """Each part's rate (per second) and window; the warm-up comes before the window."""

    mode: str
    seconds: float
    warmup: float
    http_rate: float
    pg_rate: float
    pg_batched_rate: float
    kafka_rate: float
    certificate_seconds: float


# The same rates in both: --quick only shortens the windows.
FULL = Plan("full", 10.0, 2.0, 500.0, 1500.0, 500.0, 1000.0, 3.0)
QUICK = Plan("quick", 2.0, 1.0, 500.0, 1500.0, 500.0, 1000.0, 0.5)


# --- arithmetic (pure) ---------------------------------------------------------------------


def per_operation_ms(
    before: dict[str, float], after: dict[str, float], operations: int
) -> dict[str, float]:
    """Milliseconds of CPU per operation for each group, from CPU seconds read before
    and after a window in which `operations` were done."""
    if operations <= 0:
        raise ValueError("no operation was done in the window")
    return {g: round(1000 * (after[g] - before[g]) / operations, 4) for g in before}


def floor_arithmetic(
    parts: dict[str, dict[str, float]],
    certificate_ms: dict[str, float],
    targets: Mapping[str, float] = TARGETS,
    cores: int = CORES,
) -> dict[str, Any]:
    """The floor of a registration and of a dose from each part's CPU per operation
    (ms, by process group): the sum, how many per core-second, and what share of
    `cores` each target would take at the floor alone."""

    def total(part: str) -> float:
        return sum(parts[part].values())

    registration = {
        "http_server": parts["http"]["server"],
        "load_generator": parts["http"]["client"],
        "postgres_transaction": total("postgres"),
        "kafka_event_7_groups": total("kafka"),
    }
    dose = {**registration, "certificate_sign": certificate_ms["sign"]}
    dose["certificate_render"] = certificate_ms["render"]
    figures: dict[str, Any] = {}
    for name, parts_ms, target in (
        ("registration", registration, targets["registrations_per_s"]),
        ("dose", dose, targets["doses_per_s"]),
    ):
        ms = sum(parts_ms.values())
        figures[name] = {
            "parts_ms": {k: round(v, 3) for k, v in parts_ms.items()},
            "floor_ms": round(ms, 3),
            "per_core_second": round(1000 / ms, 1),
            "target_per_s": target,
            "cores_at_floor": round(target * ms / 1000, 2),
            "share_of_cores": round(target * ms / 1000 / cores, 2),
        }
    return figures


# --- measuring a window --------------------------------------------------------------------


def mark_start() -> None:
    """In a driver: the steady window begins now."""
    print(START, flush=True)


def mark_end(operations: int, **fields: Any) -> None:
    """In a driver: the window ended with `operations` done in it."""
    print(END + json.dumps({"operations": operations, **fields}), flush=True)


def measure(
    command: list[str], groups: dict[str, list[int]], timeout: float = 120.0
) -> dict[str, Any]:
    """Run a driver (`python -m bench.floor ...`); read every group's CPU (the driver's
    own as "client") from /proc when it marks its window's start and end; the CPU per
    operation, by group, with what the driver reported."""
    # Here, not at the top: every driver and reader is a process importing this module,
    # and these imports (loadtests' reports, the local stack) took seconds each on a
    # loaded machine.
    from loadtests.watch import cpu_seconds

    process = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", *command],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    everyone = {**groups, "client": [process.pid]}
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    report: dict[str, Any] = {}
    started = ended = 0.0
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(START):
            before, started = cpu_seconds(everyone, {"postgresql"}), time.monotonic()
        elif line.startswith(END):
            after, ended = cpu_seconds(everyone, {"postgresql"}), time.monotonic()
            report = json.loads(line[len(END) :])
    if process.wait(timeout) != 0 or not after:
        raise RuntimeError(f"bench.floor {' '.join(command)} failed (exit {process.returncode})")
    operations = int(report.pop("operations"))
    seconds = ended - started
    return {
        "operations": operations,
        "seconds": round(seconds, 2),
        "achieved_per_s": round(operations / seconds, 1),
        "cpu_ms_per_operation": per_operation_ms(before, after, operations),
        "cpu_pct_of_one_core": {
            g: round(100 * (after[g] - before[g]) / seconds, 1) for g in before
        },
        **report,
    }


async def paced(
    rate: float, plan_seconds: float, warmup: float, work: Callable[[int], Awaitable[bool]]
) -> int:
    """Open loop: `work(n)` at rate/s for warmup + window, each on its own; marks the
    window's start; the operations that succeeded in it (once the last has ended)."""
    loop = asyncio.get_running_loop()
    origin = loop.time() + 0.1
    count = int(rate * (warmup + plan_seconds))
    first = int(rate * warmup)
    done = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(n: int) -> None:
        nonlocal done
        if await work(n) and n >= first:
            done += 1

    behind = 0.0
    for n in range(count):
        await asyncio.sleep(max(0.0, origin + n / rate - loop.time()))
        if n == first:
            behind = loop.time() - (origin + n / rate)
            mark_start()
        task = asyncio.create_task(one(n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    if behind > 0.05:
        progress(f"the window started {behind:.2f} s behind its schedule")
    return done


# --- 1. HTTP -------------------------------------------------------------------------------


def serve_http(port: int) -> None:
    """The server process: `POST /v1/citizens` on the services' own app and middlewares."""
    from aiohttp import web

    from immunreg.config import Settings
    from immunreg.http.api import Api, json_response
    from immunreg.http.app import base_app
    from immunreg.http.shutdown import run_app
    from services.registration.schemas import RegisterCitizen, Registered

    api = Api("floor", "1")

    @api.post("/v1/citizens", body=RegisterCitizen, responses={201: Registered}, roles=None)
    async def register_citizen(request: web.Request, body: RegisterCitizen) -> web.StreamResponse:
        """Decoded and answered: what every registration pays before its own work."""
        return json_response(Registered(citizen_id=str(uuid.uuid4())), status=201)

    settings = Settings.from_env("floor", port=port, shutdown_drain_delay=0.0)
    app = base_app("floor", settings)
    api.register(app)
    run_app(app, settings)


async def drive_http(url: str, plan: Plan) -> None:
    """The generator process: registrations through loadtests' own client code."""
    from loadtests.day import DayRun, Shard, register
    from loadtests.scenario import Census, Day
    from loadtests.traffic import Traffic

    census = Census(random.Random(3))
    with tempfile.TemporaryDirectory() as tmp:
        traffic = await Traffic.open({"registration": url}, Path(tmp) / "ledger.jsonl", time.time())
        run = DayRun(Day(scale=0.0, seed=3, seconds=0.0), Shard(), traffic, today())

        async def registration(n: int) -> bool:
            return await register(run, census.person(), traffic.now()) is not None

        done = await paced(plan.http_rate, plan.seconds, plan.warmup, registration)
        mark_end(done, offered_per_s=plan.http_rate)
        await traffic.close()


def _wait_for_port(server: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    """Until the server listens (a minute: on a loaded machine its start took over 30 s)."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and server.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    log.seek(0)
    tail = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"the floor's HTTP server did not listen on {port}:\n{tail}")


@contextmanager
def _server(command: list[str], log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """A server process of this module, its log lines written to `log` (as a service's
    are to its file); terminated at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.floor", *command],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def bench_http(plan: Plan) -> dict[str, Any]:
    port = local_port("FLOOR_PORT", DEFAULT_PORT)
    with tempfile.TemporaryFile() as log, _server(["--serve-http", str(port)], log) as server:
        _wait_for_port(server, port, log)
        progress(f"http: {plan.http_rate:g} registrations/s for {plan.seconds:g} s")
        url = f"http://127.0.0.1:{port}"
        figures = measure(["--drive-http", url, *_plan_args(plan)], {"server": [server.pid]})
    return figures


# --- 2. PostgreSQL -------------------------------------------------------------------------

# One statement, its own transaction: n events and their n outbox rows.
_INSERT = """
WITH e AS (
    INSERT INTO events (stream_id, version, stream_type, event_id, type, schema_version,
                        data, occurred_at, recorded_at)
    SELECT s, 1, 'FloorStream', i, 'FloorRecorded', 1, $3::jsonb, now(), now()
    FROM unnest($1::text[], $2::uuid[]) AS x(s, i)
    RETURNING stream_id
)
INSERT INTO outbox (topic, key, payload) SELECT 'floor', stream_id, $4 FROM e
"""


async def drive_postgres(rows: int, rate: float, plan: Plan) -> None:
    """The client process: `rate` statements a second over CONNECTIONS connections."""
    dsn = database_url()
    if dsn is None:
        raise RuntimeError("no DATABASE_URL: run `make infra`")
    data, payload = _event_bytes()
    async with fresh_schema(dsn, "floor", CONNECTIONS) as (_, pool):
        settings = {
            name: await pool.fetchval(f"SHOW {name}")
            for name in ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay")
        }

        async def insert(n: int) -> bool:
            streams = [f"floor-{n}-{k}" for k in range(rows)]
            ids = [uuid.uuid4() for _ in range(rows)]
            await pool.execute(_INSERT, streams, ids, data.decode(), payload)
            return True

        done = await paced(rate, plan.seconds, plan.warmup, insert)
        mark_end(done, offered_per_s=rate, server_settings=settings)


def _event_bytes() -> tuple[bytes, bytes]:
    """An event's JSON (about 300 bytes) and its whole envelope (about 500)."""
    context = bench_context("floor")
    envelope = context.envelope(make_event(1), stream_id="s-1", stream_type="Floor", version=1)
    return bytes(envelope.data), encode_envelope(envelope)


def bench_postgres(plan: Plan, rows: int, rate: float) -> dict[str, Any]:
    from loadtests.watch import server_groups

    progress(f"postgres: {rate:g} statements/s of {rows} event(s) + outbox row(s)")
    groups = {"postgresql": server_groups()["postgresql"]}
    figures = measure(["--drive-postgres", str(rows), str(rate), *_plan_args(plan)], groups)
    figures["rows_per_transaction"] = rows
    return figures


# --- 3. Kafka ------------------------------------------------------------------------------


async def drive_produce(bootstrap: str, topic: str, rate: float, plan: Plan) -> None:
    """The relay's side: whatever waits goes out in one Kafka transaction."""
    _, payload = _event_bytes()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_options(),
        transactional_id=f"floor-{uuid.uuid4().hex[:8]}",
        **PRODUCER_OPTIONS,
    )
    await producer.start()
    waiting: list[int] = []
    arrived = asyncio.Event()
    transactions = 0
    events = 0

    async def publish() -> None:
        nonlocal transactions, events
        while True:
            await arrived.wait()
            arrived.clear()
            taken, waiting[:] = list(waiting), []
            await producer.begin_transaction()
            batches: dict[int, BatchBuilder] = {}
            deliveries = []
            for n in taken:
                key = f"floor-{n}".encode()
                where = partition_for(key, PARTITIONS)
                batch = batches.get(where)
                headers = relay_like_headers("floor", n)
                if batch is None or not _append(batch, key, payload, headers):
                    if batch is not None:  # full: hand it over, start the next one
                        deliveries.append(await producer.send_batch(batch, topic, partition=where))
                    batch = batches[where] = producer.create_batch()
                    _append(batch, key, payload, headers)
            for where, batch in batches.items():
                deliveries.append(await producer.send_batch(batch, topic, partition=where))
            await asyncio.gather(*deliveries)
            await producer.commit_transaction()
            transactions += 1
            events += len(taken)

    publisher = asyncio.create_task(publish())

    async def event(n: int) -> bool:
        waiting.append(n)
        arrived.set()
        return True

    try:
        done = await paced(rate, plan.seconds, plan.warmup, event)
        while events < int(rate * (plan.warmup + plan.seconds)):  # every one committed
            if publisher.done():
                publisher.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the groups read the last transaction
        mark_end(done, offered_per_s=rate, transactions=transactions, events_sent=events)
    finally:
        publisher.cancel()
        await producer.stop()


async def drive_consume(bootstrap: str, topic: str, group: str, expect: int) -> None:
    """One group's reader: every envelope decoded; says `ready` once it has partitions."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        **client_options(),
        group_id=group,
        **reading_options(BATCH_SIZE),
    )
    await consumer.start()
    read = 0
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        print("ready", flush=True)
        deadline = time.monotonic() + 300
        committed = time.monotonic()
        while read < expect and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH_SIZE)
            for messages in batches.values():
                read += sum(1 for m in messages if _decoded(m) is not None)
            if batches and time.monotonic() >= committed + KAFKA_COMMIT_EVERY:
                await consumer.commit()
                committed = time.monotonic()
    finally:
        await consumer.stop()
    print(f"read {read}", flush=True)


@dataclass
class Readers:
    """The consumer groups' processes, started ahead (they take seconds to join)."""

    bootstrap: str
    topic: str
    expect: int
    processes: list[subprocess.Popen[str]]


@contextmanager
def readers(plan: Plan, bootstrap: str) -> Iterator[Readers]:
    """A fresh topic and CONSUMER_GROUPS readers of it, each a process; then the
    readers stopped and the topic deleted."""
    namespace = f"floor_{uuid.uuid4().hex[:8]}."
    topic = f"{namespace}events.v1"
    asyncio.run(ensure_topics(bootstrap, [topic], PARTITIONS))
    expect = int(plan.kafka_rate * (plan.warmup + plan.seconds))
    started = Readers(bootstrap, topic, expect, [])
    try:
        for n in range(CONSUMER_GROUPS):
            command = ["--consume", bootstrap, topic, f"{namespace}group-{n}", str(expect)]
            started.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.floor", *command],
                    cwd=REPO_ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        yield started
    finally:
        for process in started.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        asyncio.run(delete_namespace(bootstrap, namespace))


def bench_kafka(plan: Plan, groups_of: Readers) -> dict[str, Any]:
    from loadtests.watch import server_groups

    for consumer in groups_of.processes:
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise RuntimeError("a floor consumer did not join its group")
    progress(f"kafka: {plan.kafka_rate:g} events/s, {CONSUMER_GROUPS} groups reading")
    groups = {
        "kafka": server_groups()["kafka"],
        "consumers": [c.pid for c in groups_of.processes],
    }
    command = ["--produce", groups_of.bootstrap, groups_of.topic, str(plan.kafka_rate)]
    figures = measure([*command, *_plan_args(plan)], groups)
    read = []
    for consumer in groups_of.processes:
        out, _ = consumer.communicate(timeout=60)
        read.append(int(out.split()[-1]) if out.strip() else 0)
    figures["cpu_ms_per_operation"]["producer"] = figures["cpu_ms_per_operation"].pop("client")
    figures["cpu_pct_of_one_core"]["producer"] = figures["cpu_pct_of_one_core"].pop("client")
    figures["consumer_groups"] = CONSUMER_GROUPS
    figures["produced"] = groups_of.expect
    figures["read_by_each_group"] = read
    figures["delivered"] = all(r == groups_of.expect for r in read)
    return figures


# --- certificates --------------------------------------------------------------------------


def bench_certificates(plan: Plan) -> dict[str, Any]:
    """Sign and render one certificate, one core, with bench.certificates' own phases."""
    from bench.certificates import issuer, rate
    from services.certificates.keys import ensure_dev_signing_key
    from services.certificates.render import qr_images

    progress("certificates: sign, then both QR images")
    with tempfile.TemporaryDirectory() as tmp:
        issue = issuer(ensure_dev_signing_key(Path(tmp)), random.Random(7))
    sign = rate(issue, plan.certificate_seconds)
    samples = [issue(i) for i in range(20)]
    render = rate(lambda i: qr_images(samples[i % len(samples)]), plan.certificate_seconds)
    return {
        "sign": sign,
        "render": render,
        "cpu_ms_per_operation": {
            "sign": sign["cpu_microseconds_each"] / 1000,
            "render": render["cpu_microseconds_each"] / 1000,
        },
    }


# --- the run -------------------------------------------------------------------------------


def _plan_args(plan: Plan) -> list[str]:
    return [f"--plan={plan.mode}"]


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(plan: Plan) -> dict[str, Any]:
    from immunreg import localinfra
    from loadtests.national_day import git_sha

    endpoints = localinfra.up()
    ensure_dev_keys(keys_dir())
    load_before = _load_average()
    started = time.monotonic()
    # The groups join while the other parts run: idle, they poll twice a second.
    with readers(plan, endpoints["KAFKA_BOOTSTRAP_SERVERS"]) as groups:
        parts: dict[str, Any] = {
            "http": bench_http(plan),
            "postgres": bench_postgres(plan, 1, plan.pg_rate),
            "postgres_batched": bench_postgres(plan, ROWS_BATCHED, plan.pg_batched_rate),
            "kafka": bench_kafka(plan, groups),
        }
    parts["certificates"] = bench_certificates(plan)
    per_op = {name: figures["cpu_ms_per_operation"] for name, figures in parts.items()}
    return {
        "mode": plan.mode,
        "commit": git_sha(),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "total_seconds": round(time.monotonic() - started, 1),
        "parts": parts,
        "floor": floor_arithmetic(per_op, per_op["certificates"]),
        "postgres": postgres_version(endpoints["DATABASE_URL"]),
    }


def summary(figures: dict[str, Any]) -> str:
    """Each part's CPU per operation by process, then the two floors."""
    lines = []
    for name, part in figures["parts"].items():
        shown = ", ".join(f"{g} {ms:.3f}" for g, ms in part["cpu_ms_per_operation"].items())
        achieved = f" at {part['achieved_per_s']:g}/s" if "achieved_per_s" in part else ""
        lines.append(f"{name}{achieved}: ms of CPU per operation: {shown}")
    for name, floor in figures["floor"].items():
        lines.append(
            f"{name} floor {floor['floor_ms']:.2f} ms = {floor['per_core_second']:g} per "
            f"core-second; {floor['target_per_s']:,}/s would take {floor['cores_at_floor']:g} "
            f"cores ({floor['share_of_cores']:.0%} of {CORES}) at the floor alone"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--quick", action="store_true", help="3 s windows (about 20 s in all)")
    parser.add_argument("--plan", choices=("full", "quick"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-http", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--drive-http", help=argparse.SUPPRESS)
    parser.add_argument("--drive-postgres", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--produce", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--consume", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--scheduling",
        action="store_true",
        help="the scheduling run's floor (bench.floor_scheduling)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.scheduling:
        from bench import floor_scheduling

        return floor_scheduling.main(list(argv if argv is not None else sys.argv[1:]))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    plan = QUICK if args.quick or args.plan == "quick" else FULL
    if args.serve_http:
        serve_http(args.serve_http)
    elif args.drive_http:
        asyncio.run(drive_http(args.drive_http, plan))
    elif args.drive_postgres:
        rows, rate = args.drive_postgres
        asyncio.run(drive_postgres(int(rows), float(rate), plan))
    elif args.produce:
        bootstrap, topic, rate = args.produce
        asyncio.run(drive_produce(bootstrap, topic, float(rate), plan))
    elif args.consume:
        bootstrap, topic, group, expect = args.consume
        asyncio.run(drive_consume(bootstrap, topic, group, int(expect)))
    else:
        figures = run(plan)
        postgres = figures.pop("postgres")
        record(SECTION, figures, postgres=postgres, keep=("scheduling",))  # floor_scheduling's
        print(summary(figures))
        return 0 if figures["parts"]["kafka"]["delivered"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
