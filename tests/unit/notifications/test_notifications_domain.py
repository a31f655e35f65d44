# ruff: noqa: RUF001  # Serbian Cyrillic texts
"""Notifications' rules and texts (pure): kinds, ids, timers, who gets what, backoff, languages."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notifications.domain import (
    AfterFailure,
    Facts,
    Kind,
    Recipient,
    after_failure,
    booking_kind,
    dispatch,
    is_stale,
    language_of,
    message_id,
    plan_reminder,
    reminder_due,
    still_wanted,
)
from services.notifications.templates import Place, format_date, render

BELGRADE = ZoneInfo("Europe/Belgrade")
NOW = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
PLACE = Place(name="Sajam", address="Bulevar vojvode Mišića 14", opening_hours="08:00-20:00")


def test_message_ids_are_stable_per_event_kind_and_person() -> None:
    event = "0b6c9a2e-1d7f-4a51-8d6a-2f0c3e1b9a77"
    assert message_id(event, Kind.REMINDER) == message_id(event, Kind.REMINDER)
    assert message_id(event, Kind.REMINDER) != message_id(event, Kind.APPOINTMENT_BOOKED)
    assert message_id(event, Kind.LOT_RECALLED, "c-a") != message_id(
        event, Kind.LOT_RECALLED, "c-b"
    )


@pytest.mark.parametrize(
    ("dose", "booster", "kind"),
    [
        (1, False, Kind.APPOINTMENT_BOOKED),
        (2, False, Kind.SECOND_DOSE_INVITATION),
        (3, True, Kind.BOOSTER_INVITATION),
    ],
)
def test_a_later_dose_is_an_invitation(dose: int, booster: bool, kind: Kind) -> None:
    assert booking_kind(dose, booster) is kind


def test_the_reminder_goes_the_day_before_at_ten_local_time_in_summer_and_winter() -> None:
    assert reminder_due(date(2026, 7, 2), BELGRADE) == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert reminder_due(date(2026, 1, 2), BELGRADE) == datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
    # The night the clocks go forward (29 March 2026) changes nothing for the 30th.
    assert reminder_due(date(2026, 3, 30), BELGRADE) == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)


def test_no_reminder_once_its_time_has_passed() -> None:
    facts = Facts(appointment_id="a", day=date(2026, 3, 11))
    early = plan_reminder("e", "c-x", facts, NOW, BELGRADE)  # due 10 March 09:00 UTC
    assert early is not None and early.due_at == datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert plan_reminder("e", "c-x", facts, NOW + timedelta(hours=1), BELGRADE) is None


def test_a_reminder_goes_only_while_its_appointment_stands() -> None:
    facts = Facts(appointment_id="a", day=date(2026, 3, 11))
    assert still_wanted(Kind.REMINDER, facts, "booked", date(2026, 3, 11))
    assert not still_wanted(Kind.REMINDER, facts, "cancelled", date(2026, 3, 11))
    assert not still_wanted(Kind.REMINDER, facts, "booked", date(2026, 3, 12))  # moved
    assert still_wanted(Kind.APPOINTMENT_CANCELLED, facts, "cancelled", date(2026, 3, 11))
    assert not still_wanted(Kind.REMINDER, facts, "missed", date(2026, 3, 11))


def test_a_missed_notice_goes_only_while_the_appointment_stays_missed() -> None:
    facts = Facts(appointment_id="a", day=date(2026, 3, 11))
    assert still_wanted(Kind.APPOINTMENT_MISSED, facts, "missed", date(2026, 3, 11))
    # A dose recorded late marks it attended: the person is not waiting again after all.
    assert not still_wanted(Kind.APPOINTMENT_MISSED, facts, "done", date(2026, 3, 11))


@pytest.mark.parametrize(
    ("kind", "recipient", "expected"),
    [
        (Kind.REMINDER, Recipient(email="a@b.rs", phone="+381641"), ("send", "email", "a@b.rs")),
        (Kind.REMINDER, Recipient(phone="+381641"), ("send", "sms", "+381641")),
        (Kind.REMINDER, Recipient(), ("drop", None, None)),
        (Kind.REMINDER, Recipient(opted_out=True, email="a@b.rs"), ("drop", None, None)),
        (Kind.LOT_RECALLED, Recipient(opted_out=True, email="a@b.rs"), ("send", "email", "a@b.rs")),
        (Kind.LOT_RECALLED, Recipient(erased=True), ("drop", None, None)),
        (Kind.CERTIFICATE_READY, Recipient(known=False), ("wait", None, None)),
    ],
)
def test_who_gets_what_and_how(
    kind: Kind, recipient: Recipient, expected: tuple[object, ...]
) -> None:
    decision = dispatch(kind, recipient)
    assert (decision.action, decision.channel, decision.address) == expected


def test_failures_back_off_then_dead_letter() -> None:
    delays = [
        after_failure(n, NOW).retry_at - NOW  # type: ignore[operator]
        for n in range(1, 6)
    ]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480)]
    assert after_failure(6, NOW) == AfterFailure(None)
    assert after_failure(1, NOW, permanent=True) == AfterFailure(None)
    assert after_failure(20, NOW, max_attempts=50).retry_at == NOW + timedelta(hours=1)


def test_stale_history_asks_for_nothing_and_languages_fall_back() -> None:
    assert is_stale(NOW - timedelta(days=2), NOW)
    assert not is_stale(NOW - timedelta(hours=2), NOW)
    assert language_of("sr-Cyrl") == "sr-Cyrl"
    assert language_of(None) == language_of("de") == "sr-Latn"


BOOKED = Facts(site_id="S", day=date(2026, 3, 12), product_code="EU/1/20/1528", dose_number=1)


@pytest.mark.parametrize(
    ("language", "subject", "body"),
    [
        (
            "sr-Latn",
            "Zakazan termin za vakcinaciju",
            "Zakazana vam je vakcinacija (Comirnaty, doza 1) 12. mart 2026., od 08:00 do 20:00 "
            "časova, na mestu Sajam, Bulevar vojvode Mišića 14.",
        ),
        (
            "sr-Cyrl",
            "Заказан термин за вакцинацију",
            "Заказана вам је вакцинација (Comirnaty, доза 1) 12. март 2026., од 08:00 до 20:00 "
            "часова, на месту Sajam, Bulevar vojvode Mišića 14.",
        ),
        (
            "en",
            "Your vaccination appointment",
            "Your vaccination (Comirnaty, dose 1) is booked for 12 March 2026, 08:00-20:00, "
            "at Sajam, Bulevar vojvode Mišića 14.",
        ),
    ],
)
def test_a_booking_notice_in_each_language(language: str, subject: str, body: str) -> None:
    text = render(
        Kind.APPOINTMENT_BOOKED, language, BOOKED, zone=BELGRADE, vaccine="Comirnaty", place=PLACE
    )
    assert (text.subject, text.body) == (subject, body)


def test_every_kind_has_a_text_in_every_language() -> None:
    for kind in Kind:
        for language in ("sr-Latn", "sr-Cyrl", "en"):
            text = render(kind, language, BOOKED, zone=BELGRADE, vaccine="Comirnaty", place=PLACE)
            assert text.subject and text.body and "{" not in text.body


def test_an_instant_is_dated_in_the_national_timezone() -> None:
    facts = Facts(issued_at=datetime(2026, 3, 1, 23, 30, tzinfo=UTC), dose_number=2)
    text = render(Kind.CERTIFICATE_READY, "en", facts, zone=BELGRADE, vaccine="Spikevax")
    assert "issued on 2 March 2026" in text.body  # 00:30 on 2 March in Belgrade
    assert format_date(date(2026, 12, 1), "sr-Cyrl") == "1. децембар 2026."


# A no-show is marked the day after; the notice names the appointment's own day, a civil date
# in the national timezone (29 March 2026: the night the clocks go forward).
MISSED = Facts(appointment_id="a", site_id="S", day=date(2026, 3, 29), product_code="x")


@pytest.mark.parametrize(
    ("language", "subject", "body"),
    [
        (
            "sr-Latn",
            "Propušten termin za vakcinaciju",
            "Niste došli na termin 29. mart 2026. na mestu Sajam. Ponovo ste na listi "
            "čekanja: pri sledećem zakazivanju dobićete novi termin ako ima slobodnih mesta "
            "i vakcina.",
        ),
        (
            "sr-Cyrl",
            "Пропуштен термин за вакцинацију",
            "Нисте дошли на термин 29. март 2026. на месту Sajam. Поново сте на листи "
            "чекања: при следећем заказивању добићете нови термин ако има слободних места "
            "и вакцина.",
        ),
        (
            "en",
            "You missed your vaccination appointment",
            "You did not come to your appointment on 29 March 2026 at Sajam. You are back on "
            "the waiting list: the next scheduling run books you a new appointment if a place "
            "and a vaccine are free.",
        ),
    ],
)
def test_a_missed_appointment_notice_in_each_language(
    language: str, subject: str, body: str
) -> None:
    text = render(
        Kind.APPOINTMENT_MISSED, language, MISSED, zone=BELGRADE, vaccine="Comirnaty", place=PLACE
    )
    assert (text.subject, text.body) == (subject, body)
