"""Random citizen ids and the national-id index; health data sealed in the events.

The index (a keyed hash of the national id -> the citizen id) is written with the
registration, is unique under concurrency, survives a withdrawal and goes with an
erasure; conditions and a withdrawal's reason reach the events only sealed."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from typing import Any

import msgspec

from immunreg.contracts.registration import (
    CONTEXT,
    CitizenRegistered,
    Consent,
    HealthData,
    PersonalData,
    PreferencesChanged,
    RegistrationWithdrawn,
    health_context,
)
from immunreg.http.app import STORE_KEY
from immunreg.sealing import CitizenKey, unseal
from services.registration.contacts import seal_personal
from services.registration.domain import STREAM_TYPE
from services.registration.handlers import PostgresBooks
from services.registration.keys import fetch_citizen_key

from .conftest import Registration


async def events_of(registration: Registration, citizen_id: str) -> list[Any]:
    rows = await registration.pool.fetch(
        "SELECT data::text AS data FROM events WHERE stream_id = $1 ORDER BY version",
        citizen_id,
    )
    return [CONTEXT.decode(r["data"].encode()) for r in rows]


async def opened_health(registration: Registration, citizen_id: str, event: Any) -> HealthData:
    async with registration.pool.acquire() as conn:
        key = await fetch_citizen_key(conn, registration.ring, citizen_id)
    assert key is not None and event.health is not None
    return msgspec.json.decode(
        unseal(key.key, event.health, health_context(citizen_id)), type=HealthData
    )


async def index_rows(registration: Registration, national_id: str) -> int:
    count: int = await registration.pool.fetchval(
        "SELECT count(*) FROM citizen_national_ids WHERE national_id_hash = $1",
        registration.ring.national_id_hash(national_id),
    )
    return count


async def test_concurrent_registrations_after_an_erasure_make_one_new_citizen(
    registration: Registration,
) -> None:
    body = registration.body()
    erased = await registration.register(body)
    assert await registration.citizen_of(body["national_id"]) == erased
    url = f"/v1/citizens/{erased}"
    assert (
        await registration.client.post(url + "/erase", headers=registration.admin)
    ).status == 204
    assert await index_rows(registration, body["national_id"]) == 0, "erasure deletes the row"

    async def post() -> tuple[int, dict[str, Any]]:
        response = await registration.client.post(
            "/v1/citizens", json=body, headers=registration.admin
        )
        return response.status, await response.json()

    results = await asyncio.gather(*(post() for _ in range(20)))

    assert Counter(status for status, _ in results) == {201: 1, 409: 19}
    (created,) = [answer["citizen_id"] for status, answer in results if status == 201]
    assert created != erased
    assert await registration.citizen_of(body["national_id"]) == created
    assert await index_rows(registration, body["national_id"]) == 1
    assert all(created in a["detail"] for s, a in results if s == 409), "the id it has now"
    assert (await registration.client.get(url, headers=registration.admin)).status == 410


async def test_a_withdrawal_keeps_the_id_and_seals_its_reason(registration: Registration) -> None:
    body = registration.body()
    citizen_id = await registration.register(body)
    url = f"/v1/citizens/{citizen_id}?reason=pregnant%2C%20due%20in%20May"
    assert (await registration.client.delete(url, headers=registration.admin)).status == 204

    withdrawn = (await events_of(registration, citizen_id))[-1]
    assert isinstance(withdrawn, RegistrationWithdrawn) and withdrawn.reason is None
    opened = await opened_health(registration, citizen_id, withdrawn)
    assert opened.withdrawal_reason == "pregnant, due in May"

    again = await registration.client.post("/v1/citizens", json=body, headers=registration.admin)
    assert again.status == 201 and (await again.json())["citizen_id"] == citizen_id
    assert await index_rows(registration, body["national_id"]) == 1


async def test_changed_conditions_are_published_sealed_with_the_products_they_rule_out(
    registration: Registration,
) -> None:
    client, admin = registration.client, registration.admin
    citizen_id = await registration.register(
        registration.body(conditions=["diabetes"], vaccine_preferences=["any"])
    )
    url = f"/v1/citizens/{citizen_id}"
    etag = (await client.get(url, headers=admin)).headers["ETag"]
    changed = await client.patch(
        url, json={"conditions": ["pregnancy"]}, headers={**admin, "If-Match": etag}
    )
    assert changed.status == 200 and (await changed.json())["conditions"] == ["pregnancy"]

    event = (await events_of(registration, citizen_id))[-1]
    assert isinstance(event, PreferencesChanged)
    assert event.conditions == [] and event.ruled_out_products == ["BBIBP-CorV", "Sputnik-V"]
    assert (await opened_health(registration, citizen_id, event)).conditions == ["pregnancy"]

    # The same conditions again change nothing (they are compared unsealed).
    same = await client.patch(
        url,
        json={"conditions": ["pregnancy"]},
        headers={**admin, "If-Match": changed.headers["ETag"]},
    )
    assert same.status == 200 and same.headers["ETag"] == changed.headers["ETag"]
    # Another preference carries the sealed conditions along (not a delta).
    other = await client.patch(
        url, json={"priority_group": "general"}, headers={**admin, "If-Match": same.headers["ETag"]}
    )
    assert other.status == 200 and (await other.json())["conditions"] == ["pregnancy"]
    last = (await events_of(registration, citizen_id))[-1]
    assert (await opened_health(registration, citizen_id, last)).conditions == ["pregnancy"]


async def registered_before_this_change(registration: Registration, body: dict[str, Any]) -> str:
    """A registration as it was stored before: the citizen id an HMAC of the national id,
    no index row, the conditions in clear in the event and the read model."""
    ring, store = registration.ring, registration.app[STORE_KEY]
    citizen_id = ring.legacy_citizen_id(body["national_id"])
    key = CitizenKey.new()
    event = CitizenRegistered(
        citizen_id=citizen_id,
        birth_date=date.fromisoformat(body["birth_date"]),
        sex=body["sex"],
        municipality_code=body["municipality_code"],
        priority_group=body["priority_group"],
        conditions=["pregnancy"],
        vaccine_preferences=body["vaccine_preferences"],
        consent=Consent(data_processing=True),
        personal=seal_personal(
            key,
            citizen_id,
            PersonalData(
                national_id=body["national_id"],
                given_name="Jelena",
                family_name="Petrović",
                email="jelena@example.rs",
            ),
        ),
    )
    async with store.transaction() as conn:
        (envelope,) = await store.append(
            citizen_id, STREAM_TYPE, 0, [event], context=CONTEXT, conn=conn
        )
        await PostgresBooks(ring, store).keep_key(conn, citizen_id, key)
        await PostgresBooks(ring, store).record(conn, citizen_id, envelope, event)
    return citizen_id


async def test_a_registration_from_before_keeps_its_id_and_gets_its_conditions_sealed(
    registration: Registration,
) -> None:
    client, admin = registration.client, registration.admin
    body = registration.body()
    citizen_id = await registered_before_this_change(registration, body)
    url = f"/v1/citizens/{citizen_id}"
    read = await client.get(url, headers=admin)
    assert read.status == 200 and (await read.json())["conditions"] == ["pregnancy"]

    again = await client.post("/v1/citizens", json=body, headers=admin)
    assert again.status == 409 and citizen_id in (await again.json())["detail"]

    changed = await client.patch(
        url, json={"vaccine_preferences": ["any"]}, headers={**admin, "If-Match": '"1"'}
    )
    assert changed.status == 200 and (await changed.json())["conditions"] == ["pregnancy"]
    event = (await events_of(registration, citizen_id))[-1]
    assert isinstance(event, PreferencesChanged) and event.conditions == []
    assert event.ruled_out_products == ["BBIBP-CorV", "Sputnik-V"]
    assert (await opened_health(registration, citizen_id, event)).conditions == ["pregnancy"]
    row = await registration.pool.fetchrow(
        "SELECT conditions FROM citizens WHERE citizen_id = $1", citizen_id
    )
    assert row is not None and list(row["conditions"]) == [], "no clear copy kept"

    assert (await client.delete(url, headers=admin)).status == 204
    back = await client.post("/v1/citizens", json=body, headers=admin)
    assert back.status == 201 and (await back.json())["citizen_id"] == citizen_id
    assert await registration.citizen_of(body["national_id"]) == citizen_id
