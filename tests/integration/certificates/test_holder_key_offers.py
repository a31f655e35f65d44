"""A holder's offers (immunreg.holderkeys) on real PostgreSQL: one per data key, each
appended after the last, whatever else is in the holder's tables."""

from __future__ import annotations

import uuid

from immunreg import holderkeys
from immunreg.contracts import certificates as contract
from immunreg.contracts.common import HolderKeyOffered
from immunreg.contracts.registration import CitizenRegistered
from immunreg.eventstore.store import EventStore

from .conftest import Certificates


async def test_one_offer_per_data_key_and_a_new_key_replaces_the_pair(
    certificates: Certificates,
) -> None:
    store = EventStore(certificates.pool)
    citizen = certificates.new_citizen()

    async def offer(registered: CitizenRegistered) -> bool:
        async with store.transaction() as conn:
            return await holderkeys.offer(store, conn, contract.CONTEXT, registered)

    assert await offer(certificates.registered(citizen))
    first = await certificates.pool.fetchval(
        "SELECT public_key FROM holder_keys WHERE citizen_id = $1", citizen.citizen_id
    )
    # A registration again with the same data key (after a withdrawal): nothing new.
    assert not await offer(certificates.registered(citizen))
    citizen.key_id = uuid.uuid4().hex  # a new registration after an erasure: a new data key
    assert await offer(certificates.registered(citizen))
    row = await certificates.pool.fetchrow(
        "SELECT data_key_id, public_key FROM holder_keys WHERE citizen_id = $1",
        citizen.citizen_id,
    )
    assert row is not None
    assert row["data_key_id"] == citizen.key_id
    assert row["public_key"] != first
    offers = await store.load(holderkeys.stream_id(citizen.citizen_id))
    assert [e.version for e in offers] == [1, 2]
    decoded = [contract.CONTEXT.read(e) for e in offers]
    assert all(isinstance(e, HolderKeyOffered) for e in decoded)
    assert [e.data_key_id for e in decoded if isinstance(e, HolderKeyOffered)][1] == citizen.key_id
