"""administration.events.v1: doses given, corrected, voided; adverse events."""

from __future__ import annotations

from datetime import datetime

from immunreg.contracts.common import Sex
from immunreg.contracts.envelope import Context, Event


class DoseAdministered(Event, frozen=True, kw_only=True):
    """A vaccination happened: a fact, never refused for a stock count."""

    dose_id: str
    citizen_id: str
    site_id: str
    site_municipality_code: str
    citizen_municipality_code: str
    product_code: str
    lot_number: str
    dose_number: int
    series_length: int
    series_complete: bool
    booster: bool = False
    administered_at: datetime
    age_at_vaccination: int
    sex: Sex
    vaccinator_id: str
    appointment_id: str | None = None
    injection_site: str | None = None
    override_reason: str | None = None


class DoseCorrected(Event, frozen=True, kw_only=True):
    """The record as it should have been (all fields), and why."""

    dose_id: str
    citizen_id: str
    site_id: str
    product_code: str
    lot_number: str
    dose_number: int
    series_length: int
    series_complete: bool
    booster: bool = False
    administered_at: datetime
    reason: str


class DoseVoided(Event, frozen=True, kw_only=True):
    """Entered in error: the dose did not happen as recorded."""

    dose_id: str
    citizen_id: str
    site_id: str
    product_code: str
    lot_number: str
    dose_number: int
    reason: str


class AdverseEventReported(Event, frozen=True, kw_only=True):
    report_id: str
    dose_id: str
    citizen_id: str
    product_code: str
    lot_number: str
    symptoms: list[str]
    onset_at: datetime
    serious: bool
    outcome: str


CONTEXT = Context(
    "administration",
    [DoseAdministered, DoseCorrected, DoseVoided, AdverseEventReported],
)
