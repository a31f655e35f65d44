"""A holder's offers (immunreg.holderkeys) on real PostgreSQL: one per data key, each
appended after the last, whatever else is in the holder's tables; a grant kept only when
it opens with the pair offered."""

from __future__ import annotations

import base64
import uuid

from immunreg import holderkeys
from immunreg.contracts import certificates as contract
from immunreg.contracts.common import HolderKeyOffered
from immunreg.contracts.registration import (
    CitizenRegistered,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.eventstore.store import EventStore
from immunreg.sealing import WRAP_ALG, new_holder_key_pair, wrap_key

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


async def test_a_grant_is_kept_only_when_it_opens_with_the_offered_pair(
    certificates: Certificates,
) -> None:
    store = EventStore(certificates.pool)
    citizen = certificates.new_citizen()
    async with store.transaction() as conn:
        assert await holderkeys.offer(
            store, conn, contract.CONTEXT, certificates.registered(citizen)
        )
    [offered] = [
        contract.CONTEXT.read(e) for e in await store.load(holderkeys.stream_id(citizen.citizen_id))
    ]
    assert isinstance(offered, HolderKeyOffered)
    holder = contract.CONTEXT.name
    public = base64.b64decode(offered.public_key)
    data_key = b"\1" * 32

    def granted(wrapped: str, holder_key: str = offered.public_key) -> PersonalDataKeyGranted:
        return PersonalDataKeyGranted(
            citizen_id=citizen.citizen_id,
            recipient=holder,
            wrapped_key=wrapped,
            wrap_alg=WRAP_ALG,
            holder_key=holder_key,
            data_key_id=offered.data_key_id,
        )

    async def keep(event: PersonalDataKeyGranted) -> bool:
        async with store.transaction() as conn:
            return await holderkeys.keep_grant(conn, holder, event)

    async def stored() -> tuple[str | None, object]:
        row = await certificates.pool.fetchrow(
            "SELECT wrapped_key, granted_at FROM holder_keys WHERE citizen_id = $1",
            citizen.citizen_id,
        )
        assert row is not None
        return row["wrapped_key"], row["granted_at"]

    other_public = new_holder_key_pair()[1]
    to_another = wrap_key(other_public, data_key, grant_context(citizen.citizen_id, holder))
    assert not await keep(granted(to_another)), "wrapped to another key: does not open"
    assert await stored() == (None, None), "the row is as it was"
    assert not await keep(granted(to_another, base64.b64encode(other_public).decode()))
    good = wrap_key(public, data_key, grant_context(citizen.citizen_id, holder))
    assert await keep(granted(good))
    kept = await stored()
    assert kept[0] == good and kept[1] is not None
    assert not await keep(granted(to_another))
    assert await stored() == kept, "a bad grant later leaves the good one"
