"""The allocation planner (services/supply/allocation.py): properties over generated
national situations (hypothesis), and the rules each spelled out by an example."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.supply.allocation import (
    AllocationInput,
    Shortfall,
    SiteSupply,
    WarehouseLot,
    may_hold,
    plan,
    usable_on,
)

START = date(2026, 3, 2)
PRODUCTS = {"P6": 6, "P10": 10}
# Two real municipalities in two districts (RS-00 Belgrade, RS-05 Zapadnobački).
PLACES = [("70092", "RS-00"), ("80233", "RS-05")]
WAREHOUSES = ["WH-NATIONAL", "WH-RS-00", "WH-RS-05"]
STORAGES = ["refrigerated", "frozen", "ultra_cold"]


@st.composite
def situations(draw: st.DrawFn) -> AllocationInput:
    days = draw(st.integers(1, 4))
    site_count = draw(st.integers(1, 4))
    sites = []
    for n in range(site_count):
        municipality, district = draw(st.sampled_from(PLACES))
        extra = draw(st.sets(st.sampled_from(STORAGES[1:])))
        sites.append(
            SiteSupply(f"SITE-{n:02d}", municipality, district, frozenset({"refrigerated", *extra}))
        )
    keys = [
        (s.site_id, START + timedelta(days=d), p)
        for s in sites
        for d in range(days)
        for p in PRODUCTS
    ]
    booked = {k: draw(st.integers(0, 14)) for k in keys}
    free = {k: draw(st.integers(0, 10)) for k in keys}
    waiting = {(m, p): draw(st.integers(0, 12)) for m, _ in PLACES for p in [*PRODUCTS, "any"]}
    on_hand = {(s.site_id, p): draw(st.integers(0, 9)) for s in sites for p in PRODUCTS}
    lots = [
        WarehouseLot(
            location_id=draw(st.sampled_from(WAREHOUSES)),
            lot_number=f"L{n}",
            product_code=(product := draw(st.sampled_from(sorted(PRODUCTS)))),
            expiry_date=START + timedelta(days=draw(st.integers(-1, 5))),
            doses_per_vial=PRODUCTS[product],
            storage=draw(st.sampled_from(STORAGES)),
            vials=draw(st.integers(0, 6)),
        )
        for n in range(draw(st.integers(0, 6)))
    ]
    alerts = frozenset((s.site_id, p) for s in sites for p in PRODUCTS if draw(st.booleans()))
    return AllocationInput(
        start=START,
        days=days,
        products=PRODUCTS,
        sites=sites,
        booked=booked,
        free_slots=free,
        waiting=waiting,
        on_hand=on_hand,
        lots=lots,
        alerts=alerts,
    )


def _used(data: AllocationInput) -> dict[tuple[str, str], int]:
    used: dict[tuple[str, str], int] = defaultdict(int)
    for fill in plan(data).fills:
        used[(fill.location_id, fill.lot_number)] += fill.vials
    return used


def _eligible(data: AllocationInput, short: Shortfall, lot: WarehouseLot) -> bool:
    site = next(s for s in data.sites if s.site_id == short.site_id)
    return (
        lot.product_code == short.product_code and usable_on(lot, short.day) and may_hold(site, lot)
    )


@settings(max_examples=80, deadline=None)
@given(situations())
def test_never_allocates_more_than_a_lot_holds(data: AllocationInput) -> None:
    allocation = plan(data)
    held = {(lot.location_id, lot.lot_number): lot.vials for lot in data.lots}
    shipped: dict[tuple[str, str], int] = defaultdict(int)
    for line in allocation.lines:
        shipped[(line.from_location, line.lot_number)] += line.vials
    assert all(vials <= held[key] for key, vials in shipped.items())
    assert shipped == {k: v for k, v in _used(data).items() if v}


@settings(max_examples=80, deadline=None)
@given(situations())
def test_never_ships_a_lot_that_expires_before_it_is_used_or_that_the_site_cannot_hold(
    data: AllocationInput,
) -> None:
    lots = {(lot.location_id, lot.lot_number): lot for lot in data.lots}
    sites = {s.site_id: s for s in data.sites}
    allocation = plan(data)
    for fill in allocation.fills:
        lot = lots[(fill.location_id, fill.lot_number)]
        assert lot.expiry_date >= fill.day >= data.start
        assert may_hold(sites[fill.site_id], lot)
    for line in allocation.lines:
        assert line.expiry_date >= line.why.last_use >= line.why.first_use


@settings(max_examples=80, deadline=None)
@given(situations())
def test_whole_vials_only(data: AllocationInput) -> None:
    for line in plan(data).lines:
        assert line.vials >= 1
        assert line.doses == line.vials * PRODUCTS[line.product_code]
        assert line.why.for_booked + line.why.for_waiting == line.doses


@settings(max_examples=80, deadline=None)
@given(situations())
def test_booked_appointments_are_filled_before_waiting_demand(data: AllocationInput) -> None:
    """A booked need left unmet means no lot that could have served it has a vial left."""
    allocation = plan(data)
    used = _used(data)
    for short in allocation.unmet:
        if short.kind != "booked":
            continue
        for lot in data.lots:
            left = lot.vials - used.get((lot.location_id, lot.lot_number), 0)
            assert not (left > 0 and _eligible(data, short, lot)), (short, lot)


@settings(max_examples=80, deadline=None)
@given(situations())
def test_sites_are_served_in_the_documented_order(data: AllocationInput) -> None:
    """(day, on alert first, site id): nothing later in that order took a vial that an
    unmet booked need earlier in it could have used; waiting needs come after every
    booked one."""
    allocation = plan(data)

    def rank(kind: str, day: date, site_id: str, product: str) -> tuple[object, ...]:
        alert = (site_id, product) not in data.alerts
        return (kind != "booked", day, alert, site_id, product)

    lots = {(lot.location_id, lot.lot_number): lot for lot in data.lots}
    for short in allocation.unmet:
        if short.kind != "booked":
            continue
        mine = rank(short.kind, short.day, short.site_id, short.product_code)
        for fill in allocation.fills:
            later = rank(fill.kind, fill.day, fill.site_id, fill.product_code) > mine
            lot = lots[(fill.location_id, fill.lot_number)]
            assert not (later and _eligible(data, short, lot)), (short, fill)


@settings(max_examples=60, deadline=None)
@given(situations(), st.randoms(use_true_random=False))
def test_same_input_same_output_whatever_its_order(
    data: AllocationInput, shuffler: random.Random
) -> None:
    def shuffled(items: dict[object, int]) -> dict[object, int]:
        pairs = list(items.items())
        shuffler.shuffle(pairs)
        return dict(pairs)

    lots = list(data.lots)
    sites = list(data.sites)
    shuffler.shuffle(lots)
    shuffler.shuffle(sites)
    again = replace(
        data,
        lots=lots,
        sites=sites,
        booked=shuffled(dict(data.booked)),  # type: ignore[arg-type]
        waiting=shuffled(dict(data.waiting)),  # type: ignore[arg-type]
        free_slots=shuffled(dict(data.free_slots)),  # type: ignore[arg-type]
    )
    first, second = plan(data), plan(again)
    assert first.lines == second.lines
    assert first.balances == second.balances
    assert first.unmet == second.unmet


# --- the rules, one example each ------------------------------------------------------

SITE_A = SiteSupply("SITE-A", "70092", "RS-00", frozenset({"refrigerated"}))
SITE_B = SiteSupply("SITE-B", "70092", "RS-00", frozenset({"refrigerated"}))


def lot(
    name: str,
    vials: int,
    *,
    expiry: date = START + timedelta(days=30),
    at: str = "WH-NATIONAL",
    storage: str = "refrigerated",
) -> WarehouseLot:
    return WarehouseLot(at, name, "P6", expiry, 6, storage, vials)


def situation(**changes: object) -> AllocationInput:
    base = AllocationInput(start=START, days=3, products={"P6": 6}, sites=[SITE_A, SITE_B])
    return replace(base, **changes)  # type: ignore[arg-type]


def test_first_expiry_first_out_and_a_lot_expiring_before_use_stays() -> None:
    day2 = START + timedelta(days=1)
    data = situation(
        booked={("SITE-A", day2, "P6"): 6},
        lots=[lot("LATE", 5), lot("SOON", 5, expiry=day2), lot("GONE", 5, expiry=START)],
    )
    assert [(x.lot_number, x.vials) for x in plan(data).lines] == [("SOON", 1)]


def test_on_equal_expiry_the_district_warehouse_ships_first() -> None:
    data = situation(
        booked={("SITE-A", START, "P6"): 6},
        lots=[lot("FAR", 5), lot("NEAR", 5, at="WH-RS-00")],
    )
    assert [x.from_location for x in plan(data).lines] == ["WH-RS-00"]


def test_an_open_vial_is_used_up_or_lost_the_same_day() -> None:
    # 7 booked on each of two days: 2 vials a day, not 3 for the 14 doses.
    data = situation(
        booked={("SITE-A", START, "P6"): 7, ("SITE-A", START + timedelta(days=1), "P6"): 7},
        lots=[lot("L", 10)],
    )
    assert [x.vials for x in plan(data).lines] == [4]


def test_stock_at_the_site_and_on_its_way_counts_first() -> None:
    data = situation(
        booked={("SITE-A", START, "P6"): 12},
        on_hand={("SITE-A", "P6"): 6},
        in_transit={("SITE-A", "P6"): 6},
        lots=[lot("L", 10)],
    )
    assert plan(data).lines == []


def test_when_stock_is_short_the_site_on_alert_then_the_lower_site_id_goes_first() -> None:
    both = {("SITE-A", START, "P6"): 6, ("SITE-B", START, "P6"): 6}
    scarce = [lot("L", 1)]
    assert [x.to_location for x in plan(situation(booked=both, lots=scarce)).lines] == ["SITE-A"]
    on_alert = situation(booked=both, lots=scarce, alerts=frozenset({("SITE-B", "P6")}))
    assert [x.to_location for x in plan(on_alert).lines] == ["SITE-B"]


def test_waiting_citizens_get_what_booked_appointments_leave() -> None:
    data = situation(
        booked={("SITE-A", START + timedelta(days=2), "P6"): 6},
        free_slots={("SITE-A", START, "P6"): 6},
        waiting={("70092", "P6"): 6},
        lots=[lot("L", 1)],
    )
    allocation = plan(data)
    assert [(f.kind, f.day) for f in allocation.fills] == [("booked", START + timedelta(days=2))]
    assert [(s.kind, s.doses) for s in allocation.unmet] == [("waiting", 6)]


def test_a_line_explains_itself() -> None:
    data = situation(
        booked={("SITE-A", START, "P6"): 5},
        free_slots={("SITE-A", START + timedelta(days=1), "P6"): 4},
        waiting={("70092", "P6"): 3},
        on_hand={("SITE-A", "P6"): 1},
        lots=[lot("L", 5)],
    )
    (line,) = plan(data).lines
    why = line.why
    assert (why.booked, why.waiting, why.on_hand, why.in_transit) == (5, 3, 1, 0)
    assert (line.vials, why.for_booked, why.for_waiting, why.leaves_behind) == (2, 6, 6, 3)
    assert (why.first_use, why.last_use) == (START, START + timedelta(days=1))


def test_a_cold_chain_the_site_lacks_gets_nothing() -> None:
    data = situation(
        booked={("SITE-A", START, "P6"): 6}, lots=[lot("COLD", 5, storage="ultra_cold")]
    )
    allocation = plan(data)
    assert allocation.lines == []
    assert allocation.booked_share_covered() == 0.0
