# ruff: noqa: RUF001  # Serbian Cyrillic texts: their letters look like Latin ones on purpose
"""The texts of messages, per kind and language: Serbian in Latin script (`sr-Latn`, the
default), Serbian in Cyrillic (`sr-Cyrl`) and English (`en`). Pure.

Dates are civil dates in the national timezone (an appointment's day is one already;
an instant such as a certificate's issuing time is converted). A site's hours are its
opening hours as booking published them (local time): appointments are for a day, not
a minute.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import msgspec

from .domain import Facts, Kind


class Place(msgspec.Struct, frozen=True, kw_only=True):
    """A vaccination site as booking defined it."""

    name: str
    address: str
    opening_hours: str


class Rendered(msgspec.Struct, frozen=True):
    """A subject (e-mail only) and a text."""

    subject: str
    body: str


_MONTHS = {
    "sr-Latn": [
        "januar",
        "februar",
        "mart",
        "april",
        "maj",
        "jun",
        "jul",
        "avgust",
        "septembar",
        "oktobar",
        "novembar",
        "decembar",
    ],
    "sr-Cyrl": [
        "јануар",
        "фебруар",
        "март",
        "април",
        "мај",
        "јун",
        "јул",
        "август",
        "септембар",
        "октобар",
        "новембар",
        "децембар",
    ],
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
}


def format_date(day: date, language: str) -> str:
    """`12. mart 2026.` / `12. март 2026.` / `12 March 2026`."""
    month = _MONTHS[language][day.month - 1]
    if language == "en":
        return f"{day.day} {month} {day.year}"
    return f"{day.day}. {month} {day.year}."


_SUBJECTS: dict[Kind, dict[str, str]] = {
    Kind.APPOINTMENT_BOOKED: {
        "sr-Latn": "Zakazan termin za vakcinaciju",
        "sr-Cyrl": "Заказан термин за вакцинацију",
        "en": "Your vaccination appointment",
    },
    Kind.SECOND_DOSE_INVITATION: {
        "sr-Latn": "Poziv za drugu dozu",
        "sr-Cyrl": "Позив за другу дозу",
        "en": "Invitation to your second dose",
    },
    Kind.BOOSTER_INVITATION: {
        "sr-Latn": "Poziv za buster dozu",
        "sr-Cyrl": "Позив за бустер дозу",
        "en": "Invitation to your booster dose",
    },
    Kind.REMINDER: {
        "sr-Latn": "Podsetnik: vakcinacija sutra",
        "sr-Cyrl": "Подсетник: вакцинација сутра",
        "en": "Reminder: your vaccination is tomorrow",
    },
    Kind.APPOINTMENT_MOVED: {
        "sr-Latn": "Termin za vakcinaciju je pomeren",
        "sr-Cyrl": "Термин за вакцинацију је померен",
        "en": "Your vaccination appointment has moved",
    },
    Kind.APPOINTMENT_CANCELLED: {
        "sr-Latn": "Termin za vakcinaciju je otkazan",
        "sr-Cyrl": "Термин за вакцинацију је отказан",
        "en": "Your vaccination appointment is cancelled",
    },
    Kind.APPOINTMENT_MISSED: {
        "sr-Latn": "Propušten termin za vakcinaciju",
        "sr-Cyrl": "Пропуштен термин за вакцинацију",
        "en": "You missed your vaccination appointment",
    },
    Kind.CERTIFICATE_READY: {
        "sr-Latn": "Vaša potvrda o vakcinaciji je spremna",
        "sr-Cyrl": "Ваша потврда о вакцинацији је спремна",
        "en": "Your vaccination certificate is ready",
    },
    Kind.LOT_RECALLED: {
        "sr-Latn": "Važno: povučena serija vakcine",
        "sr-Cyrl": "Важно: повучена серија вакцине",
        "en": "Important: a vaccine lot was recalled",
    },
}

# {when}, {place}, {address}, {hours}, {vaccine}, {from_when}, {from_place}, {lot}, {dose}
_BODIES: dict[Kind, dict[str, str]] = {
    Kind.APPOINTMENT_BOOKED: {
        "sr-Latn": "Zakazana vam je vakcinacija ({vaccine}, doza {dose}) {when}, "
        "{hours}, na mestu {place}, {address}.",
        "sr-Cyrl": "Заказана вам је вакцинација ({vaccine}, доза {dose}) {when}, "
        "{hours}, на месту {place}, {address}.",
        "en": "Your vaccination ({vaccine}, dose {dose}) is booked for {when}, {hours}, "
        "at {place}, {address}.",
    },
    Kind.SECOND_DOSE_INVITATION: {
        "sr-Latn": "Vreme je za drugu dozu ({vaccine}): {when}, {hours}, {place}, {address}.",
        "sr-Cyrl": "Време је за другу дозу ({vaccine}): {when}, {hours}, {place}, {address}.",
        "en": "It is time for your second dose ({vaccine}): {when}, {hours}, "
        "at {place}, {address}.",
    },
    Kind.BOOSTER_INVITATION: {
        "sr-Latn": "Pozivamo vas na buster dozu ({vaccine}): {when}, {hours}, {place}, {address}.",
        "sr-Cyrl": "Позивамо вас на бустер дозу ({vaccine}): {when}, {hours}, {place}, {address}.",
        "en": "You are invited to a booster dose ({vaccine}): {when}, {hours}, "
        "at {place}, {address}.",
    },
    Kind.REMINDER: {
        "sr-Latn": "Sutra, {when}, {hours}, očekujemo vas na mestu {place}, {address} "
        "({vaccine}). Ponesite ličnu kartu.",
        "sr-Cyrl": "Сутра, {when}, {hours}, очекујемо вас на месту {place}, {address} "
        "({vaccine}). Понесите личну карту.",
        "en": "Tomorrow, {when}, {hours}, we expect you at {place}, {address} ({vaccine}). "
        "Please bring your identity card.",
    },
    Kind.APPOINTMENT_MOVED: {
        "sr-Latn": "Vaš termin ({from_when}, {from_place}) pomeren je na {when}, {hours}, "
        "{place}, {address}.",
        "sr-Cyrl": "Ваш термин ({from_when}, {from_place}) померен је на {when}, {hours}, "
        "{place}, {address}.",
        "en": "Your appointment ({from_when}, {from_place}) has moved to {when}, {hours}, "
        "at {place}, {address}.",
    },
    Kind.APPOINTMENT_CANCELLED: {
        "sr-Latn": "Vaš termin {when} na mestu {place} je otkazan. Dobićete novi poziv.",
        "sr-Cyrl": "Ваш термин {when} на месту {place} је отказан. Добићете нови позив.",
        "en": "Your appointment on {when} at {place} is cancelled. You will be invited again.",
    },
    # Booking's no-show sweep: the person has no open appointment, so is waiting again.
    Kind.APPOINTMENT_MISSED: {
        "sr-Latn": "Niste došli na termin {when} na mestu {place}. Ponovo ste na listi "
        "čekanja: pri sledećem zakazivanju dobićete novi termin ako ima slobodnih mesta "
        "i vakcina.",
        "sr-Cyrl": "Нисте дошли на термин {when} на месту {place}. Поново сте на листи "
        "чекања: при следећем заказивању добићете нови термин ако има слободних места "
        "и вакцина.",
        "en": "You did not come to your appointment on {when} at {place}. You are back on "
        "the waiting list: the next scheduling run books you a new appointment if a place "
        "and a vaccine are free.",
    },
    Kind.CERTIFICATE_READY: {
        "sr-Latn": "Vaša potvrda o vakcinaciji ({vaccine}, doza {dose}) izdata je {when}. "
        "Preuzmite je na portalu eUprava.",
        "sr-Cyrl": "Ваша потврда о вакцинацији ({vaccine}, доза {dose}) издата је {when}. "
        "Преузмите је на порталу еУправа.",
        "en": "Your vaccination certificate ({vaccine}, dose {dose}) was issued on {when}. "
        "Download it from the eUprava portal.",
    },
    Kind.LOT_RECALLED: {
        "sr-Latn": "Serija {lot} vakcine {vaccine}, kojom ste vakcinisani, povučena je. "
        "Javite se svom lekaru ako imate bilo kakve tegobe.",
        "sr-Cyrl": "Серија {lot} вакцине {vaccine}, којом сте вакцинисани, повучена је. "
        "Јавите се свом лекару ако имате било какве тегобе.",
        "en": "Lot {lot} of {vaccine}, which you were vaccinated with, has been recalled. "
        "Please see your doctor if you feel unwell.",
    },
}

_HOURS = {"sr-Latn": "od {0} do {1} časova", "sr-Cyrl": "од {0} до {1} часова", "en": "{0}-{1}"}


def format_hours(opening_hours: str, language: str) -> str:
    """`08:00-20:00` as the language says it."""
    start, sep, end = opening_hours.partition("-")
    return _HOURS[language].format(start.strip(), end.strip()) if sep else opening_hours


def render(
    kind: Kind,
    language: str,
    facts: Facts,
    *,
    zone: ZoneInfo,
    vaccine: str,
    place: Place | None = None,
    from_place: Place | None = None,
) -> Rendered:
    """The message in `language` (a supported one: see domain.language_of)."""
    when_day: date | None = facts.day
    if kind is Kind.CERTIFICATE_READY and facts.issued_at is not None:
        when_day = _local(facts.issued_at, zone)
    values = {
        "when": format_date(when_day, language) if when_day else "",
        "place": place.name if place else "",
        "address": place.address if place else "",
        "hours": format_hours(place.opening_hours, language) if place else "",
        "vaccine": vaccine,
        "dose": str(facts.dose_number or ""),
        "from_when": format_date(facts.from_day, language) if facts.from_day else "",
        "from_place": from_place.name if from_place else "",
        "lot": facts.lot_number or "",
    }
    return Rendered(_SUBJECTS[kind][language], _BODIES[kind][language].format(**values))


def _local(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()
