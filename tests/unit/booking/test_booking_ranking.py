"""Ranking: who is served first, where they are booked, and how it is explained."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog
from services.booking.ranking import (
    ANYWHERE,
    DISTRICT,
    EVERYWHERE,
    HOME_MUNICIPALITY,
    PREFERRED_MUNICIPALITY,
    SAME_SITE,
    Decision,
    citizen_tiers,
    district_area,
    explain,
    municipality_area,
    priority_rank,
    registration_order,
    site_areas,
    sort_key,
)

BARAJEVO = "70092"  # Beograd-Barajevo, RS-00
GROCKA = "70122"  # Beograd-Grocka, RS-00


def other_district_municipality() -> str:
    return next(m.code for m in municipalities().values() if m.district_code != "RS-00")


@pytest.mark.parametrize(
    ("group", "rank"),
    [
        ("health_worker", 1),
        ("care_home", 1),
        ("chronic_patient", 2),
        ("critical_worker", 3),
        ("general", 4),
        ("no_such_group", 5),
    ],
)
def test_priority_ranks(group: str, rank: int) -> None:
    assert priority_rank(group) == rank


T0 = datetime(2021, 1, 5, 8, 0, tzinfo=UTC)

# (first, second): the first is served before the second
ORDER_CASES = [
    (
        "higher priority first, even registered later",
        ("health_worker", T0 + timedelta(days=30)),
        ("general", T0),
    ),
    (
        "same priority: earlier registration first",
        ("general", T0),
        ("general", T0 + timedelta(microseconds=1)),
    ),
    (
        "rank ties between groups go by registration",
        ("care_home", T0),
        ("health_worker", T0 + timedelta(seconds=1)),
    ),
    (
        "chronic before critical workers",
        ("chronic_patient", T0 + timedelta(days=1)),
        ("critical_worker", T0),
    ),
]


@pytest.mark.parametrize(
    ("first", "second"), [c[1:] for c in ORDER_CASES], ids=[c[0] for c in ORDER_CASES]
)
def test_fairness_order(first: tuple[str, datetime], second: tuple[str, datetime]) -> None:
    key_first = sort_key(first[0], registration_order(first[1]))
    key_second = sort_key(second[0], registration_order(second[1]))
    assert key_first < key_second


def test_registration_order_is_microseconds_since_1970() -> None:
    assert registration_order(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005


def test_site_areas() -> None:
    assert site_areas(BARAJEVO) == (municipality_area(BARAJEVO), district_area("RS-00"), EVERYWHERE)


TIER_CASES = [
    (
        "preferred, home, district, anywhere",
        (BARAJEVO, GROCKA, True),
        [
            (PREFERRED_MUNICIPALITY, municipality_area(GROCKA)),
            (HOME_MUNICIPALITY, municipality_area(BARAJEVO)),
            (DISTRICT, district_area("RS-00")),
            (ANYWHERE, EVERYWHERE),
        ],
    ),
    (
        "no preferred municipality",
        (BARAJEVO, None, True),
        [
            (HOME_MUNICIPALITY, municipality_area(BARAJEVO)),
            (DISTRICT, district_area("RS-00")),
            (ANYWHERE, EVERYWHERE),
        ],
    ),
    (
        "preferred = home is tried once, as preferred",
        (BARAJEVO, BARAJEVO, False),
        [(PREFERRED_MUNICIPALITY, municipality_area(BARAJEVO)), (DISTRICT, district_area("RS-00"))],
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in TIER_CASES], ids=[c[0] for c in TIER_CASES]
)
def test_site_preference_tiers(
    args: tuple[str, str | None, bool], expected: list[tuple[int, str]]
) -> None:
    assert list(citizen_tiers(*args)) == expected


def test_a_preferred_municipality_in_another_district_adds_that_district_first() -> None:
    far = other_district_municipality()
    far_district = municipalities()[far].district_code
    tiers = list(citizen_tiers(BARAJEVO, far, True))
    assert tiers == [
        (PREFERRED_MUNICIPALITY, municipality_area(far)),
        (HOME_MUNICIPALITY, municipality_area(BARAJEVO)),
        (DISTRICT, district_area(far_district)),
        (DISTRICT, district_area("RS-00")),
        (ANYWHERE, EVERYWHERE),
    ]


def decision(**changes: object) -> Decision:
    values: dict[str, object] = {
        "priority_group": "chronic_patient",
        "tier": PREFERRED_MUNICIPALITY,
        "site_id": "SITE-0001",
        "site_municipality": GROCKA,
        "product_code": "EU/1/20/1528",
        "preference_rank": 0,
        "any_product": False,
        "day": date(2021, 3, 2),
        "first_day": date(2021, 3, 2),
        "dose_number": 1,
    }
    values.update(changes)
    return Decision(**values)  # type: ignore[arg-type]


REASON_CASES = [
    (
        "first choice in the preferred municipality on the first day",
        decision(),
        [
            "dose 1 of Comirnaty (1st choice)",
            "SITE-0001 in the preferred municipality Beograd-Grocka",
            "2021-03-02, the first day possible",
            "priority (chronic_patient, rank 2)",
        ],
    ),
    (
        "second choice at home, a later day",
        decision(tier=HOME_MUNICIPALITY, preference_rank=1, day=date(2021, 3, 5)),
        ["(2nd choice)", "home municipality", "2021-03-05, the earliest free day from 2021-03-02"],
    ),
    (
        "any product, district",
        decision(any_product=True, tier=DISTRICT),
        ["(any product accepted)", "home district"],
    ),
    ("anywhere says why", decision(tier=ANYWHERE), ["nothing closer had a free slot"]),
    (
        "second dose at the same site",
        decision(tier=SAME_SITE, dose_number=2),
        ["dose 2 of Comirnaty (same product as the series)", "the site of the previous dose"],
    ),
    ("booster", decision(booster=True, dose_number=3), ["booster of Comirnaty"]),
]


@pytest.mark.parametrize(
    ("made", "fragments"), [c[1:] for c in REASON_CASES], ids=[c[0] for c in REASON_CASES]
)
def test_reason_text(made: Decision, fragments: list[str]) -> None:
    text = explain(made)
    for fragment in fragments:
        assert fragment in text, text


def _explained_in_one_piece(decision: Decision) -> str:
    """explain as it was written before its parts were cached: the text to keep."""
    product = vaccine_catalog().get(decision.product_code)
    name = product.name if product is not None else decision.product_code
    if decision.booster:
        what = f"booster of {name}"
    elif decision.dose_number > 1:
        what = f"dose {decision.dose_number} of {name} (same product as the series)"
    elif decision.any_product:
        what = f"dose 1 of {name} (any product accepted)"
    else:
        n = decision.preference_rank + 1
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        what = f"dose 1 of {name} ({n}{suffix} choice)"
    muni = municipalities().get(decision.site_municipality)
    place = muni.name if muni is not None else decision.site_municipality
    where = {
        SAME_SITE: "the site of the previous dose",
        PREFERRED_MUNICIPALITY: f"the preferred municipality {place}",
        HOME_MUNICIPALITY: f"the home municipality {place}",
        DISTRICT: f"the home district ({place})",
        ANYWHERE: f"{place}, nothing closer had a free slot",
    }[decision.tier]
    when = (
        "the first day possible"
        if decision.day == decision.first_day
        else f"the earliest free day from {decision.first_day.isoformat()}"
    )
    rank = priority_rank(decision.priority_group)
    return (
        f"{what} at {decision.site_id} in {where}; {decision.day.isoformat()}, {when}; "
        f"served in order of priority ({decision.priority_group}, rank {rank}) "
        "then registration time"
    )


def test_reason_text_is_the_same_as_written_in_one_piece() -> None:
    """explain caches its parts: every combination of them (known and unknown product,
    municipality and group, each tier, dose kind and choice, day) reads as before,
    byte for byte, asked twice (the second answer from the caches)."""
    made = [
        decision(
            tier=tier,
            product_code=product,
            site_municipality=muni,
            priority_group=group,
            booster=booster,
            dose_number=dose,
            any_product=any_product,
            preference_rank=rank,
            day=date(2021, 3, 2) + timedelta(days=later),
            first_day=date(2021, 3, 2),
        )
        for tier in (SAME_SITE, PREFERRED_MUNICIPALITY, HOME_MUNICIPALITY, DISTRICT, ANYWHERE)
        for product in ("EU/1/20/1528", "NOT-A-PRODUCT")
        for muni in (GROCKA, "00000")
        for group in ("chronic_patient", "general", "no-such-group")
        for booster, dose in ((False, 1), (False, 2), (True, 3))
        for any_product in (False, True)
        for rank in (0, 1, 2, 10)
        for later in (0, 3)
    ]
    for _ in range(2):
        for d in made:
            assert explain(d) == _explained_in_one_piece(d)
