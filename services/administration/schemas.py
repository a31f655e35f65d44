"""What the administration API accepts and answers (the OpenAPI document is built from these)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from immunreg.structs import Struct

# Ids and codes: no surrounding blanks. Reasons: free text with something in it.
Id = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$")]
Reason = Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"\S")]
DoseNumber = Annotated[int, Meta(ge=1, le=10)]
Instant = Annotated[datetime, Meta(tz=True)]
Symptom = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S")]

# HL7 v3 ActSite codes for the usual injection sites (see fhir.py).
InjectionSite = Literal["left_arm", "right_arm", "left_thigh", "right_thigh"]
# Outcome of an adverse event (the FHIR R4 AdverseEvent outcome value set).
AefiOutcome = Literal[
    "resolved", "recovering", "ongoing", "resolvedWithSequelae", "fatal", "unknown"
]
DoseStatus = Literal["completed", "entered-in-error"]


class RecordDose(Struct, forbid_unknown_fields=True):
    """A dose given at a site. `dose_number` counts from 1 across the citizen's series and
    boosters: a number beyond the product's series length is a booster. Only an
    administrator may send `override_reason`, to record a dose that breaks rules."""

    citizen_id: Id
    site_id: Id
    lot_number: Id
    product_code: Id  # EU DCC medicinal product code, e.g. EU/1/20/1528
    dose_number: DoseNumber
    administered_at: Instant
    vaccinator_id: Id
    appointment_id: Id | None = None
    injection_site: InjectionSite | None = None
    override_reason: Reason | None = None


class DoseRecorded(msgspec.Struct, frozen=True):
    """The id of the recorded dose (the same id for the same dose sent again)."""

    dose_id: str


class CorrectDose(Struct, forbid_unknown_fields=True):
    """What was recorded wrongly, and why; a field left out keeps its value. The citizen
    and the site cannot change (void the dose and record it anew)."""

    reason: Reason
    product_code: Id | UnsetType = UNSET
    lot_number: Id | UnsetType = UNSET
    dose_number: DoseNumber | UnsetType = UNSET
    administered_at: Instant | UnsetType = UNSET
    vaccinator_id: Id | UnsetType = UNSET
    appointment_id: Id | UnsetType | None = UNSET
    injection_site: InjectionSite | UnsetType | None = UNSET
    override_reason: Reason | None = None


class VoidDose(Struct, forbid_unknown_fields=True):
    """Why the record is wrong (the dose did not happen as recorded)."""

    reason: Reason


class ReportAdverseEvent(Struct, forbid_unknown_fields=True):
    """An adverse event following immunization, against a recorded dose."""

    dose_id: Id
    symptoms: Annotated[list[Symptom], Meta(min_length=1, max_length=50)]
    onset_at: Instant
    serious: bool
    outcome: AefiOutcome
    description: Annotated[str, Meta(max_length=4000)] | None = None


class AdverseEventRecorded(msgspec.Struct, frozen=True):
    """The id of the new report."""

    report_id: str


class AdverseEventView(Struct):
    """A report as kept: once the citizen is erased, no symptom, outcome or description."""

    report_id: str
    symptoms: list[str]
    onset_at: datetime
    serious: bool
    outcome: str | None
    reporter_role: str
    description: str | None
    reported_at: datetime


class DoseView(Struct):
    """A recorded dose as it stands now (corrections applied; voided ones say so)."""

    dose_id: str
    citizen_id: str
    status: DoseStatus
    version: int
    site_id: str
    site_name: str | None
    site_municipality_code: str
    product_code: str
    product_name: str | None
    lot_number: str
    expiry_date: date | None
    dose_number: int
    series_length: int
    series_complete: bool
    booster: bool
    administered_at: datetime
    age_at_vaccination: int
    vaccinator_id: str
    appointment_id: str | None
    injection_site: str | None
    override_reason: str | None
    overridden_rules: list[str]
    corrections: int
    last_correction_reason: str | None
    void_reason: str | None
    recorded_at: datetime
    updated_at: datetime
    adverse_events: list[AdverseEventView] = []


class CitizenDoses(Struct):
    """Every dose recorded for a citizen, oldest first (a handful: not paginated)."""

    citizen_id: str
    doses: list[DoseView]
