"""Crypto-shredding: erasure makes the sealed history unreadable, the rebuilt read model
holds no personal data, CitizenErased reaches Kafka; a holder's offered key gets the data
key wrapped to it, once per key, never after the erasure."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Collection
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from immunreg.contracts import certificates, notifications
from immunreg.contracts.common import HolderKeyOffered, Sealed
from immunreg.contracts.envelope import Context, decode_envelope, encode_envelope
from immunreg.contracts.registration import (
    CONTEXT,
    PersonalData,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.sealing import WRAP_ALG, UnsealError, new_holder_key_pair, unseal, unwrap_key
from services.registration.keys import fetch_citizen_key, unwrap_citizen_key
from services.registration.readmodel import rebuild_read_model

from ..support.kafka import KafkaTools
from ..support.problems import assert_citizen_erased
from .conftest import Registration

PERSONAL_COLUMNS = (
    "birth_date",
    "sex",
    "municipality_code",
    "priority_group",
    "conditions",
    "vaccine_preferences",
    "preferred_municipality_code",
    "consent",
    "channel",
    "personal",
    "health",
)


async def sealed_in_events(registration: Registration, citizen_id: str) -> list[Sealed]:
    rows = await registration.pool.fetch(
        "SELECT data::text AS data FROM events WHERE stream_id = $1 AND data ? 'personal' "
        "ORDER BY version",
        citizen_id,
    )
    return [msgspec.convert(msgspec.json.decode(r["data"])["personal"], Sealed) for r in rows]


async def every_stored_key(registration: Registration) -> list[bytes]:
    rows = await registration.pool.fetch(
        "SELECT citizen_id, key_id, wrapped::text AS w FROM citizen_keys"
    )
    return [
        unwrap_citizen_key(registration.ring, r["citizen_id"], r["key_id"], r["w"]).key
        for r in rows
    ]


async def citizen_row(registration: Registration, citizen_id: str) -> Any:
    return await registration.pool.fetchrow(
        "SELECT * FROM citizens WHERE citizen_id = $1", citizen_id
    )


async def kafka_events(kafka: KafkaTools, citizen_id: str, wanted: set[str]) -> list[str]:
    """Types of this citizen's events on the shared topic, once all of `wanted` are there."""
    deadline = time.monotonic() + 90
    found: list[str] = []
    while time.monotonic() < deadline:
        records = await kafka.read_all(CONTEXT.topic, expect=1, timeout=20, settle=2.0)
        found = [
            envelope.type
            for envelope in (decode_envelope(r.value) for r in records)
            if envelope.stream_id == citizen_id
        ]
        if wanted <= set(found):
            return found
    raise AssertionError(f"{wanted} never reached {CONTEXT.topic} for {citizen_id}: {found}")


async def test_erasure_shreds_the_history_the_read_model_and_tells_other_services(
    registration: Registration, kafka: KafkaTools
) -> None:
    client, admin = registration.client, registration.admin
    body = registration.body(given_name="Milica", family_name="Jovanović")
    citizen_id = await registration.register(body)
    bystander = await registration.register()
    url = f"/v1/citizens/{citizen_id}"
    etag = (await client.get(url, headers=admin)).headers["ETag"]
    changed = await client.patch(
        url, json={"email": "milica@example.rs"}, headers={**admin, "If-Match": etag}
    )
    assert changed.status == 200

    sealed = await sealed_in_events(registration, citizen_id)
    assert len(sealed) == 2, "CitizenRegistered and ContactDetailsChanged carry sealed data"
    async with registration.pool.acquire() as conn:
        key = await fetch_citizen_key(conn, registration.ring, citizen_id)
    assert key is not None
    opened = [
        msgspec.json.decode(unseal(key.key, s, citizen_id.encode()), type=PersonalData)
        for s in sealed
    ]
    assert opened[-1].email == "milica@example.rs" and opened[0].given_name == "Milica"
    del key, opened  # the test must not keep what the service is about to destroy

    erased = await client.post(url + "/erase", headers=admin)
    assert erased.status == 204

    # The key row is gone, and no key left in the database opens the sealed history.
    async with registration.pool.acquire() as conn:
        assert await fetch_citizen_key(conn, registration.ring, citizen_id) is None
    remaining = await every_stored_key(registration)
    assert remaining, "other citizens' keys are still there to try"
    for value in await sealed_in_events(registration, citizen_id):
        for other_key in remaining:
            with pytest.raises(UnsealError):
                unseal(other_key, value, citizen_id.encode())

    # The event history is intact: the sealed events are still there, unreadable.
    types = [
        r["type"]
        for r in await registration.pool.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", citizen_id
        )
    ]
    assert types == [
        "CitizenRegistered",
        "ContactDetailsChanged",
        "RegistrationWithdrawn",
        "CitizenErased",
    ]

    await assert_citizen_erased(await client.get(url, headers=admin))
    patch = await client.patch(url, json={"conditions": []}, headers={**admin, "If-Match": '"4"'})
    assert patch.status == 409 and (await patch.json())["code"] == "citizen_erased"
    assert (await client.post(url + "/erase", headers=admin)).status == 204  # nothing new

    # The live read model and a freshly rebuilt one both hold nothing personal.
    for label in ("live", "rebuilt"):
        if label == "rebuilt":
            assert await rebuild_read_model(registration.pool) > 0
        row = await citizen_row(registration, citizen_id)
        assert row["status"] == "erased", label
        assert all(row[c] is None for c in PERSONAL_COLUMNS), (label, dict(row))
        kept = await citizen_row(registration, bystander)
        assert kept["status"] == "active" and kept["personal"] is not None, label
    bystander_read = await client.get(f"/v1/citizens/{bystander}", headers=admin)
    assert bystander_read.status == 200, "the rebuilt model serves the others as before"

    found = await kafka_events(kafka, citizen_id, {"RegistrationWithdrawn", "CitizenErased"})
    assert found.count("CitizenErased") == 1
    assert found.index("RegistrationWithdrawn") < found.index("CitizenErased")

    # Nothing links the national id to the erased citizen any more.
    assert await registration.citizen_of(body["national_id"]) is None

    # Registering again after erasure starts afresh: a new id, a new key.
    again = await client.post("/v1/citizens", json=body, headers=admin)
    assert again.status == 201
    new_id = (await again.json())["citizen_id"]
    assert new_id != citizen_id
    assert await registration.citizen_of(body["national_id"]) == new_id
    async with registration.pool.acquire() as conn:
        new_key = await fetch_citizen_key(conn, registration.ring, new_id)
    assert new_key is not None
    for value in await sealed_in_events(registration, citizen_id):
        with pytest.raises(UnsealError):
            unseal(new_key.key, value, citizen_id.encode())
    read = await client.get(f"/v1/citizens/{new_id}", headers=admin)
    assert (await read.json())["given_name"] == "Milica"
    await assert_citizen_erased(await client.get(url, headers=admin))  # the old id stays erased


async def offer(
    kafka: KafkaTools,
    holder: Context,
    citizen_id: str,
    data_key_id: str,
    public: bytes,
    *,
    behind: str | None = None,
) -> None:
    """A holder's HolderKeyOffered, on its topic, as its relay would publish it; with
    `behind`, on the partition of that citizen's offers (handled after them)."""
    event = HolderKeyOffered(
        citizen_id=citizen_id,
        holder=holder.name,
        public_key=base64.b64encode(public).decode(),
        data_key_id=data_key_id,
    )
    stream = f"holder-key-{citizen_id}"
    envelope = holder.envelope(event, stream_id=stream, stream_type="HolderKey", version=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
    await producer.start()
    try:
        key = f"holder-key-{behind}" if behind is not None else stream
        await producer.send_and_wait(holder.topic, encode_envelope(envelope), key=key.encode())
    finally:
        await producer.stop()


async def grants(
    registration: Registration, citizen_id: str, count: int, offered: Collection[bytes]
) -> list[Any]:
    """The citizen's key grants to the holder keys this test `offered`, once there are
    `count` of them. Holders running for other tests in the session (certificates and
    notifications consume the same topics) offer keys of their own: theirs are left out."""
    ours = {base64.b64encode(k).decode() for k in offered}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = await registration.pool.fetch(
            "SELECT data::text AS data FROM events WHERE stream_id = $1 ORDER BY version",
            f"key-grants-{citizen_id}",
        )
        found = [CONTEXT.decode(r["data"].encode()) for r in rows]
        found = [g for g in found if isinstance(g, PersonalDataKeyGranted) and g.holder_key in ours]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{count} grant(s) for {citizen_id} never came")


async def test_a_holders_offer_is_answered_with_the_key_wrapped_to_it_until_erasure(
    registration: Registration, kafka: KafkaTools
) -> None:
    client, admin = registration.client, registration.admin
    body = registration.body(given_name="Ana")
    citizen_id = await registration.register(body)
    url = f"/v1/citizens/{citizen_id}"
    data_key_id = await registration.pool.fetchval(
        "SELECT key_id FROM citizen_keys WHERE citizen_id = $1", citizen_id
    )
    (registered,) = await sealed_in_events(registration, citizen_id)
    assert registered.key_id == data_key_id, "the offer names the key the data is sealed with"

    private, public = new_holder_key_pair()
    await offer(kafka, certificates.CONTEXT, citizen_id, data_key_id, public)
    await offer(kafka, certificates.CONTEXT, citizen_id, data_key_id, public)  # redelivered
    stale_private, stale_public = new_holder_key_pair()
    await offer(kafka, certificates.CONTEXT, citizen_id, "another-data-key", stale_public)
    other_private, other_public = new_holder_key_pair()
    await offer(kafka, notifications.CONTEXT, citizen_id, data_key_id, other_public)
    # The notifications offer may overtake the others (another topic): wait for the
    # certificates topic's last one to be handled too, by a sentinel offer behind it.
    _, sentinel = new_holder_key_pair()
    await offer(kafka, certificates.CONTEXT, citizen_id, data_key_id, sentinel)
    offered = [public, stale_public, other_public, sentinel]
    found = await grants(registration, citizen_id, 3, offered)
    assert len(found) == 3, "one grant per offered key: none twice, none for a stale key"
    by_key = {g.holder_key: g for g in found}
    assert set(by_key) == {base64.b64encode(k).decode() for k in (public, other_public, sentinel)}
    for holder, holder_private, holder_public in (
        ("certificates", private, public),
        ("notifications", other_private, other_public),
    ):
        grant = by_key[base64.b64encode(holder_public).decode()]
        assert isinstance(grant, PersonalDataKeyGranted)
        assert (grant.recipient, grant.wrap_alg) == (holder, WRAP_ALG)
        assert grant.data_key_id == data_key_id
        data_key = unwrap_key(holder_private, grant.wrapped_key, grant_context(citizen_id, holder))
        personal = msgspec.json.decode(
            unseal(data_key, registered, citizen_id.encode()), type=PersonalData
        )
        assert (personal.national_id, personal.given_name) == (body["national_id"], "Ana")
        with pytest.raises(UnsealError):  # one holder's grant is not another's
            unwrap_key(stale_private, grant.wrapped_key, grant_context(citizen_id, holder))
    # Grants live in a stream of their own: the citizen's ETag did not move.
    assert (await client.get(url, headers=admin)).headers["ETag"] == '"1"'

    assert (await client.post(url + "/erase", headers=admin)).status == 204
    _, late_public = new_holder_key_pair()
    await offer(kafka, certificates.CONTEXT, citizen_id, data_key_id, late_public)
    # Registering again makes a new citizen with a new data key; an offer for it is
    # granted, and being on the partition behind the late offer, shows that the late one
    # got nothing.
    again = await client.post("/v1/citizens", json=body, headers=admin)
    assert again.status == 201
    new_id = (await again.json())["citizen_id"]
    new_key_id = await registration.pool.fetchval(
        "SELECT key_id FROM citizen_keys WHERE citizen_id = $1", new_id
    )
    assert new_id != citizen_id and new_key_id != data_key_id
    _, fresh = new_holder_key_pair()
    await offer(kafka, certificates.CONTEXT, new_id, new_key_id, fresh, behind=citizen_id)
    (granted,) = await grants(registration, new_id, 1, [fresh])
    assert granted.holder_key == base64.b64encode(fresh).decode()
    found = await grants(registration, citizen_id, 3, [*offered, late_public])
    assert base64.b64encode(late_public).decode() not in {g.holder_key for g in found}
