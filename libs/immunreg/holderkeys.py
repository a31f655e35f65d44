"""A holder's side of per-citizen keys: how a service that needs a citizen's personal
data (certificates for names, notifications for contacts) gets the data key, in a way
that erasure ends.

1. On `CitizenRegistered` the holder makes an X25519 key pair for that citizen
   (`offer`), keeps it in `holder_keys` (holderkeys.sql) and publishes the public half
   (`HolderKeyOffered`, stream `holder-key-<citizen_id>`) through its outbox, in the
   consumer's transaction.
2. Registration answers with `PersonalDataKeyGranted`: the data key wrapped to that
   public key (`immunreg.sealing.wrap_key`). The holder keeps it (`keep_grant`) and
   opens it when it needs the data (`open_grant`). Data that arrives before its grant
   waits, as it did before.
3. On `CitizenErased` the holder deletes the row (`forget`), in the same transaction as
   the sealed copies. Kafka and the event stores then hold only public keys and
   ciphertexts under keys that exist nowhere.

Citizens whose sealed data a holder kept before holder keys existed get an offer at the
holder's start (`offer_missing`); it reads the holder's `citizens(citizen_id, personal,
erased)` table, which both holders keep.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from pathlib import Path

import asyncpg

from immunreg.contracts.common import HolderKeyOffered
from immunreg.contracts.envelope import Context, Metadata
from immunreg.contracts.registration import (
    CitizenRegistered,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.eventstore.database import Connection
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.locks import LockKey, lock_for_transaction
from immunreg.eventstore.postgres import Along
from immunreg.eventstore.store import EventStore
from immunreg.sealing import UnsealError, new_holder_key_pair, unwrap_key

HOLDER_KEYS_SQL = Path(__file__).with_name("holderkeys.sql")
STREAM_TYPE = "HolderKey"

log = logging.getLogger(__name__)


def stream_id(citizen_id: str) -> str:
    """The stream a holder's offers for one citizen are appended to."""
    return f"holder-key-{citizen_id}"


async def offer(
    store: EventStore,
    conn: Connection,
    context: Context,
    registered: CitizenRegistered,
    *,
    metadata: Metadata | None = None,
) -> bool:
    """Make and offer a key pair for the data key the registration's personal data is
    sealed with, unless one was made for it already (a registration again after a
    withdrawal keeps its data key); whether an offer was made. A pair made for an older
    data key is replaced. The holder is the context that publishes the offer."""
    subject = (registered.citizen_id, registered.personal.key_id)
    return await _offer_for(store, conn, context, subject, metadata, keep=_KEEP_OR_REPLACE)


# Keeping the pair and reading the offers' stream version is one round trip: the pair is
# written (or an existing row locked) first, so a concurrent offer for the citizen waits
# here; if it appended meanwhile, this statement's snapshot misses that event and the
# append below is refused by the stream's primary key (ConcurrencyConflict: the consumer
# retries the message, offer_missing skips the citizen), never written twice.
_KEEP = """
WITH kept AS (
    INSERT INTO holder_keys (citizen_id, data_key_id, private_key, public_key)
    VALUES ($1, $2, $3, $4)
    {on_conflict}
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM kept) AS kept,
       (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $5) AS version
"""
# `offer`: a pair made for an older data key is replaced; one for this data key stays.
_REPLACE = """ON CONFLICT (citizen_id) DO UPDATE SET data_key_id = excluded.data_key_id,
        private_key = excluded.private_key, public_key = excluded.public_key,
        wrapped_key = NULL, created_at = now(), granted_at = NULL
    WHERE holder_keys.data_key_id <> excluded.data_key_id"""
_IF_NONE = "ON CONFLICT (citizen_id) DO NOTHING"
_KEEP_OR_REPLACE = _KEEP.format(on_conflict=_REPLACE)
# `offer_missing`: only citizens with no pair at all.
_KEEP_IF_NONE = _KEEP.format(on_conflict=_IF_NONE)
# The pair of a citizen whose offers' stream does not exist yet, as the CTE `kept` of the
# offer's own statement (`_offer_for`); nothing when the stream exists (the two-statement
# way above then reads its version).
_KEEP_FIRST = {
    keep: f"""
    INSERT INTO holder_keys (citizen_id, data_key_id, private_key, public_key)
    SELECT $1::text, $2::text, $3::bytea, $4::bytea
    WHERE NOT EXISTS (SELECT 1 FROM events WHERE stream_id = $5::text)
    {on_conflict}
    RETURNING 1
    """
    for keep, on_conflict in ((_KEEP_OR_REPLACE, _REPLACE), (_KEEP_IF_NONE, _IF_NONE))
}


async def _offer_for(
    store: EventStore,
    conn: Connection,
    context: Context,
    subject: tuple[str, str],
    metadata: Metadata | None,
    *,
    keep: str,
) -> bool:
    """A new key pair for (citizen id, data key id), kept and offered unless `keep`
    leaves the pair there (then nothing is offered); whether it was offered."""
    citizen_id, data_key_id = subject
    private, public = new_holder_key_pair()
    stream = stream_id(citizen_id)
    event = HolderKeyOffered(
        citizen_id=citizen_id,
        holder=context.name,
        public_key=base64.b64encode(public).decode("ascii"),
        data_key_id=data_key_id,
    )
    # A citizen's first offer (no stream yet): the pair and the offer in one statement.
    first = Along(
        [
            ("kept", _KEEP_FIRST[keep], (citizen_id, data_key_id, private, public, stream)),
            ("gate", "SELECT 1 FROM kept", ()),
        ]
    )
    if await store.append_along(
        conn, stream, STREAM_TYPE, 0, [event], along=first, context=context, metadata=metadata
    ):
        return True
    row = await conn.fetchrow(keep, citizen_id, data_key_id, private, public, stream)
    if row is None or not row["kept"]:  # (one row always)
        return False
    version = row["version"]
    await store.append(
        stream, STREAM_TYPE, version, [event], context=context, metadata=metadata, conn=conn
    )
    return True


_MISSING = """
SELECT c.citizen_id, c.personal->>'key_id' AS data_key_id
FROM citizens c LEFT JOIN holder_keys k ON k.citizen_id = c.citizen_id
WHERE c.personal IS NOT NULL AND NOT c.erased AND k.citizen_id IS NULL
  AND c.citizen_id > $1
ORDER BY c.citizen_id
LIMIT $2
"""


async def offer_missing(
    store: EventStore, pool: asyncpg.Pool, context: Context, batch: int = 200
) -> int:
    """Offer a key for every citizen whose sealed data is here without one (kept before
    holder keys existed); how many offers were made. Replicas take turns per batch (an
    advisory lock); a citizen the consumer offers for meanwhile is skipped."""
    offered, after = 0, ""
    while True:
        async with pool.acquire() as conn, conn.transaction():
            # Replicas take turns; the query skips what another one offered for.
            await lock_for_transaction(
                conn, f"holderkeys:offer-missing:{context.name}", key=LockKey.SCHEMA_AND_NAME
            )
            rows = await conn.fetch(_MISSING, after, batch)
            for row in rows:
                try:
                    async with conn.transaction():  # a savepoint: one conflict skips one
                        if await _offer_missing_one(store, conn, context, row):
                            offered += 1
                except ConcurrencyConflict:
                    continue
        if len(rows) < batch:
            return offered
        after = rows[-1]["citizen_id"]
        await asyncio.sleep(0)


async def _offer_missing_one(
    store: EventStore, conn: Connection, context: Context, row: asyncpg.Record
) -> bool:
    if row["data_key_id"] is None:
        return False
    subject = (row["citizen_id"], row["data_key_id"])
    return await _offer_for(store, conn, context, subject, None, keep=_KEEP_IF_NONE)


# Kept, the pair's row locked, in one statement; checked after (it opens with the pair's
# private key), and what the row held is put back when it does not.
_KEEP_GRANT = """
WITH held AS (
    SELECT citizen_id, private_key, wrapped_key, granted_at FROM holder_keys
    WHERE citizen_id = $1 AND public_key = $2
    FOR UPDATE
)
UPDATE holder_keys h SET wrapped_key = $3, granted_at = now()
FROM held WHERE h.citizen_id = held.citizen_id
RETURNING held.private_key, held.wrapped_key AS old_wrapped_key,
          held.granted_at AS old_granted_at
"""


async def keep_grant(conn: Connection, holder: str, event: PersonalDataKeyGranted) -> bool:
    """Keep a grant made to this holder's current key for the citizen; whether it was.

    A grant for another holder, to a key no longer here (erased, or replaced by a
    newer registration) or from before holder keys is skipped; one that does not
    open with the key it names is logged and skipped (no retry would open it)."""
    if event.recipient != holder or event.holder_key is None:
        return False
    try:
        offered = base64.b64decode(event.holder_key, validate=True)
    except (binascii.Error, ValueError):
        return False
    row = await conn.fetchrow(_KEEP_GRANT, event.citizen_id, offered, event.wrapped_key)
    if row is None:  # no pair here, or one for another key
        return False
    try:
        open_grant(holder, event.citizen_id, row["private_key"], event.wrapped_key)
    except (UnsealError, ValueError):
        log.warning("a data key granted to %s does not open with its key", holder)
        # The row is still locked by this transaction: put back what it held.
        await conn.execute(
            "UPDATE holder_keys SET wrapped_key = $2, granted_at = $3 WHERE citizen_id = $1",
            event.citizen_id,
            row["old_wrapped_key"],
            row["old_granted_at"],
        )
        return False
    return True


def open_grant(holder: str, citizen_id: str, private_key: bytes, wrapped_key: str) -> bytes:
    """The citizen's data key from a kept grant; UnsealError if it does not open."""
    return unwrap_key(private_key, wrapped_key, grant_context(citizen_id, holder))


async def forget(conn: Connection, citizen_id: str) -> None:
    """Delete the citizen's key pair and grant (erasure)."""
    await conn.execute("DELETE FROM holder_keys WHERE citizen_id = $1", citizen_id)


async def offer_missing_at_start(store: EventStore, pool: asyncpg.Pool, context: Context) -> None:
    """`offer_missing` as a start-up task: logged, and tried again at the next start if it
    fails (nothing is lost meanwhile: those citizens' data waits, as before)."""
    try:
        offered = await offer_missing(store, pool, context)
    except (asyncpg.PostgresError, OSError):
        log.exception("offering keys for citizens kept before holder keys failed")
        return
    if offered:
        log.info("offered keys for %d citizens kept before holder keys", offered)
