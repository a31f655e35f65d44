"""The rules booking's routes check before a command, now pure in domain.py."""

from __future__ import annotations

from datetime import date

import pytest

from immunreg.domain import Conflict
from services.booking.domain import (
    MAX_DAILY_DOSES,
    SITE_CLOSED,
    AppointmentState,
    ChangeCapacity,
    SiteDayState,
    Violation,
    cancelled_by,
    day_violations,
    needs_stock,
    refusal_code,
    require_free_slot,
    require_stock,
    reschedule_violations,
    run_violations,
    site_violations,
)
from services.booking.eligibility import NextDose

P = "EU/1/20/1528"  # 12+ in the catalog
TODAY = date(2021, 3, 10)


def test_a_site_reports_its_municipality_first_then_every_bad_product() -> None:
    violations = site_violations("00000", {"Covaxin": 1, P: MAX_DAILY_DOSES + 1})
    assert [v.field for v in violations] == [
        "body.municipality_code",
        "body.daily_capacity.Covaxin",
        f"body.daily_capacity.{P}",
    ]
    assert {v.code for v in violations} == {"invalid_fields"}
    assert site_violations("70092", {P: 0}) == []


def test_a_day_is_refused_once_over() -> None:
    assert [v.field for v in day_violations(date(2021, 3, 9), TODAY, {"x": 1})] == [
        "path.date",
        "body.capacity.x",
    ]
    assert day_violations(TODAY, TODAY, {P: MAX_DAILY_DOSES}) == []


def test_a_run_books_from_today_on() -> None:
    assert [v.field for v in run_violations(date(2021, 3, 9), TODAY)] == ["body.from_day"]
    assert run_violations(TODAY, TODAY) == []


def test_closing_a_day_cancels_its_appointments_and_lowering_capacity_keeps_them() -> None:
    closing = ChangeCapacity(site_id="S1", day=TODAY, capacity={}, closed=True)
    lowering = ChangeCapacity(site_id="S1", day=TODAY, capacity={P: 0})
    assert cancelled_by(closing) == SITE_CLOSED == "site_closed"
    assert cancelled_by(lowering) is None


def codes(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.field, v.code) for v in violations]


@pytest.mark.parametrize(
    ("day", "site_known", "birth_date", "due", "expected"),
    [
        (date(2021, 3, 12), True, date(1970, 1, 1), None, []),
        (date(2021, 3, 9), True, None, None, [("body.day", "day_over")]),
        (date(2021, 3, 12), False, None, None, [("body.site_id", "site_not_found")]),
        (date(2021, 3, 12), True, date(2010, 1, 1), None, [("body.day", "age_limit")]),
        (
            date(2021, 3, 12),
            True,
            date(1970, 1, 1),
            NextDose(dose_number=2, earliest=date(2021, 3, 20)),
            [("body.day", "outside_interval")],
        ),
        (
            date(2021, 3, 25),
            True,
            date(1970, 1, 1),
            NextDose(dose_number=2, latest=date(2021, 3, 20)),
            [("body.day", "outside_interval")],
        ),
        # A window that closed before today no longer holds: late is better than never.
        (
            date(2021, 3, 25),
            True,
            date(1970, 1, 1),
            NextDose(dose_number=2, latest=date(2021, 3, 1)),
            [],
        ),
        # Without a birth date only the day and the site are checked.
        (
            date(2021, 3, 9),
            False,
            None,
            NextDose(dose_number=2, earliest=date(2021, 3, 20)),
            [("body.day", "day_over"), ("body.site_id", "site_not_found")],
        ),
    ],
)
def test_reschedule_violations(
    day: date,
    site_known: bool,
    birth_date: date | None,
    due: NextDose | None,
    expected: list[tuple[str, str]],
) -> None:
    violations = reschedule_violations(
        day=day,
        today=TODAY,
        site_known=site_known,
        product_code=P,
        birth_date=birth_date,
        due=due,
    )
    assert codes(violations) == expected


def test_one_broken_rule_names_itself_and_several_are_invalid_fields() -> None:
    one = [Violation("body.day", "the day is over", "day_over")]
    assert refusal_code(one) == "day_over"
    assert refusal_code([*one, Violation("body.site_id", "no such site", "site_not_found")]) == (
        "invalid_fields"
    )


def test_a_move_needs_stock_only_at_another_site_and_a_free_slot() -> None:
    booked = AppointmentState(status="booked", site_id="S1", day=TODAY, product_code=P)
    assert not needs_stock(booked, "S1")
    assert needs_stock(booked, "S2")
    require_stock("S2", P, 1)
    with pytest.raises(Conflict) as no_stock:
        require_stock("S2", P, 0)
    assert no_stock.value.code == "no_stock"
    require_free_slot(SiteDayState(booked={P: 1}), "S1", TODAY, P, {P: 2})
    with pytest.raises(Conflict) as full:
        require_free_slot(SiteDayState(booked={P: 2}), "S1", TODAY, P, {P: 2})
    assert full.value.code == "slot_full"
    with pytest.raises(Conflict):
        require_free_slot(SiteDayState(closed=True), "S1", TODAY, P, {P: 2})
