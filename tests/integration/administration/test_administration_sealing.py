"""Health details sealed under the citizen's key, on PostgreSQL and Kafka: the events in
the store and on the topic carry override, correction and void reasons and an adverse
event's symptoms, outcome and description only sealed; they open with the citizen's row
in `citizen_keys` until CitizenErased deletes it; the read model serves them until then
and keeps only the facts statistics need after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from immunreg.contracts.administration import (
    CONTEXT,
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseNotes,
    DoseVoided,
)
from immunreg.contracts.envelope import Event
from immunreg.sealing import CitizenKey
from services.administration.keys import adverse_details, dose_notes

from ..support.problems import assert_citizen_erased
from .conftest import Administration, unique
from .test_administration_doses import _find_on_topic

OVERRIDE = "sealing-test: first dose given abroad, patient consented"
CORRECTION = "sealing-test: typed the wrong arm"
VOID = "sealing-test: recorded for the twin brother"
SYMPTOMS = ["sealing-test-urticaria", "sealing-test-dyspnoea"]
DESCRIPTION = "sealing-test: hives and wheezing within 20 minutes, adrenaline given"
CLEAR = [OVERRIDE, CORRECTION, VOID, *SYMPTOMS, DESCRIPTION]


async def _key(a: Administration, citizen_id: str) -> CitizenKey | None:
    row = await a.pool.fetchrow(
        "SELECT key_id, key FROM citizen_keys WHERE citizen_id = $1", citizen_id
    )
    return None if row is None else CitizenKey(row["key_id"], bytes(row["key"]))


async def _citizens_events(a: Administration, citizen_id: str) -> list[Event]:
    rows = await a.pool.fetch(
        "SELECT data::text AS data FROM events WHERE data->>'citizen_id' = $1"
        " ORDER BY recorded_at, version",
        citizen_id,
    )
    return [CONTEXT.decode(row["data"].encode()) for row in rows]


async def _every_row(a: Administration) -> str:
    """Every row of every table of the service's schema, as text."""
    tables = await a.pool.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = $1 AND table_type = 'BASE TABLE'",
        a.schema,
    )
    text = []
    for table in tables:
        for row in await a.pool.fetch(f'SELECT * FROM "{table["table_name"]}"'):
            # bytea (snapshots, outbox payloads) as its bytes, not as hex
            text += [v.decode("latin-1") if isinstance(v, bytes) else str(v) for v in row.values()]
    return "\n".join(text)


def _opened(events: list[Event], key: CitizenKey | None) -> list[Any]:
    """What each event's details open to under `key`."""
    opened: list[Any] = []
    for event in events:
        if isinstance(event, AdverseEventReported):
            opened.append(adverse_details(event, key))
        elif isinstance(event, DoseAdministered | DoseCorrected | DoseVoided):
            opened.append(dose_notes(event, key))
    return opened


async def test_details_are_sealed_and_open_with_the_citizens_key_until_erasure(
    administration: Administration, bootstrap: str
) -> None:
    a = administration
    here = unique("SITE-SEAL")
    citizen = await a.register()
    lot = await a.deliver_lot(here)
    given = datetime.now(UTC) - timedelta(minutes=30)
    # Dose 2 with no dose 1 (dose_number_out_of_sequence): an admin overrides, with a reason.
    body = a.dose(citizen, here, lot, dose_number=2, administered_at=given.isoformat())
    dose_id = await a.record({**body, "override_reason": OVERRIDE}, a.admin)
    corrected = await a.client.post(
        f"/v1/doses/{dose_id}/corrections",
        json={"reason": CORRECTION, "injection_site": "right_arm", "override_reason": OVERRIDE},
        headers=a.admin,
    )
    assert corrected.status == 200, await corrected.text()
    twin = await a.record(
        {
            **body,
            "dose_number": 3,  # interval_too_short
            "override_reason": OVERRIDE,
            "administered_at": given.isoformat(),
        },
        a.admin,
    )
    voided = await a.client.post(
        f"/v1/doses/{twin}/void", json={"reason": VOID}, headers=a.staff(here)
    )
    assert voided.status == 200, await voided.text()
    reported = await a.client.post(
        "/v1/adverse-events",
        json={
            "dose_id": dose_id,
            "symptoms": SYMPTOMS,
            "onset_at": (given + timedelta(minutes=20)).isoformat(),
            "serious": True,
            "outcome": "recovering",
            "description": DESCRIPTION,
        },
        headers=a.staff(here),
    )
    assert reported.status == 201, await reported.text()
    report_id = (await reported.json())["report_id"]

    # In the store and on Kafka: sealed, under one key of this citizen.
    events = await _citizens_events(a, citizen)
    assert [type(e).__name__ for e in events] == [
        "DoseAdministered",
        "DoseCorrected",
        "DoseAdministered",
        "DoseVoided",
        "AdverseEventReported",
    ]
    stored = await a.pool.fetchval(
        "SELECT string_agg(data::text, ' ') FROM events WHERE data->>'citizen_id' = $1", citizen
    )
    assert [text for text in CLEAR if text in stored] == []
    on_kafka = await _find_on_topic(bootstrap, CONTEXT.topic, f"aefi-{report_id}")
    assert [text for text in CLEAR if text in bytes(on_kafka.data).decode()] == []
    key = await _key(a, citizen)
    assert key is not None
    assert _opened(events, key) == [
        DoseNotes(override_reason=OVERRIDE),
        DoseNotes(override_reason=OVERRIDE, reason=CORRECTION),
        DoseNotes(override_reason=OVERRIDE),
        DoseNotes(reason=VOID),
        AdverseEventDetails(symptoms=SYMPTOMS, outcome="recovering", description=DESCRIPTION),
    ]
    kafka_event = CONTEXT.read(on_kafka)
    assert isinstance(kafka_event, AdverseEventReported)
    assert adverse_details(kafka_event, key).description == DESCRIPTION

    # The read model serves them while the citizen exists.
    record = await (await a.client.get(f"/v1/citizens/{citizen}/doses", headers=a.admin)).json()
    by_id = {d["dose_id"]: d for d in record["doses"]}
    assert (by_id[dose_id]["override_reason"], by_id[dose_id]["last_correction_reason"]) == (
        OVERRIDE,
        CORRECTION,
    )
    assert by_id[twin]["void_reason"] == VOID
    [aefi] = by_id[dose_id]["adverse_events"]
    assert (aefi["symptoms"], aefi["description"]) == (SYMPTOMS, DESCRIPTION)
    fhir = (
        await (await a.client.get(f"/v1/citizens/{citizen}/fhir", headers=a.admin)).read()
    ).decode()
    assert CORRECTION in fhir and VOID in fhir

    await a.erase(citizen)

    # The key row is gone: nothing opens; the read model keeps only the facts.
    assert await _key(a, citizen) is None
    assert (
        await a.pool.fetchval("SELECT count(*) FROM citizen_keys WHERE citizen_id = $1", citizen)
        == 0
    )
    every_key = [
        CitizenKey(r["key_id"], bytes(r["key"]))
        for r in await a.pool.fetch("SELECT key_id, key FROM citizen_keys")
    ]
    nothing = [DoseNotes()] * 4 + [AdverseEventDetails(symptoms=[], outcome="")]
    for other in [*every_key, None]:
        assert _opened(events, other) == nothing
    everything = await _every_row(a)
    assert [text for text in CLEAR if text in everything] == []
    doses = await a.pool.fetch(
        "SELECT override_reason, last_correction_reason, void_reason, product_code, lot_number,"
        " administered_at, age_at_vaccination FROM doses WHERE citizen_id = $1",
        citizen,
    )
    assert len(doses) == 2
    for row in doses:
        assert (row["override_reason"], row["last_correction_reason"], row["void_reason"]) == (
            None,
            None,
            None,
        )
        assert (row["lot_number"], row["administered_at"]) == (lot, given)
    adverse = await a.pool.fetchrow(
        "SELECT symptoms, outcome, description, serious, onset_at FROM adverse_events"
        " WHERE report_id = $1",
        report_id,
    )
    assert adverse is not None
    assert (adverse["symptoms"], adverse["outcome"], adverse["description"]) == ([], None, None)
    assert (adverse["serious"], adverse["onset_at"]) == (True, given + timedelta(minutes=20))
    # Nor is the dose served any more: 410 as for the citizen's record, the same problem.
    for path in (f"/v1/doses/{dose_id}", f"/v1/citizens/{citizen}/doses"):
        await assert_citizen_erased(await a.client.get(path, headers=a.admin))


async def test_an_erased_citizens_dose_takes_no_sealed_details(
    administration: Administration,
) -> None:
    a = administration
    here = unique("SITE-SEAL")
    citizen = await a.register()
    lot = await a.deliver_lot(here)
    dose_id = await a.record(a.dose(citizen, here, lot), a.staff(here))
    assert await _key(a, citizen) is None  # nothing to seal yet: no key made
    await a.erase(citizen)
    before = await a.count()

    voided = await a.client.post(
        f"/v1/doses/{dose_id}/void", json={"reason": VOID}, headers=a.staff(here)
    )
    reported = await a.client.post(
        "/v1/adverse-events",
        json={
            "dose_id": dose_id,
            "symptoms": SYMPTOMS,
            "onset_at": datetime.now(UTC).isoformat(),
            "serious": False,
            "outcome": "resolved",
        },
        headers=a.staff(here),
    )
    read = await a.client.get(f"/v1/doses/{dose_id}", headers=a.staff(here))

    # One problem for an erased citizen, whether the dose is written to or read.
    for response in (voided, reported, read):
        await assert_citizen_erased(response)
    assert await a.count() == before
    assert await _key(a, citizen) is None
