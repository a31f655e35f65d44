"""Civil dates in the country the registry serves.

A vaccination day, an expiry date, an age: all are calendar dates where the
vaccination happens, not in UTC. One timezone for every service
(`IMMUNREG_TIMEZONE`, default Europe/Belgrade) so they agree on what "that day" was.
"""

from __future__ import annotations

import os
from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo


@cache
def national_timezone() -> ZoneInfo:
    """The timezone civil dates are reckoned in."""
    return ZoneInfo(os.environ.get("IMMUNREG_TIMEZONE", "Europe/Belgrade"))


def local_date(moment: datetime) -> date:
    """The civil date of an instant in the national timezone."""
    return moment.astimezone(national_timezone()).date()


def today() -> date:
    """Today's civil date in the national timezone."""
    return datetime.now(national_timezone()).date()


def age_on(born: date, day: date) -> int:
    """Age in completed years on `day` (a 29 February birthday counts from 1 March)."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))
