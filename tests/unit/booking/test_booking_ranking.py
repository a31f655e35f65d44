"""Ranking: who is served first, where they are booked, and how it is explained."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from immunreg.reference.geography import municipalities
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
