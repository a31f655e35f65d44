"""The administration benchmark: doses recorded per second over HTTP, with latency.

Run with `.venv/bin/python -m bench.administration [--quick]` (or `make bench`).

The administration app runs in this process (`create_app` + `web.AppRunner` on
127.0.0.1, a fresh schema), exactly as `immunreg serve` builds it except:
- its read models (citizens, lots at sites, sites) are seeded with SQL, so the
  Kafka consumer is left out (it would first replay the shared topics' history);
- it publishes to a private `bench-administration-<hex>.events.v1` topic, so no
  other service's consumer ever sees benchmark doses. The outbox relay runs, and
  the run reports whether it kept up (outbox rows left when the load stops).

N concurrent clients (aiohttp, keep-alive) POST /v1/doses for a fixed time, each
dose for a fresh citizen at one of ten sites, with a site-staff token: every
request runs every rule, locks the citizen, appends the event and its outbox row
and updates the dose read model in one transaction. Load generator and server
share this process (and the machine's cores with PostgreSQL and Kafka), so the
figures are a floor for one service process, not a ceiling for the service.

Figures go to bench/results.json under "administration_doses"; a summary is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from bench.common import percentile, progress
from bench.results import postgres_version, record
from immunreg.config import Settings
from immunreg.eventstore.database import check_schema_name
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.messaging.topics import ensure_topics
from services.administration.app import EVENTS_CONTEXT_SETTING, service

SECTION = "administration_doses"
PRODUCT = "EU/1/20/1528"
SITES = [f"SITE-B{n:03d}" for n in range(10)]
WARMUP_SECONDS = 1.0


@dataclass(frozen=True)
class Plan:
    mode: str
    seconds: float
    clients: int
    citizens: int


FULL = Plan("full", 15.0, 16, 60_000)
QUICK = Plan("quick", 4.0, 8, 20_000)


async def seed(dsn: str, schema: str, citizens: int) -> None:
    """Citizens (all adults), one lot per site, the sites: as the consumer would have."""
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        await conn.execute(
            """
            INSERT INTO citizens (citizen_id, status, version, birth_date, sex, municipality_code)
            SELECT 'c-bench' || lpad(n::text, 8, '0'), 'active', 1,
                   date '1950-01-01' + (n % 15000),
                   CASE WHEN n % 2 = 0 THEN 'female' ELSE 'male' END, '70092'
            FROM generate_series(0, $1 - 1) AS n
            """,
            citizens,
        )
        expiry = date.today() + timedelta(days=90)
        for site in SITES:
            lot = f"LOT-{site}"
            await conn.execute(
                "INSERT INTO lots (lot_number, product_code, expiry_date) VALUES ($1, $2, $3)",
                lot,
                PRODUCT,
                expiry,
            )
            await conn.execute(
                "INSERT INTO site_lots (site_id, lot_number, product_code, first_seen)"
                " VALUES ($1, $2, $3, now())",
                site,
                lot,
                PRODUCT,
            )
            await conn.execute(
                "INSERT INTO sites (site_id, name, municipality_code) VALUES ($1, $2, '70092')",
                site,
                f"Bench site {site}",
            )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


@dataclass
class Tally:
    latencies: list[float] = dataclasses.field(default_factory=list)
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    next_citizen: int = 0


async def drive(
    base: str, tokens: list[str], plan: Plan, tally: Tally, *, seconds: float, measure: bool
) -> float:
    """Run the clients for `seconds`; returns the elapsed wall time."""
    administered = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    connector = aiohttp.TCPConnector(limit=plan.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def client(i: int) -> None:
            site = SITES[i % len(SITES)]
            headers = {"Authorization": f"Bearer {tokens[i % len(SITES)]}"}
            while time.perf_counter() < deadline and tally.next_citizen < plan.citizens:
                n = tally.next_citizen
                tally.next_citizen += 1
                body = {
                    "citizen_id": f"c-bench{n:08d}",
                    "site_id": site,
                    "lot_number": f"LOT-{site}",
                    "product_code": PRODUCT,
                    "dose_number": 1,
                    "administered_at": administered,
                    "vaccinator_id": f"V-{i:03d}",
                    "injection_site": "left_arm",
                }
                started = time.perf_counter()
                async with session.post(f"{base}/v1/doses", json=body, headers=headers) as r:
                    await r.read()
                    status = r.status
                if measure:
                    tally.latencies.append(time.perf_counter() - started)
                    tally.statuses[status] = tally.statuses.get(status, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(plan.clients)))
        return time.perf_counter() - began


async def run(dsn: str, bootstrap: str, plan: Plan) -> dict[str, Any]:
    schema = check_schema_name(f"bench_adm_{uuid.uuid4().hex[:10]}")
    context_name = f"bench-administration-{uuid.uuid4().hex[:10]}"
    topic = f"{context_name}.events.v1"
    await ensure_topics(bootstrap, [topic])
    with tempfile.TemporaryDirectory() as keys_dir:
        private, public = ensure_dev_keys(Path(keys_dir))
        settings = Settings(
            service="administration",
            database_url=dsn,
            db_schema=schema,
            kafka_bootstrap=bootstrap,
            jwt_jwks_file=str(public),
            extra={EVENTS_CONTEXT_SETTING: context_name},
        )
        # The read models are seeded below: no consumer (see the module docstring).
        app = create_app(dataclasses.replace(service, reactions=None), settings)
        logging.getLogger().setLevel(logging.WARNING)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            base = f"http://{host}:{port}"
            progress(f"administration at {base}, schema {schema}, topic {topic}")
            await seed(dsn, schema, plan.citizens)
            tokens = [
                issue_token(private.read_bytes(), Role.SITE_STAFF, site_id=s, subject=f"n@{s}")
                for s in SITES
            ]
            tally = Tally()
            await drive(base, tokens, plan, tally, seconds=WARMUP_SECONDS, measure=False)
            warmed = tally.next_citizen
            progress(f"{plan.clients} clients for {plan.seconds:.0f} s")
            elapsed = await drive(base, tokens, plan, tally, seconds=plan.seconds, measure=True)
            figures = await _figures(dsn, schema, plan, tally, elapsed=elapsed, warmed=warmed)
        finally:
            await runner.cleanup()
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()
    figures["topic"] = topic
    return figures


async def _figures(
    dsn: str, schema: str, plan: Plan, tally: Tally, *, elapsed: float, warmed: int
) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        stored = await conn.fetchval("SELECT count(*) FROM events WHERE type = 'DoseAdministered'")
        backlog = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()
    ordered = sorted(tally.latencies)
    recorded = tally.statuses.get(201, 0)
    return {
        "mode": plan.mode,
        "clients": plan.clients,
        "seconds": round(elapsed, 2),
        "requests": len(ordered),
        "doses_recorded": recorded,
        "doses_per_second": round(recorded / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "latency_ms": {
            "p50": round(percentile(ordered, 50) * 1000, 2),
            "p95": round(percentile(ordered, 95) * 1000, 2),
            "p99": round(percentile(ordered, 99) * 1000, 2),
            "max": round(ordered[-1] * 1000, 2) if ordered else None,
        },
        "stored_events": stored,
        "stored_matches": stored == recorded + warmed,
        "outbox_backlog_at_end": backlog,
    }


def summary(figures: dict[str, Any], postgres: str) -> str:
    latency = figures["latency_ms"]
    return (
        f"administration: {figures['doses_per_second']} doses/s over HTTP "
        f"({figures['clients']} clients, {figures['seconds']} s, {figures['doses_recorded']} "
        f"doses); latency p50 {latency['p50']} ms, p95 {latency['p95']} ms, "
        f"p99 {latency['p99']} ms; statuses {figures['statuses']}; outbox backlog at end "
        f"{figures['outbox_backlog_at_end']} (PostgreSQL {postgres})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.administration", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 s with 8 clients")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from immunreg.localinfra import up

    endpoints = up()
    dsn = endpoints["DATABASE_URL"]
    figures = asyncio.run(run(dsn, endpoints["KAFKA_BOOTSTRAP_SERVERS"], plan))
    postgres = postgres_version(dsn)
    record(SECTION, figures, postgres=postgres)
    print(summary(figures, postgres))
    ok = figures["stored_matches"] and set(figures["statuses"]) == {"201"}
    if not ok:
        print("UNEXPECTED: not every request recorded exactly one dose; see bench/results.json")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
