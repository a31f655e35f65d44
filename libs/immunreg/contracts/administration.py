"""administration.events.v1: doses given, corrected, voided; adverse events."""

from __future__ import annotations

from datetime import datetime

from immunreg.contracts.common import Sex
from immunreg.contracts.envelope import Context, Event


class DoseAdministered(Event):
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
    # The rules the override_reason overrode (empty when none was needed).
    overridden_rules: list[str] = []


class DoseCorrected(Event):
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
    # Added with defaults (evolution rules): the rest of the record as corrected, so a
    # consumer can replace its copy of the dose without keeping the original.
    site_municipality_code: str = ""
    citizen_municipality_code: str = ""
    age_at_vaccination: int | None = None
    sex: Sex | None = None
    vaccinator_id: str | None = None
    appointment_id: str | None = None
    injection_site: str | None = None
    override_reason: str | None = None
    overridden_rules: list[str] = []


class DoseVoided(Event):
    """Entered in error: the dose did not happen as recorded."""

    dose_id: str
    citizen_id: str
    site_id: str
    product_code: str
    lot_number: str
    dose_number: int
    reason: str


class AdverseEventReported(Event):
    report_id: str
    dose_id: str
    citizen_id: str
    product_code: str
    lot_number: str
    symptoms: list[str]
    onset_at: datetime
    serious: bool
    outcome: str
    site_id: str = ""  # where the dose was given
    reporter_role: str = ""  # site_staff, admin or citizen (self-report)
    description: str | None = None


CONTEXT = Context(
    "administration",
    [DoseAdministered, DoseCorrected, DoseVoided, AdverseEventReported],
)
