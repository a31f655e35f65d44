"""Crypto-shredding: erasure makes the sealed history unreadable, the rebuilt read model
holds no personal data, CitizenErased reaches Kafka; key grants open for their recipient."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.registration import (
    CONTEXT,
    PersonalData,
    PersonalDataKeyGranted,
)
from immunreg.sealing import UnsealError, unseal, unwrap_key
from services.registration.keys import fetch_citizen_key, unwrap_citizen_key
from services.registration.readmodel import rebuild_read_model

from ..support.kafka import KafkaTools
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
        "PersonalDataKeyGranted",
        "ContactDetailsChanged",
        "RegistrationWithdrawn",
        "CitizenErased",
    ]

    assert (await client.get(url, headers=admin)).status == 410
    patch = await client.patch(url, json={"conditions": []}, headers={**admin, "If-Match": '"5"'})
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

    # Registering again after erasure starts afresh, with a new key.
    again = await client.post("/v1/citizens", json=body, headers=admin)
    assert again.status == 201 and (await again.json())["citizen_id"] == citizen_id
    async with registration.pool.acquire() as conn:
        new_key = await fetch_citizen_key(conn, registration.ring, citizen_id)
    assert new_key is not None
    for value in (await sealed_in_events(registration, citizen_id))[:2]:
        with pytest.raises(UnsealError):
            unseal(new_key.key, value, citizen_id.encode())
    assert (await (await client.get(url, headers=admin)).json())["given_name"] == "Milica"


async def test_a_key_recipient_can_open_the_personal_data(registration: Registration) -> None:
    body = registration.body(given_name="Ana")
    citizen_id = await registration.register(body)
    rows = await registration.pool.fetch(
        "SELECT type, data::text AS data FROM events WHERE stream_id = $1 ORDER BY version",
        citizen_id,
    )
    events = [CONTEXT.decode(r["data"].encode()) for r in rows]
    (grant,) = [e for e in events if isinstance(e, PersonalDataKeyGranted)]
    assert grant.recipient == "certificates" and grant.wrap_alg == "RSA-OAEP-256"
    data_key = unwrap_key(registration.recipient, grant.wrapped_key)
    personal = msgspec.json.decode(
        unseal(data_key, events[0].personal, citizen_id.encode()),  # type: ignore[attr-defined]
        type=PersonalData,
    )
    assert (personal.national_id, personal.given_name) == (body["national_id"], "Ana")
