"""Holders' pooled keys, registration's side (immunreg.holderkeys has the holder's).

A holder offers batches of public keys made for no citizen yet (`HolderKeysPooled`);
`keep_offers` files them in `offered_holder_keys`. Each process takes keys from there
in batches, one statement each (`PooledKeys`: DELETE ... RETURNING), and holds them in
memory; a first registration wraps its new data key to one key per holder at hand and
carries the grants in `CitizenRegistered` (handlers.run_registration). The costly,
citizen-independent half of each wrap (ephemeral key, ECDH: `prepare_wrap`) is done when
the batch is taken, in a background task of its own, so a request only finishes it
(HKDF, AES-GCM); a key taken before its turn is prepared by the request. The prepared
secrets stay in memory and each is used once. A key is handed
out once: the DELETE gives each row to one process, a process uses a key once (it
leaves memory before the wrap, whether the registration is then written or not), and a
batch consumed again never files its keys again (`holder_key_batches`). A key a process
held when it stopped is never used: the holder drops it after its expiry.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from immunreg.contracts.common import HolderKeysPooled
from immunreg.contracts.registration import HolderGrant, grant_context
from immunreg.eventstore.database import Connection
from immunreg.holderkeys import POOL_MARGIN
from immunreg.sealing import WRAP_ALG, X25519_BYTES, CitizenKey, PreparedWrap, prepare_wrap

log = logging.getLogger(__name__)

TAKE_BATCH = 64  # keys per holder a process takes at once
# After finding none of a holder's keys, this long before asking again (registrations
# meanwhile get that holder's per-citizen offer, as before pooled keys).
EMPTY_PAUSE = 1.0
PREPARE_PER_TURN = 8  # pooled keys' wrap halves prepared between two loop turns (~2 ms)

_KEEP_OFFERS = """
WITH batch AS (
    INSERT INTO holder_key_batches (stream_id, holder) VALUES ($1, $2)
    ON CONFLICT (stream_id) DO NOTHING
    RETURNING 1
)
INSERT INTO offered_holder_keys (holder, public_key, expires_at)
SELECT $2, public_key, $4 FROM batch, unnest($3::text[]) AS t(public_key)
ON CONFLICT DO NOTHING
"""


def _is_public_key(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == X25519_BYTES
    except (binascii.Error, ValueError):
        return False


async def keep_offers(
    conn: Connection, holder: str, stream_id: str, event: HolderKeysPooled
) -> None:
    """File a batch of `holder`'s pooled keys (the topic's owner, never the event's own
    claim), once per batch; keys that are not X25519 public keys are left out."""
    keys = [k for k in event.public_keys if _is_public_key(k)]
    if len(keys) < len(event.public_keys):
        log.warning("%s pooled keys that are not X25519 public keys", holder)
    await conn.execute(_KEEP_OFFERS, stream_id, holder, keys, event.expires_at)


# Up to $2 usable keys of each holder in $1, oldest expiry first; rows another process
# is taking are skipped, not waited for. Keys too near their expiry are dropped.
_TAKE = """
WITH dropped AS (
    DELETE FROM offered_holder_keys
    WHERE holder = ANY($1::text[]) AND expires_at <= now() + $3::interval
), taken AS (
    SELECT t.holder, t.public_key FROM unnest($1::text[]) AS h(holder)
    CROSS JOIN LATERAL (
        SELECT holder, public_key FROM offered_holder_keys
        WHERE holder = h.holder AND expires_at > now() + $3::interval
        ORDER BY expires_at LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) t
)
DELETE FROM offered_holder_keys o USING taken
WHERE o.holder = taken.holder AND o.public_key = taken.public_key
RETURNING o.holder, o.public_key, o.expires_at
"""


@dataclass(eq=False)
class PooledKey:
    """A holder's pooled public key, this process's to use once. Its wrap's
    citizen-independent half is done ahead (`prepare`, in the background after a batch
    is taken); a key taken before its turn is prepared by the request, as before."""

    holder: str
    public_key: str  # base64, as offered
    expires_at: datetime
    _prepared: PreparedWrap | None = field(default=None, repr=False)
    _spent: bool = field(default=False, repr=False)

    def prepare(self) -> None:
        """Make the ephemeral key and its ECDH secret now, unless done or used already."""
        if self._prepared is None and not self._spent:
            self._prepared = prepare_wrap(base64.b64decode(self.public_key))

    def grant(self, citizen_id: str, key: CitizenKey) -> HolderGrant:
        """The data key wrapped to this key, for this citizen and holder (once)."""
        self.prepare()
        prepared, self._prepared, self._spent = self._prepared, None, True
        if prepared is None:
            raise RuntimeError("a pooled key is used once; this one was used already")
        wrapped = prepared.finish(key.key, grant_context(citizen_id, self.holder))
        return HolderGrant(
            recipient=self.holder,
            holder_key=self.public_key,
            wrapped_key=wrapped,
            wrap_alg=WRAP_ALG,
        )


@dataclass
class PooledKeys:
    """The pooled keys one process holds, per holder, taken from `offered_holder_keys`
    a batch at a time: fetched ahead, in the background, when a holder's fall below a
    quarter of a batch, so a request waits only for a holder it has none of."""

    pool: asyncpg.Pool
    holders: Sequence[str]
    batch: int = TAKE_BATCH
    clock: Callable[[], float] = time.monotonic
    _held: dict[str, deque[PooledKey]] = field(default_factory=dict)
    _asked: dict[str, float] = field(default_factory=dict)  # when none were found
    _fetching: asyncio.Task[None] | None = None
    _preparing: set[asyncio.Task[None]] = field(default_factory=set)

    async def take(self) -> list[PooledKey]:
        """One key for each holder that has one at hand (fetching more for those that
        run low); they are this caller's alone, used or not."""
        low = self._wanted(max(1, self.batch // 4))
        if low and self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch(low))
            self._fetching.add_done_callback(self._fetched)
        if self._fetching is not None and self._wanted(1):
            await asyncio.shield(self._fetching)  # a holder with none: wait for the batch
        taken: list[PooledKey] = []
        now = datetime.now(UTC)
        for holder in self.holders:
            held = self._held.get(holder)
            while held:
                key = held.popleft()
                if key.expires_at > now:
                    taken.append(key)
                    break
        return taken

    def _wanted(self, fewer_than: int) -> list[str]:
        """Holders with fewer than `fewer_than` keys held, not found empty just now."""
        now = self.clock()
        return [
            h
            for h in self.holders
            if len(self._held.get(h, ())) < fewer_than
            and now - self._asked.get(h, -EMPTY_PAUSE) >= EMPTY_PAUSE
        ]

    def _fetched(self, task: asyncio.Task[None]) -> None:
        self._fetching = None

    async def _fetch(self, holders: list[str]) -> None:
        try:
            rows = await self.pool.fetch(_TAKE, holders, self.batch, POOL_MARGIN)
        except Exception:  # the registrations meanwhile fall back to the offers
            log.exception("taking pooled holder keys failed")
            rows = []
        # Found empty is what the database said: keys handed out while a batch is being
        # prepared (requests run in between) must not pause a holder that had some.
        now = self.clock()
        for holder in set(holders) - {row["holder"] for row in rows}:
            self._asked[holder] = now
        fresh = [PooledKey(r["holder"], r["public_key"], r["expires_at"]) for r in rows]
        for key in fresh:
            self._held.setdefault(key.holder, deque()).append(key)
        # Prepared apart from the fetch, so the next fetch need not wait for it.
        task = asyncio.create_task(self._prepare(fresh))
        self._preparing.add(task)
        task.add_done_callback(self._preparing.discard)

    async def _prepare(self, keys: list[PooledKey]) -> None:
        """Each key's wrap half, a few keys per loop turn so requests run in between."""
        for n, key in enumerate(keys, 1):
            try:
                key.prepare()
            except ValueError:  # a low-order point: no shared secret, so no wrap to it
                log.warning("a pooled %s key that no key can be wrapped to", key.holder)
                with contextlib.suppress(ValueError):  # taken already
                    self._held.get(key.holder, deque()).remove(key)
            if n % PREPARE_PER_TURN == 0:
                await asyncio.sleep(0)
