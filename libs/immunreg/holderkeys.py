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

Pooled keys: the common case, a first registration, skips steps 1 and 2.

- The holder makes pairs for no citizen yet, keeps them in `holder_key_pool` and offers
  their public halves in batches (`HolderKeysPooled`, POOL_BATCH keys, each batch a
  stream of its own), at its start (`fill_pool`) and whenever fewer than POOL_LOW usable
  ones are left (`top_up_pool`, in the consumer's transaction that bound a key).
- Registration files the offers and takes them in batches, each key for one
  registration only (services/registration/pooled.py); a first registration wraps the
  new data key to one pooled key per holder (`grant_context(citizen_id, holder)` as
  above) and carries the grants in `CitizenRegistered.grants` (`HolderGrant`).
- On that `CitizenRegistered` the holder (`offer`) moves the pair out of the pool into
  `holder_keys` for the citizen, the grant with it, in one statement (`_BIND`), and
  checks the grant opens. The pair leaves the pool whatever follows, so it is bound at
  most once. From there it is a key like any other: step 3 deletes it.
- Anything else falls back to steps 1 and 2 unchanged: no grant for this holder (the
  registration had none of its keys at hand, a registration again after a withdrawal,
  the general path, an event from before), a pair no longer pooled here (bound already,
  dropped after expiry), a grant that does not open, a citizen with a row already.

A pooled pair never bound wraps nothing that was ever published: registration lost it
(a crash while holding it, a registration that was then not written) or nobody used it
before it expired. Registration takes keys only while they have POOL_MARGIN left; the
holder deletes pairs POOL_GRACE after their expiry (a grant to one arriving later gets
the fallback). Keys lost by registration still count as pooled here until then, so a
registration with no grant for this holder also tops up when no batch came for
POOL_STALE.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from immunreg.contracts.common import HolderKeyOffered, HolderKeysPooled
from immunreg.contracts.envelope import Context, Metadata
from immunreg.contracts.registration import (
    CitizenRegistered,
    HolderGrant,
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
    """On `CitizenRegistered`: bind the pooled pair the registration carries a grant to
    (`HolderGrant`) to the citizen, the grant kept with it (nothing offered); else (no
    grant for this holder, a pair not pooled here any more, a grant that does not open)
    make and offer a key pair for the data key the registration's personal data is
    sealed with, unless one was made for it already (a registration again after a
    withdrawal keeps its data key). Whether an offer was made. A pair made for an older
    data key is replaced. The holder is the context that publishes the offer."""
    grant = next((g for g in registered.grants if g.recipient == context.name), None)
    if grant is not None and await _bind(
        store, conn, context, registered, grant, metadata=metadata
    ):
        return False
    subject = (registered.citizen_id, registered.personal.key_id)
    offered = await _offer_for(store, conn, context, subject, metadata, keep=_KEEP_OR_REPLACE)
    # No grant for this holder: registration may have had none of its pooled keys.
    await top_up_pool(store, conn, context, stale=True, metadata=metadata)
    return offered


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
    """`offer_missing` and `fill_pool` as a start-up task: logged, and tried again at the
    next start if it fails (nothing is lost meanwhile: those citizens' data waits, as
    before, and registrations fall back to the per-citizen offer)."""
    try:
        offered = await offer_missing(store, pool, context)
        pooled = await fill_pool(store, pool, context)
    except (asyncpg.PostgresError, OSError):
        log.exception("offering keys at start failed")
        return
    if offered:
        log.info("offered keys for %d citizens kept before holder keys", offered)
    if pooled:
        log.info("offered %d pooled keys", pooled)


# --- pooled keys: made before the citizen registers ------------------------------------

POOL_STREAM_TYPE = "HolderKeyPool"
POOL_BATCH = 512  # keys per HolderKeysPooled
POOL_LOW = 2048  # a batch more when fewer usable unbound keys than this are pooled
POOL_LIFETIME = timedelta(days=7)  # registration uses a pooled key only before it ends
# Registration takes keys valid at least this much longer (it holds them in memory):
# fewer left than that do not count as pooled.
POOL_MARGIN = timedelta(hours=1)
# A pair is kept this long past its expiry, for a registration that consumers see late;
# a grant to a pair deleted meanwhile is not kept, and the holder offers a key instead.
POOL_GRACE = timedelta(days=7)
# No batch for this long while registrations come without a grant for this holder:
# registration may have none (its keys lost in crashes still count as pooled here).
POOL_STALE = timedelta(minutes=10)


def pool_stream_id(holder: str) -> str:
    """A new batch's stream (each batch is a stream of its own: no two top-ups conflict)."""
    return f"holder-key-pool-{holder}-{uuid.uuid4().hex}"


_POOL_KEEP = """
INSERT INTO holder_key_pool (public_key, private_key, expires_at)
SELECT public_key, private_key, $3::timestamptz
FROM unnest($1::bytea[], $2::bytea[]) AS t(public_key, private_key)
RETURNING 1
"""
# How many usable keys are pooled (counted up to `low`), and whether the newest batch
# is older than POOL_STALE; expired pairs past their grace are dropped on the way.
_POOL_STATE = """
WITH dropped AS (DELETE FROM holder_key_pool WHERE expires_at < now() - $3::interval)
SELECT (SELECT count(*) FROM (SELECT 1 FROM holder_key_pool
                              WHERE expires_at > now() + $2::interval LIMIT $1) s) AS pooled,
       coalesce((SELECT max(expires_at) FROM holder_key_pool), '-infinity')
           < now() + $4::interval AS stale
"""


async def top_up_pool(
    store: EventStore,
    conn: Connection,
    context: Context,
    *,
    stale: bool = False,
    batch: int = POOL_BATCH,
    low: int = POOL_LOW,
    metadata: Metadata | None = None,
) -> int:
    """In the caller's transaction: a batch of pooled keys, kept and offered in one
    statement, when fewer than `low` usable ones are pooled (or, with `stale`, when no
    batch came for POOL_STALE); how many were offered. One transaction of the holder at
    a time tops up; another one meanwhile skips (its batch would be one too many)."""
    got = await conn.fetchval(
        f"SELECT pg_try_advisory_xact_lock({LockKey.SCHEMA_AND_NAME.value})",
        f"holderkeys:pool:{context.name}",
    )
    if not got:
        return 0
    state = await conn.fetchrow(
        _POOL_STATE, low, POOL_MARGIN, POOL_GRACE, POOL_LIFETIME - POOL_STALE
    )
    assert state is not None  # (one row always)
    if state["pooled"] >= low and not (stale and state["stale"]):
        return 0
    pairs = [new_holder_key_pair() for _ in range(batch)]
    expires_at = datetime.now(UTC) + POOL_LIFETIME
    event = HolderKeysPooled(
        holder=context.name,
        public_keys=[base64.b64encode(public).decode("ascii") for _, public in pairs],
        expires_at=expires_at,
    )
    keep = (
        [public for _, public in pairs],
        [private for private, _ in pairs],
        expires_at,
    )
    along = Along([("kept", _POOL_KEEP, keep), ("gate", "SELECT 1 FROM kept LIMIT 1", ())])
    stream = pool_stream_id(context.name)
    await store.append_along(
        conn, stream, POOL_STREAM_TYPE, 0, [event], along=along, context=context, metadata=metadata
    )
    return batch


async def fill_pool(
    store: EventStore, pool: asyncpg.Pool, context: Context, *, low: int = POOL_LOW
) -> int:
    """Top the pool up to `low` usable keys, a batch per transaction; how many offered."""
    offered = 0
    while True:
        async with store.transaction() as conn:
            added = await top_up_pool(store, conn, context, low=low)
        if not added:
            return offered
        offered += added


# Moves the pooled pair into holder_keys for the citizen with the grant, in one
# statement: the pair leaves the pool whatever follows (an existing row for the citizen
# keeps it out of holder_keys), so it is bound at most once. Also: how many usable keys
# are left pooled (counted up to $5), for the top-up.
_BIND = """
WITH taken AS (
    DELETE FROM holder_key_pool WHERE public_key = $2 RETURNING private_key, public_key
), kept AS (
    INSERT INTO holder_keys
        (citizen_id, data_key_id, private_key, public_key, wrapped_key, granted_at)
    SELECT $1, $3, private_key, public_key, $4, now() FROM taken
    ON CONFLICT (citizen_id) DO NOTHING
    RETURNING private_key
)
SELECT (SELECT private_key FROM kept) AS private_key,
       (SELECT count(*) FROM (SELECT 1 FROM holder_key_pool
                              WHERE expires_at > now() + $6::interval LIMIT $5) s) AS pooled
"""


async def _bind(
    store: EventStore,
    conn: Connection,
    context: Context,
    registered: CitizenRegistered,
    grant: HolderGrant,
    *,
    metadata: Metadata | None,
) -> bool:
    holder, citizen_id = context.name, registered.citizen_id
    try:
        public = base64.b64decode(grant.holder_key, validate=True)
    except (binascii.Error, ValueError):
        return False
    row = await conn.fetchrow(
        _BIND,
        citizen_id,
        public,
        registered.personal.key_id,
        grant.wrapped_key,
        POOL_LOW,
        POOL_MARGIN,
    )
    assert row is not None  # (one row always)
    if row["private_key"] is None:  # not pooled here (bound, dropped) or a row exists
        return False
    try:
        open_grant(holder, citizen_id, row["private_key"], grant.wrapped_key)
    except (UnsealError, ValueError):
        log.warning("a data key granted to a pooled key of %s does not open with it", holder)
        await conn.execute(
            "DELETE FROM holder_keys WHERE citizen_id = $1 AND public_key = $2", citizen_id, public
        )
        return False
    if row["pooled"] < POOL_LOW:
        await top_up_pool(store, conn, context, metadata=metadata)
    return True
