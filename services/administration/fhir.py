"""A citizen's vaccination record as an HL7 FHIR R4 Bundle of Patient and Immunization.

Pure mapping from the read model's views; the structs below are the subset of FHIR R4
this service emits (the tests parse the result with the `fhir.resources` R4B models).

- Patient: administration holds no names (registration seals them), so the Patient
  carries the citizen id as its identifier, the birth date and the gender; nothing else.
- Immunization per recorded dose, voided ones included with status `entered-in-error`:
  vaccineCode (EU DCC medicinal product code, the catalog's name), lotNumber,
  expirationDate (from inventory's lot), occurrenceDateTime, recorded, primarySource,
  manufacturer, location (the site), performer (the vaccinator, role AP),
  protocolApplied (dose number; series length for the primary series, `booster`
  beyond it), site (injection site), reaction (onset of reported adverse events).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import msgspec

from immunreg.reference.vaccines import VaccineCatalog
from immunreg.structs import Struct

from .schemas import DoseView

FHIR_CONTENT_TYPE = "application/fhir+json"

# Identifier namespaces of the registry (to be replaced by the national OIDs/URIs).
CITIZEN_ID_SYSTEM = "https://fhir.immunreg.rs/sid/citizen-id"
DOSE_ID_SYSTEM = "https://fhir.immunreg.rs/sid/dose-id"
SITE_ID_SYSTEM = "https://fhir.immunreg.rs/sid/site-id"
VACCINATOR_ID_SYSTEM = "https://fhir.immunreg.rs/sid/vaccinator-id"
# The EU DCC value set's system for medicinal products (vaccine-medicinal-product).
PRODUCT_SYSTEM = "https://ec.europa.eu/health/documents/community-register/html/"
MANUFACTURER_SYSTEM = "https://spor.ema.europa.eu/v1/organisations"
SNOMED = "http://snomed.info/sct"
COVID_19 = ("840539006", "COVID-19")
PERFORMER_FUNCTION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0443"
ACT_SITE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActSite"
ACT_SITES = {
    "left_arm": ("LA", "left arm"),
    "right_arm": ("RA", "right arm"),
    "left_thigh": ("LT", "left thigh"),
    "right_thigh": ("RT", "right thigh"),
}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NAMESPACE = uuid.UUID("0b6f2a51-3f0e-4e0a-b1f2-6d9a1c7e5a10")


class Coding(Struct, omit_defaults=True):
    system: str | None = None
    code: str | None = None
    display: str | None = None


class CodeableConcept(Struct, omit_defaults=True):
    coding: list[Coding] = []
    text: str | None = None


class Identifier(Struct, omit_defaults=True):
    system: str | None = None
    value: str | None = None


class Reference(Struct, omit_defaults=True):
    reference: str | None = None
    identifier: Identifier | None = None
    display: str | None = None


class Annotation(Struct):
    text: str


class Performer(Struct, omit_defaults=True):
    function: CodeableConcept | None = None
    actor: Reference


class ProtocolApplied(Struct, omit_defaults=True):
    series: str | None = None
    targetDisease: list[CodeableConcept] = []
    doseNumberPositiveInt: int
    seriesDosesPositiveInt: int | None = None


class Reaction(Struct, omit_defaults=True):
    date: datetime | None = None
    reported: bool | None = None


class Patient(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag_field="resourceType",
    tag="Patient",
):
    id: str
    identifier: list[Identifier]
    gender: str | None = None
    birthDate: date | None = None


class Immunization(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag_field="resourceType",
    tag="Immunization",
):
    id: str
    identifier: list[Identifier]
    status: str
    vaccineCode: CodeableConcept
    patient: Reference
    occurrenceDateTime: datetime
    recorded: datetime
    primarySource: bool = True
    manufacturer: Reference | None = None
    lotNumber: str
    expirationDate: date | None = None
    location: Reference
    site: CodeableConcept | None = None
    performer: list[Performer] = []
    note: list[Annotation] = []
    reaction: list[Reaction] = []
    protocolApplied: list[ProtocolApplied]


class BundleEntry(Struct):
    fullUrl: str
    resource: Patient | Immunization


class Bundle(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag_field="resourceType",
    tag="Bundle",
):
    id: str
    type: str
    timestamp: datetime
    entry: list[BundleEntry] = []


@dataclass(frozen=True)
class PatientData:
    """What administration knows of the citizen."""

    citizen_id: str
    birth_date: date | None
    sex: str | None


def _urn(value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, value)}"


def _patient(data: PatientData) -> Patient:
    resource_id = data.citizen_id if _FHIR_ID.fullmatch(data.citizen_id) else None
    return Patient(
        id=resource_id or str(uuid.uuid5(_NAMESPACE, data.citizen_id)),
        identifier=[Identifier(system=CITIZEN_ID_SYSTEM, value=data.citizen_id)],
        gender=data.sex if data.sex in ("female", "male", "other") else "unknown",
        birthDate=data.birth_date,
    )


def _notes(dose: DoseView) -> list[Annotation]:
    notes = []
    if dose.status == "entered-in-error" and dose.void_reason:
        notes.append(Annotation(text=f"Entered in error: {dose.void_reason}"))
    if dose.corrections and dose.last_correction_reason:
        notes.append(Annotation(text=f"Corrected: {dose.last_correction_reason}"))
    if dose.override_reason:
        rules = ", ".join(dose.overridden_rules)
        notes.append(Annotation(text=f"Recorded despite {rules}: {dose.override_reason}"))
    return notes


def _immunization(dose: DoseView, patient_url: str, catalog: VaccineCatalog) -> Immunization:
    product = catalog.get(dose.product_code)
    name = product.name if product else dose.product_code
    protocol = ProtocolApplied(
        series="booster" if dose.booster else "primary",
        targetDisease=[
            CodeableConcept(coding=[Coding(system=SNOMED, code=COVID_19[0], display=COVID_19[1])])
        ],
        doseNumberPositiveInt=dose.dose_number,
        seriesDosesPositiveInt=None if dose.booster else dose.series_length,
    )
    site = None
    if dose.injection_site in ACT_SITES:
        code, display = ACT_SITES[dose.injection_site]
        site = CodeableConcept(
            coding=[Coding(system=ACT_SITE_SYSTEM, code=code, display=display)], text=display
        )
    return Immunization(
        id=dose.dose_id,
        identifier=[Identifier(system=DOSE_ID_SYSTEM, value=dose.dose_id)],
        status=dose.status,
        vaccineCode=CodeableConcept(
            coding=[Coding(system=PRODUCT_SYSTEM, code=dose.product_code, display=name)],
            text=name,
        ),
        patient=Reference(reference=patient_url),
        occurrenceDateTime=dose.administered_at,
        recorded=dose.recorded_at,
        manufacturer=(
            Reference(
                identifier=Identifier(system=MANUFACTURER_SYSTEM, value=product.manufacturer_code),
                display=product.manufacturer_name,
            )
            if product
            else None
        ),
        lotNumber=dose.lot_number,
        expirationDate=dose.expiry_date,
        location=Reference(
            identifier=Identifier(system=SITE_ID_SYSTEM, value=dose.site_id),
            display=dose.site_name or dose.site_id,
        ),
        site=site,
        performer=[
            Performer(
                function=CodeableConcept(
                    coding=[
                        Coding(
                            system=PERFORMER_FUNCTION_SYSTEM,
                            code="AP",
                            display="Administering Provider",
                        )
                    ]
                ),
                actor=Reference(
                    identifier=Identifier(system=VACCINATOR_ID_SYSTEM, value=dose.vaccinator_id)
                ),
            )
        ],
        note=_notes(dose),
        reaction=[Reaction(date=e.onset_at, reported=True) for e in dose.adverse_events],
        protocolApplied=[protocol],
    )


def citizen_bundle(
    patient: PatientData,
    doses: Sequence[DoseView],
    catalog: VaccineCatalog,
    *,
    now: datetime,
) -> Bundle:
    """The citizen's record: one Patient, then one Immunization per dose, oldest first."""
    patient_url = _urn(f"patient:{patient.citizen_id}")
    entries = [BundleEntry(fullUrl=patient_url, resource=_patient(patient))]
    entries += [
        BundleEntry(
            fullUrl=f"urn:uuid:{dose.dose_id}", resource=_immunization(dose, patient_url, catalog)
        )
        for dose in doses
    ]
    return Bundle(id=str(uuid.uuid4()), type="collection", timestamp=now, entry=entries)


_encoder = msgspec.json.Encoder()


def encode(bundle: Bundle) -> bytes:
    """The bundle as FHIR JSON."""
    return _encoder.encode(bundle)
