"""Which appointments are no-shows. Pure; no I/O.

An appointment still open (booked, not attended or cancelled) once its day has ended
where the site is - midnight in the booking time zone - is a no-show. The citizen then
has no open appointment and is booked again by the next scheduling run. A dose recorded
later for a missed appointment still marks it attended (domain.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec


class OpenAppointment(msgspec.Struct, frozen=True):
    appointment_id: str
    day: date
    status: str = "booked"


def day_over(day: date, now: datetime, timezone: ZoneInfo) -> bool:
    """Whether `day` has ended in `timezone` at `now` (an aware datetime)."""
    return now.astimezone(timezone).date() > day


def select_no_shows(
    appointments: Iterable[OpenAppointment], now: datetime, timezone: ZoneInfo
) -> list[str]:
    """Ids of the appointments to mark missed, oldest day first."""
    due = [a for a in appointments if a.status == "booked" and day_over(a.day, now, timezone)]
    return [a.appointment_id for a in sorted(due, key=lambda a: (a.day, a.appointment_id))]
