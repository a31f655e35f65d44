"""DoseRecord and AdverseEvent: pure decisions about recorded vaccinations. No I/O.

A DoseRecord (stream `dose-<dose_id>`) is one vaccination as recorded:

    none --Administer--> completed --Correct--> completed (re-stated)
    completed --Void--> entered-in-error   (never deleted; the history stays)

The handlers gather what the rules need from the read models and hand it to
`assess_dose` (which runs `rules.check_dose`); `decide` applies the override
policy to the violations it is handed, so who may record what is decided here,
purely. The rules a request meets before any of that (who may send an override
reason, times that must have passed, a dose sent again after it was voided) are
here too, as plain functions the handlers call.

The dose id is derived from what makes two records the same vaccination
(citizen, lot, dose number, time given): the same dose sent twice without an
Idempotency-Key lands on the same stream, and the second send finds it there.

An AdverseEvent (stream `aefi-<report_id>`) is one report of an adverse event
following immunization against a recorded dose.

Health details (reasons, symptoms, outcome, description) leave the domain only sealed:
each command carries a `Seal` from the edge (the citizen's key, keys.py) and the
decisions call it for what an event will carry, nothing else. The state keeps none.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from immunreg.contracts.administration import (
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseCorrected,
    DoseNotes,
    DoseVoided,
)
from immunreg.contracts.common import Sealed, Sex
from immunreg.contracts.envelope import Context, Event
from immunreg.domain import (
    Aggregate,
    Conflict,
    DomainError,
    NotFound,
    PersonalDataErased,
    RuleViolation,
)
from immunreg.reference.calendar import age_on, local_date
from immunreg.reference.vaccines import VaccineCatalog
from immunreg.structs import Struct

from .rules import CitizenFacts, DoseRequest, LotFacts, PriorDose, Violation, check_dose

DOSE_STREAM_TYPE = "DoseRecord"
AEFI_STREAM_TYPE = "AdverseEvent"
DOSE_ID_NAMESPACE = uuid.UUID("6f1c1e2a-5d0b-4c1e-9a55-7d1f3c0b9e42")
CLOCK_SKEW = timedelta(minutes=5)

DoseStatus = Literal["none", "completed", "entered-in-error"]

# Seals details under the citizen's key (keys.DetailsSealer at the edge).
Seal = Callable[[DoseNotes | AdverseEventDetails], Sealed]


class DetailsErased(PersonalDataErased):
    """The citizen was erased (410 `citizen_erased`, the shared problem): nothing more is
    written about them that needs their key, and their doses are no longer served."""


def dose_id_for(
    citizen_id: str, lot_number: str, dose_number: int, administered_at: datetime
) -> str:
    """The id of a dose: a UUIDv5 of citizen, lot, dose number and the instant it was given."""
    instant = administered_at.astimezone(UTC).isoformat()
    name = f"{citizen_id}\n{lot_number}\n{dose_number}\n{instant}"
    return str(uuid.uuid5(DOSE_ID_NAMESPACE, name))


def dose_stream(dose_id: str) -> str:
    """The stream of a DoseRecord."""
    return f"dose-{dose_id}"


def report_stream(report_id: str) -> str:
    """The stream of an AdverseEvent report."""
    return f"aefi-{report_id}"


class DoseFacts(Struct):
    """A vaccination as recorded (or as corrected): everything the events carry."""

    dose_id: str
    citizen_id: str
    site_id: str
    site_municipality_code: str
    citizen_municipality_code: str
    product_code: str
    lot_number: str
    dose_number: int
    series_length: int
    administered_at: datetime
    age_at_vaccination: int
    sex: Sex
    vaccinator_id: str
    appointment_id: str | None = None
    injection_site: str | None = None

    @property
    def series_complete(self) -> bool:
        """Whether this dose completes (or goes beyond) the primary series."""
        return self.dose_number >= self.series_length

    @property
    def booster(self) -> bool:
        """A dose beyond the product's primary series is a booster."""
        return self.dose_number > self.series_length


class DoseState(Struct):
    """What decisions about a recorded dose need."""

    status: DoseStatus = "none"
    facts: DoseFacts | None = None
    overridden_rules: list[str] = []
    corrections: int = 0


class Administer(Struct):
    """Record a dose; `violations` are what the rules found, `may_override` whether the
    caller may record despite them (admins) given an `override_reason`."""

    facts: DoseFacts
    seal: Seal
    violations: list[Violation] = []
    override_reason: str | None = None
    may_override: bool = False


class Correct(Struct):
    """Re-state the record (all fields) and say why; the rules were run again."""

    facts: DoseFacts
    reason: str
    seal: Seal
    violations: list[Violation] = []
    override_reason: str | None = None
    may_override: bool = False


class Void(Struct):
    """Mark the record entered in error, with a reason."""

    reason: str
    seal: Seal


DoseCommand = Administer | Correct | Void


class DoseRefused(RuleViolation):
    """The dose breaks rules and may not be recorded by this caller; all of them listed."""

    def __init__(self, violations: Sequence[Violation], detail: str) -> None:
        first = violations[0]
        super().__init__(first.code, detail, first.field)
        self.violations = list(violations)


def refuse_unrecordable(violations: Sequence[Violation]) -> None:
    """Refuse (for everyone) a dose that breaks a rule no override can lift."""
    if any(not v.overridable for v in violations):
        codes = ", ".join(v.code for v in violations)
        raise DoseRefused(violations, f"the dose cannot be recorded: {codes}")


def admit(
    violations: Sequence[Violation], override_reason: str | None, may_override: bool
) -> tuple[str | None, list[str]]:
    """The override to record (reason, rules overridden), or DoseRefused.

    Nothing to override: no reason is kept. Rules that cannot be overridden
    refuse for everyone; the others refuse unless the caller may override and
    gave a reason.
    """
    if not violations:
        return None, []
    refuse_unrecordable(violations)
    codes = ", ".join(v.code for v in violations)
    if not may_override:
        raise DoseRefused(violations, f"the dose breaks rules: {codes}")
    reason = (override_reason or "").strip()
    if not reason:
        raise DoseRefused(
            violations, f"the dose breaks rules: {codes}; give override_reason to record it anyway"
        )
    return reason, [v.code for v in violations]


# --- rules a request meets before the dose is judged ------------------------------------------


class OverrideNotAllowed(DomainError):
    """Someone other than an administrator sent an override reason (403)."""

    status = 403


def require_override_right(may_override: bool, override_reason: str | None) -> None:
    """Only an administrator may ask to record a dose despite the rules.

    Refused on sight, even when the dose breaks no rule: the reason would be
    kept on the record as an administrator's word.
    """
    if override_reason is not None and not may_override:
        raise OverrideNotAllowed(
            "override_not_allowed",
            "only an administrator may record a dose despite the rules (override_reason)",
        )


class NotYetHappened(RuleViolation):
    """A time that must have passed (a dose given) is in the future; `field` names it."""

    def __init__(self, field: str) -> None:
        super().__init__("invalid_fields", "is in the future", field)


def require_past(field: str, moment: datetime, now: datetime) -> None:
    """A dose is recorded after it was given; `CLOCK_SKEW` allows for the site's clock."""
    if moment > now + CLOCK_SKEW:
        raise NotYetHappened(field)


def require_not_voided(state: DoseState) -> None:
    """A dose sent again names its existing record; once voided, that record takes no
    second send (the sender should correct it, or record the dose anew)."""
    if state.status == "entered-in-error":
        raise Conflict(
            "dose_voided", "this dose was recorded and then voided; correct or record it anew"
        )


def assess_dose(
    request: DoseRequest,
    citizen: CitizenFacts | None,
    lot: LotFacts | None,
    history: Sequence[PriorDose],
    catalog: VaccineCatalog,
) -> list[Violation]:
    """Every rule the dose breaks, refusing at once (for everyone) what no override lifts:
    what is left is for `decide` to weigh against the caller's override."""
    violations = check_dose(request, citizen, lot, history, catalog)
    refuse_unrecordable(violations)
    return violations


def dose_facts(
    *,
    dose_id: str,
    request: DoseRequest,
    citizen: CitizenFacts,
    series_length: int,
    site_municipality_code: str,
    vaccinator_id: str,
    appointment_id: str | None,
    injection_site: str | None,
) -> DoseFacts:
    """The record of a dose whose citizen and product are known (`assess_dose` passed)."""
    assert citizen.birth_date is not None and citizen.sex is not None
    return DoseFacts(
        dose_id=dose_id,
        citizen_id=request.citizen_id,
        site_id=request.site_id,
        site_municipality_code=site_municipality_code,
        citizen_municipality_code=citizen.municipality_code or "",
        product_code=request.product_code,
        lot_number=request.lot_number,
        dose_number=request.dose_number,
        series_length=series_length,
        administered_at=request.administered_at,
        age_at_vaccination=age_on(citizen.birth_date, local_date(request.administered_at)),
        sex=citizen.sex,
        vaccinator_id=vaccinator_id,
        appointment_id=appointment_id,
        injection_site=injection_site,
    )


def corrected_facts(
    current: DoseFacts,
    request: DoseRequest,
    citizen: CitizenFacts,
    series_length: int,
    *,
    vaccinator_id: str,
    appointment_id: str | None,
    injection_site: str | None,
) -> DoseFacts:
    """The record re-stated by a correction (`request` is the dose as corrected).

    The site's municipality, and the citizen's municipality and sex at the time,
    stay as first recorded: a correction fixes what was entered, not who the
    citizen has become since.
    """
    facts = dose_facts(
        dose_id=current.dose_id,
        request=request,
        citizen=citizen,
        series_length=series_length,
        site_municipality_code=current.site_municipality_code,
        vaccinator_id=vaccinator_id,
        appointment_id=appointment_id,
        injection_site=injection_site,
    )
    return msgspec.structs.replace(
        facts, citizen_municipality_code=current.citizen_municipality_code, sex=current.sex
    )


def decide_dose(state: DoseState, command: DoseCommand) -> list[Event]:
    """The events a command on a DoseRecord produces, or a DomainError naming the rule."""
    if isinstance(command, Administer):
        return _administer(state, command)
    if isinstance(command, Correct):
        return _correct(state, command)
    return _void(state, command)


def _administer(state: DoseState, command: Administer) -> list[Event]:
    if state.status != "none":
        raise Conflict("dose_already_recorded", "this dose is already recorded", "dose_id")
    reason, overridden = admit(command.violations, command.override_reason, command.may_override)
    f = command.facts
    return [
        DoseAdministered(
            dose_id=f.dose_id,
            citizen_id=f.citizen_id,
            site_id=f.site_id,
            site_municipality_code=f.site_municipality_code,
            citizen_municipality_code=f.citizen_municipality_code,
            product_code=f.product_code,
            lot_number=f.lot_number,
            dose_number=f.dose_number,
            series_length=f.series_length,
            series_complete=f.series_complete,
            booster=f.booster,
            administered_at=f.administered_at,
            age_at_vaccination=f.age_at_vaccination,
            sex=f.sex,
            vaccinator_id=f.vaccinator_id,
            appointment_id=f.appointment_id,
            injection_site=f.injection_site,
            overridden_rules=overridden,
            details=command.seal(DoseNotes(override_reason=reason)) if reason else None,
        )
    ]


def _require_recorded(state: DoseState) -> DoseFacts:
    if state.status == "none" or state.facts is None:
        raise NotFound("dose_not_found", "no dose is recorded under this id")
    return state.facts


def _require_reason(reason: str) -> None:
    if not reason.strip():
        raise RuleViolation("reason_required", "say why (reason)", "reason")


def _correct(state: DoseState, command: Correct) -> list[Event]:
    current = _require_recorded(state)
    if state.status == "entered-in-error":
        raise Conflict("dose_voided", "the dose was voided (entered in error); it cannot change")
    _require_reason(command.reason)
    f = command.facts
    if (f.dose_id, f.citizen_id, f.site_id) != (
        current.dose_id,
        current.citizen_id,
        current.site_id,
    ):
        raise RuleViolation(
            "identity_unchanged",
            "a correction cannot move a dose to another citizen or site; void it and record anew",
        )
    if f == current:
        return []  # nothing to correct (e.g. a retried correction)
    reason, overridden = admit(command.violations, command.override_reason, command.may_override)
    return [
        DoseCorrected(
            dose_id=f.dose_id,
            citizen_id=f.citizen_id,
            site_id=f.site_id,
            product_code=f.product_code,
            lot_number=f.lot_number,
            dose_number=f.dose_number,
            series_length=f.series_length,
            series_complete=f.series_complete,
            booster=f.booster,
            administered_at=f.administered_at,
            site_municipality_code=f.site_municipality_code,
            citizen_municipality_code=f.citizen_municipality_code,
            age_at_vaccination=f.age_at_vaccination,
            sex=f.sex,
            vaccinator_id=f.vaccinator_id,
            appointment_id=f.appointment_id,
            injection_site=f.injection_site,
            overridden_rules=overridden,
            details=command.seal(DoseNotes(override_reason=reason, reason=command.reason.strip())),
        )
    ]


def _void(state: DoseState, command: Void) -> list[Event]:
    current = _require_recorded(state)
    if state.status == "entered-in-error":
        return []  # voiding twice changes nothing
    _require_reason(command.reason)
    return [
        DoseVoided(
            dose_id=current.dose_id,
            citizen_id=current.citizen_id,
            site_id=current.site_id,
            product_code=current.product_code,
            lot_number=current.lot_number,
            dose_number=current.dose_number,
            details=command.seal(DoseNotes(reason=command.reason.strip())),
        )
    ]


def facts_of(event: DoseAdministered | DoseCorrected, before: DoseFacts | None) -> DoseFacts:
    """The record an administered or corrected event states."""
    if isinstance(event, DoseAdministered):
        return DoseFacts(
            dose_id=event.dose_id,
            citizen_id=event.citizen_id,
            site_id=event.site_id,
            site_municipality_code=event.site_municipality_code,
            citizen_municipality_code=event.citizen_municipality_code,
            product_code=event.product_code,
            lot_number=event.lot_number,
            dose_number=event.dose_number,
            series_length=event.series_length,
            administered_at=event.administered_at,
            age_at_vaccination=event.age_at_vaccination,
            sex=event.sex,
            vaccinator_id=event.vaccinator_id,
            appointment_id=event.appointment_id,
            injection_site=event.injection_site,
        )
    return DoseFacts(
        dose_id=event.dose_id,
        citizen_id=event.citizen_id,
        site_id=event.site_id,
        site_municipality_code=event.site_municipality_code
        or (before.site_municipality_code if before else ""),
        citizen_municipality_code=event.citizen_municipality_code
        or (before.citizen_municipality_code if before else ""),
        product_code=event.product_code,
        lot_number=event.lot_number,
        dose_number=event.dose_number,
        series_length=event.series_length,
        administered_at=event.administered_at,
        age_at_vaccination=_first(
            event.age_at_vaccination, before.age_at_vaccination if before else None, 0
        ),
        sex=event.sex or (before.sex if before else "other"),
        vaccinator_id=event.vaccinator_id or (before.vaccinator_id if before else ""),
        appointment_id=event.appointment_id,
        injection_site=event.injection_site,
    )


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)


def evolve_dose(state: DoseState, event: Event) -> DoseState:
    """The state after an event (events are facts: never refused)."""
    if isinstance(event, DoseAdministered):
        return DoseState(
            status="completed",
            facts=facts_of(event, None),
            overridden_rules=event.overridden_rules,
        )
    if isinstance(event, DoseCorrected):
        return msgspec.structs.replace(
            state,
            facts=facts_of(event, state.facts),
            overridden_rules=event.overridden_rules,
            corrections=state.corrections + 1,
        )
    if isinstance(event, DoseVoided):
        return msgspec.structs.replace(state, status="entered-in-error")
    return state


# --- adverse events following immunization ---------------------------------------------------


class AdverseEventState(Struct):
    reported: bool = False


class ReportAdverseEvent(Struct):
    """Report an AEFI against a dose (`dose` as loaded from its stream)."""

    report_id: str
    dose: DoseState
    symptoms: list[str]
    onset_at: datetime
    serious: bool
    outcome: str
    reporter_role: str
    now: datetime
    seal: Seal
    description: str | None = None


def decide_adverse_event(state: AdverseEventState, command: ReportAdverseEvent) -> list[Event]:
    """An AdverseEventReported, or the rule the report breaks."""
    if state.reported:
        return []
    dose = command.dose
    if dose.status == "none" or dose.facts is None:
        raise NotFound("dose_not_found", "no dose is recorded under this id", "dose_id")
    if dose.status == "entered-in-error":
        raise Conflict("dose_voided", "the dose was entered in error; report against the real one")
    symptoms = [s.strip() for s in command.symptoms if s.strip()]
    if not symptoms:
        raise RuleViolation("symptoms_required", "name at least one symptom", "symptoms")
    if command.onset_at < dose.facts.administered_at:
        raise RuleViolation(
            "onset_before_dose", "the onset is before the dose was given", "onset_at"
        )
    if command.onset_at > command.now + CLOCK_SKEW:
        raise RuleViolation("onset_in_future", "the onset is in the future", "onset_at")
    return [
        AdverseEventReported(
            report_id=command.report_id,
            dose_id=dose.facts.dose_id,
            citizen_id=dose.facts.citizen_id,
            product_code=dose.facts.product_code,
            lot_number=dose.facts.lot_number,
            onset_at=command.onset_at,
            serious=command.serious,
            site_id=dose.facts.site_id,
            reporter_role=command.reporter_role,
            details=command.seal(
                AdverseEventDetails(
                    symptoms=symptoms, outcome=command.outcome, description=command.description
                )
            ),
        )
    ]


def evolve_adverse_event(state: AdverseEventState, event: Event) -> AdverseEventState:
    if isinstance(event, AdverseEventReported):
        return AdverseEventState(reported=True)
    return state


@dataclass(frozen=True)
class Aggregates:
    """The service's aggregates, publishing on one context's topic."""

    dose: Aggregate[DoseState, DoseCommand]
    adverse_event: Aggregate[AdverseEventState, ReportAdverseEvent]


def aggregates(context: Context) -> Aggregates:
    """Both aggregates on `context` (administration's own; benchmarks pass a private one)."""
    return Aggregates(
        dose=Aggregate(
            stream_type=DOSE_STREAM_TYPE,
            context=context,
            initial=DoseState,
            evolve=evolve_dose,
            decide=decide_dose,
            state_type=DoseState,
        ),
        adverse_event=Aggregate(
            stream_type=AEFI_STREAM_TYPE,
            context=context,
            initial=AdverseEventState,
            evolve=evolve_adverse_event,
            decide=decide_adverse_event,
        ),
    )
