"""Pooled holder keys, registration's side, on real PostgreSQL: a first registration
carries its data key wrapped to one pooled key per holder (no offer, no grant event),
each pooled key is handed out once, and an offer consumed again brings none back."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from immunreg.contracts import certificates, notifications
from immunreg.contracts.common import HolderKeysPooled
from immunreg.contracts.registration import (
    CONTEXT,
    CitizenRegistered,
    PersonalData,
    grant_context,
)
from immunreg.holderkeys import open_grant
from immunreg.sealing import CitizenKey, new_holder_key_pair, unseal, unwrap_key
from services.registration.keys import fetch_citizen_key
from services.registration.pooled import PooledKey, PooledKeys, keep_offers

from .conftest import Registration, running_registration


@pytest.fixture(scope="module")
async def registration(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Registration]:
    # A service of this module's own: no registration took pooled keys before its tests.
    keys: Path = tmp_path_factory.mktemp("pooled-registration-keys")
    async with running_registration(dsn, bootstrap, keys) as running:
        yield running


async def file_batch(
    registration: Registration, holder: str, publics: list[bytes], expires_at: datetime
) -> str:
    """A holder's HolderKeysPooled as registration's consumer files it; its stream."""
    stream = f"holder-key-pool-{holder}-{uuid.uuid4().hex}"
    await file_again(registration, holder, stream, publics, expires_at)
    return stream


async def file_again(
    registration: Registration,
    holder: str,
    stream: str,
    publics: list[bytes],
    expires_at: datetime,
) -> None:
    event = HolderKeysPooled(
        holder=holder,
        public_keys=[base64.b64encode(p).decode() for p in publics],
        expires_at=expires_at,
    )
    async with registration.pool.acquire() as conn:
        await keep_offers(conn, holder, stream, event)


async def test_a_first_registration_carries_grants_to_pooled_keys_that_open(
    registration: Registration,
) -> None:
    # Expiring before any pooled key the shared topics bring: taken first.
    soon = datetime.now(UTC) + timedelta(hours=2)
    pairs = {
        holder: new_holder_key_pair()
        for holder in (certificates.CONTEXT.name, notifications.CONTEXT.name)
    }
    for holder, (_, public) in pairs.items():
        await file_batch(registration, holder, [public], soon)
    citizen_id = await registration.register(registration.body(given_name="Mila"))

    rows = await registration.pool.fetch(
        "SELECT stream_id, type, data::text AS data FROM events "
        "WHERE stream_id IN ($1, $2) ORDER BY version",
        citizen_id,
        f"key-grants-{citizen_id}",
    )
    assert [r["type"] for r in rows] == ["CitizenRegistered"], "no grant event"
    registered = CONTEXT.decode(rows[0]["data"].encode())
    assert isinstance(registered, CitizenRegistered)
    async with registration.pool.acquire() as conn:
        key = await fetch_citizen_key(conn, registration.ring, citizen_id)
    assert key is not None
    by_holder = {g.recipient: g for g in registered.grants}
    assert set(by_holder) == set(pairs)
    for holder, (private, public) in pairs.items():
        grant = by_holder[holder]
        assert base64.b64decode(grant.holder_key) == public
        opened = open_grant(holder, citizen_id, private, grant.wrapped_key)
        assert opened == key.key
        personal = unseal(opened, registered.personal, citizen_id.encode())
        assert msgspec.json.decode(personal, type=PersonalData).given_name == "Mila"
    left = await registration.pool.fetchval(
        "SELECT count(*) FROM offered_holder_keys WHERE public_key = ANY($1::text[])",
        [base64.b64encode(p).decode() for _, p in pairs.values()],
    )
    assert left == 0, "the keys used left the table"


async def test_pooled_keys_are_handed_out_once_and_a_replayed_offer_brings_none_back(
    registration: Registration,
) -> None:
    holder = f"holder-{uuid.uuid4().hex[:8]}"  # a holder of this test's own
    later = datetime.now(UTC) + timedelta(days=3)
    publics = [new_holder_key_pair()[1] for _ in range(40)]
    stream = await file_batch(registration, holder, publics, later)
    await file_again(registration, holder, stream, publics, later)  # consumed again

    takers = [PooledKeys(registration.pool, [holder], batch=7) for _ in range(3)]

    async def drain(taker: PooledKeys) -> list[str]:
        taken: list[str] = []
        while keys := await taker.take():
            taken += [k.public_key for k in keys]
            await asyncio.sleep(0)
        return taken

    handed = [k for taken in await asyncio.gather(*map(drain, takers)) for k in taken]
    assert sorted(handed) == sorted(base64.b64encode(p).decode() for p in publics), (
        "each pooled key handed out exactly once"
    )
    await file_again(registration, holder, stream, publics, later)  # a replay after
    assert await PooledKeys(registration.pool, [holder]).take() == []
    # A batch too near its expiry is never handed out.
    await file_batch(registration, holder, [new_holder_key_pair()[1]], datetime.now(UTC))
    assert await PooledKeys(registration.pool, [holder]).take() == []


async def test_taken_keys_come_prepared_and_each_grants_once(
    registration: Registration,
) -> None:
    # A batch's wrap halves are prepared in the background right after the fetch, so a
    # request only finishes them; whichever way a key was prepared, it grants once.
    holders = [f"holder-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    later = datetime.now(UTC) + timedelta(days=3)
    privates: dict[str, bytes] = {}
    for holder in holders:
        pairs = [new_holder_key_pair() for _ in range(8)]
        privates |= {base64.b64encode(public).decode(): private for private, public in pairs}
        await file_batch(registration, holder, [public for _, public in pairs], later)
    pooled = PooledKeys(registration.pool, holders, batch=4)
    taken = await pooled.take()
    await asyncio.gather(*pooled._preparing)
    taken += await pooled.take()
    assert len(taken) == 4 and all(k._prepared is not None for k in taken), (
        "taken keys carry their prepared half"
    )
    unprepared = PooledKey(holders[0], taken[0].public_key, later)  # taken before its turn
    for key in [*taken, unprepared]:
        citizen_key = CitizenKey.new()
        grant = key.grant("c-abcdefghijklmnopqrst", citizen_key)
        context = grant_context("c-abcdefghijklmnopqrst", key.holder)
        assert unwrap_key(privates[key.public_key], grant.wrapped_key, context) == citizen_key.key
        with pytest.raises(RuntimeError, match="used once"):
            key.grant("c-another-citizen-idxx", CitizenKey.new())
