"""The FHIR mapping of a completed and a voided dose, parsed with the `fhir.resources` R4B
models (FHIR 4.3, whose Patient, Immunization and Bundle are R4's), not checked by hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from immunreg.reference.vaccines import vaccine_catalog
from services.administration import fhir
from services.administration.schemas import AdverseEventView, DoseView

AT = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)


def dose(**changes: Any) -> DoseView:
    values: dict[str, Any] = {
        "dose_id": "3f1d9a54-8c1e-5b2a-9f1e-2d3c4b5a6978",
        "citizen_id": "c-abcdefghijklmnopqrst",
        "status": "completed",
        "version": 1,
        "site_id": "SITE-0001",
        "site_name": "Dom zdravlja Vračar",
        "site_municipality_code": "70092",
        "product_code": "EU/1/20/1528",
        "product_name": "Comirnaty",
        "lot_number": "FA1234",
        "expiry_date": date(2021, 8, 31),
        "dose_number": 1,
        "series_length": 2,
        "series_complete": False,
        "booster": False,
        "administered_at": AT,
        "age_at_vaccination": 51,
        "vaccinator_id": "V-7",
        "appointment_id": None,
        "injection_site": "left_arm",
        "override_reason": None,
        "overridden_rules": [],
        "corrections": 0,
        "last_correction_reason": None,
        "void_reason": None,
        "recorded_at": AT + timedelta(minutes=3),
        "updated_at": AT + timedelta(minutes=3),
    }
    values.update(changes)
    return DoseView(**values)


def bundle_json(*doses: DoseView) -> dict[str, Any]:
    patient = fhir.PatientData("c-abcdefghijklmnopqrst", date(1970, 5, 5), "female")
    bundle = fhir.citizen_bundle(patient, doses, vaccine_catalog(), now=AT + timedelta(days=1))
    parsed: dict[str, Any] = json.loads(fhir.encode(bundle))
    return parsed


def parse(document: dict[str, Any]) -> Any:
    """The bundle as the FHIR library parses it (typed Any: the test walks it freely)."""
    return Bundle.model_validate_json(json.dumps(document))


def test_a_completed_and_a_voided_dose_make_a_valid_r4_bundle() -> None:
    completed = dose()
    voided = dose(
        dose_id="9a8b7c6d-5e4f-5a3b-8c2d-1e0f9a8b7c6d",
        status="entered-in-error",
        dose_number=2,
        series_complete=True,
        administered_at=AT + timedelta(days=22),
        void_reason="recorded for the wrong citizen",
        injection_site=None,
        adverse_events=[],
    )
    document = bundle_json(completed, voided)
    bundle = parse(document)
    assert bundle.type == "collection"
    patient, first, second = (entry.resource for entry in bundle.entry)

    assert patient.get_resource_type() == "Patient"
    assert patient.identifier[0].value == "c-abcdefghijklmnopqrst"
    assert (patient.gender, patient.birthDate) == ("female", date(1970, 5, 5))
    assert not patient.name  # administration holds no names

    assert [r.get_resource_type() for r in (first, second)] == ["Immunization"] * 2
    assert (first.status, second.status) == ("completed", "entered-in-error")
    coding = first.vaccineCode.coding[0]
    assert (coding.system, coding.code, coding.display) == (
        fhir.PRODUCT_SYSTEM,
        "EU/1/20/1528",
        "Comirnaty",
    )
    assert (first.lotNumber, first.expirationDate) == ("FA1234", date(2021, 8, 31))
    assert first.occurrenceDateTime == AT
    protocol = first.protocolApplied[0]
    assert (protocol.doseNumberPositiveInt, protocol.seriesDosesPositiveInt) == (1, 2)
    assert first.performer[0].actor.identifier.value == "V-7"
    assert first.location.identifier.value == "SITE-0001"
    assert first.location.display == "Dom zdravlja Vračar"
    assert first.site.coding[0].code == "LA"
    assert first.patient.reference == bundle.entry[0].fullUrl
    assert "wrong citizen" in second.note[0].text
    assert second.protocolApplied[0].doseNumberPositiveInt == 2


def test_a_booster_and_an_adverse_event() -> None:
    booster = dose(
        dose_number=3,
        series_complete=True,
        booster=True,
        adverse_events=[
            AdverseEventView(
                report_id="r-1",
                symptoms=["fever"],
                onset_at=AT + timedelta(hours=6),
                serious=False,
                outcome="resolved",
                reporter_role="citizen",
                description=None,
                reported_at=AT + timedelta(days=1),
            )
        ],
        override_reason="given 80 days after dose 2 on the doctor's advice",
        overridden_rules=["interval_too_short"],
    )
    bundle = parse(bundle_json(booster))
    immunization = bundle.entry[1].resource
    protocol = immunization.protocolApplied[0]
    assert (protocol.series, protocol.doseNumberPositiveInt) == ("booster", 3)
    assert protocol.seriesDosesPositiveInt is None
    assert immunization.reaction[0].date == AT + timedelta(hours=6)
    assert "interval_too_short" in immunization.note[0].text


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("status",), 5),  # a code is a string
        (("protocolApplied", 0, "doseNumberPositiveInt"), 0),  # not positive
        (("occurrenceDateTime",), "1 June 2021"),
        (("expirationDate",), "2021-13-01"),
        (("lotNumber",), {"value": "FA1234"}),
        (("patient",), "c-abc"),  # a Reference, not a string
    ],
)
def test_a_broken_field_fails_to_parse(path: tuple[str | int, ...], bad: object) -> None:
    document = bundle_json(dose())
    node: Any = document["entry"][1]["resource"]
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = bad
    with pytest.raises(ValidationError):
        parse(document)
