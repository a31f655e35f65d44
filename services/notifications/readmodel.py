"""Notifications' tables: what reactions keep of other contexts' facts, the messages queue,
and the API's reads. Every write runs in the caller's transaction (the consumer's, for
reactions; the sender's own, for deliveries)."""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from immunreg import holderkeys
from immunreg.contracts.common import Sealed
from immunreg.eventstore.database import Connection

from .domain import Facts, Kind, Planned
from .templates import Place

# Writes that run on their own (the sender's marks) take the pool.
Executor = Connection | asyncpg.Pool

_json = msgspec.json.Encoder()
_facts = msgspec.json.Decoder(Facts)

# --- people -----------------------------------------------------------------------------


async def keep_citizen(conn: Connection, citizen_id: str, language: str, personal: Sealed) -> None:
    """A registration (or a registration again): its language and sealed personal data."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, language, personal) VALUES ($1, $2, $3::text::jsonb)
        ON CONFLICT (citizen_id) DO UPDATE SET language = excluded.language,
            personal = excluded.personal, updated_at = now()
        WHERE NOT citizens.erased
        """,
        citizen_id,
        language,
        _json.encode(personal).decode(),
    )


async def replace_personal(conn: Connection, citizen_id: str, personal: Sealed) -> None:
    """New contact details (sealed)."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, personal) VALUES ($1, $2::text::jsonb)
        ON CONFLICT (citizen_id) DO UPDATE SET personal = excluded.personal, updated_at = now()
        WHERE NOT citizens.erased
        """,
        citizen_id,
        _json.encode(personal).decode(),
    )


async def set_language(conn: Connection, citizen_id: str, language: str) -> None:
    """The language the person now wants messages in."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, language) VALUES ($1, $2)
        ON CONFLICT (citizen_id) DO UPDATE SET language = excluded.language, updated_at = now()
        """,
        citizen_id,
        language,
    )


async def erase_citizen(conn: Connection, citizen_id: str) -> None:
    """Forget the key pair, the grant and the sealed data; messages not yet sent are
    dropped."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, erased) VALUES ($1, true)
        ON CONFLICT (citizen_id) DO UPDATE SET erased = true, personal = NULL,
            language = NULL, updated_at = now()
        """,
        citizen_id,
    )
    await holderkeys.forget(conn, citizen_id)
    await conn.execute(
        """
        UPDATE messages SET status = 'dropped', last_error = 'erased', updated_at = now()
        WHERE citizen_id = $1 AND status = 'pending'
        """,
        citizen_id,
    )


async def set_opted_out(conn: Executor, citizen_id: str, opted_out: bool) -> None:
    """The person's choice about messages (safety notices go regardless)."""
    await conn.execute(
        """
        INSERT INTO citizens (citizen_id, opted_out) VALUES ($1, $2)
        ON CONFLICT (citizen_id) DO UPDATE SET opted_out = excluded.opted_out, updated_at = now()
        """,
        citizen_id,
        opted_out,
    )


async def recipient_row(conn: Connection, citizen_id: str) -> asyncpg.Record | None:
    """Language, sealed data, this service's key for the citizen and its grant, erased,
    opted out."""
    return await conn.fetchrow(
        """
        SELECT c.language, c.personal::text AS personal, k.private_key, k.wrapped_key,
               c.erased, c.opted_out
        FROM citizens c LEFT JOIN holder_keys k ON k.citizen_id = c.citizen_id
        WHERE c.citizen_id = $1
        """,
        citizen_id,
    )


# --- sites, appointments, doses --------------------------------------------------------


async def keep_site(conn: Connection, site_id: str, place: Place) -> None:
    """A site's name, address and hours (the newest definition wins)."""
    await conn.execute(
        """
        INSERT INTO sites (site_id, name, address, opening_hours) VALUES ($1, $2, $3, $4)
        ON CONFLICT (site_id) DO UPDATE SET name = excluded.name, address = excluded.address,
            opening_hours = excluded.opening_hours
        """,
        site_id,
        place.name,
        place.address,
        place.opening_hours,
    )


async def site(conn: Connection, site_id: str | None) -> Place | None:
    """The site, if booking has defined it."""
    if site_id is None:
        return None
    row = await conn.fetchrow(
        "SELECT name, address, opening_hours FROM sites WHERE site_id = $1", site_id
    )
    if row is None:
        return None
    return Place(name=row["name"], address=row["address"], opening_hours=row["opening_hours"])


async def keep_appointment(
    conn: Connection, appointment_id: str, *, citizen_id: str, site_id: str, day: date, status: str
) -> None:
    """The appointment's place, day and status now."""
    await conn.execute(
        """
        INSERT INTO appointments (appointment_id, citizen_id, site_id, day, status)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (appointment_id) DO UPDATE SET site_id = excluded.site_id,
            day = excluded.day, status = excluded.status
        """,
        appointment_id,
        citizen_id,
        site_id,
        day,
        status,
    )


async def appointment(conn: Connection, appointment_id: str | None) -> asyncpg.Record | None:
    """Status and day of an appointment."""
    if appointment_id is None:
        return None
    return await conn.fetchrow(
        "SELECT status, day FROM appointments WHERE appointment_id = $1", appointment_id
    )


async def record_dose(
    conn: Connection, dose_id: str, citizen_id: str, lot_number: str, product_code: str
) -> bool:
    """Keep the dose's lot; True when that lot is already recalled."""
    await conn.execute(
        """
        INSERT INTO doses (dose_id, citizen_id, lot_number, product_code) VALUES ($1, $2, $3, $4)
        ON CONFLICT (dose_id) DO UPDATE SET citizen_id = excluded.citizen_id,
            lot_number = excluded.lot_number, product_code = excluded.product_code
        """,
        dose_id,
        citizen_id,
        lot_number,
        product_code,
    )
    return bool(
        await conn.fetchval("SELECT 1 FROM recalled_lots WHERE lot_number = $1", lot_number)
    )


async def record_recall(conn: Connection, lot_number: str) -> list[str]:
    """Mark the lot recalled; the citizens who had a dose from it (each once)."""
    await conn.execute(
        "INSERT INTO recalled_lots (lot_number) VALUES ($1) ON CONFLICT DO NOTHING", lot_number
    )
    rows = await conn.fetch(
        "SELECT DISTINCT citizen_id FROM doses WHERE lot_number = $1 ORDER BY citizen_id",
        lot_number,
    )
    return [row["citizen_id"] for row in rows]


# --- the queue --------------------------------------------------------------------------


async def enqueue(conn: Connection, planned: Planned) -> None:
    """Queue a message; the same id a second time changes nothing."""
    await conn.execute(
        """
        INSERT INTO messages (message_id, citizen_id, kind, facts, appointment_id, due_at)
        VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)
        ON CONFLICT (message_id) DO NOTHING
        """,
        planned.message_id,
        planned.citizen_id,
        planned.kind.value,
        _json.encode(planned.facts).decode(),
        planned.facts.appointment_id,
        planned.due_at,
    )


async def drop_reminders(conn: Connection, appointment_id: str) -> None:
    """The appointment's reminder is not wanted any more (moved, cancelled, attended, missed)."""
    await conn.execute(
        """
        UPDATE messages SET status = 'dropped', last_error = 'appointment changed',
            updated_at = now()
        WHERE appointment_id = $1 AND kind = $2 AND status = 'pending'
        """,
        appointment_id,
        Kind.REMINDER.value,
    )


class Queued(msgspec.Struct, frozen=True, kw_only=True):
    """A message claimed for sending."""

    message_id: str
    citizen_id: str
    kind: Kind
    facts: Facts
    attempts: int


async def release_claims(conn: Connection) -> int:
    """Messages a sender that died left as `sending` go back to `pending` (sent again with
    the same id: the SMS gateway keeps one; see docs on the SMTP trade-off)."""
    status: str = await conn.execute(
        "UPDATE messages SET status = 'pending', updated_at = now() WHERE status = 'sending'"
    )
    return int(status.rsplit(maxsplit=1)[-1])


async def claim_due(conn: Connection, now: datetime, limit: int) -> list[Queued]:
    """Take up to `limit` due messages for sending (committed before anything is sent)."""
    rows = await conn.fetch(
        """
        UPDATE messages m SET status = 'sending', attempts = m.attempts + 1, updated_at = now()
        FROM (
            SELECT message_id FROM messages
            WHERE status = 'pending' AND due_at <= $1
            ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED
        ) due
        WHERE m.message_id = due.message_id
        RETURNING m.message_id, m.citizen_id, m.kind, m.facts::text AS facts, m.attempts
        """,
        now,
        limit,
    )
    return [
        Queued(
            message_id=row["message_id"],
            citizen_id=row["citizen_id"],
            kind=Kind(row["kind"]),
            facts=_facts.decode(row["facts"]),
            attempts=row["attempts"],
        )
        for row in rows
    ]


async def mark_sent(conn: Executor, message_id: str, channel: str, at: datetime) -> None:
    """The server or gateway accepted it."""
    await conn.execute(
        """
        UPDATE messages SET status = 'sent', channel = $2, sent_at = $3, last_error = NULL,
            updated_at = now()
        WHERE message_id = $1
        """,
        message_id,
        channel,
        at,
    )


async def mark_retry(conn: Executor, message_id: str, retry_at: datetime, reason: str) -> None:
    """Not sent this time; due again at `retry_at`."""
    await conn.execute(
        """
        UPDATE messages SET status = 'pending', due_at = $2, last_error = $3, updated_at = now()
        WHERE message_id = $1
        """,
        message_id,
        retry_at,
        reason[:500],
    )


async def mark_final(conn: Executor, message_id: str, status: str, reason: str) -> None:
    """Dropped (not wanted or not possible) or dead-lettered (gave up)."""
    await conn.execute(
        """
        UPDATE messages SET status = $2, last_error = $3, updated_at = now()
        WHERE message_id = $1
        """,
        message_id,
        status,
        reason[:500],
    )


# --- the API's reads ------------------------------------------------------------------------

_LIST = """
SELECT message_id, citizen_id, kind, status, channel, attempts, due_at, sent_at, last_error
FROM messages WHERE ($1::text IS NULL OR citizen_id = $1) AND ($2::text IS NULL OR status = $2)
ORDER BY created_at, message_id LIMIT $3
"""


async def list_messages(
    pool: asyncpg.Pool, citizen_id: str | None, status: str | None, limit: int
) -> list[asyncpg.Record]:
    """Messages (what and how, never the text or the address), oldest first."""
    return list(await pool.fetch(_LIST, citizen_id, status, limit))


async def retry_dead_letter(pool: asyncpg.Pool, message_id: str, now: datetime) -> bool:
    """Put a dead-lettered message back in the queue (after a fix); False if it is not one."""
    status: str = await pool.execute(
        """
        UPDATE messages SET status = 'pending', attempts = 0, due_at = $2, updated_at = now()
        WHERE message_id = $1 AND status = 'dead_lettered'
        """,
        message_id,
        now,
    )
    return status.endswith(" 1")
