"""Pooled holder keys (immunreg.holderkeys), the holder's side, on real PostgreSQL and
Kafka: a grant carried in CitizenRegistered binds its pooled pair to the citizen once,
is kept and opens; anything else falls back to the per-citizen offer; after the erasure
nothing in the holder's schema opens the grant the registration carried."""

from __future__ import annotations

import base64

import msgspec

from immunreg import holderkeys
from immunreg.contracts import certificates as contract
from immunreg.contracts import registration
from immunreg.contracts.common import HolderKeyOffered, HolderKeysPooled
from immunreg.contracts.registration import CitizenRegistered, HolderGrant, grant_context
from immunreg.eventstore.store import EventStore
from immunreg.sealing import WRAP_ALG, UnsealError, wrap_key

from .conftest import Certificates, Citizen, eventually

HOLDER = contract.CONTEXT.name


async def pooled_key(certificates: Certificates) -> bytes:
    """A public key in the holder's pool (filled at the app's start, topped up after)."""
    key: bytes = await eventually(
        lambda: certificates.pool.fetchval(
            "SELECT public_key FROM holder_key_pool ORDER BY random() LIMIT 1"
        ),
        "the holder pooled keys",
    )
    return key


def registered_with_grant(
    certificates: Certificates, citizen: Citizen, public: bytes, *, holder: str = HOLDER
) -> CitizenRegistered:
    """The citizen's CitizenRegistered carrying the data key wrapped to `public`."""
    grant = HolderGrant(
        recipient=HOLDER,
        holder_key=base64.b64encode(public).decode(),
        wrapped_key=wrap_key(public, citizen.key, grant_context(citizen.citizen_id, holder)),
        wrap_alg=WRAP_ALG,
    )
    return msgspec.structs.replace(certificates.registered(citizen), grants=[grant])


async def bind(certificates: Certificates, registered: CitizenRegistered) -> bool:
    """The holder's reaction to the registration; whether it bound a pooled pair (then it
    offers nothing)."""
    store = EventStore(certificates.pool)
    async with store.transaction() as conn:
        return not await holderkeys.offer(store, conn, contract.CONTEXT, registered)


async def holder_key(certificates: Certificates, citizen: Citizen) -> tuple[bytes, bytes, str]:
    row = await certificates.pool.fetchrow(
        "SELECT public_key, private_key, wrapped_key FROM holder_keys WHERE citizen_id = $1",
        citizen.citizen_id,
    )
    assert row is not None, "the citizen has a key here"
    return row["public_key"], row["private_key"], row["wrapped_key"]


async def offers(certificates: Certificates, citizen: Citizen) -> list[object]:
    store = EventStore(certificates.pool)
    events = await store.load(holderkeys.stream_id(citizen.citizen_id))
    return [contract.CONTEXT.read(e) for e in events]


async def test_a_pooled_grant_is_kept_opens_and_its_key_is_bound_only_once(
    certificates: Certificates,
) -> None:
    public = await pooled_key(certificates)
    first = certificates.new_citizen()
    registered = registered_with_grant(certificates, first, public)
    assert await bind(certificates, registered), "the pooled grant is kept"
    bound_public, private, wrapped = await holder_key(certificates, first)
    assert bound_public == public
    assert wrapped == registered.grants[0].wrapped_key
    assert holderkeys.open_grant(HOLDER, first.citizen_id, private, wrapped) == first.key
    assert await offers(certificates, first) == [], "no per-citizen offer"
    assert not await certificates.pool.fetchval(
        "SELECT count(*) FROM holder_key_pool WHERE public_key = $1", public
    ), "the pair left the pool"

    # The same pooled key granted again (to another citizen): never bound twice, the
    # second citizen gets a key of their own by the per-citizen offer.
    second = certificates.new_citizen()
    assert not await bind(certificates, registered_with_grant(certificates, second, public))
    second_public, _, second_wrapped = await holder_key(certificates, second)
    assert second_public != public and second_wrapped is None
    [offered] = await offers(certificates, second)
    assert isinstance(offered, HolderKeyOffered)
    assert base64.b64decode(offered.public_key) == second_public
    assert (await holder_key(certificates, first))[0] == public, "the first binding stays"


async def test_without_a_usable_pooled_grant_the_holder_offers_a_key(
    certificates: Certificates,
) -> None:
    # No grant at all (the pool was empty at registration, or an event from before).
    plain = certificates.new_citizen()
    assert not await bind(certificates, certificates.registered(plain))
    assert len(await offers(certificates, plain)) == 1
    assert (await holder_key(certificates, plain))[2] is None, "waiting for its grant"

    # A grant that does not open with the pooled key (wrapped for another holder): not
    # kept, the pair is spent, the citizen gets an offer.
    public = await pooled_key(certificates)
    wrong = certificates.new_citizen()
    registered = registered_with_grant(certificates, wrong, public, holder="notifications")
    assert not await bind(certificates, registered)
    wrong_public, _, wrong_wrapped = await holder_key(certificates, wrong)
    assert wrong_public != public and wrong_wrapped is None
    assert len(await offers(certificates, wrong)) == 1
    assert not await certificates.pool.fetchval(
        "SELECT count(*) FROM holder_keys WHERE public_key = $1", public
    )


async def test_the_pool_is_topped_up_by_a_batch_offered_on_a_stream_of_its_own(
    certificates: Certificates,
) -> None:
    store = EventStore(certificates.pool)
    pooled = await certificates.pool.fetchval("SELECT count(*) FROM holder_key_pool")
    async with store.transaction() as conn:
        full = await holderkeys.top_up_pool(store, conn, contract.CONTEXT, low=pooled)
    assert full == 0, "enough pooled: nothing offered"

    # The service's own top-up (at its start) may be under way beside the test: it holds
    # the top-up lock, and once it commits the pool has grown past `low`. So each try
    # asks for one more key than is pooled at that moment, until the lock is free.
    async def top_up_three() -> int:
        pooled = await certificates.pool.fetchval("SELECT count(*) FROM holder_key_pool")
        async with store.transaction() as conn:
            return await holderkeys.top_up_pool(
                store, conn, contract.CONTEXT, low=pooled + 1, batch=3
            )

    added = await eventually(top_up_three, "a top-up of 3 is offered", timeout=20)
    assert added == 3
    [row] = await certificates.pool.fetch(
        "SELECT stream_id, data::text AS data FROM events WHERE type = 'HolderKeysPooled' "
        "AND jsonb_array_length(data->'public_keys') = 3"
    )
    assert row["stream_id"].startswith("holder-key-pool-certificates-")
    event = contract.CONTEXT.decode(row["data"].encode())
    assert isinstance(event, HolderKeysPooled)
    assert len(event.public_keys) == 3
    kept = await certificates.pool.fetch(
        "SELECT public_key FROM holder_key_pool WHERE public_key = ANY($1::bytea[])",
        [base64.b64decode(k) for k in event.public_keys],
    )
    assert len(kept) == 3, "each offered public key has its pair pooled"


async def test_after_erasure_nothing_in_the_holders_schema_opens_the_carried_grant(
    certificates: Certificates,
) -> None:
    citizen = certificates.new_citizen()
    public = await pooled_key(certificates)
    registered = registered_with_grant(certificates, citizen, public)
    reg = registration.CONTEXT
    await certificates.publish(
        reg, certificates.envelope(reg, registered, citizen.citizen_id, "Citizen")
    )
    await eventually(
        lambda: certificates.pool.fetchval(
            "SELECT 1 FROM holder_keys WHERE citizen_id = $1 AND public_key = $2 "
            "AND wrapped_key IS NOT NULL",
            citizen.citizen_id,
            public,
        ),
        "the consumer bound the pooled key",
    )
    await certificates.erase(citizen)
    await eventually(
        lambda: certificates.pool.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM holder_keys WHERE citizen_id = $1)",
            citizen.citizen_id,
        ),
        "the erasure deleted the key",
    )
    grant = registered.grants[0].wrapped_key
    rows = await certificates.pool.fetch(
        "SELECT private_key FROM holder_keys UNION ALL SELECT private_key FROM holder_key_pool"
    )
    assert rows, "the schema holds other keys to try"
    for row in rows:
        try:
            holderkeys.open_grant(HOLDER, citizen.citizen_id, row["private_key"], grant)
        except (UnsealError, ValueError):
            continue
        raise AssertionError("a key left in the holder's schema opens the erased grant")
