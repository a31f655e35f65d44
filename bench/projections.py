"""The projections benchmark: replaying every topic into a new read model, and freshness.

Run with `.venv/bin/python -m bench.projections [--quick]` (or `make bench`). Phases:

- produce: a synthetic national history (services/projections/synthetic.py: registrations,
  bookings and slots, doses, stock, waste, adverse events, certificates) as valid
  envelopes on private topics `bench_<hex>_<context>.events.v1`, by a plain producer;
- replay: `immunreg projections rebuild`'s code (rebuild.rebuild) from offset 0 to caught up
  with the end offsets taken at its start -> events/s;
- freshness: the real service (`immunreg serve projections`, its own process) follows the
  rebuilt model while this process produces a steady stream (2,000 events/s) of new
  citizens, bookings and doses; every 50 ms one dose is a probe, and a poller looks for the
  probes in the model's `doses` table every 10 ms: recorded_at -> visible, p50/p99/max.

Figures go to bench/results.json under "projections". Topics are deleted and schemas dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from bench.common import percentile, progress
from bench.results import record
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.envelope import Envelope, encode_envelope
from immunreg.contracts.topics import dlq_topic
from immunreg.messaging.topics import ensure_topics
from immunreg.paths import REPO_ROOT
from services.projections.domain import today
from services.projections.handlers import Sources
from services.projections.models import drop_all
from services.projections.rebuild import rebuild
from services.projections.synthetic import Synthetic

SECTION = "projections"
PARTITIONS = 3
PROCESSES = 2  # the rebuild's: one per core of the machine the figures are from


@dataclass(frozen=True)
class Plan:
    mode: str
    events: int
    stream_rate: int  # events per second during the freshness phase
    stream_seconds: float
    probe_every: float = 0.05


FULL = Plan("full", 1_050_000, 2000, 30.0)
QUICK = Plan("quick", 100_000, 2000, 10.0)


async def produce_history(bootstrap: str, sources: Sources, count: int) -> dict[str, Any]:
    """`count` synthetic events, produced as fast as a batched plain producer goes."""
    synthetic = Synthetic(sources, end=today(), days=240, sites=400, seed=7)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    started = time.perf_counter()
    size = 0
    try:
        pending = []
        for context, envelope in synthetic.envelopes(limit=count):
            payload = encode_envelope(envelope)
            size += len(payload)
            pending.append(
                await producer.send(context.topic, payload, key=envelope.stream_id.encode())
            )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    seconds = time.perf_counter() - started
    return {
        "events": synthetic.expected.events,
        "citizens": synthetic.expected.citizens,
        "doses": synthetic.expected.doses,
        "avg_event_bytes": round(size / max(1, synthetic.expected.events), 1),
        "seconds": round(seconds, 2),
        "events_per_s": round(synthetic.expected.events / seconds, 1),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`immunreg serve projections` as its own process; its log in bench/projections-service.log."""
    with (REPO_ROOT / "bench" / "projections-service.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "immunreg.cli", "serve", "projections"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the projections service exited ({process.returncode})")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{url}/readyz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.3)
    raise RuntimeError("the projections service did not become ready")


class Stream:
    """New citizens getting a first dose now; every `probe_every` seconds one dose is a probe."""

    def __init__(self, sources: Sources, run: str) -> None:
        self.sources = sources
        self.run = run
        self.n = 0
        self.probes: dict[str, datetime] = {}

    def batch(self, count: int, probe: bool) -> list[tuple[str, Envelope]]:
        now = datetime.now(UTC)
        out: list[tuple[str, Envelope]] = []
        for i in range(count):
            self.n += 1
            dose_id = f"live-{self.run}-{self.n}"
            event = DoseAdministered(
                dose_id=dose_id,
                citizen_id=f"live-c-{self.run}-{self.n}",
                site_id=f"SITE-{self.n % 400 + 1:04d}",
                site_municipality_code="70092",
                citizen_municipality_code="80284",
                product_code="EU/1/20/1528",
                lot_number="LOT-LIVE",
                dose_number=1,
                series_length=2,
                series_complete=False,
                administered_at=now,
                age_at_vaccination=30 + self.n % 50,
                sex="female" if self.n % 2 else "male",
                vaccinator_id="vac-live",
            )
            context = self.sources.administration
            envelope = context.envelope(
                event, stream_id=f"dose-{dose_id}", stream_type="DoseRecord", version=1,
                recorded_at=now,
            )  # fmt: skip
            if probe and i == 0:
                self.probes[dose_id] = envelope.recorded_at
            out.append((context.topic, envelope))
        return out


async def freshness(
    dsn: str, bootstrap: str, control: str, sources: Sources, plan: Plan
) -> dict[str, Any]:
    """Start the service on the rebuilt model, stream events at a steady rate, time probes."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROJECTIONS_DB_SCHEMA": control,
        "PROJECTIONS_SOURCE_PREFIX": sources.registration.name.removesuffix("registration"),
        "PROJECTIONS_PORT": str(port),
        "PROJECTIONS_CONSUMER_BATCH": "1000",
    }
    process = start_service(env)
    try:
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}", process)
        conn = await asyncpg.connect(dsn)
        schema = await conn.fetchval(
            f"SELECT schema_name FROM {control}.read_models WHERE status = 'active'"
        )
        stream = Stream(sources, uuid.uuid4().hex[:8])
        latencies: list[float] = []
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
        await producer.start()
        stop = asyncio.Event()

        async def poll() -> None:
            while not stop.is_set() or stream.probes:
                if stream.probes:
                    rows = await conn.fetch(
                        f"SELECT dose_id FROM {schema}.doses WHERE dose_id = ANY($1::text[])",
                        list(stream.probes),
                    )
                    seen = datetime.now(UTC)
                    for r in rows:
                        recorded = stream.probes.pop(r["dose_id"])
                        latencies.append((seen - recorded).total_seconds())
                await asyncio.sleep(0.01)
                if stop.is_set() and time.monotonic() > give_up:
                    break

        give_up = float("inf")
        poller = asyncio.create_task(poll())
        tick = plan.probe_every
        per_tick = max(1, round(plan.stream_rate * tick))
        started = time.monotonic()
        sent = 0
        try:
            while time.monotonic() - started < plan.stream_seconds:
                due = started + (sent / plan.stream_rate)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                for topic, envelope in stream.batch(per_tick, probe=True):
                    await producer.send(
                        topic, encode_envelope(envelope), key=envelope.stream_id.encode()
                    )
                sent += per_tick
            await producer.flush()
        finally:
            elapsed = time.monotonic() - started
            stop.set()
            give_up = time.monotonic() + 30
            await poller
            await producer.stop()
            await conn.close()
        latencies.sort()
        return {
            "stream_events": sent,
            "stream_seconds": round(elapsed, 1),
            "stream_events_per_s": round(sent / elapsed, 1),
            "probes": len(latencies),
            "probes_lost": len(stream.probes),
            "poll_interval_ms": 10,
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        }
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


async def run(
    dsn: str,
    bootstrap: str,
    plan: Plan,
    *,
    freshness_phase: bool = True,
    members: int = 2,
    processes: int = PROCESSES,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    sources = Sources.prefixed(f"bench_{run_id}_")
    topics = sources.topics()
    all_topics = [*topics, *map(dlq_topic, topics)]
    control = f"bench_projections_{run_id}"
    await ensure_topics(bootstrap, all_topics, PARTITIONS)
    figures: dict[str, Any] = {"mode": plan.mode, "partitions": PARTITIONS}
    try:
        progress(f"producing {plan.events:,} synthetic events to {PARTITIONS}-partition topics")
        figures["produce"] = await produce_history(bootstrap, sources, plan.events)
        progress(f"produced: {figures['produce']}")
        progress("replaying every topic into a new read model (rebuild)")
        last = [0.0]

        def show(done: int, total: int) -> None:
            if time.monotonic() - last[0] > 5:
                last[0] = time.monotonic()
                progress(f"replay: {done:,} / {total:,}")

        report = await rebuild(
            dsn,
            bootstrap,
            control,
            sources,
            batch_size=5000,
            members=members,
            processes=processes,
            progress=show,
        )
        conn = await asyncpg.connect(dsn)
        try:
            applied = await conn.fetchval(f"SELECT events_applied FROM {report.schema}.model_state")
            people = await conn.fetchval(
                f"SELECT count(*) FROM {report.schema}.citizens WHERE dose1_date IS NOT NULL"
            )
        finally:
            await conn.close()
        figures["replay"] = {
            "events": report.events,
            "events_applied": applied,
            "seconds": round(report.seconds, 2),
            "events_per_s": round(report.events_per_second, 1),
            "seconds_to_swap": round(report.total_seconds, 2),
            "consumer_batch": 5000,
            "members": members,
            "processes": processes,
            "people_with_dose1": people,
        }
        progress(f"replay: {figures['replay']}")
        if not freshness_phase:
            return figures
        progress(
            f"freshness: {plan.stream_rate:,} events/s for {plan.stream_seconds:g}s "
            "into the running service"
        )
        figures["freshness"] = await freshness(dsn, bootstrap, control, sources, plan)
        figures["freshness"]["target_events_per_s"] = plan.stream_rate
        progress(f"freshness: {figures['freshness']}")
    finally:
        await drop_all(dsn, control)
        with contextlib.suppress(Exception):
            await delete_topics(bootstrap, all_topics)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.projections", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100k events, 10 s of streaming")
    parser.add_argument("--events", type=int, help="events to produce and replay (any mode)")
    parser.add_argument(
        "--replay-only", action="store_true", help="skip the freshness phase (not recorded)"
    )
    parser.add_argument(
        "--members", type=int, default=2, help="consumers in the rebuild's group (default 2)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=PROCESSES,
        help=f"processes the rebuild consumes in, each with --members (default {PROCESSES})",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.events:
        plan = replace(plan, events=args.events)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from immunreg.localinfra import up

    endpoints = up()
    started = time.perf_counter()
    figures = asyncio.run(
        run(
            endpoints["DATABASE_URL"],
            endpoints["KAFKA_BOOTSTRAP_SERVERS"],
            plan,
            freshness_phase=not args.replay_only,
            members=args.members,
            processes=args.processes,
        )
    )
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.replay_only:
        replay = figures["replay"]
        print(
            f"projections replay: {replay['events']:,} events in {replay['seconds']}s "
            f"= {replay['events_per_s']:,.0f} events/s"
        )
        return 0
    record(SECTION, figures)
    replay, fresh = figures["replay"], figures["freshness"]
    print(
        f"projections ({plan.mode}): replay {replay['events']:,} events in {replay['seconds']}s "
        f"= {replay['events_per_s']:,.0f} events/s; freshness under "
        f"{fresh['stream_events_per_s']:,.0f} events/s: p50 {fresh['p50_ms']} ms, "
        f"p99 {fresh['p99_ms']} ms ({fresh['probes']} probes); total {figures['total_seconds']}s"
    )
    return 0 if fresh["probes"] and not fresh["probes_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
