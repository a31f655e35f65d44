"""The coverage benchmark: coverage answers at national size from the pre-aggregated model,
beside the old scan of `citizens` (the baseline) in the same run, and a dashboard load.

Run with `.venv/bin/python -m bench.coverage [--quick] [--citizens N]` (or `make bench`).

- seed: a model schema filled directly, not through events (6.6 M citizens replayed
  through Kafka would take hours on 2 cores): `citizens` with their coverage facts drawn
  as synthetic.py's history draws them (residence by census population and district
  uptake, adult age bands, 52% women, dose 1 for 70% over 300 days, a completed series
  for 82% of those three to five weeks later, a booster for 45% of those three to four
  months later), `daily_doses` from them, then model.sql's fill builds `coverage_*`
  from `citizens` (the path a model built before those tables takes; the projector's
  incremental path is what tests/integration/projections/test_projections_coverage_model.py
  checks against the scan);
- queries: per shape (group by district, municipality, municipality of one district, age
  band, sex, product), random dose kinds, dates in the history and filters (product, age
  band, sex) on a third of the queries each; `readmodel.coverage` as the handler calls
  it, in a repeatable-read snapshot, with the model (`people_with_dose`) and with the scan
  (`people_with_dose_by_scan`): p50/p99/max;
- dashboard: the requests the dashboard page sends at once for a signed-in analyst
  (coverage by district, age band, sex for each dose kind, product and municipality;
  daily doses, stock and wastage, bookings, safety, supply), over 8 connections (the
  service's pool): the time until the last answer. Bookings and supply read tables this
  seed leaves empty.

Figures go to bench/results.json under "coverage"; the schema is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, timedelta
from functools import partial
from typing import Any, get_args

import asyncpg

from bench.common import percentile, progress
from bench.results import record
from immunreg.eventstore.database import Connection, apply_schema, check_schema_name, create_pool
from immunreg.reference.geography import age_bands, districts, municipalities
from services.projections import readmodel
from services.projections.domain import EXACT_THRESHOLD, SUPPRESS_BELOW, today
from services.projections.models import MODEL_SQL
from services.projections.readmodel import (
    PeopleCounter,
    people_with_dose,
    people_with_dose_by_scan,
)
from services.projections.schemas import CoverageFilters, DoseKind, GroupBy
from services.projections.synthetic import PRODUCT_WEIGHTS, PRODUCTS, UPTAKE

SECTION = "coverage"
NATIONAL = 6_647_003  # the 2022 census
DAYS = 300
CHUNK = 500_000

# Draws: residence, age band and product by index into small tables (bench_* below).
SEED = """
INSERT INTO citizens (citizen_id, reg_registered, reg_sex, reg_municipality_code,
    municipality_code, district_code, sex, age_band, dose1_date, dose1_product,
    complete_date, complete_product, booster_date, booster_product, waiting)
SELECT 'c' || lpad(g::text, 8, '0'), true, sex, muni, muni, district, sex,
       CASE WHEN d1 IS NOT NULL THEN band END, d1, CASE WHEN d1 IS NOT NULL THEN product END,
       c2, CASE WHEN c2 IS NOT NULL THEN product END,
       b3, CASE WHEN b3 IS NOT NULL THEN product END,
       d1 IS NULL AND r5 < 0.5
FROM (
    SELECT *, CASE WHEN c2 IS NOT NULL AND r3 < 0.45 AND c2 + 90 + floor(r6 * 40)::int <= $2
                   THEN c2 + 90 + floor(r6 * 40)::int END AS b3
    FROM (
        SELECT *, CASE WHEN d1 IS NOT NULL AND r2 < 0.82 AND d1 + 21 + floor(r4 * 15)::int <= $2
                       THEN d1 + 21 + floor(r4 * 15)::int END AS c2
        FROM (
            SELECT g, s.muni, s.district, b.band, p.product,
                   CASE WHEN r0 < 0.52 THEN 'female' ELSE 'male' END AS sex,
                   CASE WHEN r1 < 0.70
                        THEN $1::date + floor((r1 / 0.70 + r7) / 2 * ($2::date - $1))::int
                   END AS d1,
                   r2, r3, r4, r5, r6
            FROM (SELECT g, random() AS r0, random() AS r1, random() AS r2, random() AS r3,
                         random() AS r4, random() AS r5, random() AS r6, random() AS r7,
                         1 + floor(random() * (SELECT count(*) FROM bench_slots))::int AS si,
                         1 + floor(random() * (SELECT count(*) FROM bench_bands))::int AS bi,
                         1 + floor(random() * (SELECT count(*) FROM bench_products))::int AS pi
                  FROM generate_series($3::int, $4::int) AS g) AS drawn
            JOIN bench_slots s ON s.i = si
            JOIN bench_bands b ON b.i = bi
            JOIN bench_products p ON p.i = pi
        ) AS a
    ) AS b
) AS c
"""

DAILY = """
INSERT INTO daily_doses (day, product_code, age_band, kind, doses)
SELECT d.day, d.product, coalesce(age_band, 'unknown'), d.kind, count(*)
FROM citizens, LATERAL (VALUES (dose1_date, dose1_product, 'first'),
                               (complete_date, complete_product, 'series'),
                               (booster_date, booster_product, 'booster')) AS d(day, product, kind)
WHERE d.day IS NOT NULL
GROUP BY 1, 2, 3, 4
"""


def weighted(items: Sequence[Any], weights: Sequence[float], slots: int) -> list[Any]:
    """`slots` entries, each item repeated in proportion to its weight (an array to draw from)."""
    total = sum(weights)
    out: list[Any] = []
    for item, weight in zip(items, weights, strict=True):
        out += [item] * max(1, round(slots * weight / total))
    return out


async def seed(pool: asyncpg.Pool, citizens: int, end: date) -> dict[str, Any]:
    """Citizens with coverage facts, daily doses, then model.sql's fill of coverage_*."""
    munis = list(municipalities().values())
    slots = weighted(
        munis, [m.population * UPTAKE.get(m.district_code, 1.0) for m in munis], 20_000
    )
    adults = [b for b in age_bands() if b.low >= 15]
    bands = weighted(
        [b.label for b in adults],
        [b.population * (1.5 if b.low >= 60 else 1) for b in adults],
        2000,
    )
    products = weighted(PRODUCTS, PRODUCT_WEIGHTS, 100)
    start = end - timedelta(days=DAYS - 1)
    started = time.perf_counter()
    async with pool.acquire() as conn:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SELECT setseed(0.2022)")
        for table, columns, rows in (
            ("bench_slots", "muni text, district text", [(m.code, m.district_code) for m in slots]),
            ("bench_bands", "band text", [(b,) for b in bands]),
            ("bench_products", "product text", [(p,) for p in products]),
        ):
            await conn.execute(f"CREATE TEMP TABLE {table} (i serial PRIMARY KEY, {columns})")
            names = [c.split()[0] for c in columns.split(", ")]
            await conn.copy_records_to_table(table, records=rows, columns=names)
            await conn.execute(f"ANALYZE {table}")
        for first in range(1, citizens + 1, CHUNK):
            last = min(citizens, first + CHUNK - 1)
            await conn.execute(SEED, start, end, first, last)
            progress(f"seeded {last:,} / {citizens:,} citizens")
        await conn.execute(DAILY)
        await conn.execute("ANALYZE citizens")
    seeded = time.perf_counter() - started
    progress("filling coverage_* from citizens (model.sql)")
    started = time.perf_counter()
    schema = await pool.fetchval("SELECT current_schema()")
    await apply_schema(pool, schema, [MODEL_SQL])
    await pool.execute("ANALYZE")
    filled = time.perf_counter() - started
    counts = {
        table: await pool.fetchval(f"SELECT count(*) FROM {table}")
        for table in ("citizens", "coverage_daily", "coverage_weeks", "coverage_before")
    }
    counts["dose1_people"] = await pool.fetchval(
        "SELECT count(*) FROM citizens WHERE dose1_date IS NOT NULL"
    )
    counts["doses"] = await pool.fetchval("SELECT sum(doses) FROM daily_doses")
    return {
        "rows": counts,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "seed_seconds": round(seeded, 1),
        "fill_seconds": round(filled, 1),
    }


SHAPES: tuple[tuple[str, GroupBy, bool], ...] = (
    ("district", "district", False),
    ("municipality", "municipality", False),
    ("municipality_of_district", "municipality", True),
    ("age_band", "age_band", False),
    ("sex", "sex", False),
    ("product", "product", False),
)


def random_query(
    rng: random.Random, group_by: GroupBy, in_district: bool, start: date, end: date
) -> dict[str, Any]:
    """Any dose kind, a date in the history (today a third of the time), filters a third each."""
    span = (end - start).days
    return {
        "group_by": group_by,
        "dose": rng.choice(get_args(DoseKind)),
        "on": end if rng.random() < 1 / 3 else start + timedelta(days=rng.randint(0, span)),
        "filters": CoverageFilters(
            product=rng.choice(PRODUCTS) if rng.random() < 1 / 3 else None,
            age_band=rng.choice([b.label for b in age_bands() if b.low >= 15])
            if rng.random() < 1 / 3
            else None,
            sex=rng.choice(("female", "male")) if rng.random() < 1 / 3 else None,
            district=rng.choice(list(districts())) if in_district else None,
        ),
        "threshold": rng.choice((EXACT_THRESHOLD, SUPPRESS_BELOW)),
    }


async def timed(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[Any]]) -> float:
    """Seconds for `work` in a repeatable-read snapshot (as Follower.snapshot reads)."""
    async with pool.acquire() as conn:
        started = time.perf_counter()
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await work(conn)
        return time.perf_counter() - started


def figures(seconds: list[float]) -> dict[str, Any]:
    seconds = sorted(seconds)
    return {
        "n": len(seconds),
        "p50_ms": round(percentile(seconds, 50) * 1000, 2),
        "p99_ms": round(percentile(seconds, 99) * 1000, 2),
        "max_ms": round(seconds[-1] * 1000, 2),
    }


async def queries(
    pool: asyncpg.Pool, start: date, end: date, model_samples: int, scan_samples: int
) -> dict[str, Any]:
    """p50/p99 per query shape, from the model and from the scan."""
    out: dict[str, Any] = {}
    all_model: list[float] = []
    all_scan: list[float] = []
    for name, group_by, in_district in SHAPES:
        rng = random.Random(name)
        shape: dict[str, Any] = {}
        for label, counter, samples, bucket in (
            ("model", people_with_dose, model_samples, all_model),
            ("scan", people_with_dose_by_scan, scan_samples, all_scan),
        ):
            seconds = []
            for _ in range(samples):
                q = random_query(rng, group_by, in_district, start, end)
                seconds.append(
                    await timed(pool, partial(readmodel.coverage, **q, count_people=counter))
                )
            shape[label] = figures(seconds)
            bucket.extend(seconds)
        shape["speedup_p50"] = round(shape["scan"]["p50_ms"] / shape["model"]["p50_ms"], 1)
        progress(f"{name}: {shape}")
        out[name] = shape
    out["all"] = {"model": figures(all_model), "scan": figures(all_scan)}
    return out


def dashboard_requests(
    counter: PeopleCounter, on: date
) -> list[Callable[[Connection], Awaitable[Any]]]:
    """What the dashboard page asks for at once (dashboard.html, load()), signed in: coverage
    by district, age band, sex (complete, booster, dose 1), product and municipality; daily
    doses, stock, bookings, safety, supply."""

    def cov(group_by: GroupBy, dose: DoseKind) -> Callable[[Connection], Awaitable[Any]]:
        return lambda c: readmodel.coverage(
            c, group_by=group_by, dose=dose, on=on, filters=CoverageFilters(),
            threshold=SUPPRESS_BELOW, count_people=counter,
        )  # fmt: skip

    async def daily(c: Connection) -> Any:
        start, end = await readmodel.default_range(c, None, on)
        return await readmodel.daily_doses(
            c, start=start, end=end, product=None, age_band=None, site_id=None,
            threshold=SUPPRESS_BELOW,
        )  # fmt: skip

    return [
        cov("district", "1"),
        cov("age_band", "1"),
        cov("sex", "complete"),
        cov("sex", "booster"),
        cov("sex", "1"),
        cov("product", "1"),
        cov("municipality", "1"),
        daily,
        lambda c: readmodel.stock(c, on=on, location_id=None, product=None),
        lambda c: readmodel.booking_stats(
            c, start=on - timedelta(days=6), end=on + timedelta(days=7)
        ),
        readmodel.safety,
        lambda c: readmodel.supply_demand(c, on=on),
    ]


async def dashboard(
    pool: asyncpg.Pool, end: date, loads: int, counter: PeopleCounter
) -> dict[str, Any]:
    """Loads of the page, one after another: until the last answer, and each request's p50."""
    seconds = []
    each: list[list[float]] = [[] for _ in dashboard_requests(counter, end)]
    for _ in range(loads):
        started = time.perf_counter()
        took = await asyncio.gather(
            *(timed(pool, work) for work in dashboard_requests(counter, end))
        )
        seconds.append(time.perf_counter() - started)
        for n, t in enumerate(took):
            each[n].append(t)
    return {
        **figures(seconds),
        "requests": len(each),
        "request_p50_ms": [figures(t)["p50_ms"] for t in each],
    }


async def run(dsn: str, citizens: int, model_samples: int, scan_samples: int) -> dict[str, Any]:
    schema = check_schema_name(f"bench_coverage_{uuid.uuid4().hex[:8]}")
    pool = await create_pool(dsn, schema, min_size=1, max_size=8)
    end = today()
    try:
        await apply_schema(pool, schema, [MODEL_SQL])
        progress(f"seeding {citizens:,} citizens into {schema}")
        result: dict[str, Any] = {"citizens": citizens, "seed": await seed(pool, citizens, end)}
        progress(f"seed: {result['seed']}")
        start = date.fromisoformat(result["seed"]["from"])
        result["queries"] = await queries(pool, start, end, model_samples, scan_samples)
        result["dashboard"] = {
            "model": await dashboard(pool, end, 20, people_with_dose),
            "scan": await dashboard(pool, end, 3, people_with_dose_by_scan),
        }
        progress(f"dashboard: {result['dashboard']}")
        return result
    finally:
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="300,000 citizens, fewer samples")
    parser.add_argument("--citizens", type=int, help=f"how many (default {NATIONAL:,})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    citizens = args.citizens or (300_000 if args.quick else NATIONAL)
    model_samples, scan_samples = (40, 5) if args.quick else (150, 15)

    from immunreg.localinfra import up

    endpoints = up()
    started = time.perf_counter()
    figures_ = asyncio.run(run(endpoints["DATABASE_URL"], citizens, model_samples, scan_samples))
    figures_["mode"] = "quick" if args.quick else "full"
    figures_["total_seconds"] = round(time.perf_counter() - started, 1)
    record(SECTION, figures_)
    every = figures_["queries"]["all"]
    dash = figures_["dashboard"]
    print(
        f"coverage ({citizens:,} citizens): model p50 {every['model']['p50_ms']} ms, "
        f"p99 {every['model']['p99_ms']} ms; scan p50 {every['scan']['p50_ms']} ms, "
        f"p99 {every['scan']['p99_ms']} ms; dashboard load p99 {dash['model']['p99_ms']} ms "
        f"(scan {dash['scan']['p99_ms']} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
