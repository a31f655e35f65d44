"""Eligibility: age limits on the day, contraindications, preferences, interval windows."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from immunreg.reference.calendar import age_on
from immunreg.reference.health import ruled_out_by
from services.booking.eligibility import (
    CONTRAINDICATED,
    FIRST_DOSE,
    NO_ELIGIBLE_PRODUCT,
    OUTSIDE_HORIZON,
    DoseTaken,
    NextDose,
    acceptable_products,
    birthday,
    eligibility,
    next_dose,
    unsuitable,
)

PFIZER = "EU/1/20/1528"  # 12+, 21-42 days, booster after 90
MODERNA = "EU/1/20/1507"  # 18+, 28-42 days
AZ = "EU/1/21/1529"  # 18+, 28-84 days
SINOPHARM = "BBIBP-CorV"  # 18+, 21-28 days
SPUTNIK = "Sputnik-V"  # 18+, 21-90 days
ALL = [PFIZER, MODERNA, AZ, SINOPHARM, SPUTNIK]

START = date(2021, 3, 1)
END = date(2021, 3, 14)


def years_before(day: date, years: int) -> date:
    return birthday(day, -years)


def windows(
    born: date,
    *,
    conditions: tuple[str, ...] = (),
    preferences: tuple[str, ...] = ("any",),
    due: NextDose = FIRST_DOSE,
) -> tuple[dict[str, tuple[date, date, int]], str | None]:
    verdict = eligibility(
        birth_date=born,
        ruled_out=ruled_out_by(conditions),
        preferences=preferences,
        due=due,
        start=START,
        end=END,
    )
    found = {w.product_code: (w.first, w.last, w.preference_rank) for w in verdict.windows}
    return found, verdict.reason


ADULT = years_before(START, 40)

# (case, birth date, conditions, preferences, expected {product: (first, last)}, reason)
CASES = [
    ("adult, any product", ADULT, (), ("any",), {p: (START, END) for p in ALL}, None),
    ("empty preferences mean any", ADULT, (), (), {p: (START, END) for p in ALL}, None),
    ("one preferred product", ADULT, (), (AZ,), {AZ: (START, END)}, None),
    (
        "turns 18 mid-horizon: 12+ from the start, 18+ from the birthday",
        years_before(START + timedelta(days=5), 18),
        (),
        (PFIZER, AZ),
        {PFIZER: (START, END), AZ: (START + timedelta(days=5), END)},
        None,
    ),
    (
        "turns 18 on the last day",
        years_before(END, 18),
        (),
        (AZ,),
        {AZ: (END, END)},
        None,
    ),
    (
        "turns 18 the day after the horizon",
        years_before(END + timedelta(days=1), 18),
        (),
        (AZ,),
        {},
        NO_ELIGIBLE_PRODUCT,
    ),
    (
        "12 today: Comirnaty only",
        years_before(START, 12),
        (),
        ("any",),
        {PFIZER: (START, END)},
        None,
    ),
    ("11 years old", years_before(START, 11), (), ("any",), {}, NO_ELIGIBLE_PRODUCT),
    (
        "PEG allergy rules out the mRNA products",
        ADULT,
        ("severe_allergy_peg",),
        ("any",),
        {p: (START, END) for p in (AZ, SINOPHARM, SPUTNIK)},
        None,
    ),
    (
        "every accepted product contraindicated",
        ADULT,
        ("severe_allergy_peg",),
        (PFIZER, MODERNA),
        {},
        CONTRAINDICATED,
    ),
    (
        "a condition without contraindications changes nothing",
        ADULT,
        ("diabetes",),
        (SINOPHARM,),
        {SINOPHARM: (START, END)},
        None,
    ),
    ("unknown product codes only", ADULT, (), ("Covaxin",), {}, NO_ELIGIBLE_PRODUCT),
]


@pytest.mark.parametrize(
    ("born", "conditions", "preferences", "expected", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_first_dose_eligibility(
    born: date,
    conditions: tuple[str, ...],
    preferences: tuple[str, ...],
    expected: dict[str, tuple[date, date]],
    reason: str | None,
) -> None:
    found, why = windows(born, conditions=conditions, preferences=preferences)
    assert {p: (first, last) for p, (first, last, _) in found.items()} == expected
    assert why == reason


def test_a_leap_day_birthday_counts_from_1_march() -> None:
    born = date(2004, 2, 29)
    assert birthday(born, 17) == date(2021, 3, 1)
    assert age_on(born, date(2021, 2, 28)) == 16
    assert age_on(born, date(2021, 3, 1)) == 17


def test_born_on_a_leap_day_an_18_plus_product_from_1_march() -> None:
    verdict = eligibility(
        birth_date=date(2004, 2, 29),
        ruled_out=(),
        preferences=(AZ,),
        due=FIRST_DOSE,
        start=date(2022, 2, 25),
        end=date(2022, 3, 5),
    )
    assert [(w.first, w.last) for w in verdict.windows] == [(date(2022, 3, 1), date(2022, 3, 5))]


def test_age_on_the_day_before_and_on_the_birthday() -> None:
    born = date(2003, 3, 5)
    assert age_on(born, date(2021, 3, 4)) == 17
    assert age_on(born, date(2021, 3, 5)) == 18


# (preferences, expected (product, rank) in order)
PREFERENCE_CASES = [
    (("any",), [(p, 0) for p in ALL]),
    ((SINOPHARM, "any"), [(SINOPHARM, 0)] + [(p, 1) for p in ALL if p != SINOPHARM]),
    ((AZ, PFIZER), [(AZ, 0), (PFIZER, 1)]),
    ((AZ, AZ, "Covaxin"), [(AZ, 0)]),
    ((), [(p, 0) for p in ALL]),
]


@pytest.mark.parametrize(("preferences", "expected"), PREFERENCE_CASES)
def test_acceptable_products_in_preference_order(
    preferences: tuple[str, ...], expected: list[tuple[str, int]]
) -> None:
    assert acceptable_products(preferences) == expected


def test_any_gives_every_product_the_same_rank_and_named_ones_come_first() -> None:
    found, _ = windows(ADULT, preferences=(SPUTNIK, "any"))
    assert found[SPUTNIK][2] == 0
    assert {found[p][2] for p in ALL if p != SPUTNIK} == {1}


# --- the next dose --------------------------------------------------------------------

D1 = date(2021, 2, 1)

NEXT_DOSE_CASES = [
    ("no dose yet", [], FIRST_DOSE),
    (
        "after dose 1 of Comirnaty: dose 2 in [21, 42] days, same product and site",
        [DoseTaken(dose_number=1, product_code=PFIZER, day=D1, site_id="SITE-1")],
        NextDose(
            dose_number=2,
            product_code=PFIZER,
            earliest=D1 + timedelta(days=21),
            latest=D1 + timedelta(days=42),
            anchor_site="SITE-1",
        ),
    ),
    (
        "after dose 1 of Vaxzevria: [28, 84] days",
        [DoseTaken(dose_number=1, product_code=AZ, day=D1)],
        NextDose(
            dose_number=2,
            product_code=AZ,
            earliest=D1 + timedelta(days=28),
            latest=D1 + timedelta(days=84),
        ),
    ),
    (
        "series complete: a booster by preference 90 days after the last dose",
        [
            DoseTaken(dose_number=1, product_code=SINOPHARM, day=D1),
            DoseTaken(dose_number=2, product_code=SINOPHARM, day=D1 + timedelta(days=21)),
        ],
        NextDose(dose_number=3, booster=True, earliest=D1 + timedelta(days=111)),
    ),
    (
        "after the booster nothing is due",
        [
            DoseTaken(dose_number=1, product_code=SINOPHARM, day=D1),
            DoseTaken(dose_number=2, product_code=SINOPHARM, day=D1 + timedelta(days=21)),
            DoseTaken(
                dose_number=3, product_code=PFIZER, day=D1 + timedelta(days=120), booster=True
            ),
        ],
        None,
    ),
    ("an unknown product has no rule", [DoseTaken(dose_number=1, product_code="X", day=D1)], None),
]


@pytest.mark.parametrize(
    ("doses", "expected"), [c[1:] for c in NEXT_DOSE_CASES], ids=[c[0] for c in NEXT_DOSE_CASES]
)
def test_next_dose(doses: list[DoseTaken], expected: NextDose | None) -> None:
    assert next_dose(doses) == expected


def test_dose_two_window_is_cut_to_the_horizon_and_the_product_is_fixed() -> None:
    due = NextDose(
        dose_number=2, product_code=AZ, earliest=date(2021, 3, 5), latest=date(2021, 4, 30)
    )
    found, reason = windows(ADULT, preferences=(PFIZER,), due=due)
    assert reason is None
    assert found == {AZ: (date(2021, 3, 5), END, 0)}


def test_dose_two_window_closing_inside_the_horizon() -> None:
    due = NextDose(
        dose_number=2, product_code=SINOPHARM, earliest=date(2021, 2, 20), latest=date(2021, 3, 3)
    )
    found, _ = windows(ADULT, due=due)
    assert found == {SINOPHARM: (START, date(2021, 3, 3), 0)}


def test_a_dose_not_due_before_the_horizon_ends_is_outside_it() -> None:
    due = NextDose(
        dose_number=2,
        product_code=PFIZER,
        earliest=END + timedelta(days=1),
        latest=END + timedelta(days=22),
    )
    assert windows(ADULT, due=due) == ({}, OUTSIDE_HORIZON)


def test_an_overdue_dose_is_booked_as_soon_as_possible() -> None:
    due = NextDose(
        dose_number=2, product_code=PFIZER, earliest=date(2021, 1, 1), latest=date(2021, 1, 22)
    )
    found, _ = windows(ADULT, due=due)
    assert found == {PFIZER: (START, END, 0)}


def test_a_series_product_contraindicated_since_dose_one() -> None:
    due = NextDose(dose_number=2, product_code=PFIZER, earliest=START, latest=END)
    assert windows(ADULT, conditions=("myocarditis_after_mrna",), due=due) == ({}, CONTRAINDICATED)


# --- an open appointment that no longer fits ---------------------------------------------

DOSE_TWO = NextDose(dose_number=2, product_code=PFIZER, earliest=START, latest=END)

UNSUITABLE_CASES = [
    ("fits", dict(product_code=PFIZER, dose_number=2, day=START, due=DOSE_TWO), None),
    (
        "nothing due",
        dict(product_code=PFIZER, dose_number=2, day=START, due=None),
        "no dose is due",
    ),
    (
        "other dose",
        dict(product_code=PFIZER, dose_number=3, day=START, due=DOSE_TWO),
        "dose 2 is due",
    ),
    (
        "other product",
        dict(product_code=AZ, dose_number=2, day=START, due=DOSE_TWO),
        "series continues",
    ),
    (
        "before the interval",
        dict(product_code=PFIZER, dose_number=2, day=START - timedelta(days=1), due=DOSE_TWO),
        "before the interval",
    ),
    (
        "no longer preferred",
        dict(product_code=AZ, dose_number=1, day=START, due=FIRST_DOSE, preferences=[PFIZER]),
        "no longer an accepted product",
    ),
    (
        "contraindicated now",
        dict(
            product_code=PFIZER,
            dose_number=1,
            day=START,
            due=FIRST_DOSE,
            ruled_out=ruled_out_by(["severe_allergy_peg"]),
        ),
        "contraindicated",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "expected"), [c[1:] for c in UNSUITABLE_CASES], ids=[c[0] for c in UNSUITABLE_CASES]
)
def test_unsuitable(kwargs: dict[str, object], expected: str | None) -> None:
    args = {"ruled_out": [], "preferences": ["any"], **kwargs}
    why = unsuitable(**args)  # type: ignore[arg-type]
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why
