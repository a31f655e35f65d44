"""administration.events.v1: doses given, corrected, voided; adverse events.

Health details (why a rule was overridden, why a record was corrected or voided, an
adverse event's symptoms, outcome and description) travel only in `details`: a
`Sealed` `DoseNotes` or `AdverseEventDetails` (JSON) under a data key of the citizen
alone that administration keeps and deletes on CitizenErased (crypto-shredding), with
the citizen id as associated data. What statistics need (product, lot, site, dose
facts, onset, seriousness, the codes of overridden rules) stays in clear. Events
written before sealing carry the details in the clear fields instead (`override_reason`,
`reason`, `symptoms`, `outcome`, `description`), which new events leave empty.
"""

from __future__ import annotations

from datetime import datetime

from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Context, Event
from immunreg.structs import Struct


class DoseNotes(Struct):
    """What `details` of a dose event holds once unsealed: the administrator's reason for
    recording despite the rules, and the reason for a correction or a void."""

    override_reason: str | None = None
    reason: str | None = None


class AdverseEventDetails(Struct):
    """What `details` of AdverseEventReported holds once unsealed."""

    symptoms: list[str]
    outcome: str
    description: str | None = None


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
    override_reason: str | None = None  # before sealing; now in `details`
    # The rules the override reason overrode (empty when none was needed).
    overridden_rules: list[str] = []
    details: Sealed | None = None  # DoseNotes: the override reason, when there is one


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
    reason: str = ""  # before sealing; now in `details`
    # Added with defaults (evolution rules): the rest of the record as corrected, so a
    # consumer can replace its copy of the dose without keeping the original.
    site_municipality_code: str = ""
    citizen_municipality_code: str = ""
    age_at_vaccination: int | None = None
    sex: Sex | None = None
    vaccinator_id: str | None = None
    appointment_id: str | None = None
    injection_site: str | None = None
    override_reason: str | None = None  # before sealing; now in `details`
    overridden_rules: list[str] = []
    details: Sealed | None = None  # DoseNotes: the reason, and the override reason if any


class DoseVoided(Event):
    """Entered in error: the dose did not happen as recorded."""

    dose_id: str
    citizen_id: str
    site_id: str
    product_code: str
    lot_number: str
    dose_number: int
    reason: str = ""  # before sealing; now in `details`
    details: Sealed | None = None  # DoseNotes: the reason


class AdverseEventReported(Event):
    """An adverse event following immunization; what it was is in `details`."""

    report_id: str
    dose_id: str
    citizen_id: str
    product_code: str
    lot_number: str
    onset_at: datetime
    serious: bool
    site_id: str = ""  # where the dose was given
    reporter_role: str = ""  # site_staff, admin or citizen (self-report)
    details: Sealed | None = None  # AdverseEventDetails
    # Before sealing: the details in clear (empty in new events).
    symptoms: list[str] = []
    outcome: str = ""
    description: str | None = None


CONTEXT = Context(
    "administration",
    [DoseAdministered, DoseCorrected, DoseVoided, AdverseEventReported],
)
