"""The supply benchmark: a national allocation run of the pure planner.

Run with `.venv/bin/python -m bench.supply [--quick]` (or `make bench`).

400 sites (one in every municipality, the rest by population) x 5 products x 14 days:
each site offers two or three products at ~250 doses a day in all, closed on Sundays;
60-90 % of its slots are booked, citizens wait per municipality (40 % of them for any
product), some sites hold a few days of stock and some have a shipment on its way, a
tenth are on replenishment alert. Warehouses (the national one and each district's)
hold lots of every product with expiries from a few days to months, a few in a storage
not every site can hold; the national stock is about 90 % of the booked need, so the
plan has to choose. Then runs `services.supply.allocation.plan` once and records in
bench/results.json under "supply_allocation" the wall time, the proposed lines and
vials, and the share of booked demand covered (doses at the site, on the way, or
shipped by the plan). No database, no Kafka: the planner is pure. --quick plans 7 days.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from bench.common import progress
from bench.results import record
from immunreg.reference.geography import districts, municipalities
from immunreg.reference.vaccines import vaccine_catalog
from services.supply.allocation import (
    AllocationInput,
    SiteSupply,
    WarehouseLot,
    district_warehouse,
    plan,
)

SECTION = "supply_allocation"
SEED = 2021
SITES = 400
DAYS = 14
START = date(2021, 3, 1)  # a Monday
STOCK_SHARE = 0.9  # national stock over booked need


def make_input(rng: random.Random, days: int) -> AllocationInput:
    """A national situation (see the module doc)."""
    catalog = vaccine_catalog()
    products = catalog.codes()
    munis = sorted(municipalities().values(), key=lambda m: m.code)
    placed = [m for m in munis]
    placed += rng.choices(munis, weights=[m.population for m in munis], k=SITES - len(munis))
    sites: list[SiteSupply] = []
    booked: dict[tuple[str, date, str], int] = {}
    free: dict[tuple[str, date, str], int] = {}
    on_hand: dict[tuple[str, str], int] = {}
    in_transit: dict[tuple[str, str], int] = {}
    need: dict[str, int] = defaultdict(int)
    for i, muni in enumerate(placed, start=1):
        site_id = f"SITE-{i:04d}"
        offered = rng.sample(products, k=rng.choice([2, 3]))
        storages = {"refrigerated", *(catalog[p].storage for p in offered)}
        sites.append(SiteSupply(site_id, muni.code, muni.district_code, frozenset(storages)))
        per_day = rng.randint(150, 350) // len(offered)
        for product in offered:
            for d in range(days):
                day = START + timedelta(days=d)
                if day.weekday() == 6:
                    continue
                taken = int(per_day * rng.uniform(0.6, 0.9))
                booked[(site_id, day, product)] = taken
                free[(site_id, day, product)] = per_day - taken
                need[product] += taken
            if rng.random() < 0.5:
                on_hand[(site_id, product)] = per_day * rng.randint(0, 3)
            if rng.random() < 0.2:
                in_transit[(site_id, product)] = per_day * 2
    waiting = {
        (m.code, rng.choice([*products, "any", "any", "any"])): rng.randint(0, 400) for m in munis
    }
    lots: list[WarehouseLot] = []
    warehouses = ["WH-NATIONAL", *(district_warehouse(code) for code in sorted(districts()))]
    for product in products:
        per_vial = catalog[product].doses_per_vial
        vials_left = int(need[product] * STOCK_SHARE / per_vial)
        n = 0
        while vials_left > 0:
            vials = min(vials_left, rng.randint(200, 3000))
            vials_left -= vials
            n += 1
            odd = rng.random() < 0.05  # thawed to a fridge, or kept colder than usual
            storage = (
                rng.choice(["refrigerated", "ultra_cold"]) if odd else catalog[product].storage
            )
            lots.append(
                WarehouseLot(
                    location_id=rng.choice(warehouses),
                    lot_number=f"{product.replace('/', '')}-{n:04d}",
                    product_code=product,
                    expiry_date=START + timedelta(days=rng.choice([3, 6, 10, 30, 90, 180])),
                    doses_per_vial=per_vial,
                    storage=storage,
                    vials=vials,
                )
            )
    alerts = frozenset(
        (s.site_id, p) for s in sites for p in products if rng.random() < 0.1 / len(products)
    )
    return AllocationInput(
        start=START,
        days=days,
        products={p: catalog[p].doses_per_vial for p in products},
        sites=sites,
        booked=booked,
        free_slots=free,
        waiting=waiting,
        on_hand=on_hand,
        in_transit=in_transit,
        lots=lots,
        alerts=alerts,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.supply", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="7 days instead of 14")
    args = parser.parse_args(argv)
    days = 7 if args.quick else DAYS
    rng = random.Random(SEED)
    progress(f"generating {SITES} sites x {len(vaccine_catalog().codes())} products x {days} days")
    data = make_input(rng, days)
    started = time.perf_counter()
    allocation = plan(data)
    seconds = time.perf_counter() - started
    _check(data, allocation)
    booked = sum(b.booked for b in allocation.balances)
    figures: dict[str, Any] = {
        "sites": len(data.sites),
        "products": len(data.products),
        "days": days,
        "lots": len(data.lots),
        "booked_doses": booked,
        "waiting_citizens": sum(data.waiting.values()),
        "lines": len(allocation.lines),
        "vials_proposed": sum(line.vials for line in allocation.lines),
        "booked_share_covered": round(allocation.booked_share_covered(), 4),
        "waiting_covered": sum(b.waiting_covered for b in allocation.balances),
        "seconds": round(seconds, 2),
        "quick": args.quick,
    }
    print(
        f"planned in {seconds:.2f} s: {figures['lines']:,} lines, "
        f"{figures['vials_proposed']:,} vials; booked demand covered "
        f"{figures['booked_share_covered']:.1%} of {booked:,} doses",
        flush=True,
    )
    record(SECTION, figures)
    return 0


def _check(data: AllocationInput, allocation: Any) -> None:
    """No lot over-allocated, none shipped past its expiry."""
    held = {(lot.location_id, lot.lot_number): lot for lot in data.lots}
    shipped: dict[tuple[str, str], int] = defaultdict(int)
    for line in allocation.lines:
        shipped[(line.from_location, line.lot_number)] += line.vials
        assert line.expiry_date >= line.why.last_use, "a lot expires before it is used"
    assert all(v <= held[k].vials for k, v in shipped.items()), "a lot is over-allocated"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
