"""Civil dates: ages and the day an instant falls on, in the national timezone."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from immunreg.reference.calendar import age_on, local_date


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(1960, 5, 10), date(2021, 5, 9), 60),
        (date(1960, 5, 10), date(2021, 5, 10), 61),
        (date(2004, 2, 29), date(2022, 2, 28), 17),
        (date(2004, 2, 29), date(2022, 3, 1), 18),
        (date(2021, 1, 1), date(2021, 1, 1), 0),
    ],
)
def test_age_in_completed_years(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


def test_a_late_evening_dose_in_utc_belongs_to_the_next_day_in_belgrade() -> None:
    # 23:30 UTC on 31 May 2021 is 01:30 on 1 June in Belgrade (CEST, UTC+2).
    assert local_date(datetime(2021, 5, 31, 23, 30, tzinfo=UTC)) == date(2021, 6, 1)
    assert local_date(datetime(2021, 5, 31, 21, 30, tzinfo=UTC)) == date(2021, 5, 31)
