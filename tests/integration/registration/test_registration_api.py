"""The registration API over a real server and database: contract, validation, ETags, roles."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pytest
from openapi_spec_validator import validate

from immunreg.contracts.booking import CONTEXT as BOOKING
from immunreg.contracts.booking import AppointmentBooked
from immunreg.contracts.registration import (
    CONTEXT,
    CitizenRegistered,
    HealthData,
    PersonalData,
    health_context,
)
from immunreg.messaging.reactions import Provided
from immunreg.sealing import unseal
from services.registration.handlers import Granting, build_reactions
from services.registration.keys import KeyConfigError, check_id_key, fetch_citizen_key

from .conftest import Registration


async def booked_at(registration: Registration, citizen_id: str, site_id: str) -> None:
    """Booking's event as registration's consumer applies it (its own reaction handler)."""
    event = AppointmentBooked(
        appointment_id=f"appt-{citizen_id}",
        citizen_id=citizen_id,
        site_id=site_id,
        municipality_code="70092",
        day=date.today(),
        product_code="EU/1/21/1529",
        dose_number=1,
        reason="test",
    )
    envelope = BOOKING.envelope(
        event,
        stream_id=event.appointment_id,
        stream_type="Appointment",
        version=1,
        recorded_at=datetime.now(UTC),
    )
    reactions = build_reactions(Provided[Granting]("not needed for site links"))
    entry = reactions.lookup(BOOKING.topic, event.type_name())
    assert entry is not None
    async with registration.pool.acquire() as conn, conn.transaction():
        await entry[1](conn, event, envelope)


async def test_register_and_read_back(registration: Registration) -> None:
    body = registration.body(email="Jelena.P@Example.RS")
    response = await registration.client.post("/v1/citizens", json=body, headers=registration.admin)
    assert response.status == 201, await response.text()
    citizen_id = (await response.json())["citizen_id"]
    assert response.headers["Location"] == f"/v1/citizens/{citizen_id}"
    assert response.headers["ETag"] == '"1"'  # registered (key grants are a stream apart)

    read = await registration.client.get(f"/v1/citizens/{citizen_id}", headers=registration.admin)
    assert read.status == 200
    assert read.headers["ETag"] == '"1"'
    record = await read.json()
    assert record["view"] == "full"
    assert record["citizen_id"] == citizen_id
    assert record["national_id"] == body["national_id"]
    assert (record["given_name"], record["family_name"]) == ("Jelena", "Petrović")
    assert record["phone"] == "+381641234567"
    assert record["email"] == "Jelena.P@example.rs"
    assert record["birth_date"] == body["birth_date"]
    assert record["status"] == "active"
    assert record["channel"] == "admin"
    assert record["vaccine_preferences"] == ["EU/1/20/1528", "EU/1/21/1529"]
    assert record["consent"] == {"data_processing": True, "reminders": True, "research": False}

    own = await registration.client.get(
        f"/v1/citizens/{citizen_id}", headers=registration.citizen(citizen_id)
    )
    assert own.status == 200 and (await own.json())["national_id"] == body["national_id"]


async def test_personal_data_is_stored_only_sealed(registration: Registration) -> None:
    body = registration.body(given_name="Dragana", family_name="Milošević")
    citizen_id = await registration.register(body)
    rows = await registration.pool.fetch(
        "SELECT type, data::text AS data FROM events WHERE stream_id = $1", citizen_id
    )
    stored = " ".join(r["data"] for r in rows)
    citizen_row = await registration.pool.fetchrow(
        "SELECT row_to_json(c)::text AS j FROM citizens c WHERE citizen_id = $1", citizen_id
    )
    assert citizen_row is not None
    for secret in (body["national_id"], "Dragana", "Milo", "641234567", "jelena@example.rs"):
        assert secret not in stored
        assert secret not in citizen_row["j"]
    registered = next(r for r in rows if r["type"] == "CitizenRegistered")
    event = CONTEXT.decode(registered["data"].encode())
    assert isinstance(event, CitizenRegistered)
    assert event.birth_date.isoformat() == body["birth_date"]
    assert event.municipality_code == "70092"
    async with registration.pool.acquire() as conn:
        key = await fetch_citizen_key(conn, registration.ring, citizen_id)
    assert key is not None and event.personal.key_id == key.key_id
    personal = msgspec.json.decode(
        unseal(key.key, event.personal, citizen_id.encode()), type=PersonalData
    )
    assert personal.national_id == body["national_id"] and personal.given_name == "Dragana"
    # The declared conditions too travel and stay only sealed, under the same key.
    assert event.conditions == [] and event.health is not None
    health = msgspec.json.decode(
        unseal(key.key, event.health, health_context(citizen_id)), type=HealthData
    )
    assert health.conditions == ["diabetes"]
    for stored_conditions in (stored, citizen_row["j"]):
        assert "diabetes" not in stored_conditions


async def test_bad_input_is_one_422_with_an_entry_per_field_and_stores_nothing(
    registration: Registration,
) -> None:
    before = await registration.counts()
    good = registration.body()
    bad = {
        **good,
        "national_id": good["national_id"][:12] + str((int(good["national_id"][12]) + 1) % 10),
        "birth_date": "2999-01-01",
        "municipality_code": "00000",
        "phone": "call me",
        "email": None,
        "priority_group": "vip",
        "conditions": ["diabetes", "hiccups"],
        "vaccine_preferences": ["any", "EU/1/20/1528"],
        "consent": {"data_processing": False},
    }
    response = await registration.client.post("/v1/citizens", json=bad, headers=registration.admin)
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    fields = [e["field"] for e in problem["errors"]]
    assert sorted(fields) == sorted(
        [
            "body.national_id",
            "body.birth_date",
            "body.municipality_code",
            "body.phone",
            "body.priority_group",
            "body.conditions",
            "body.vaccine_preferences",
            "body.consent.data_processing",
        ]
    ), problem

    mismatch = await registration.client.post(
        "/v1/citizens",
        json={**good, "birth_date": "1901-01-01", "sex": "male"},
        headers=registration.admin,
    )
    assert mismatch.status == 422
    assert {e["field"] for e in (await mismatch.json())["errors"]} == {
        "body.national_id",
        "body.sex",
    }

    wrong_type = await registration.client.post(
        "/v1/citizens", json={**good, "conditions": "diabetes"}, headers=registration.admin
    )
    assert wrong_type.status == 422
    assert (await wrong_type.json())["errors"][0]["field"] == "body.conditions"
    unknown_field = await registration.client.post(
        "/v1/citizens", json={**good, "blood_type": "0+"}, headers=registration.admin
    )
    assert unknown_field.status == 422

    assert await registration.counts() == before, "nothing may be stored on any error"


async def test_a_second_registration_is_409_naming_the_id_only_to_admins(
    registration: Registration,
) -> None:
    body = registration.body()
    citizen_id = await registration.register(body)
    for headers, sees_id in (
        (registration.admin, True),
        (registration.site_staff(), False),
        (registration.citizen(citizen_id), False),
    ):
        again = await registration.client.post("/v1/citizens", json=body, headers=headers)
        assert again.status == 409
        problem = await again.json()
        assert problem["code"] == "already_registered"
        assert (citizen_id in problem["detail"]) is sees_id, problem
    other = await registration.client.post(
        "/v1/citizens", json=registration.body(), headers=registration.citizen(citizen_id)
    )
    assert other.status == 403, "a citizen token registers only its own national id"
    anonymous = await registration.client.post("/v1/citizens", json=body)
    assert anonymous.status == 409
    assert citizen_id not in (await anonymous.json())["detail"]


async def test_a_person_without_a_token_registers_as_online(registration: Registration) -> None:
    """The citizens' portal registers before anyone has signed in."""
    body = registration.body(email="portal.person@example.rs")
    created = await registration.client.post("/v1/citizens", json=body)
    assert created.status == 201, await created.text()
    citizen_id = (await created.json())["citizen_id"]
    read = await registration.client.get(f"/v1/citizens/{citizen_id}", headers=registration.admin)
    record = await read.json()
    assert (record["channel"], record["email"]) == ("online", "portal.person@example.rs")
    assert record["language"] == body.get("language", "sr-Latn")
    url = f"/v1/citizens/{citizen_id}"
    changed = await registration.client.patch(
        url,
        json={"language": "sr-Cyrl"},
        headers={**registration.admin, "If-Match": read.headers["ETag"]},
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["language"] == "sr-Cyrl"
    invalid = await registration.client.post("/v1/citizens", json={**body, "phone": "12"})
    assert invalid.status == 422
    assert [e["field"] for e in (await invalid.json())["errors"]] == ["body.phone"]


async def test_updates_need_the_current_etag(registration: Registration) -> None:
    citizen_id = await registration.register()
    url = f"/v1/citizens/{citizen_id}"
    me = registration.citizen(citizen_id)
    change: dict[str, Any] = {"phone": None, "email": "new@example.rs", "conditions": []}

    missing = await registration.client.patch(url, json=change, headers=me)
    assert missing.status == 428
    assert (await missing.json())["code"] == "if_match_required"

    stale = await registration.client.patch(url, json=change, headers={**me, "If-Match": '"0"'})
    assert stale.status == 412
    assert (await stale.json())["code"] == "stale_etag"

    etag = (await registration.client.get(url, headers=me)).headers["ETag"]
    ok = await registration.client.patch(url, json=change, headers={**me, "If-Match": etag})
    assert ok.status == 200, await ok.text()
    record = await ok.json()
    assert (record["phone"], record["email"], record["conditions"]) == (
        None,
        "new@example.rs",
        [],
    )
    assert record["vaccine_preferences"] == ["EU/1/20/1528", "EU/1/21/1529"], "left alone"
    assert ok.headers["ETag"] == f'"{int(etag.strip(chr(34))) + 2}"'
    types = [
        r["type"]
        for r in await registration.pool.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", citizen_id
        )
    ]
    assert types[-2:] == ["ContactDetailsChanged", "PreferencesChanged"]

    replayed = await registration.client.patch(url, json=change, headers={**me, "If-Match": etag})
    assert replayed.status == 412, "the ETag it was read with is stale now"

    current = ok.headers["ETag"]
    before = await registration.counts()
    invalid = await registration.client.patch(
        url,
        json={"email": None, "priority_group": "vip"},
        headers={**me, "If-Match": current},
    )
    assert invalid.status == 422
    assert {e["field"] for e in (await invalid.json())["errors"]} == {
        "body.phone",
        "body.priority_group",
    }
    assert await registration.counts() == before


async def test_withdraw_then_register_again(registration: Registration) -> None:
    body = registration.body()
    citizen_id = await registration.register(body)
    url = f"/v1/citizens/{citizen_id}"
    me = registration.citizen(citizen_id)

    gone = await registration.client.delete(url + "?reason=moved", headers=me)
    assert gone.status == 204
    read = await registration.client.get(url, headers=me)
    assert (await read.json())["status"] == "withdrawn"
    etag = read.headers["ETag"]
    again = await registration.client.delete(url, headers=me)
    assert again.status == 204 and again.headers["ETag"] == etag, "no second event"

    refused = await registration.client.patch(
        url, json={"email": "x@example.rs"}, headers={**me, "If-Match": etag}
    )
    assert refused.status == 409
    assert (await refused.json())["code"] == "citizen_withdrawn"

    back = await registration.client.post("/v1/citizens", json=body, headers=me)
    assert back.status == 201
    assert (await back.json())["citizen_id"] == citizen_id
    read = await registration.client.get(url, headers=me)
    assert (await read.json())["status"] == "active"


async def test_role_rules(registration: Registration) -> None:
    citizen_id = await registration.register()
    other_id = await registration.register()
    url = f"/v1/citizens/{citizen_id}"
    other = registration.citizen(other_id)
    client = registration.client

    assert (await client.get(url, headers=other)).status == 403
    etag = (await client.get(url, headers=registration.admin)).headers["ETag"]
    patch = await client.patch(url, json={"conditions": []}, headers={**other, "If-Match": etag})
    assert patch.status == 403
    assert (await client.delete(url, headers=other)).status == 403
    assert (await client.post(url + "/erase", headers=other)).status == 403
    assert (await client.post(url + "/erase", headers=registration.site_staff())).status == 403
    assert (await client.get(url, headers=registration.auth("logistics"))).status == 403
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=registration.auth("public_health"))).status == 403

    # Site staff read a citizen only once booked or vaccinated at their site.
    unlinked = await client.get(url, headers=registration.site_staff())
    assert (unlinked.status, (await unlinked.json())["code"]) == (403, "citizen_not_at_site")
    await booked_at(registration, citizen_id, "SITE-0001")
    staff = await client.get(url, headers=registration.site_staff())
    assert staff.status == 200
    elsewhere = await client.get(url, headers=registration.site_staff("SITE-0002"))
    assert elsewhere.status == 403
    said_why = {**registration.site_staff("SITE-0002"), "Access-Reason": "walk-in, dose 2"}
    assert (await client.get(url, headers=said_why)).status == 200
    audited = await registration.pool.fetch(
        "SELECT site_id, reason FROM audit_log WHERE citizen_id = $1 AND role = 'site_staff'"
        " ORDER BY seq",
        citizen_id,
    )
    assert [tuple(r) for r in audited] == [("SITE-0001", None), ("SITE-0002", "walk-in, dose 2")]
    view = await staff.json()
    assert set(view) == {
        "view",
        "citizen_id",
        "status",
        "given_name",
        "family_name",
        "birth_date",
        "conditions",
    }
    assert view["view"] == "vaccination" and view["conditions"] == ["diabetes"]
    staff_patch = await client.patch(
        url, json={"conditions": []}, headers={**registration.site_staff(), "If-Match": etag}
    )
    assert staff_patch.status == 403

    unknown = "c-" + "a" * 20
    assert (await client.get(f"/v1/citizens/{unknown}", headers=registration.admin)).status == 404
    assert (
        await client.get(f"/v1/citizens/{unknown}", headers=registration.citizen(unknown))
    ).status == 404
    assert (await client.get("/v1/citizens/not-an-id", headers=registration.admin)).status == 404

    staff_registers = await client.post(
        "/v1/citizens", json=registration.body(), headers=registration.site_staff()
    )
    assert staff_registers.status == 201
    registered = await client.get(
        f"/v1/citizens/{(await staff_registers.json())['citizen_id']}", headers=registration.admin
    )
    assert (await registered.json())["channel"] == "health_worker"


async def test_openapi_lists_every_route_with_request_and_problem_schemas(
    registration: Registration,
) -> None:
    response = await registration.client.get("/openapi.json")
    assert response.status == 200
    doc = await response.json()
    validate(doc)
    paths = doc["paths"]
    expected = {
        ("/v1/citizens/{citizen_id}", "get"),
        ("/v1/citizens/{citizen_id}", "patch"),
        ("/v1/citizens/{citizen_id}", "delete"),
        ("/v1/citizens/{citizen_id}/erase", "post"),
    }
    audit = {("/v1/audit/reads", "get"), ("/v1/citizens/{citizen_id}/reads", "get")}
    public = {
        ("/v1/citizens", "post"),
        ("/v1/sign-in/codes", "post"),
        ("/v1/sign-in/tokens", "post"),
    }
    assert {(p, m) for p, ops in paths.items() for m in ops} == expected | audit | public
    for path, method in public:
        statuses = set(paths[path][method]["responses"])
        assert {"422", "429"} <= statuses and "401" not in statuses, (path, method)
    schemas = doc["components"]["schemas"]
    for path, method in expected:
        op = paths[path][method]
        problems = {
            status
            for status, r in op["responses"].items()
            if "application/problem+json" in r.get("content", {})
        }
        assert {"401", "403", "500"} <= problems, (path, method)
        if "{citizen_id}" in path:
            assert "404" in problems, (path, method)
    register = paths["/v1/citizens"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RegisterCitizen"
    }
    assert {"409", "422"} <= set(register["responses"])
    assert "national_id" in schemas["RegisterCitizen"]["required"]
    update = paths["/v1/citizens/{citizen_id}"]["patch"]
    assert update["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UpdateCitizen"
    }
    assert {"409", "412", "422", "428"} <= set(update["responses"])
    read = paths["/v1/citizens/{citizen_id}"]["get"]["responses"]["200"]
    assert read["content"]["application/json"]["schema"]["discriminator"]["propertyName"] == "view"
    assert {"CitizenRecord", "VaccinationView", "ProblemDetail"} <= set(schemas)


async def test_domain_counters_are_exported(registration: Registration) -> None:
    await registration.register(registration.body(priority_group="health_worker"))
    metrics = await (await registration.client.get("/metrics")).text()
    assert 'immunreg_registrations_total{channel="admin",priority_group="health_worker"}' in metrics


async def test_the_service_refuses_a_citizen_id_key_other_than_the_one_in_use(
    registration: Registration,
) -> None:
    await check_id_key(registration.pool, registration.ring)  # the key the service runs with
    other = dataclasses.replace(registration.ring, id_key=bytes(32))
    with pytest.raises(KeyConfigError, match="ID_KEY_FILE"):
        await check_id_key(registration.pool, other)
