"""booking.events.v1: sites, their capacity, and appointments.

Three kinds of stream publish here:

- a site's definition (`site-<site>`): SiteDefined;
- one site's day (`siteday-<site>-<yyyy-mm-dd>`): SiteCapacityChanged, SlotsReserved,
  SlotsReleased - the slot ledger that keeps a day from being overbooked;
- an appointment's lifecycle (`appointment-<id>`): AppointmentBooked, AppointmentRescheduled,
  AppointmentCancelled, AppointmentAttended, AppointmentMissed; older streams also hold
  NotificationRequested, no longer written (below).

Every fact is published once: follow appointments from the appointment events, and a
day's fill from the slot events, never both.
"""

from __future__ import annotations

from datetime import date

import msgspec

from immunreg.contracts.envelope import Context, Event


class SiteDefined(Event):
    site_id: str
    name: str
    municipality_code: str
    address: str
    latitude: float | None = None
    longitude: float | None = None
    opening_hours: str = "08:00-20:00"
    daily_capacity: dict[str, int] = {}  # product code -> doses per day


class SiteCapacityChanged(Event):
    """Capacity for one day (an override), or the site closed that day."""

    site_id: str
    day: date
    capacity: dict[str, int] = {}
    closed: bool = False


class AppointmentBooked(Event):
    appointment_id: str
    citizen_id: str
    site_id: str
    municipality_code: str
    day: date
    product_code: str
    dose_number: int
    reason: str  # why this site, day and vaccine
    booster: bool = False
    run_id: str | None = None  # the scheduling run that booked it (None: a reaction or a person)


class SlotsReserved(Event):
    """Slots of one product on one site day were taken by these appointments."""

    site_id: str
    day: date
    product_code: str
    appointment_ids: list[str]


class SlotsReleased(Event):
    """Slots of one product on one site day became free again (cancelled or moved away)."""

    site_id: str
    day: date
    product_code: str
    appointment_ids: list[str]
    reason: str


class AppointmentRescheduled(Event):
    appointment_id: str
    citizen_id: str
    from_site_id: str
    from_day: date
    site_id: str
    day: date
    product_code: str
    municipality_code: str = ""  # of the new site


class AppointmentCancelled(Event):
    appointment_id: str
    citizen_id: str
    site_id: str
    day: date
    product_code: str
    reason: str


class AppointmentAttended(Event):
    appointment_id: str
    citizen_id: str
    site_id: str
    day: date
    dose_id: str


class AppointmentMissed(Event):
    appointment_id: str
    citizen_id: str
    site_id: str
    day: date
    product_code: str


class NotificationRequested(Event):
    """No longer emitted: kept so that appointment streams written before still decode
    and replay (the Appointment's evolve passes over it).

    Booking used to write one beside each booking, move, cancellation and no-show, "for a
    notification gateway to send". Nothing ever read it: the notifications service tells
    the citizen from the appointment events themselves (AppointmentBooked, -Rescheduled,
    -Cancelled, -Attended, -Missed), so it was half of every booking's events, outbox rows
    and Kafka messages for no reader.
    """

    citizen_id: str
    template: str
    parameters: dict[str, str] = {}
    channels: list[str] = msgspec.field(default_factory=lambda: ["sms", "email"])


CONTEXT = Context(
    "booking",
    [
        SiteDefined,
        SiteCapacityChanged,
        SlotsReserved,
        SlotsReleased,
        AppointmentBooked,
        AppointmentRescheduled,
        AppointmentCancelled,
        AppointmentAttended,
        AppointmentMissed,
        NotificationRequested,
    ],
)
