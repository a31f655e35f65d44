"""Random citizen ids and the national-id index; health data sealed in the events.

The index (a keyed hash of the national id -> the citizen id) is written with the
registration, is unique under concurrency, survives a withdrawal and goes with an
erasure; conditions and a withdrawal's reason reach the events only sealed."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgspec

from immunreg.contracts.registration import (
    CONTEXT,
    HealthData,
    PreferencesChanged,
    RegistrationWithdrawn,
    health_context,
)
from immunreg.sealing import unseal
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
