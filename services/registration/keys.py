"""Registration's keys: the id key, the key-encryption key and the per-citizen data keys
(crypto-shredding); and citizen ids.

Citizen ids are random (`new_citizen_id`): no key turns a national id into one. The
national-id index (`citizen_national_ids`) maps a keyed hash of the national id
(`KeyRing.national_id_hash`) to the citizen id; erasure deletes the row, so after it
the id key links the national id to nothing.

Settings (each `REGISTRATION_<NAME>`, or `Settings.extra[<NAME>]`):

- `ID_KEY_FILE`: HMAC root key of the national-id index and the sign-in contact index.
  Default `<state_dir>/keys/registration-id.key`, created on first start. Losing or
  changing it would let one national id register twice (the index would miss), so
  the service records its fingerprint and refuses to start with another key.
- `KEK_FILE`: AES key that wraps the citizen data keys stored in
  `citizen_keys`. Default `<state_dir>/keys/registration-kek.key`, created on
  first start.

A file named explicitly must exist: only the development defaults are created.
Services that need a citizen's data key (holders) get it wrapped to a key pair they
made for that citizen alone (`HolderKeyOffered`, `immunreg.holderkeys`), not to a
configured long-lived key: nothing here names them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import msgspec

from immunreg.config import Settings, setting
from immunreg.contracts.common import Sealed
from immunreg.eventstore.database import Connection
from immunreg.eventstore.postgres import Cte
from immunreg.paths import keys_dir
from immunreg.sealing import (
    CitizenKey,
    ensure_key_file,
    key_fingerprint,
    read_key_file,
    seal,
    unseal,
)

from .signin import derive_key

SERVICE = "registration"
ID_KEY_FILE = "registration-id.key"
KEK_FILE = "registration-kek.key"
CITIZEN_ID_PREFIX = "c-"
CITIZEN_ID_LENGTH = 20  # base32 characters: 100 random bits
CITIZEN_ID = re.compile(r"c-[a-z2-7]{20}")
_sealed_encoder = msgspec.json.Encoder()
_sealed_decoder = msgspec.json.Decoder(Sealed)


class KeyConfigError(RuntimeError):
    """The configured keys are missing, malformed, or not the ones the data was made with."""


def _citizen_id_of(raw: bytes) -> str:
    return CITIZEN_ID_PREFIX + base64.b32encode(raw).decode("ascii").lower()[:CITIZEN_ID_LENGTH]


def new_citizen_id() -> str:
    """A fresh random citizen id (100 bits): it says nothing about the person."""
    return _citizen_id_of(secrets.token_bytes(13))


def legacy_citizen_id(id_key: bytes, national_id: str) -> str:
    """The id a national id was given when citizen ids were keyed hashes of it (before
    random ids): only to find a registration made then (`handlers.run_registration`)."""
    return _citizen_id_of(hmac.new(id_key, national_id.encode("ascii"), hashlib.sha256).digest())


def is_citizen_id(value: str) -> bool:
    """Whether `value` has the shape of a citizen id."""
    return CITIZEN_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class KeyRing:
    """The keys one registration process holds."""

    id_key: bytes
    kek: bytes

    @property
    def kek_id(self) -> str:
        """Which KEK wrapped a stored data key."""
        return key_fingerprint(self.kek)

    def national_id_hash(self, national_id: str) -> str:
        """The keyed hash the national-id index is looked up by (HMAC-SHA256, hex)."""
        key = derive_key(self.id_key, "national-id-index")
        return hmac.new(key, national_id.encode("ascii"), hashlib.sha256).hexdigest()

    def legacy_citizen_id(self, national_id: str) -> str:
        """The national id's citizen id from before random ids (`legacy_citizen_id`)."""
        return legacy_citizen_id(self.id_key, national_id)


def _setting(settings: Settings, name: str) -> str | None:
    return settings.extra.get(name) or setting(name, SERVICE)


def _key_file(settings: Settings, name: str, default_name: str) -> bytes:
    configured = _setting(settings, name)
    try:
        if configured:
            return read_key_file(Path(configured))
        return ensure_key_file(keys_dir() / default_name)
    except (OSError, ValueError) as exc:
        raise KeyConfigError(f"{SERVICE.upper()}_{name}: {exc}") from exc


def load_key_ring(settings: Settings) -> KeyRing:
    """The keys named by the settings (development defaults created when missing)."""
    return KeyRing(
        id_key=_key_file(settings, "ID_KEY_FILE", ID_KEY_FILE),
        kek=_key_file(settings, "KEK_FILE", KEK_FILE),
    )


_RECORD_ID_KEY = """
WITH inserted AS (
    INSERT INTO registration_keys_in_use (name, fingerprint) VALUES ('id_key', $1)
    ON CONFLICT (name) DO NOTHING RETURNING fingerprint
)
SELECT fingerprint FROM inserted
UNION ALL SELECT fingerprint FROM registration_keys_in_use WHERE name = 'id_key'
LIMIT 1
"""


async def check_id_key(pool: asyncpg.Pool, ring: KeyRing) -> None:
    """Refuse to run with an id key other than the one the indexes were made with."""
    fingerprint = key_fingerprint(ring.id_key)
    recorded = None
    for _ in range(3):  # a replica starting at the same moment may hide its row for a moment
        recorded = await pool.fetchval(_RECORD_ID_KEY, fingerprint)
        if recorded is not None:
            break
    if recorded != fingerprint:
        raise KeyConfigError(
            "REGISTRATION_ID_KEY_FILE is not the key this database's indexes were made "
            f"with (fingerprint {fingerprint}, expected {recorded})"
        )


def key_wrap_context(citizen_id: str, key_id: str) -> bytes:
    """The associated data a stored data key is wrapped under by the KEK: binds it to its
    citizen, so a row copied to another citizen does not unwrap."""
    return f"immunreg.registration.citizen-key|{citizen_id}|{key_id}".encode()


async def fetch_citizen_key(conn: Connection, ring: KeyRing, citizen_id: str) -> CitizenKey | None:
    """The citizen's data key, unwrapped; None once erased (or never made)."""
    row = await conn.fetchrow(
        "SELECT key_id, wrapped::text AS wrapped FROM citizen_keys WHERE citizen_id = $1",
        citizen_id,
    )
    if row is None:
        return None
    return unwrap_citizen_key(ring, citizen_id, row["key_id"], row["wrapped"])


@dataclass(frozen=True)
class KeyForGrant:
    """The citizen's data key, and what the citizen's grants stream says of one offer."""

    key: CitizenKey
    version: int  # the grants stream's
    granted: bool  # whether the offered key has a grant already


# The key row is held (FOR SHARE) to the end of the transaction: an erasure waits.
_KEY_FOR_GRANT = """
SELECT k.key_id, k.wrapped::text AS wrapped,
       (SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $2) AS version,
       EXISTS (SELECT 1 FROM events WHERE stream_id = $2 AND type = 'PersonalDataKeyGranted'
               AND data->>'holder_key' = $3) AS granted
FROM citizen_keys k WHERE k.citizen_id = $1
FOR SHARE OF k
"""


async def fetch_key_for_grant(
    conn: Connection, ring: KeyRing, citizen_id: str, grants_stream: str, holder_key: str
) -> KeyForGrant | None:
    """The citizen's data key, held to the end of the transaction, with the version of the
    grants stream and whether `holder_key` was granted it; None once erased."""
    row = await conn.fetchrow(_KEY_FOR_GRANT, citizen_id, grants_stream, holder_key)
    if row is None:
        return None
    key = unwrap_citizen_key(ring, citizen_id, row["key_id"], row["wrapped"])
    return KeyForGrant(key, int(row["version"]), bool(row["granted"]))


def unwrap_citizen_key(ring: KeyRing, citizen_id: str, key_id: str, wrapped: str) -> CitizenKey:
    """A stored data key, unwrapped with the KEK."""
    sealed = _sealed_decoder.decode(wrapped)
    if sealed.key_id != ring.kek_id:
        raise KeyConfigError(
            f"citizen key wrapped by KEK {sealed.key_id}, this one is {ring.kek_id}"
        )
    return CitizenKey(key_id, unseal(ring.kek, sealed, key_wrap_context(citizen_id, key_id)))


_STORE_KEY = """
INSERT INTO citizen_keys (citizen_id, key_id, wrapped)
SELECT $1::text, $2::text, $3::text::jsonb {gate}
ON CONFLICT (citizen_id) DO UPDATE
    SET key_id = excluded.key_id, wrapped = excluded.wrapped, created_at = now()
"""


def _wrapped(ring: KeyRing, citizen_id: str, key: CitizenKey) -> str:
    wrapped = seal(ring.kek, key.key, key_wrap_context(citizen_id, key.key_id), key_id=ring.kek_id)
    return _sealed_encoder.encode(wrapped).decode()


async def store_citizen_key(
    conn: Connection, ring: KeyRing, citizen_id: str, key: CitizenKey
) -> None:
    """Keep the citizen's data key (wrapped by the KEK), replacing an older one."""
    await conn.execute(
        _STORE_KEY.format(gate=""), citizen_id, key.key_id, _wrapped(ring, citizen_id, key)
    )


def keep_citizen_key(ring: KeyRing, citizen_id: str, key: CitizenKey, *, gate: str) -> Cte:
    """`store_citizen_key` as a CTE of a registration's one statement (`Along`), writing
    only when the CTE `gate` yields a row."""
    sql = _STORE_KEY.format(gate=f"FROM {gate}")
    return ("kept", sql, (citizen_id, key.key_id, _wrapped(ring, citizen_id, key)))


async def destroy_citizen_key(conn: Connection, citizen_id: str) -> None:
    """Delete the citizen's data key: whatever it sealed can never be read again here."""
    await conn.execute("DELETE FROM citizen_keys WHERE citizen_id = $1", citizen_id)
