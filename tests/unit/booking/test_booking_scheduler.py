"""The planner: never over capacity or stock, each citizen once, fair, closest first."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from immunreg.reference.health import ruled_out_by
from immunreg.reference.vaccines import VaccineCatalog, vaccine_catalog
from services.booking.eligibility import NO_CAPACITY, NO_STOCK, NextDose, eligibility
from services.booking.ranking import (
    ANYWHERE,
    DISTRICT,
    HOME_MUNICIPALITY,
    PREFERRED_MUNICIPALITY,
    SAME_SITE,
    priority_rank,
)
from services.booking.scheduler import Citizen, Plan, SiteInfo, plan

START = date(2021, 3, 1)
DAYS = 5
END = START + timedelta(days=DAYS - 1)
PFIZER = "EU/1/20/1528"
AZ = "EU/1/21/1529"
SINOPHARM = "BBIBP-CorV"
# Two municipalities of Belgrade (RS-00), one of Severnobački okrug (RS-01).
BARAJEVO, GROCKA = "70092", "70122"
SUBOTICA = "80438"
ADULT = date(1980, 5, 5)


def citizen(cid: str, order: int, **changes: object) -> Citizen:
    values: dict[str, object] = {
        "citizen_id": cid,
        "birth_date": ADULT,
        "municipality_code": BARAJEVO,
        "priority_group": "general",
        "order": order,
    }
    values.update(changes)
    return Citizen(**values)  # type: ignore[arg-type]


def run(
    citizens: list[Citizen],
    sites: list[SiteInfo],
    capacity: dict[tuple[str, date, str], int],
    stock: dict[tuple[str, str], int] | None = None,
    **kwargs: object,
) -> Plan:
    if stock is None:
        stock = {(s, p): 10_000 for (s, _, p) in capacity}
    return plan(citizens, sites, capacity, stock, start=START, days=DAYS, **kwargs)  # type: ignore[arg-type]


def test_the_last_slot_goes_to_the_higher_priority_citizen() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    result = run(
        [citizen("late-general", 1), citizen("nurse", 2, priority_group="health_worker")],
        sites,
        {("S1", START, PFIZER): 1},
    )
    assert [b.citizen_id for b in result.bookings] == ["nurse"]
    assert [(w.citizen_id, w.reason) for w in result.waiting] == [("late-general", NO_CAPACITY)]


def test_same_priority_goes_by_registration_order() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    result = run([citizen("second", 20), citizen("first", 10)], sites, {("S1", START, PFIZER): 1})
    assert [b.citizen_id for b in result.bookings] == ["first"]


def test_preferred_municipality_before_home_before_district_before_anywhere() -> None:
    sites = [
        SiteInfo("FAR", SUBOTICA),
        SiteInfo("DISTRICT", "70165"),  # Lazarevac, also RS-00
        SiteInfo("HOME", BARAJEVO),
        SiteInfo("PREFERRED", GROCKA),
    ]
    capacity = {(s.site_id, START, PFIZER): 1 for s in sites}
    people = [citizen(f"c{i}", i, preferred_municipality_code=GROCKA) for i in range(5)]
    result = run(people, sites, capacity)
    assert [(b.citizen_id, b.site_id, b.tier) for b in result.bookings] == [
        ("c0", "PREFERRED", PREFERRED_MUNICIPALITY),
        ("c1", "HOME", HOME_MUNICIPALITY),
        ("c2", "DISTRICT", DISTRICT),
        ("c3", "FAR", ANYWHERE),
    ]
    assert [w.citizen_id for w in result.waiting] == ["c4"]


def test_without_anywhere_a_far_site_is_not_used() -> None:
    sites = [SiteInfo("FAR", SUBOTICA)]
    result = run([citizen("c", 1)], sites, {("FAR", START, PFIZER): 5}, allow_anywhere=False)
    assert result.bookings == []
    assert result.waiting[0].reason == NO_CAPACITY


def test_within_a_tier_the_preferred_product_wins_over_an_earlier_day() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    capacity = {("S1", START, AZ): 5, ("S1", START + timedelta(days=3), PFIZER): 5}
    result = run([citizen("c", 1, preferences=(PFIZER, AZ))], sites, capacity)
    booked = result.bookings[0]
    assert (booked.product_code, booked.day, booked.preference_rank) == (
        PFIZER,
        START + timedelta(days=3),
        0,
    )


def test_any_product_takes_the_earliest_day() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    capacity = {
        ("S1", START + timedelta(days=2), PFIZER): 5,
        ("S1", START + timedelta(days=1), AZ): 5,
    }
    result = run([citizen("c", 1, preferences=("any",))], sites, capacity)
    assert (result.bookings[0].product_code, result.bookings[0].day) == (
        AZ,
        START + timedelta(days=1),
    )


def test_a_second_dose_goes_to_the_same_site_inside_its_window() -> None:
    sites = [SiteInfo("HOME", BARAJEVO), SiteInfo("FIRST", SUBOTICA)]
    capacity = {
        (s, START + timedelta(days=d), PFIZER): 5 for s in ("HOME", "FIRST") for d in range(DAYS)
    }
    due = NextDose(
        dose_number=2,
        product_code=PFIZER,
        earliest=START + timedelta(days=2),
        latest=START + timedelta(days=30),
        anchor_site="FIRST",
    )
    result = run([citizen("c", 1, due=due, preferences=(AZ,))], sites, capacity)
    booked = result.bookings[0]
    assert (booked.site_id, booked.day, booked.product_code, booked.dose_number, booked.tier) == (
        "FIRST",
        START + timedelta(days=2),
        PFIZER,
        2,
        SAME_SITE,
    )


def test_capacity_without_stock_is_no_stock_and_books_nothing() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    result = run([citizen("c", 1)], sites, {("S1", START, PFIZER): 5}, stock={})
    assert result.bookings == []
    assert result.waiting[0].reason == NO_STOCK


def test_stock_limits_bookings_across_the_horizon() -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    capacity = {("S1", START + timedelta(days=d), PFIZER): 2 for d in range(DAYS)}
    result = run(
        [citizen(f"c{i}", i) for i in range(6)], sites, capacity, stock={("S1", PFIZER): 3}
    )
    assert len(result.bookings) == 3
    assert Counter(w.reason for w in result.waiting) == {NO_STOCK: 3}


# --- properties over random small inputs --------------------------------------------------

MUNIS = [BARAJEVO, GROCKA, SUBOTICA]
PRODUCTS = [PFIZER, AZ, SINOPHARM]
GROUPS = ["health_worker", "chronic_patient", "general"]

sites_st = st.lists(st.sampled_from(MUNIS), min_size=1, max_size=4).map(
    lambda munis: [SiteInfo(f"S{i}", m) for i, m in enumerate(munis)]
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Citizen], list[SiteInfo], dict, dict, bool]:  # type: ignore[type-arg]
    sites = draw(sites_st)
    capacity = {}
    for s in sites:
        for d in range(DAYS):
            for p in PRODUCTS:
                n = draw(st.integers(0, 2))
                if n:
                    capacity[(s.site_id, START + timedelta(days=d), p)] = n
    stock = {
        (s.site_id, p): draw(st.integers(0, 6))
        for s in sites
        for p in PRODUCTS
        if draw(st.booleans())
    }
    count = draw(st.integers(0, 25))
    orders = draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count, unique=True))
    people = []
    for i, order in enumerate(orders):
        due = NextDose()
        if draw(st.integers(0, 4)) == 0:
            first = START + timedelta(days=draw(st.integers(-3, DAYS + 1)))
            due = NextDose(
                dose_number=2,
                product_code=draw(st.sampled_from(PRODUCTS)),
                earliest=first,
                latest=first + timedelta(days=draw(st.integers(0, 6))),
                anchor_site=draw(st.sampled_from([None, *[s.site_id for s in sites]])),
            )
        people.append(
            citizen(
                f"c{i}",
                order,
                birth_date=START - timedelta(days=draw(st.integers(10 * 365, 80 * 365))),
                municipality_code=draw(st.sampled_from(MUNIS)),
                preferred_municipality_code=draw(st.sampled_from([None, *MUNIS])),
                priority_group=draw(st.sampled_from(GROUPS)),
                preferences=tuple(draw(st.lists(st.sampled_from([*PRODUCTS, "any"]), max_size=2))),
                ruled_out=tuple(
                    ruled_out_by(
                        draw(
                            st.lists(
                                st.sampled_from(["severe_allergy_peg", "tts_history", "diabetes"]),
                                max_size=1,
                            )
                        )
                    )
                ),
                due=due,
            )
        )
    return people, sites, capacity, stock, draw(st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_plan_properties(scenario: tuple[list[Citizen], list[SiteInfo], dict, dict, bool]) -> None:  # type: ignore[type-arg]
    people, sites, capacity, stock, anywhere = scenario
    result = plan(people, sites, capacity, stock, start=START, days=DAYS, allow_anywhere=anywhere)

    # Never over a slot's capacity or a site's stock.
    per_slot = Counter((b.site_id, b.day, b.product_code) for b in result.bookings)
    assert all(n <= capacity.get(k, 0) for k, n in per_slot.items())
    per_stock = Counter((b.site_id, b.product_code) for b in result.bookings)
    assert all(n <= stock.get(k, 0) for k, n in per_stock.items())

    # Each citizen exactly once: booked or waiting, never both, never twice.
    booked_ids = [b.citizen_id for b in result.bookings]
    waiting_ids = [w.citizen_id for w in result.waiting]
    assert len(set(booked_ids)) == len(booked_ids)
    assert sorted(booked_ids + waiting_ids) == sorted(c.citizen_id for c in people)

    # Every booking is one the citizen is eligible for, on that day.
    by_id = {c.citizen_id: c for c in people}
    windows = {}
    for c in people:
        verdict = eligibility(
            birth_date=c.birth_date,
            ruled_out=c.ruled_out,
            preferences=c.preferences,
            due=c.due,
            start=START,
            end=END,
        )
        windows[c.citizen_id] = {w.product_code: (w.first, w.last) for w in verdict.windows}
    for b in result.bookings:
        first, last = windows[b.citizen_id][b.product_code]
        assert first <= b.day <= last
        assert b.dose_number == by_id[b.citizen_id].due.dose_number

    # Fairness: a citizen left waiting for capacity or stock never sees a lower-priority
    # (or later-registered) citizen get a slot they could have taken.
    if not anywhere:
        return  # reach then differs between citizens; covered by the example tests

    def key(c: Citizen) -> tuple[int, int]:
        return priority_rank(c.priority_group), c.order

    reason = {w.citizen_id: w.reason for w in result.waiting}
    for high in people:
        if reason.get(high.citizen_id) not in (NO_CAPACITY, NO_STOCK):
            continue
        for b in result.bookings:
            low = by_id[b.citizen_id]
            if key(low) <= key(high):
                continue
            window = windows[high.citizen_id].get(b.product_code)
            assert window is None or not (window[0] <= b.day <= window[1]), (
                f"{high.citizen_id} waits ({reason[high.citizen_id]}) while {low.citizen_id}, "
                f"served later, got {b}"
            )


def _outcome(result: Plan, cid: str) -> tuple[str, date | None, str | None]:
    """How the plan treated one citizen: ("booked", day, product) or (reason, None, None)."""
    for b in result.bookings:
        if b.citizen_id == cid:
            return "booked", b.day, b.product_code
    [reason] = [w.reason for w in result.waiting if w.citizen_id == cid]
    return reason, None, None


def second_dose(product: str = PFIZER, latest: date = END) -> NextDose:
    """A second dose of `product` due from the first day of the period to `latest`."""
    return NextDose(dose_number=2, product_code=product, earliest=START, latest=latest)


# The plan judges alike citizens once (eligibility reads a few of their fields); two
# citizens alike in all but one of those fields must each be judged on their own.
@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ({}, {"birth_date": START - timedelta(days=10 * 365)}, "no_eligible_product"),
        # 18 on the fourth day: AZ (18+) from then on, where an adult gets the third.
        (
            {"preferences": (AZ,)},
            {"preferences": (AZ,), "birth_date": date(2003, 3, 4)},
            "booked",
        ),
        ({}, {"ruled_out": tuple(vaccine_catalog().codes())}, "contraindicated"),
        ({"preferences": (PFIZER,)}, {"preferences": (AZ,)}, "booked"),
        (
            {"due": second_dose()},
            {"due": second_dose(product=AZ)},
            "booked",
        ),
        ({}, {"due": NextDose(dose_number=2, earliest=END + timedelta(days=3))}, "outside_horizon"),
        (
            {"due": second_dose()},
            {"due": second_dose(latest=START + timedelta(days=1))},
            "no_capacity",
        ),
    ],
    ids=[
        "birth_date",
        "eighteen_in_the_period",
        "ruled_out",
        "preferences",
        "due_product",
        "due_earliest",
        "due_latest",
    ],
)
def test_citizens_alike_but_in_one_input_are_each_judged_on_their_own(
    first: dict[str, object], second: dict[str, object], expected: str
) -> None:
    sites = [SiteInfo("S1", BARAJEVO)]
    # Slots from the third day on, of every product: nobody competes for one.
    capacity = {("S1", START + timedelta(days=d), p): 50 for d in range(2, DAYS) for p in PRODUCTS}
    a, b = citizen("a", 1, **first), citizen("b", 2, **second)
    together = run([a, b], sites, capacity)
    assert _outcome(together, "a") == _outcome(run([a], sites, capacity), "a")
    assert _outcome(together, "a")[0] == "booked"
    assert _outcome(together, "b") == _outcome(run([b], sites, capacity), "b")
    assert _outcome(together, "b")[0] == expected


def test_a_citizen_past_a_products_maximum_age_in_the_period_is_judged_on_their_own() -> None:
    # No product in the catalog has a maximum age; one with 64 shows the other limit.
    shipped = vaccine_catalog()
    catalog = VaccineCatalog(
        [
            msgspec.structs.replace(shipped[code], max_age=64) if code == AZ else shipped[code]
            for code in shipped.codes()
        ]
    )
    sites = [SiteInfo("S1", BARAJEVO)]
    capacity = {("S1", START + timedelta(days=d), AZ): 50 for d in range(3, DAYS)}
    a = citizen("a", 1, preferences=(AZ,))
    b = citizen("b", 2, preferences=(AZ,), birth_date=date(1956, 3, 4))  # 65 on the fourth day
    together = run([a, b], sites, capacity, catalog=catalog)
    assert _outcome(together, "a") == ("booked", START + timedelta(days=3), AZ)
    assert _outcome(together, "b") == ("no_capacity", None, None)
    assert _outcome(run([b], sites, capacity, catalog=catalog), "b") == ("no_capacity", None, None)
