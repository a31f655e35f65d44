"""The `citizens` read model: one `apply_event` serves both the command path
(same transaction as the append) and `rebuild_read_model` (a replay of `events`).

Each write is guarded by the version, so applying an event twice, or an
older one after a newer one, changes nothing.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from immunreg import audit
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Event
from immunreg.contracts.registration import (
    CONTEXT,
    CitizenErased,
    CitizenRegistered,
    ContactDetailsChanged,
    PreferencesChanged,
    RegistrationWithdrawn,
)
from immunreg.eventstore.database import Connection
from immunreg.eventstore.postgres import Cte

from .domain import STREAM_TYPE

_json = msgspec.json.Encoder()

# `{gate}`: empty, or "FROM <cte>" when it goes in a registration's one statement
# (`registered_row`); the casts are there because a SELECT list does not take the
# columns' types as VALUES does.
_REGISTERED_TEMPLATE = """
INSERT INTO citizens AS c (
    citizen_id, status, version, birth_date, sex, municipality_code, priority_group,
    conditions, vaccine_preferences, preferred_municipality_code, consent, channel,
    personal, registered_at, updated_at, language, health)
SELECT $1::text, 'active', $2::int, $3::date, $4::text, $5::text, $6::text, $7::text[],
       $8::text[], $9::text, $10::text::jsonb, $11::text, $12::text::jsonb,
       $13::timestamptz, $13::timestamptz, $14::text, $15::text::jsonb {gate}
ON CONFLICT (citizen_id) DO UPDATE SET
    status = 'active', version = excluded.version, birth_date = excluded.birth_date,
    sex = excluded.sex, municipality_code = excluded.municipality_code,
    priority_group = excluded.priority_group, conditions = excluded.conditions,
    vaccine_preferences = excluded.vaccine_preferences,
    preferred_municipality_code = excluded.preferred_municipality_code,
    consent = excluded.consent, channel = excluded.channel, personal = excluded.personal,
    registered_at = excluded.registered_at, updated_at = excluded.updated_at,
    language = excluded.language, health = excluded.health, withdrawn_at = NULL,
    erased_at = NULL
WHERE c.version < excluded.version
"""
_REGISTERED = _REGISTERED_TEMPLATE.format(gate="")

_CONTACT = """
UPDATE citizens SET personal = $4::text::jsonb, version = $2, updated_at = $3
WHERE citizen_id = $1 AND version < $2
"""

_PREFERENCES = """
UPDATE citizens SET priority_group = $4, conditions = $5, vaccine_preferences = $6,
    preferred_municipality_code = $7, language = $8, health = $9::text::jsonb, version = $2,
    updated_at = $3
WHERE citizen_id = $1 AND version < $2
"""

_WITHDRAWN = """
UPDATE citizens SET status = 'withdrawn', withdrawn_at = $3, version = $2, updated_at = $3
WHERE citizen_id = $1 AND version < $2
"""

# Erasure keeps only the id and the lifecycle: everything else goes, clear or sealed.
_ERASED = """
UPDATE citizens SET status = 'erased', erased_at = $3, version = $2, updated_at = $3,
    birth_date = NULL, sex = NULL, municipality_code = NULL, priority_group = NULL,
    conditions = NULL, vaccine_preferences = NULL, preferred_municipality_code = NULL,
    consent = NULL, channel = NULL, personal = NULL, registered_at = NULL, withdrawn_at = NULL,
    language = NULL, health = NULL
WHERE citizen_id = $1 AND version < $2
"""


def _sealed_json(sealed: Sealed | None) -> str | None:
    return None if sealed is None else _json.encode(sealed).decode()


_OTHER = """
UPDATE citizens SET version = $2, updated_at = $3 WHERE citizen_id = $1 AND version < $2
"""


def _registered_args(
    citizen_id: str, version: int, recorded_at: datetime, event: CitizenRegistered
) -> tuple[object, ...]:
    return (
        citizen_id,
        version,
        event.birth_date,
        event.sex,
        event.municipality_code,
        event.priority_group,
        event.conditions,
        event.vaccine_preferences,
        event.preferred_municipality_code,
        _json.encode(event.consent).decode(),
        event.channel,
        _json.encode(event.personal).decode(),
        recorded_at,
        event.language,
        _sealed_json(event.health),
    )


def registered_row(
    citizen_id: str, version: int, recorded_at: datetime, event: CitizenRegistered, *, gate: str
) -> Cte:
    """What `apply_event` writes for a registration, as a CTE of a registration's one
    statement (`Along`) that writes only when the CTE `gate` yields a row."""
    sql = _REGISTERED_TEMPLATE.format(gate=f"FROM {gate}")
    return ("registered", sql, _registered_args(citizen_id, version, recorded_at, event))


async def apply_event(
    conn: Connection, citizen_id: str, version: int, recorded_at: datetime, event: Event
) -> None:
    """Bring the citizen's row up to `version` (the event's place in the stream)."""
    key = (citizen_id, version, recorded_at)
    if isinstance(event, CitizenRegistered):
        await conn.execute(_REGISTERED, *_registered_args(citizen_id, version, recorded_at, event))
    elif isinstance(event, ContactDetailsChanged):
        await conn.execute(_CONTACT, *key, _json.encode(event.personal).decode())
    elif isinstance(event, PreferencesChanged):
        await conn.execute(
            _PREFERENCES,
            *key,
            event.priority_group,
            event.conditions,
            event.vaccine_preferences,
            event.preferred_municipality_code,
            event.language,
            _sealed_json(event.health),
        )
    elif isinstance(event, RegistrationWithdrawn):
        await conn.execute(_WITHDRAWN, *key)
    elif isinstance(event, CitizenErased):
        await conn.execute(_ERASED, *key)
    else:
        await conn.execute(_OTHER, *key)


_REPLAY = """
SELECT stream_id, version, type, schema_version, data::text AS data, recorded_at
FROM events WHERE stream_type = $1 ORDER BY stream_id, version
"""


async def rebuild_read_model(pool: asyncpg.Pool, *, batch: int = 1000) -> int:
    """Empty `citizens` and replay every Citizen event into it; returns the events applied.

    One transaction: readers see the old model until it commits, and writers
    that commit meanwhile wait for it (their rows are then applied on top).
    """
    applied = 0
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("TRUNCATE citizens")
        async for row in conn.cursor(_REPLAY, STREAM_TYPE, prefetch=batch):
            if not CONTEXT.knows(row["type"]):
                continue
            event = CONTEXT.decode(
                row["data"].encode(), schema_version=row["schema_version"], type_name=row["type"]
            )
            await apply_event(conn, row["stream_id"], row["version"], row["recorded_at"], event)
            applied += 1
    return applied


_FETCH = """
SELECT c.citizen_id, c.status, c.version, c.birth_date, c.sex, c.municipality_code,
       c.priority_group, c.conditions, c.vaccine_preferences, c.preferred_municipality_code,
       c.consent::text AS consent, c.channel, c.personal::text AS personal,
       c.registered_at, c.updated_at, c.language, c.health::text AS health,
       k.key_id, k.wrapped::text AS wrapped_key
FROM citizens c LEFT JOIN citizen_keys k USING (citizen_id)
WHERE c.citizen_id = $1
"""


async def fetch_citizen(conn: Connection | asyncpg.Pool, citizen_id: str) -> asyncpg.Record | None:
    """The citizen's row with its wrapped data key (None when never registered)."""
    return await conn.fetchrow(_FETCH, citizen_id)


# --- the national-id index: a keyed hash of the national id -> the citizen id --------------


async def citizen_of_national_id(conn: Connection, national_key: str) -> str | None:
    """The citizen the national id (its keyed hash) is registered as."""
    found: str | None = await conn.fetchval(
        "SELECT citizen_id FROM citizen_national_ids WHERE national_id_hash = $1", national_key
    )
    return found


_INDEX_NATIONAL_ID = """
INSERT INTO citizen_national_ids (national_id_hash, citizen_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING true
"""


async def index_national_id(conn: Connection, national_key: str, citizen_id: str) -> bool:
    """Index the national id as the citizen; False when another transaction did first
    (the unique key makes this one wait for that one's end)."""
    inserted = await conn.fetchval(_INDEX_NATIONAL_ID, national_key, citizen_id)
    return inserted is not None


def national_id_claim(national_key: str, citizen_id: str, legacy_id: str | None) -> Cte:
    """`index_national_id` as the CTE `claimed` of a registration's one statement: a row
    when it indexed the national id, none when the id is indexed already (after waiting for
    a concurrent registration of it to end) or when `legacy_id`, the id the national id had
    before random ids, has events (that registration may be taken up again)."""
    sql = """
    INSERT INTO citizen_national_ids (national_id_hash, citizen_id)
    SELECT $1::text, $2::text
    WHERE NOT EXISTS (SELECT 1 FROM events WHERE stream_id = $3::text)
    ON CONFLICT DO NOTHING RETURNING citizen_id
    """
    return ("claimed", sql, (national_key, citizen_id, legacy_id))


async def unindex_national_id(conn: Connection, citizen_id: str) -> None:
    """Forget the citizen's national id (erasure): nothing links it to the citizen id."""
    await conn.execute("DELETE FROM citizen_national_ids WHERE citizen_id = $1", citizen_id)


# --- citizen_sites: where a citizen was booked or vaccinated (booking's and
# administration's events), for site staff's linked reach -----------------------------


async def link_citizen_to_site(
    conn: Connection, citizen_id: str, site_id: str, linked_at: datetime
) -> None:
    """Remember that `site_id` met (or will meet) the citizen; the first link's time stays."""
    await conn.execute(
        "INSERT INTO citizen_sites (citizen_id, site_id, linked_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (citizen_id, site_id) DO NOTHING",
        citizen_id,
        site_id,
        linked_at,
    )


# Site staff's linked reach: the citizen is linked to the site (an appointment or a dose).
citizen_at_site = audit.citizen_at_site_in("citizen_sites")
