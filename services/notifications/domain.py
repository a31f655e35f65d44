"""Notifications: which message an event asks for, when it is due, and what a failed send
leads to. Pure; no I/O.

A message is a row of its own from the moment the event that asks for it is consumed
(same transaction as the consumer's position), named by a deterministic id: the
event's id and the kind (and the citizen, for a recall reaching many). The id is what
makes it once: the row is inserted at most once, and the same id goes out as the
e-mail's Message-ID and the SMS gateway's Idempotency-Key on every attempt.

    pending --send--> sending --accepted--> sent
                         |--temporary failure--> pending (later, backoff) ... dead_lettered
                         |--permanent failure--> dead_lettered
    pending --no longer wanted (cancelled, opted out, erased, no contact)--> dropped
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec

from immunreg.contracts.registration import DEFAULT_LANGUAGE, LANGUAGES

# Namespace of message ids (uuid5): the same event and kind give the same id everywhere.
MESSAGE_NAMESPACE = uuid.UUID("6f1b8c1e-5a52-4d7e-9a0c-2b1d3e4f5a60")
REMINDER_AT = time(10, 0)  # local time, the day before the appointment
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)


class Kind(StrEnum):
    """What a message says; each has a template per language (templates.py)."""

    APPOINTMENT_BOOKED = "appointment_booked"
    SECOND_DOSE_INVITATION = "second_dose_invitation"
    BOOSTER_INVITATION = "booster_invitation"
    REMINDER = "reminder"
    APPOINTMENT_MOVED = "appointment_moved"
    APPOINTMENT_CANCELLED = "appointment_cancelled"
    APPOINTMENT_MISSED = "appointment_missed"
    CERTIFICATE_READY = "certificate_ready"
    LOT_RECALLED = "lot_recalled"


# Safety notices reach a person who opted out of messages: a recalled lot may harm them.
SAFETY_NOTICES = frozenset({Kind.LOT_RECALLED})

Status = Literal["pending", "sending", "sent", "dropped", "dead_lettered"]


class Facts(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a message is about, kept with it (no contact, no name): rendered at send time."""

    appointment_id: str | None = None
    site_id: str | None = None
    day: date | None = None
    from_site_id: str | None = None
    from_day: date | None = None
    product_code: str | None = None
    dose_number: int | None = None
    uvci: str | None = None
    issued_at: datetime | None = None
    lot_number: str | None = None
    reason: str | None = None


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """A message to queue: its id, kind, citizen, when it is due and its facts."""

    message_id: str
    kind: Kind
    citizen_id: str
    due_at: datetime
    facts: Facts


def message_id(event_id: str, kind: Kind, citizen_id: str = "") -> str:
    """The message's stable id: the same for a redelivered or republished event."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{event_id}|{kind.value}|{citizen_id}"))


def booking_kind(dose_number: int, booster: bool) -> Kind:
    """An appointment for a first dose is a booking notice; a later one, an invitation."""
    if booster:
        return Kind.BOOSTER_INVITATION
    return Kind.SECOND_DOSE_INVITATION if dose_number >= 2 else Kind.APPOINTMENT_BOOKED


def reminder_due(day: date, zone: ZoneInfo) -> datetime:
    """When the reminder of an appointment on `day` goes: the day before, at REMINDER_AT local."""
    return datetime.combine(day - timedelta(days=1), REMINDER_AT, tzinfo=zone).astimezone(UTC)


def plan_reminder(
    event_id: str, citizen_id: str, facts: Facts, now: datetime, zone: ZoneInfo
) -> Planned | None:
    """The reminder of an appointment, or None when its time has already passed (booked
    for tomorrow after the reminder hour: the booking notice is reminder enough)."""
    assert facts.day is not None
    due = reminder_due(facts.day, zone)
    if due <= now:
        return None
    return Planned(
        message_id=message_id(event_id, Kind.REMINDER),
        kind=Kind.REMINDER,
        citizen_id=citizen_id,
        due_at=due,
        facts=facts,
    )


def language_of(preference: str | None) -> str:
    """The language to write in: the preference when it is one we write, else the default."""
    return preference if preference in LANGUAGES else DEFAULT_LANGUAGE


class Recipient(msgspec.Struct, frozen=True, kw_only=True):
    """What sending needs to know about the person (unsealed only while sending)."""

    erased: bool = False
    opted_out: bool = False
    email: str | None = None
    phone: str | None = None
    known: bool = True  # registration's data and key have arrived


class Dispatch(msgspec.Struct, frozen=True):
    """Send by `channel` to `address`, drop it (with why), or wait for the person's data."""

    action: Literal["send", "drop", "wait"]
    channel: Literal["email", "sms"] | None = None
    address: str | None = None
    reason: str = ""


def dispatch(kind: Kind, recipient: Recipient) -> Dispatch:
    """Whether and where a message goes. E-mail when there is one (longer texts, no cost),
    else SMS. Opt-out holds for every kind but safety notices."""
    if recipient.erased:
        return Dispatch("drop", reason="erased")
    if not recipient.known:
        return Dispatch("wait", reason="the person's contact details have not arrived yet")
    if recipient.opted_out and kind not in SAFETY_NOTICES:
        return Dispatch("drop", reason="opted_out")
    if recipient.email:
        return Dispatch("send", "email", recipient.email)
    if recipient.phone:
        return Dispatch("send", "sms", recipient.phone)
    return Dispatch("drop", reason="no_contact")


class AfterFailure(msgspec.Struct, frozen=True):
    """Try again at `retry_at`, or give up (dead-letter)."""

    retry_at: datetime | None


def after_failure(
    attempts: int,
    now: datetime,
    *,
    permanent: bool = False,
    max_attempts: int = MAX_ATTEMPTS,
    base: timedelta = BACKOFF_BASE,
) -> AfterFailure:
    """Exponential backoff (base, 2x, 4x, ... capped at an hour); dead-lettered after
    `max_attempts` tries or at once when trying again cannot help."""
    if permanent or attempts >= max_attempts:
        return AfterFailure(None)
    delay = min(base * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)
    return AfterFailure(now + delay)


def still_wanted(
    kind: Kind, facts: Facts, appointment_status: str | None, day: date | None
) -> bool:
    """A reminder goes only while its appointment is still booked for that day; a
    missed-appointment notice only while it is still missed (a dose recorded late marks
    it attended, and the person is not waiting again after all)."""
    if kind is Kind.REMINDER:
        return appointment_status == "booked" and day == facts.day
    if kind is Kind.APPOINTMENT_MISSED:
        return appointment_status == "missed"
    return True


# A new deployment reads every topic from the start: events older than this ask for no
# message (nobody wants last year's booking notice), and neither does one from the future.
STALE_AFTER = timedelta(days=1)


def is_stale(occurred_at: datetime, now: datetime) -> bool:
    """Whether an event is too old to message anyone about."""
    return now - occurred_at > STALE_AFTER
