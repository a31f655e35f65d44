"""Booking's aggregates: Site, SiteDay and Appointment. Pure; no I/O.

    site-<site>                  Site: its definition (default daily capacity per product)
    siteday-<site>-<yyyy-mm-dd>  SiteDay: the day's capacity override and its slot ledger
    appointment-<id>             Appointment: booked (-> rescheduled) -> cancelled,
                                 attended or missed

No overbooking: a booking appends SlotsReserved to the SiteDay at the version it was
decided on, in the same transaction as the Appointment's AppointmentBooked; two
writers deciding on the same SiteDay version cannot both commit, and the loser decides
again on what the winner left (handlers.py). The day's capacity is the override when the
day has one, else the Site's default; a closed day has none.

Lowering a day's capacity below what is booked keeps the appointments already made
(they are promises to citizens) and books no more; closing a day cancels them
(`cancelled_by`).

The rules a request is checked against before any command (every bad field at once,
as `Violation`s the HTTP edge reports in one 422) are here too: a site's definition
(`site_violations`), a day's capacity (`day_violations`), a scheduling run
(`run_violations`) and a move (`reschedule_violations`); so are the checks a move
makes on the target SiteDay and stock before it appends (`needs_stock`,
`require_stock`, `require_free_slot`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import msgspec

from immunreg.contracts.booking import (
    CONTEXT,
    AppointmentAttended,
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentMissed,
    AppointmentRescheduled,
    SiteCapacityChanged,
    SiteDefined,
    SlotsReleased,
    SlotsReserved,
)
from immunreg.contracts.envelope import Event
from immunreg.domain import Aggregate, Conflict, NotFound, RuleViolation
from immunreg.reference.geography import municipalities
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.structs import Struct

from .eligibility import NextDose, age_window

MAX_DAILY_DOSES = 100_000

# --- stream ids ---------------------------------------------------------------------


def site_stream(site_id: str) -> str:
    return f"site-{site_id}"


def siteday_stream(site_id: str, day: date) -> str:
    return f"siteday-{site_id}-{day.isoformat()}"


def appointment_stream(appointment_id: str) -> str:
    return f"appointment-{appointment_id}"


# --- Site ---------------------------------------------------------------------------


class SiteState(Struct):
    defined: bool = False
    definition: SiteDefined | None = None

    def daily_capacity(self) -> dict[str, int]:
        return dict(self.definition.daily_capacity) if self.definition else {}


class DefineSite(Struct):
    definition: SiteDefined


def decide_site(state: SiteState, command: DefineSite) -> list[Event]:
    """A definition that changes nothing records nothing."""
    if state.definition == command.definition:
        return []
    return [command.definition]


def evolve_site(state: SiteState, event: Event) -> SiteState:
    if isinstance(event, SiteDefined):
        return SiteState(defined=True, definition=event)
    return state


SITE: Aggregate[SiteState, DefineSite] = Aggregate(
    stream_type="Site",
    context=CONTEXT,
    initial=SiteState,
    evolve=evolve_site,
    decide=decide_site,
)


# --- SiteDay ------------------------------------------------------------------------


class SiteDayState(Struct):
    """The day's override (None: the site's default applies) and slots taken per product."""

    override: dict[str, int] | None = None
    closed: bool = False
    booked: dict[str, int] = {}

    def capacity(self, default: Mapping[str, int]) -> dict[str, int]:
        """Slots per product that day."""
        if self.closed:
            return {}
        return dict(self.override if self.override is not None else default)

    def free(self, product_code: str, default: Mapping[str, int]) -> int:
        """Slots of a product still free (never negative)."""
        total = self.capacity(default).get(product_code, 0)
        return max(total - self.booked.get(product_code, 0), 0)


class Reserve(Struct):
    site_id: str
    day: date
    product_code: str
    appointment_ids: list[str]
    default_capacity: dict[str, int]  # the Site's, as loaded in the same transaction


class Release(Struct):
    site_id: str
    day: date
    product_code: str
    appointment_ids: list[str]
    reason: str


class ChangeCapacity(Struct):
    site_id: str
    day: date
    capacity: dict[str, int]
    closed: bool = False


SiteDayCommand = Reserve | Release | ChangeCapacity


def decide_siteday(state: SiteDayState, command: SiteDayCommand) -> list[Event]:
    if isinstance(command, Reserve):
        if not command.appointment_ids:
            return []
        free = state.free(command.product_code, command.default_capacity)
        if len(command.appointment_ids) > free:
            raise Conflict(
                "slot_full",
                f"{command.site_id} has {free} free slot(s) of {command.product_code} "
                f"on {command.day.isoformat()}",
            )
        return [
            SlotsReserved(
                site_id=command.site_id,
                day=command.day,
                product_code=command.product_code,
                appointment_ids=list(command.appointment_ids),
            )
        ]
    if isinstance(command, Release):
        if not command.appointment_ids:
            return []
        return [
            SlotsReleased(
                site_id=command.site_id,
                day=command.day,
                product_code=command.product_code,
                appointment_ids=list(command.appointment_ids),
                reason=command.reason,
            )
        ]
    if state.override == command.capacity and state.closed == command.closed:
        return []
    return [
        SiteCapacityChanged(
            site_id=command.site_id,
            day=command.day,
            capacity=dict(command.capacity),
            closed=command.closed,
        )
    ]


def evolve_siteday(state: SiteDayState, event: Event) -> SiteDayState:
    if isinstance(event, SlotsReserved):
        booked = dict(state.booked)
        booked[event.product_code] = booked.get(event.product_code, 0) + len(event.appointment_ids)
        return msgspec.structs.replace(state, booked=booked)
    if isinstance(event, SlotsReleased):
        booked = dict(state.booked)
        left = booked.get(event.product_code, 0) - len(event.appointment_ids)
        booked[event.product_code] = max(left, 0)
        return msgspec.structs.replace(state, booked=booked)
    if isinstance(event, SiteCapacityChanged):
        return msgspec.structs.replace(state, override=dict(event.capacity), closed=event.closed)
    return state


SITEDAY: Aggregate[SiteDayState, SiteDayCommand] = Aggregate(
    stream_type="SiteDay",
    context=CONTEXT,
    initial=SiteDayState,
    evolve=evolve_siteday,
    decide=decide_siteday,
    state_type=SiteDayState,
    snapshot_every=100,
)


# --- Appointment --------------------------------------------------------------------

BOOKED = "booked"
CANCELLED = "cancelled"
ATTENDED = "attended"
MISSED = "missed"


class AppointmentState(Struct):
    status: str = "none"  # none | booked | cancelled | attended | missed
    appointment_id: str = ""
    citizen_id: str = ""
    site_id: str = ""
    municipality_code: str = ""
    day: date | None = None
    product_code: str = ""
    dose_number: int = 0
    booster: bool = False


class Book(Struct):
    appointment_id: str
    citizen_id: str
    site_id: str
    municipality_code: str
    day: date
    product_code: str
    dose_number: int
    booster: bool = False
    reason: str
    run_id: str | None = None


class Reschedule(Struct):
    site_id: str
    municipality_code: str
    day: date


class Cancel(Struct):
    reason: str


class Attend(Struct):
    dose_id: str


class Miss(Struct):
    pass


AppointmentCommand = Book | Reschedule | Cancel | Attend | Miss


def require_open(state: AppointmentState) -> None:
    if state.status == "none":
        raise NotFound("appointment_not_found", "no such appointment")
    if state.status != BOOKED:
        raise Conflict("appointment_not_open", f"the appointment is {state.status}")


def decide_appointment(state: AppointmentState, command: AppointmentCommand) -> list[Event]:
    """One event per decision: the notifications service tells the citizen from the
    appointment events themselves, so no NotificationRequested is asked for beside them
    (it was, until nothing read it: half of every booking's writes and messages)."""
    if isinstance(command, Book):
        if state.status != "none":
            raise Conflict("appointment_exists", "this appointment was booked already")
        return [
            AppointmentBooked(
                appointment_id=command.appointment_id,
                citizen_id=command.citizen_id,
                site_id=command.site_id,
                municipality_code=command.municipality_code,
                day=command.day,
                product_code=command.product_code,
                dose_number=command.dose_number,
                reason=command.reason,
                booster=command.booster,
                run_id=command.run_id,
            )
        ]
    if isinstance(command, Reschedule):
        require_open(state)
        if (command.site_id, command.day) == (state.site_id, state.day):
            raise RuleViolation("same_slot", "the appointment is already at that site and day")
        assert state.day is not None
        return [
            AppointmentRescheduled(
                appointment_id=state.appointment_id,
                citizen_id=state.citizen_id,
                from_site_id=state.site_id,
                from_day=state.day,
                site_id=command.site_id,
                day=command.day,
                product_code=state.product_code,
                municipality_code=command.municipality_code,
            )
        ]
    if isinstance(command, Cancel):
        if state.status == CANCELLED:
            return []  # cancelling twice changes nothing
        require_open(state)
        assert state.day is not None
        return [
            AppointmentCancelled(
                appointment_id=state.appointment_id,
                citizen_id=state.citizen_id,
                site_id=state.site_id,
                day=state.day,
                product_code=state.product_code,
                reason=command.reason,
            )
        ]
    if isinstance(command, Attend):
        if state.status == ATTENDED:
            return []
        if state.status not in (BOOKED, MISSED):  # a dose recorded late still counts
            require_open(state)
        assert state.day is not None
        return [
            AppointmentAttended(
                appointment_id=state.appointment_id,
                citizen_id=state.citizen_id,
                site_id=state.site_id,
                day=state.day,
                dose_id=command.dose_id,
            )
        ]
    if state.status == MISSED:
        return []
    require_open(state)
    assert state.day is not None
    return [
        AppointmentMissed(
            appointment_id=state.appointment_id,
            citizen_id=state.citizen_id,
            site_id=state.site_id,
            day=state.day,
            product_code=state.product_code,
        )
    ]


def evolve_appointment(state: AppointmentState, event: Event) -> AppointmentState:
    if isinstance(event, AppointmentBooked):
        return AppointmentState(
            status=BOOKED,
            appointment_id=event.appointment_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            municipality_code=event.municipality_code,
            day=event.day,
            product_code=event.product_code,
            dose_number=event.dose_number,
            booster=event.booster,
        )
    if isinstance(event, AppointmentRescheduled):
        return msgspec.structs.replace(
            state,
            site_id=event.site_id,
            day=event.day,
            municipality_code=event.municipality_code or state.municipality_code,
        )
    if isinstance(event, AppointmentCancelled):
        return msgspec.structs.replace(state, status=CANCELLED)
    if isinstance(event, AppointmentAttended):
        return msgspec.structs.replace(state, status=ATTENDED)
    if isinstance(event, AppointmentMissed):
        return msgspec.structs.replace(state, status=MISSED)
    return state


APPOINTMENT: Aggregate[AppointmentState, AppointmentCommand] = Aggregate(
    stream_type="Appointment",
    context=CONTEXT,
    initial=AppointmentState,
    evolve=evolve_appointment,
    decide=decide_appointment,
)


# --- rules checked before a command -------------------------------------------------

INVALID_FIELDS = "invalid_fields"  # the code of a refusal that names several fields


class Violation(msgspec.Struct, frozen=True):
    """One bad field of a request (`body.day`, `path.date`), why, and the rule's code."""

    field: str
    reason: str
    code: str = INVALID_FIELDS


def capacity_violations(capacity: Mapping[str, int], field: str) -> list[Violation]:
    """Capacity is per catalog product, 0 to MAX_DAILY_DOSES doses a day."""
    catalog = vaccine_catalog()
    violations = []
    for code, doses in capacity.items():
        if code not in catalog:
            violations.append(Violation(f"{field}.{code}", "not a product of the vaccine catalog"))
        elif not 0 <= doses <= MAX_DAILY_DOSES:
            violations.append(Violation(f"{field}.{code}", f"between 0 and {MAX_DAILY_DOSES}"))
    return violations


def site_violations(municipality_code: str, daily_capacity: Mapping[str, int]) -> list[Violation]:
    """A site stands in a municipality of the 2022 census and offers catalog products."""
    violations = capacity_violations(daily_capacity, "body.daily_capacity")
    if municipality_code not in municipalities():
        violations.insert(
            0, Violation("body.municipality_code", "not a municipality code (2022 census)")
        )
    return violations


def day_violations(day: date, today: date, capacity: Mapping[str, int]) -> list[Violation]:
    """A day's capacity can change (or the day close) only until the day is over."""
    violations = capacity_violations(capacity, "body.capacity")
    if day < today:
        violations.insert(0, Violation("path.date", "the day is over"))
    return violations


def run_violations(from_day: date, today: date) -> list[Violation]:
    """A scheduling run books from today on, never into the past."""
    return [Violation("body.from_day", "must be today or later")] if from_day < today else []


SITE_CLOSED = "site_closed"


def cancelled_by(command: ChangeCapacity) -> str | None:
    """Why a capacity change cancels the day's open appointments, or None to keep them.

    Closing the day cancels them ("site_closed"; the next run books the citizens
    again); a lower capacity keeps every appointment already made and books no more.
    """
    return SITE_CLOSED if command.closed else None


def reschedule_violations(
    *,
    day: date,
    today: date,
    site_known: bool,
    product_code: str,
    birth_date: date | None,
    due: NextDose | None,
) -> list[Violation]:
    """Why an appointment may not move to `day` (at a site `site_known` says exists).

    The day must not be over; the product's age limits hold on the new day; the
    series' interval holds unless its window had already closed before today (late
    is better than never). Without a birth date (not registered here yet, or erased)
    only the day and the site are checked.
    """
    violations: list[Violation] = []
    if day < today:
        violations.append(Violation("body.day", "the day is over", "day_over"))
    if not site_known:
        violations.append(Violation("body.site_id", "no such site", "site_not_found"))
    if birth_date is None:
        return violations
    product = vaccine_catalog().get(product_code)
    if product is not None:
        first, last = age_window(product, birth_date)
        if day < first or (last is not None and day > last):
            violations.append(
                Violation("body.day", "outside the product's age limits", "age_limit")
            )
    if due is not None and due.earliest is not None and day < due.earliest:
        violations.append(
            Violation(
                "body.day",
                f"the interval allows {due.earliest} at the earliest",
                "outside_interval",
            )
        )
    elif due is not None and due.latest is not None and due.latest >= today and day > due.latest:
        violations.append(
            Violation(
                "body.day", f"the interval allows {due.latest} at the latest", "outside_interval"
            )
        )
    return violations


def refusal_code(violations: list[Violation]) -> str:
    """One rule broken: its code; several: "invalid_fields"."""
    return violations[0].code if len(violations) == 1 else INVALID_FIELDS


def needs_stock(state: AppointmentState, site_id: str) -> bool:
    """A move to another site needs a dose of the product left there; within a site the
    appointment's dose is already counted."""
    return site_id != state.site_id


def require_stock(site_id: str, product_code: str, doses_left: int) -> None:
    if doses_left < 1:
        raise Conflict("no_stock", f"{site_id} has no stock of {product_code} left to book")


def require_free_slot(
    siteday: SiteDayState, site_id: str, day: date, product_code: str, default: Mapping[str, int]
) -> None:
    """A move needs a free slot of its product on the target day."""
    if siteday.free(product_code, default) < 1:
        raise Conflict(
            "slot_full", f"{site_id} has no free slot of {product_code} on {day.isoformat()}"
        )
