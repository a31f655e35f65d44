"""The booking benchmark: the auto-scheduler's pure planner at national scale.

Run with `.venv/bin/python -m bench.booking [--quick]` (or `make bench`).

Generates 1,000,000 synthetic waiting citizens (100,000 with --quick) - ages from the
2022 census age bands, homes weighted by municipality population, the Serbian mix of
priority groups, declared conditions (some contraindicating), vaccine preferences
(40 % "any"), a preferred municipality for some, and a few second doses and boosters
falling due - and 400 sites x 14 days: every municipality has a site, the rest go by
population; each site offers two or three products, ~250 doses a day in all (Serbia's
~100k a day), closed on Sundays, with stock for about 60 % of its capacity (some sites
have none of a product). Then runs `services.booking.scheduler.plan` once and records
wall time and memory in bench/results.json under "booking_scheduler": the process's peak
RSS (getrusage maxrss) before and after planning - the difference is what planning
added on top of its input - and, with --tracemalloc, the traced peak of a second,
traced run (tracemalloc slows the planner several times, so it is not timed). No
database, no Kafka: the planner is pure.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.results import record
from immunreg.reference.geography import age_bands, municipalities
from immunreg.reference.health import conditions, ruled_out_by
from immunreg.reference.vaccines import vaccine_catalog
from services.booking.eligibility import ANY, NextDose
from services.booking.ranking import registration_order
from services.booking.scheduler import Citizen, SiteInfo, plan

SECTION = "booking_scheduler"
SEED = 2021
SITES = 400
DAYS = 14
START = date(2021, 3, 1)  # a Monday
GROUPS = [
    ("general", 70),
    ("chronic_patient", 12),
    ("health_worker", 8),
    ("critical_worker", 6),
    ("care_home", 4),
]
# Roughly the mix of products Serbia used in 2021.
POPULARITY = {
    "BBIBP-CorV": 50,
    "EU/1/20/1528": 30,
    "Sputnik-V": 10,
    "EU/1/21/1529": 7,
    "EU/1/20/1507": 3,
}


def _weighted(rng: random.Random, pairs: list[tuple[Any, int]], k: int) -> list[Any]:
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs], k=k)


def make_sites(
    rng: random.Random, start: date = START
) -> tuple[list[SiteInfo], dict[tuple[str, date, str], int], dict[tuple[str, str], int]]:
    """400 sites, their free capacity per day and product for 14 days from `start`, and
    their stock."""
    munis = sorted(municipalities().values(), key=lambda m: m.code)
    placed = [m.code for m in munis]  # one site in every municipality
    placed += _weighted(rng, [(m.code, m.population) for m in munis], SITES - len(placed))
    products = list(POPULARITY)
    sites: list[SiteInfo] = []
    capacity: dict[tuple[str, date, str], int] = {}
    stock: dict[tuple[str, str], int] = {}
    for i, code in enumerate(placed, start=1):
        site_id = f"SITE-{i:04d}"
        sites.append(SiteInfo(site_id, code))
        offered = rng.sample(products, k=rng.choice([2, 3]))
        per_day = rng.randint(150, 350)
        shares = [rng.random() + 0.5 for _ in offered]
        for product, share in zip(offered, shares, strict=True):
            daily = max(int(per_day * share / sum(shares)), 10)
            for d in range(DAYS):
                day = start + timedelta(days=d)
                if day.weekday() != 6:  # closed on Sundays
                    capacity[(site_id, day, product)] = daily
            if rng.random() < 0.9:  # some sites have none of a product yet
                stock[(site_id, product)] = int(daily * 12 * rng.uniform(0.4, 0.8))
    return sites, capacity, stock


def make_citizens(rng: random.Random, count: int, start: date = START) -> list[Citizen]:
    """`count` waiting citizens with a realistic mix (see the module doc), as of `start`."""
    munis = sorted(municipalities().values(), key=lambda m: m.code)
    by_district: dict[str, list[str]] = {}
    for m in munis:
        by_district.setdefault(m.district_code, []).append(m.code)
    homes = _weighted(rng, [(m.code, m.population) for m in munis], count)
    district = {m.code: m.district_code for m in munis}
    bands = [b for b in age_bands() if b.low >= 10]
    band_picks = _weighted(rng, [(b, b.population) for b in bands], count)
    groups = _weighted(rng, GROUPS, count)
    catalog = vaccine_catalog()
    all_conditions = sorted(conditions())
    contraindicating = [c for c in all_conditions if conditions()[c].contraindicates]
    chronic = [c for c in all_conditions if conditions()[c].priority]
    single: list[tuple[tuple[str, ...], int]] = [((code,), w) for code, w in POPULARITY.items()]
    preference_options: list[tuple[tuple[str, ...], int]] = [
        ((ANY,), 40 * sum(POPULARITY.values()) // 60),
        *single,
    ]
    preference_options.append((("EU/1/20/1528", "EU/1/20/1507"), 5))
    preference_options.append((("BBIBP-CorV", ANY), 5))
    prefs = _weighted(rng, preference_options, count)
    registered_from = registration_order(datetime(2021, 1, 1, tzinfo=UTC))
    window_us = 60 * 86_400 * 1_000_000
    condition_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
    ruled_out_cache: dict[tuple[str, ...], tuple[str, ...]] = {}
    birth_cache: dict[int, date] = {}
    citizens: list[Citizen] = []
    for i in range(count):
        home = homes[i]
        band = band_picks[i]
        age = rng.randint(band.low, band.high if band.high is not None else 95)
        born_ord = start.toordinal() - age * 365 - rng.randint(0, 364)
        born = birth_cache.get(born_ord) or birth_cache.setdefault(
            born_ord, date.fromordinal(born_ord)
        )
        roll = rng.random()
        declared: tuple[str, ...] = ()
        if roll < 0.04:
            declared = (rng.choice(contraindicating),)
        elif roll < 0.22:
            declared = (rng.choice(chronic),)
        elif roll < 0.25:
            declared = (rng.choice(chronic), rng.choice(contraindicating))
        declared = condition_cache.setdefault(declared, declared)
        ruled_out = ruled_out_cache.setdefault(declared, tuple(ruled_out_by(declared)))
        group = groups[i]
        if group == "general" and declared and conditions()[declared[0]].priority:
            group = "chronic_patient"
        preferred = None
        if rng.random() < 0.3:
            preferred = home if rng.random() < 0.5 else rng.choice(by_district[district[home]])
        due = NextDose()
        kind = rng.random()
        if kind < 0.08:  # a second dose falling due
            product = rng.choice(list(POPULARITY))
            rule = catalog[product]
            last = start - timedelta(
                days=rng.randint(rule.min_interval_days - 10, rule.max_interval_days)
            )
            due = NextDose(
                dose_number=2,
                product_code=product,
                earliest=last + timedelta(days=rule.min_interval_days),
                latest=last + timedelta(days=rule.max_interval_days),
            )
        elif kind < 0.10:  # a booster
            due = NextDose(
                dose_number=3, booster=True, earliest=start + timedelta(days=rng.randint(-30, 20))
            )
        citizens.append(
            Citizen(
                citizen_id=f"c{i:08d}",
                birth_date=born,
                municipality_code=home,
                priority_group=group,
                order=registered_from + rng.randrange(window_us),
                ruled_out=ruled_out,
                preferences=prefs[i],
                preferred_municipality_code=preferred,
                due=due,
            )
        )
    return citizens


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.booking", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100,000 citizens")
    parser.add_argument("--citizens", type=int, default=None)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also measure a traced run's peak"
    )
    args = parser.parse_args(argv)
    count = args.citizens or (100_000 if args.quick else 1_000_000)
    rng = random.Random(SEED)
    started = time.perf_counter()
    sites, capacity, stock = make_sites(rng)
    citizens = make_citizens(rng, count)
    generated = time.perf_counter() - started
    slots = sum(capacity.values())
    doses = sum(stock.values())
    print(
        f"generated {count:,} citizens, {len(sites)} sites x {DAYS} days "
        f"({slots:,} slots, {doses:,} doses in stock) in {generated:.1f} s",
        flush=True,
    )
    gc.collect()
    rss_before_mb = _maxrss_mb()
    started = time.perf_counter()
    result = plan(citizens, sites, capacity, stock, start=START, days=DAYS)
    seconds = time.perf_counter() - started
    maxrss_mb = _maxrss_mb()
    traced_peak_mb = None
    if args.tracemalloc:
        gc.collect()
        tracemalloc.start()
        plan(citizens, sites, capacity, stock, start=START, days=DAYS)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced_peak_mb = round(peak / 2**20, 1)
    booked = len(result.bookings)
    waiting = result.waiting_by_reason()
    _check(result, capacity, stock)
    figures = {
        "citizens": count,
        "sites": len(sites),
        "days": DAYS,
        "slots": slots,
        "stock_doses": doses,
        "booked": booked,
        "waiting": waiting,
        "booked_by_tier": dict(sorted(Counter(p.tier for p in result.bookings).items())),
        "seconds": round(seconds, 2),
        "citizens_per_second": round(count / seconds),
        "peak_mb": round(maxrss_mb, 1),
        "input_rss_mb": round(rss_before_mb, 1),
        "planning_added_mb": round(maxrss_mb - rss_before_mb, 1),
        "tracemalloc_peak_mb": traced_peak_mb,
        "generate_seconds": round(generated, 2),
        "quick": args.quick,
    }
    print(
        f"planned in {seconds:.1f} s ({count / seconds:,.0f} citizens/s): booked {booked:,}, "
        f"waiting {waiting}; peak RSS {figures['peak_mb']} MB "
        f"({figures['planning_added_mb']} MB added by planning)",
        flush=True,
    )
    record(SECTION, figures)
    return 0


def _check(
    result: Any, capacity: dict[tuple[str, date, str], int], stock: dict[tuple[str, str], int]
) -> None:
    """The plan never exceeds a slot or a stock, and books each citizen once."""
    per_slot = Counter((p.site_id, p.day, p.product_code) for p in result.bookings)
    per_stock = Counter((p.site_id, p.product_code) for p in result.bookings)
    assert all(n <= capacity.get(k, 0) for k, n in per_slot.items()), "a slot is overbooked"
    assert all(n <= stock.get(k, 0) for k, n in per_stock.items()), "stock is overbooked"
    assert len({p.citizen_id for p in result.bookings}) == len(result.bookings)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
