# ruff: noqa: RUF001  # Serbian Cyrillic texts
"""The notifications service against the real PostgreSQL, Kafka and a real SMTP server and
SMS gateway: what each event sends, in which language, once; opt-out, erasure, retries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from immunreg.contracts import booking
from immunreg.http.auth import Role
from immunreg.localinfra.mailbox import Mailbox
from immunreg.reference.calendar import today
from services.notifications.handlers import appointment_missed

from ..support.ports import free_port
from .conftest import Notifications, eventually, running_notifications


async def test_a_booking_sends_one_invitation_and_a_reminder_the_day_before(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person(language="en")
    await feed.register(person)
    site_id = await feed.site(name="Health Centre Vracar", address="Njegoseva 9, Belgrade")
    day = today() + timedelta(days=3)
    # As a scheduling run books: the AppointmentBooked alone, nothing beside it.
    await feed.book(person, site_id, day, run_id="run-1")

    assert person.email is not None
    [invitation] = await notifications.received(person.email)
    assert invitation.subject == "Your vaccination appointment", invitation
    for fact in ("Health Centre Vracar", "Njegoseva 9, Belgrade", "Comirnaty", "08:00-20:00"):
        assert fact in invitation.body
    assert f"{day.day} {day.strftime('%B')} {day.year}" in invitation.body

    rows = await notifications.messages_of(person.citizen_id)
    reminder = next(r for r in rows if r["kind"] == "reminder")
    assert reminder["status"] == "pending"
    due = reminder["due_at"].astimezone(notifications.deps.zone)
    assert (due.date(), due.hour) == (day - timedelta(days=1), 10)

    with notifications.at(reminder["due_at"] + timedelta(seconds=1)):
        messages = await notifications.received(person.email, 2)
    assert messages[1].subject == "Reminder: your vaccination is tomorrow"
    assert messages[0].message_id != messages[1].message_id


async def test_an_event_delivered_twice_sends_one_message(notifications: Notifications) -> None:
    feed = notifications.feed
    person = feed.person(sms=True)
    await feed.register(person)
    site_id = await feed.site()
    # Two days ahead: the reminder (the day before, 10:00) is still to come whatever the
    # time of day the test runs (for tomorrow, after 10:00 there is no reminder).
    _, envelope = feed.booked(person, site_id, today() + timedelta(days=2))
    await feed.publish(booking.CONTEXT, envelope)
    await feed.publish(booking.CONTEXT, envelope)  # the relay's or the broker's duplicate

    assert person.phone is not None
    rows = await notifications.settled(person.citizen_id, 2)
    assert sorted((r["kind"], r["status"], r["channel"]) for r in rows) == [
        ("appointment_booked", "sent", "sms"),
        ("reminder", "pending", None),
    ]
    # The second copy was consumed too (both offsets are behind the position) and
    # queued nothing: the only message is the one sent.
    await eventually(
        lambda: _consumed_past(notifications, envelope.event_id), "the copy to be consumed"
    )
    assert len(notifications.mailbox.to(person.phone)) == 1
    assert len(await notifications.messages_of(person.citizen_id)) == 2


def ours(rows: list[asyncpg.Record], appointment_id: str) -> list[asyncpg.Record]:
    """The messages about the test's own appointment (and those about no appointment):
    booking services of other tests share the topics and may book the person too."""
    return [r for r in rows if r["appointment_id"] in (None, appointment_id)]


async def _consumed_past(notifications: Notifications, event_id: object) -> bool:
    seen = await notifications.pool.fetchval(
        "SELECT count(*) FROM processed_events WHERE event_id = $1", event_id
    )
    return bool(seen)


@pytest.mark.parametrize(
    ("language", "subject", "words"),
    [
        ("sr-Latn", "Zakazan termin za vakcinaciju", ["Zakazana vam je", "od 08:00 do 20:00"]),
        ("sr-Cyrl", "Заказан термин за вакцинацију", ["Заказана вам је", "од 08:00 до 20:00"]),
        ("en", "Your vaccination appointment", ["is booked for", "08:00-20:00"]),
    ],
)
async def test_each_person_is_written_to_in_their_language(
    notifications: Notifications, language: str, subject: str, words: list[str]
) -> None:
    feed = notifications.feed
    person = feed.person(language=language)
    await feed.register(person)
    await feed.book(person, await feed.site(), today() + timedelta(days=5))
    assert person.email is not None
    [message] = await notifications.received(person.email)
    assert message.subject == subject
    for word in words:
        assert word in message.body


async def test_a_move_and_a_cancellation_are_told_and_the_old_reminder_is_dropped(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person(language="sr-Latn")
    await feed.register(person)
    first, second = await feed.site(name="Sajam"), await feed.site(name="Dom zdravlja Zvezdara")
    day, later = today() + timedelta(days=4), today() + timedelta(days=6)
    appointment_id = await feed.book(person, first, day)
    await feed.move(
        person, appointment_id, from_site=first, from_day=day, site_id=second, day=later
    )
    await feed.cancel(person, appointment_id, second, later)

    rows = await notifications.settled(person.citizen_id, 5)
    kinds = {(r["kind"], r["status"]) for r in rows}
    assert (
        kinds
        == {
            ("appointment_booked", "sent"),
            ("appointment_moved", "sent"),
            ("appointment_cancelled", "sent"),
            ("reminder", "dropped"),  # the booking's
        }
        and sum(r["kind"] == "reminder" for r in rows) == 2
    )  # and the move's, dropped too
    assert person.email is not None
    texts = [m.body for m in notifications.mailbox.to(person.email)]
    assert any("pomeren je na" in t and "Sajam" in t and "Zvezdara" in t for t in texts)
    assert any("je otkazan" in t for t in texts)


async def test_a_missed_appointment_is_told_once_and_its_pending_reminder_dropped(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person(language="en")
    await feed.register(person)
    site_id = await feed.site(name="Sajam")
    day = today() - timedelta(days=1)  # the sweep marks a day once it is over
    # The service's clock stands three days back while the booking and the no-show
    # arrive: the reminder (due the day before `day`) is still to come, so only the
    # reaction to the no-show can drop it, and nothing is due yet.
    with notifications.at(datetime.now(UTC) - timedelta(days=3)):
        appointment_id = await feed.book(person, site_id, day)
        await notifications.settled(person.citizen_id, 2)
        event, envelope = feed.missed(person, appointment_id, site_id, day)
        await feed.publish(booking.CONTEXT, envelope)
        rows = ours(await notifications.settled(person.citizen_id, 3), appointment_id)
        assert sorted((r["kind"], r["status"]) for r in rows) == [
            ("appointment_booked", "pending"),
            ("appointment_missed", "pending"),
            ("reminder", "dropped"),
        ]
    kept = await notifications.pool.fetchval(
        "SELECT status FROM appointments WHERE appointment_id = $1", appointment_id
    )
    assert kept == "missed"

    assert person.email is not None
    await notifications.received(person.email, 2)
    [missed] = [
        m
        for m in notifications.mailbox.to(person.email)
        if m.subject == "You missed your vaccination appointment"
    ]
    assert f"on {day.day} {day.strftime('%B')} {day.year} at Sajam" in missed.body
    assert "back on the waiting list" in missed.body

    # Redelivered: by the broker (a second copy, consumed past), and past the consumer's
    # memory of it (the reaction itself run again on the same event).
    [(partition, offset)] = await feed.publish(booking.CONTEXT, envelope)
    await eventually(
        lambda: _position_past(notifications, booking.CONTEXT.topic, partition, offset),
        "the copy to be consumed",
    )
    async with notifications.pool.acquire() as conn, conn.transaction():
        await appointment_missed(notifications.deps, conn, event, envelope)
    rows = ours(await notifications.settled(person.citizen_id, 3), appointment_id)
    assert sum(r["kind"] == "appointment_missed" for r in rows) == 1
    subjects = [m.subject for m in notifications.mailbox.to(person.email)]
    assert subjects.count("You missed your vaccination appointment") == 1


async def _position_past(
    notifications: Notifications, topic: str, partition: int, offset: int
) -> bool:
    stored = await notifications.pool.fetchval(
        "SELECT max(next_offset) FROM consumer_positions WHERE topic = $1 AND partition = $2",
        topic,
        partition,
    )
    return stored is not None and stored > offset


async def test_certificate_ready_and_a_recalled_lot_reach_the_person(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person(language="sr-Cyrl")
    await feed.register(person)
    lot = f"LOT-{person.citizen_id[-6:]}"
    await feed.dose(person, lot)
    await feed.certificate(person)
    await feed.recall(lot)
    assert person.email is not None
    messages = await notifications.received(person.email, 2)
    by_subject = {m.subject: m.body for m in messages}
    assert "издата је 2. март 2026." in by_subject["Ваша потврда о вакцинацији је спремна"]
    assert lot in by_subject["Важно: повучена серија вакцине"]


async def test_an_opted_out_person_gets_safety_notices_only(notifications: Notifications) -> None:
    feed = notifications.feed
    person = feed.person(language="en")
    own = notifications.auth(Role.CITIZEN, citizen_id=person.citizen_id)
    answer = await notifications.client.put(
        f"/v1/citizens/{person.citizen_id}/message-preferences",
        json={"opted_out": True},
        headers=own,
    )
    assert answer.status == 200 and (await answer.json())["opted_out"] is True
    other = notifications.auth(Role.CITIZEN, citizen_id="c-aaaaaaaaaaaaaaaaaaaa")
    refused = await notifications.client.put(
        f"/v1/citizens/{person.citizen_id}/message-preferences",
        json={"opted_out": False},
        headers=other,
    )
    assert refused.status == 403

    await feed.register(person)
    lot = f"LOT-{person.citizen_id[-6:]}"
    await feed.dose(person, lot)
    booked = await feed.book(person, await feed.site(), today() + timedelta(days=2))
    await feed.recall(lot)
    rows = ours(await notifications.settled(person.citizen_id, 3), booked)
    assert {(r["kind"], r["status"]) for r in rows} == {
        ("appointment_booked", "dropped"),
        ("reminder", "pending"),  # dropped when it falls due, below
        ("lot_recalled", "sent"),
    }
    reminder = next(r for r in rows if r["kind"] == "reminder")
    with notifications.at(reminder["due_at"] + timedelta(seconds=1)):
        rows = ours(await notifications.settled(person.citizen_id, 3), booked)
    assert {r["status"] for r in rows if r["kind"] == "reminder"} == {"dropped"}
    assert person.email is not None
    assert [m.subject for m in notifications.mailbox.to(person.email)] == [
        "Important: a vaccine lot was recalled"
    ]
    listed = await notifications.client.get(
        f"/v1/citizens/{person.citizen_id}/messages", headers=own
    )
    body = await listed.text()
    assert listed.status == 200 and "lot_recalled" in body
    assert person.email not in body and "recalled." not in body  # no address, no text


async def test_erasure_drops_what_is_not_sent_and_forgets_the_key(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person()
    await feed.register(person)
    await feed.erase(person)
    booked = await feed.book(person, await feed.site(), today() + timedelta(days=3))
    rows = ours(await notifications.settled(person.citizen_id, 2), booked)
    # Erased before the booking arrived: its notice is dropped when sent, its reminder
    # when due (the sender finds no one to send to either way).
    assert {(r["kind"], r["status"]) for r in rows} == {
        ("appointment_booked", "dropped"),
        ("reminder", "pending"),
    }
    row = await notifications.pool.fetchrow(
        "SELECT personal, erased FROM citizens WHERE citizen_id = $1", person.citizen_id
    )
    assert row is not None and row["erased"] and row["personal"] is None
    assert not await notifications.pool.fetchval(
        "SELECT count(*) FROM holder_keys WHERE citizen_id = $1", person.citizen_id
    ), "the key pair made for the person, and the grant to it, are gone"
    assert person.email is not None and notifications.mailbox.to(person.email) == []


async def test_a_message_waits_for_the_key_then_goes(notifications: Notifications) -> None:
    feed = notifications.feed
    person = feed.person()
    await feed.book(person, await feed.site(), today() + timedelta(days=3))
    await eventually(
        lambda: _has_tried(notifications, person.citizen_id), "a try without contact details"
    )
    await feed.register(person)
    assert person.email is not None
    await notifications.received(person.email)


async def _has_tried(notifications: Notifications, citizen_id: str) -> bool:
    rows = await notifications.messages_of(citizen_id)
    return any(r["attempts"] >= 1 for r in rows)


async def test_a_mail_server_that_stays_down_dead_letters_the_message_after_backoff(
    dsn: str, bootstrap: str, mailbox: Mailbox, tmp_path: Path
) -> None:
    async with running_notifications(
        dsn, bootstrap, tmp_path, mailbox, SMTP_PORT=str(free_port())
    ) as down:
        feed = down.feed
        person = feed.person()
        await feed.register(person)
        await feed.book(person, await feed.site(), today() + timedelta(days=1))

        async def dead() -> list[object]:
            rows = await down.messages_of(person.citizen_id)
            return [r for r in rows if r["status"] == "dead_lettered"]

        [row] = await eventually(dead, "the message to be dead-lettered")
        assert row["attempts"] == 3  # MAX_ATTEMPTS in this test
        assert "unreachable" in row["last_error"]
        assert person.email is not None and person.email not in row["last_error"]

        admin = down.auth(Role.ADMIN, subject="test-admin")
        listed = await down.client.get(
            f"/v1/messages?status=dead_lettered&citizen_id={person.citizen_id}", headers=admin
        )
        ids = [m["message_id"] for m in (await listed.json())["items"]]
        assert row["message_id"] in ids
        again = await down.client.post(f"/v1/messages/{row['message_id']}/retry", headers=admin)
        assert again.status == 202
        missing = await down.client.post("/v1/messages/nope/retry", headers=admin)
        assert missing.status == 404

        async def tried_again() -> bool:
            rows = await down.messages_of(person.citizen_id)
            return any(
                r["message_id"] == row["message_id"]
                and r["attempts"] >= 1
                and r["updated_at"] > row["updated_at"]
                for r in rows
            )

        await eventually(tried_again, "the message to be tried again")


async def test_an_old_event_from_a_replayed_history_sends_nothing(
    notifications: Notifications,
) -> None:
    feed = notifications.feed
    person = feed.person()
    await feed.register(person)
    # As if this service were deployed two days after the booking: it reads the history.
    with notifications.at(datetime.now(UTC) + timedelta(days=2)):
        site_id = await feed.site()
        _, envelope = feed.booked(person, site_id, today() + timedelta(days=5))
        await feed.publish(booking.CONTEXT, envelope)
        await eventually(lambda: _consumed_past(notifications, envelope.event_id), "consumed")
    assert await notifications.messages_of(person.citizen_id) == []
