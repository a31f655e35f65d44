"""What the booking API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

from immunreg.http.versioning import Page
from immunreg.structs import Struct

SITE_ID_PATTERN = r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*$"  # the id inventory knows the site by
SiteId = Annotated[str, msgspec.Meta(pattern=SITE_ID_PATTERN, max_length=64)]
# product code -> doses a day (0..MAX_DAILY_DOSES; domain.capacity_violations checks it)
Capacity = dict[str, int]
OpeningHours = Annotated[
    str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
]


class SiteIn(Struct, forbid_unknown_fields=True):
    """A vaccination site; its default capacity applies to every day without an override."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    municipality_code: str  # 2022 census code
    address: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None
    opening_hours: OpeningHours = "08:00-20:00"
    daily_capacity: Capacity = {}


class SiteView(Struct):
    site_id: str
    name: str
    municipality_code: str
    address: str
    latitude: float | None
    longitude: float | None
    opening_hours: str
    daily_capacity: dict[str, int]
    version: int


class SitePage(Struct):
    items: list[SiteView]
    next_cursor: str | None = None


class SiteQuery(Page):
    municipality_code: str | None = None


class DayIn(Struct, forbid_unknown_fields=True):
    """The day's capacity per product (replacing the site's default), or the day closed."""

    capacity: Capacity = {}
    closed: bool = False


class DayView(Struct):
    site_id: str
    day: dt.date
    capacity: dict[str, int]  # what applies that day
    closed: bool
    override: bool  # whether the day has its own capacity
    booked: dict[str, int]
    cancelled: int = 0  # appointments cancelled because the day closed


class RunIn(Struct, forbid_unknown_fields=True):
    """Book from `from_day` (default tomorrow) for `horizon_days` days."""

    from_day: dt.date | None = None
    horizon_days: Annotated[int, msgspec.Meta(ge=1, le=60)] = 14


class AppointmentView(Struct):
    appointment_id: str
    citizen_id: str
    site_id: str
    municipality_code: str
    day: dt.date
    product_code: str
    dose_number: int
    booster: bool
    status: str  # booked | cancelled | attended | missed
    reason: str  # why this site, day and vaccine
    status_reason: str | None = None
    booked_at: dt.datetime


class CitizenAppointments(Struct):
    citizen_id: str
    items: list[AppointmentView]


class RescheduleIn(Struct, forbid_unknown_fields=True):
    """Another day, and optionally another site (default: the same site)."""

    day: dt.date
    site_id: SiteId | None = None


class SiteDayQuery(Page):
    date: dt.date
    limit: int = 100  # a site's day is read whole more often than not


class SiteDayAppointments(Struct):
    site_id: str
    day: dt.date
    items: list[AppointmentView]
    next_cursor: str | None = None


class RunCounts(msgspec.Struct, kw_only=True):
    """What a scheduling run has done so far (its progress), and in all when it ends."""

    considered: int = 0  # waiting citizens with a dose to come (known once loaded)
    booked: int = 0  # appointments committed
    booked_elsewhere: int = 0  # booked meanwhile by another run or request
    batches_committed: int = 0  # (site, day, product) transactions committed
    replanned: int = 0  # proposals planned again because their slot was taken
    waiting: dict[str, int] = {}  # reason -> citizens left waiting (when done)
    # Seconds, summed over passes: load, plan, commit (first transaction to last; it
    # overlaps the plan), commit_after_plan (the commit's time once the plan was done).
    timings: dict[str, float] = {}


class RunView(Struct):
    """A scheduling run: its status, its progress while it runs, its counts once done."""

    run_id: str
    status: str  # queued | running | completed | failed
    trigger: str  # on_demand | nightly
    from_day: dt.date
    horizon_days: int
    requested_by: str | None
    requested_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    seconds: float | None  # running time so far, or in all
    considered: int
    booked: int
    booked_elsewhere: int
    batches_committed: int
    replanned: int
    waiting: dict[str, int]
    timings: dict[str, float]
    error: str | None = None  # why it failed
