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
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path

from immunreg.contracts.common import HolderKeyOffered
from immunreg.contracts.envelope import Context, Metadata
from immunreg.contracts.registration import (
    CitizenRegistered,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.eventstore.database import Connection
from immunreg.eventstore.store import StreamStore
from immunreg.sealing import UnsealError, new_holder_key_pair, unwrap_key

HOLDER_KEYS_SQL = Path(__file__).with_name("holderkeys.sql")
STREAM_TYPE = "HolderKey"

log = logging.getLogger(__name__)


def stream_id(citizen_id: str) -> str:
    """The stream a holder's offers for one citizen are appended to."""
    return f"holder-key-{citizen_id}"


async def offer(
    store: StreamStore[Connection],
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
    citizen_id, data_key_id = registered.citizen_id, registered.personal.key_id
    current = await conn.fetchval(
        "SELECT data_key_id FROM holder_keys WHERE citizen_id = $1 FOR UPDATE", citizen_id
    )
    if current == data_key_id:
        return False
    private, public = new_holder_key_pair()
    await conn.execute(
        """
        INSERT INTO holder_keys (citizen_id, data_key_id, private_key, public_key)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (citizen_id) DO UPDATE SET data_key_id = excluded.data_key_id,
            private_key = excluded.private_key, public_key = excluded.public_key,
            wrapped_key = NULL, created_at = now(), granted_at = NULL
        """,
        citizen_id,
        data_key_id,
        private,
        public,
    )
    stream = stream_id(citizen_id)
    version = len(await store.load(stream, conn=conn))
    event = HolderKeyOffered(
        citizen_id=citizen_id,
        holder=context.name,
        public_key=base64.b64encode(public).decode("ascii"),
        data_key_id=data_key_id,
    )
    await store.append(
        stream, STREAM_TYPE, version, [event], context=context, metadata=metadata, conn=conn
    )
    return True


async def keep_grant(conn: Connection, holder: str, event: PersonalDataKeyGranted) -> bool:
    """Keep a grant made to this holder's current key for the citizen; whether it was.

    A grant for another holder, to a key no longer here (erased, or replaced by a
    newer registration) or from before holder keys is skipped; one that does not
    open with the key it names is logged and skipped (no retry would open it)."""
    if event.recipient != holder or event.holder_key is None:
        return False
    row = await conn.fetchrow(
        "SELECT private_key, public_key FROM holder_keys WHERE citizen_id = $1 FOR UPDATE",
        event.citizen_id,
    )
    if row is None or base64.b64encode(row["public_key"]).decode("ascii") != event.holder_key:
        return False
    try:
        open_grant(holder, event.citizen_id, row["private_key"], event.wrapped_key)
    except (UnsealError, ValueError):
        log.warning("a data key granted to %s does not open with its key", holder)
        return False
    await conn.execute(
        "UPDATE holder_keys SET wrapped_key = $2, granted_at = now() WHERE citizen_id = $1",
        event.citizen_id,
        event.wrapped_key,
    )
    return True


def open_grant(holder: str, citizen_id: str, private_key: bytes, wrapped_key: str) -> bytes:
    """The citizen's data key from a kept grant; UnsealError if it does not open."""
    return unwrap_key(private_key, wrapped_key, grant_context(citizen_id, holder))


async def forget(conn: Connection, citizen_id: str) -> None:
    """Delete the citizen's key pair and grant (erasure)."""
    await conn.execute("DELETE FROM holder_keys WHERE citizen_id = $1", citizen_id)
