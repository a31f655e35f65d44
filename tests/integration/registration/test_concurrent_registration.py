"""One national id, one citizen: 100 concurrent registrations over HTTP create one stream."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from .conftest import Registration


async def test_100_concurrent_registrations_of_one_jmbg_create_exactly_one_citizen(
    registration: Registration,
) -> None:
    before = await registration.counts()
    body = registration.body()
    # Different callers and spellings of the same person: still one citizen.
    variants = [
        {
            **body,
            "given_name": f"Jelena {chr(65 + i // 26)}{chr(65 + i % 26)}",
            "phone": f"06{i:08d}",
        }
        for i in range(100)
    ]

    async def post(payload: dict[str, object]) -> tuple[int, dict[str, Any]]:
        response = await registration.client.post(
            "/v1/citizens", json=payload, headers=registration.admin
        )
        return response.status, await response.json()

    results = await asyncio.gather(*(post(v) for v in variants))

    statuses = Counter(status for status, _ in results)
    assert statuses == {201: 1, 409: 99}, statuses
    (created,) = [answer for status, answer in results if status == 201]
    citizen_id = created["citizen_id"]
    assert await registration.citizen_of(body["national_id"]) == citizen_id
    for status, answer in results:
        if status == 409:
            assert answer["code"] == "already_registered"
            assert citizen_id in answer["detail"], "an admin is told the existing id"

    streams = await registration.pool.fetch(
        "SELECT stream_id, count(*) AS n FROM events WHERE type = 'CitizenRegistered' "
        "GROUP BY stream_id"
    )
    assert [(r["stream_id"], r["n"]) for r in streams] == [(citizen_id, 1)]
    after = await registration.counts()
    # CitizenRegistered only: data keys are granted to holders that offer a key.
    assert after["events"] - before["events"] == 1
    assert after["citizens"] - before["citizens"] == 1
    assert after["citizen_keys"] - before["citizen_keys"] == 1
    assert after["citizen_national_ids"] - before["citizen_national_ids"] == 1

    read = await registration.client.get(f"/v1/citizens/{citizen_id}", headers=registration.admin)
    assert read.status == 200
    record = await read.json()
    winner = next(v for v in variants if v["given_name"] == record["given_name"])
    assert record["phone"] == "+381" + str(winner["phone"])[1:], "the winner's data, unmixed"
    assert read.headers["ETag"] == '"1"'
