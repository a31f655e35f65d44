"""No-shows: an open appointment whose day has ended where the site is."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from services.booking.noshow import OpenAppointment, day_over, select_no_shows

BELGRADE = ZoneInfo("Europe/Belgrade")
DAY = date(2021, 3, 10)

CASES = [
    ("the day itself, late evening in Belgrade", datetime(2021, 3, 10, 22, 30, tzinfo=UTC), False),
    (
        "just after midnight in Belgrade (still the 10th in UTC)",
        datetime(2021, 3, 10, 23, 1, tzinfo=UTC),
        True,
    ),
    ("the next afternoon", datetime(2021, 3, 11, 15, 0, tzinfo=UTC), True),
    ("before the day", datetime(2021, 3, 9, 12, 0, tzinfo=UTC), False),
]


@pytest.mark.parametrize(("now", "over"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_day_over_in_the_sites_time_zone(now: datetime, over: bool) -> None:
    assert day_over(DAY, now, BELGRADE) is over


def test_only_open_appointments_of_ended_days_oldest_first() -> None:
    now = datetime(2021, 3, 12, 9, 0, tzinfo=BELGRADE)
    appointments = [
        OpenAppointment("today", date(2021, 3, 12)),
        OpenAppointment("b-yesterday", date(2021, 3, 11)),
        OpenAppointment("a-yesterday", date(2021, 3, 11)),
        OpenAppointment("older", date(2021, 3, 1)),
        OpenAppointment("attended", date(2021, 3, 1), "attended"),
        OpenAppointment("cancelled", date(2021, 3, 1), "cancelled"),
        OpenAppointment("tomorrow", date(2021, 3, 13)),
    ]
    assert select_no_shows(appointments, now, BELGRADE) == ["older", "a-yesterday", "b-yesterday"]
