"""Recording doses over HTTP against read models fed through real Kafka: rules, overrides,
idempotency, site scoping, corrections, voids, FHIR, adverse events, the published event."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, TopicPartition
from fhir.resources.R4B.bundle import Bundle
from openapi_spec_validator import validate

from immunreg.contracts.administration import CONTEXT, DoseAdministered
from immunreg.contracts.envelope import decode_envelope
from immunreg.http.auth import Role
from services.administration.app import api

from ..support.problems import assert_citizen_erased
from .conftest import COMIRNATY, Administration, unique


def site() -> str:
    """A site id nobody else uses (doses on the shared topic name it)."""
    return unique("SITE-T")


async def test_a_dose_from_a_recalled_lot_is_refused_and_an_admin_may_override(
    administration: Administration,
) -> None:
    a = administration
    here = site()
    citizen = await a.register()
    lot = await a.deliver_lot(here)
    await a.recall(lot)
    # Given after the recall (one given before it and recorded later would be fine).
    body = a.dose(citizen, here, lot, administered_at=datetime.now(UTC).isoformat())
    before = await a.count()

    refused = await a.client.post("/v1/doses", json=body, headers=a.staff(here))
    assert refused.status == 422
    assert refused.content_type == "application/problem+json"
    problem = await refused.json()
    assert problem["code"] == "lot_recalled"
    assert [e["field"] for e in problem["errors"]] == ["body.lot_number"]
    assert problem["errors"][0]["reason"].startswith("lot_recalled:")

    staff_override = await a.client.post(
        "/v1/doses", json={**body, "override_reason": "we did give it"}, headers=a.staff(here)
    )
    assert staff_override.status == 403
    assert (await staff_override.json())["code"] == "override_not_allowed"
    assert await a.count() == before, "a refused dose stores nothing"

    reason = "given before the recall notice reached the site; follow-up booked"
    dose_id = await a.record({**body, "override_reason": reason}, a.admin)
    [event] = await a.events(f"dose-{dose_id}")
    data = json.loads(event["data"])
    assert event["type"] == "DoseAdministered"
    # The rules overridden stay in clear; the reason is sealed (test_administration_sealing).
    assert data["overridden_rules"] == ["lot_recalled"] and data["details"] is not None
    assert reason not in event["data"]

    doses = await a.client.get(f"/v1/citizens/{citizen}/doses", headers=a.citizen(citizen))
    [view] = (await doses.json())["doses"]
    assert (view["dose_id"], view["override_reason"]) == (dose_id, reason)


async def test_the_same_dose_sent_twice_is_recorded_once(administration: Administration) -> None:
    a = administration
    here = site()
    lot = await a.deliver_lot(here)

    # The same Idempotency-Key: the first answer is replayed.
    citizen = await a.register()
    body = a.dose(citizen, here, lot)
    headers = {**a.staff(here), "Idempotency-Key": unique("key-")}
    first = await a.client.post("/v1/doses", json=body, headers=headers)
    again = await a.client.post("/v1/doses", json=body, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert await first.json() == await again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    dose_id = (await first.json())["dose_id"]
    assert len(await a.events(f"dose-{dose_id}")) == 1

    # No key, the same citizen, lot, dose number and time (another vaccinator typed it
    # in again, even in another time zone): the same dose id, recorded once.
    other = await a.register()
    body = a.dose(other, here, lot)
    first = await a.client.post("/v1/doses", json=body, headers=a.staff(here))
    moment = datetime.fromisoformat(body["administered_at"]).astimezone(ZoneInfo("Europe/Belgrade"))
    retyped = {**body, "administered_at": moment.isoformat(), "vaccinator_id": "V-0008"}
    again = await a.client.post("/v1/doses", json=retyped, headers=a.staff(here))
    assert (first.status, again.status) == (201, 200), await again.text()
    assert (await first.json()) == (await again.json())
    doses = await a.pool.fetch("SELECT dose_id FROM doses WHERE citizen_id = $1", other)
    assert [r["dose_id"] for r in doses] == [(await first.json())["dose_id"]]

    # And sent five times at once, without a key: one dose.
    third = await a.register()
    body = a.dose(third, here, lot)
    responses = await asyncio.gather(
        *(a.client.post("/v1/doses", json=body, headers=a.staff(here)) for _ in range(5))
    )
    assert sorted(r.status for r in responses) == [200, 200, 200, 200, 201]
    assert len({(await r.json())["dose_id"] for r in responses}) == 1
    assert await a.pool.fetchval("SELECT count(*) FROM doses WHERE citizen_id = $1", third) == 1


async def test_two_different_doses_at_once_are_checked_one_after_the_other(
    administration: Administration,
) -> None:
    a = administration
    here = site()
    lot_a, lot_b = await a.deliver_lot(here), await a.deliver_lot(here)
    citizen = await a.register()
    responses = await asyncio.gather(
        a.client.post("/v1/doses", json=a.dose(citizen, here, lot_a), headers=a.staff(here)),
        a.client.post("/v1/doses", json=a.dose(citizen, here, lot_b), headers=a.staff(here)),
    )
    assert sorted(r.status for r in responses) == [201, 422]
    [refused] = [r for r in responses if r.status == 422]
    assert (await refused.json())["code"] == "dose_number_out_of_sequence"


async def test_site_staff_cannot_act_at_another_site(administration: Administration) -> None:
    a = administration
    site_a, site_b = site(), site()
    citizen = await a.register()
    lot = await a.deliver_lot(site_b)
    before = await a.count()

    refused = await a.client.post(
        "/v1/doses", json=a.dose(citizen, site_b, lot), headers=a.staff(site_a)
    )
    assert refused.status == 403
    assert (await refused.json())["code"] == "other_site"
    assert await a.count() == before

    dose_id = await a.record(a.dose(citizen, site_b, lot), a.staff(site_b))
    for path, body in (
        (f"/v1/doses/{dose_id}/void", {"reason": "not ours"}),
        (f"/v1/doses/{dose_id}/corrections", {"reason": "x", "vaccinator_id": "V-1"}),
    ):
        response = await a.client.post(path, json=body, headers=a.staff(site_a))
        assert response.status == 403, path
    public_health = a.auth(Role.PUBLIC_HEALTH)
    for path in (f"/v1/citizens/{citizen}/doses", f"/v1/citizens/{citizen}/fhir"):
        assert (await a.client.get(path, headers=public_health)).status == 403
        assert (await a.client.get(path, headers=a.citizen("c-someoneelse234567abc"))).status == 403


async def test_a_voided_dose_is_entered_in_error_in_the_fhir_bundle(
    administration: Administration,
) -> None:
    a = administration
    here = site()
    citizen = await a.register(born=date(1961, 2, 3), sex="male")
    lot = await a.deliver_lot(here, expires=date.today() + timedelta(days=30))
    first = datetime.now(UTC) - timedelta(days=30)
    kept = await a.record(a.dose(citizen, here, lot, administered_at=first.isoformat()), a.admin)
    wrong = await a.record(a.dose(citizen, here, lot, dose_number=2), a.staff(here))

    voided = await a.client.post(
        f"/v1/doses/{wrong}/void",
        json={"reason": "recorded on the wrong citizen"},
        headers=a.staff(here),
    )
    assert voided.status == 200, await voided.text()
    assert (await voided.json())["status"] == "entered-in-error"
    again = await a.client.post(
        f"/v1/doses/{wrong}/void", json={"reason": "twice"}, headers=a.staff(here)
    )
    assert again.status == 200
    assert [r["type"] for r in await a.events(f"dose-{wrong}")] == [
        "DoseAdministered",
        "DoseVoided",
    ]

    response = await a.client.get(f"/v1/citizens/{citizen}/fhir", headers=a.citizen(citizen))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/fhir+json"
    bundle: Any = Bundle.model_validate_json(await response.read())
    resources = [entry.resource for entry in bundle.entry]
    assert [r.get_resource_type() for r in resources] == ["Patient", "Immunization", "Immunization"]
    patient, completed, entered_in_error = resources
    assert (patient.gender, patient.birthDate) == ("male", date(1961, 2, 3))
    assert patient.identifier[0].value == citizen
    assert (completed.id, completed.status) == (kept, "completed")
    assert (entered_in_error.id, entered_in_error.status) == (wrong, "entered-in-error")
    assert completed.lotNumber == lot
    assert completed.expirationDate == date.today() + timedelta(days=30)
    assert completed.vaccineCode.coding[0].code == COMIRNATY
    assert completed.protocolApplied[0].doseNumberPositiveInt == 1
    assert completed.performer[0].actor.identifier.value == "V-0007"
    assert completed.location.identifier.value == here

    # The voided dose no longer counts: dose 2 can be recorded for real.
    await a.record(a.dose(citizen, here, lot, dose_number=2), a.staff(here))


async def test_a_correction_restates_the_record_and_keeps_the_history(
    administration: Administration,
) -> None:
    a = administration
    here = site()
    citizen = await a.register()
    lot, right_lot = await a.deliver_lot(here), await a.deliver_lot(here)
    dose_id = await a.record(a.dose(citizen, here, lot), a.staff(here))

    response = await a.client.post(
        f"/v1/doses/{dose_id}/corrections",
        json={"reason": "lot number mistyped", "lot_number": right_lot},
        headers={**a.staff(here), "If-Match": '"1"'},
    )
    assert response.status == 200, await response.text()
    view = await response.json()
    assert (view["lot_number"], view["corrections"], view["version"]) == (right_lot, 1, 2)
    assert response.headers["ETag"] == '"2"'
    history = await a.events(f"dose-{dose_id}")
    assert [r["type"] for r in history] == ["DoseAdministered", "DoseCorrected"]
    assert json.loads(history[0]["data"])["lot_number"] == lot  # the original stays

    stale = await a.client.post(
        f"/v1/doses/{dose_id}/corrections",
        json={"reason": "again", "vaccinator_id": "V-9"},
        headers={**a.staff(here), "If-Match": '"1"'},
    )
    assert stale.status == 412

    unknown_lot = await a.client.post(
        f"/v1/doses/{dose_id}/corrections",
        json={"reason": "x", "lot_number": "NOT-DELIVERED"},
        headers=a.staff(here),
    )
    assert unknown_lot.status == 422
    assert (await unknown_lot.json())["code"] == "lot_not_at_site"

    await a.client.post(f"/v1/doses/{dose_id}/void", json={"reason": "x"}, headers=a.admin)
    after_void = await a.client.post(
        f"/v1/doses/{dose_id}/corrections",
        json={"reason": "x", "vaccinator_id": "V-9"},
        headers=a.admin,
    )
    assert after_void.status == 409
    assert (await after_void.json())["code"] == "dose_voided"


async def test_rules_that_no_one_can_override(administration: Administration) -> None:
    a = administration
    here = site()
    lot = await a.deliver_lot(here)
    reason = {"override_reason": "please"}
    before = await a.count()

    unknown = await a.client.post(
        "/v1/doses", json=a.dose("c-neverregistered234567", here, lot, **reason), headers=a.admin
    )
    assert (unknown.status, (await unknown.json())["code"]) == (422, "citizen_unknown")

    erased = await a.register()
    await a.erase(erased)
    refused = await a.client.post(
        "/v1/doses", json=a.dose(erased, here, lot, **reason), headers=a.admin
    )
    assert (refused.status, (await refused.json())["code"]) == (422, "citizen_erased")
    await assert_citizen_erased(await a.client.get(f"/v1/citizens/{erased}/fhir", headers=a.admin))
    assert await a.count() == before


async def test_bad_input_is_a_problem_and_stores_nothing(administration: Administration) -> None:
    a = administration
    here = site()
    citizen = await a.register()
    lot = await a.deliver_lot(here)
    before = await a.count()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        (a.dose(citizen, here, lot, dose_number=0), "body.dose_number"),
        (a.dose(citizen, here, lot, administered_at="2021-06-01T10:00:00"), "body.administered_at"),
        (a.dose(citizen, here, lot, administered_at=future), "body.administered_at"),
        (a.dose(citizen, here, lot, injection_site="nose"), "body.injection_site"),
        (a.dose(citizen, here, lot, lot_number=" "), "body.lot_number"),
        (a.dose(citizen, here, lot, colour="blue"), "body.colour"),
        (
            {k: v for k, v in a.dose(citizen, here, lot).items() if k != "vaccinator_id"},
            "body.vaccinator_id",
        ),
        (a.dose(citizen, here, lot, product_code="EU/1/20/1507"), "body.product_code"),
    ]
    for body, field in cases:
        response = await a.client.post("/v1/doses", json=body, headers=a.staff(here))
        assert response.status == 422, (field, await response.text())
        assert response.content_type == "application/problem+json"
        problem = await response.json()
        assert field in [e["field"] for e in problem["errors"]], problem
    assert await a.count() == before


async def test_adverse_events_are_reported_against_a_dose(administration: Administration) -> None:
    a = administration
    here = site()
    citizen = await a.register()
    lot = await a.deliver_lot(here)
    dose_id = await a.record(a.dose(citizen, here, lot), a.staff(here))
    onset = (datetime.now(UTC) - timedelta(minutes=20)).isoformat()
    report = {
        "dose_id": dose_id,
        "symptoms": ["fever", "headache"],
        "onset_at": onset,
        "serious": False,
        "outcome": "recovering",
    }
    response = await a.client.post("/v1/adverse-events", json=report, headers=a.citizen(citizen))
    assert response.status == 201, await response.text()
    report_id = (await response.json())["report_id"]
    [event] = await a.events(f"aefi-{report_id}")
    data = json.loads(event["data"])
    assert (data["dose_id"], data["lot_number"], data["reporter_role"]) == (dose_id, lot, "citizen")

    someone_else = await a.client.post(
        "/v1/adverse-events", json=report, headers=a.citizen("c-someoneelse234567abc")
    )
    assert someone_else.status == 403
    too_early = await a.client.post(
        "/v1/adverse-events",
        json={**report, "onset_at": (datetime.now(UTC) - timedelta(days=3)).isoformat()},
        headers=a.staff(site()),
    )
    assert (too_early.status, (await too_early.json())["code"]) == (422, "onset_before_dose")

    doses = await (await a.client.get(f"/v1/citizens/{citizen}/doses", headers=a.admin)).json()
    [view] = doses["doses"]
    assert [e["report_id"] for e in view["adverse_events"]] == [report_id]
    fhir: Any = Bundle.model_validate_json(
        await (await a.client.get(f"/v1/citizens/{citizen}/fhir", headers=a.admin)).read()
    )
    assert fhir.entry[1].resource.reaction[0].reported is True


async def test_dose_administered_reaches_kafka_with_what_others_need(
    administration: Administration, bootstrap: str
) -> None:
    a = administration
    here = site()
    await a.define_site(here, "70092")
    citizen = await a.register(born=date(1980, 7, 1), sex="female", municipality="70122")
    lot = await a.deliver_lot(here)
    first_at = datetime.now(UTC) - timedelta(days=40)
    await a.record(a.dose(citizen, here, lot, administered_at=first_at.isoformat()), a.admin)
    second_at = datetime.now(UTC) - timedelta(hours=2)
    dose_id = await a.record(
        a.dose(
            citizen,
            here,
            lot,
            dose_number=2,
            administered_at=second_at.isoformat(),
            appointment_id="APT-1",
        ),
        a.staff(here),
    )

    envelope = await _find_on_topic(bootstrap, CONTEXT.topic, f"dose-{dose_id}")
    event = CONTEXT.decode(envelope.data)
    assert isinstance(event, DoseAdministered)
    assert (event.citizen_id, event.site_id, event.site_municipality_code) == (
        citizen,
        here,
        "70092",
    )
    assert event.citizen_municipality_code == "70122"
    assert (event.product_code, event.lot_number, event.dose_number) == (COMIRNATY, lot, 2)
    assert (event.series_length, event.series_complete, event.booster) == (2, True, False)
    assert event.administered_at == second_at
    expected_age = second_at.year - 1980 - ((second_at.month, second_at.day) < (7, 1))
    assert (event.age_at_vaccination, event.sex) == (expected_age, "female")
    assert (event.vaccinator_id, event.appointment_id, event.injection_site) == (
        "V-0007",
        "APT-1",
        "left_arm",
    )
    assert envelope.stream_type == "DoseRecord" and envelope.version == 1


async def _find_on_topic(bootstrap: str, topic: str, key: str, timeout: float = 60.0) -> Any:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=250)
            for records in batch.values():
                for record in records:
                    if record.key == key.encode():
                        return decode_envelope(record.value)
    finally:
        await consumer.stop()
    raise AssertionError(f"{key} never reached {topic}")


def test_the_openapi_document_is_valid() -> None:
    document = api.openapi()
    validate(document)
    assert set(document["paths"]) >= {
        "/v1/doses",
        "/v1/doses/{dose_id}/void",
        "/v1/doses/{dose_id}/corrections",
        "/v1/citizens/{citizen_id}/doses",
        "/v1/adverse-events",
        "/v1/citizens/{citizen_id}/fhir",
    }
