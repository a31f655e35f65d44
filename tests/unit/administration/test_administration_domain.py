"""DoseRecord and AdverseEvent decisions: administer, correct, void, report; pure.

Health details leave the decisions only sealed: every event here is checked through the
wire format for the text it must not carry in clear, and opened with the citizen's key.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

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
from immunreg.domain import Conflict, NotFound, RuleViolation
from immunreg.sealing import CitizenKey
from services.administration.domain import (
    Administer,
    AdverseEventState,
    Correct,
    DoseFacts,
    DoseRefused,
    DoseState,
    NotYetHappened,
    OverrideNotAllowed,
    ReportAdverseEvent,
    Void,
    corrected_facts,
    decide_adverse_event,
    decide_dose,
    dose_id_for,
    evolve_dose,
    require_not_voided,
    require_override_right,
    require_past,
)
from services.administration.keys import DetailsSealer, adverse_details, dose_notes
from services.administration.rules import CitizenFacts, DoseRequest, Violation

AT = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)
RECALLED = Violation(code="lot_recalled", field="lot_number", message="recalled")
SHORT = Violation(code="interval_too_short", field="administered_at", message="too soon")
UNKNOWN = Violation(code="citizen_unknown", field="citizen_id", message="?", overridable=False)
KEY = CitizenKey(key_id="k-1", key=b"\1" * 32)
SEAL = DetailsSealer("c-1", KEY, erased=False)


def on_the_wire(event: Event, *clear: str) -> Event:
    """The event as consumers get it, checked to carry none of `clear` in clear."""
    wire = CONTEXT.encode(event)
    for text in clear:
        assert text.encode() not in wire, text
    return CONTEXT.decode(wire)


def notes(event: DoseAdministered | DoseCorrected | DoseVoided) -> DoseNotes:
    return dose_notes(event, KEY)


def details(event: AdverseEventReported) -> AdverseEventDetails:
    return adverse_details(event, KEY)


def facts(**changes: object) -> DoseFacts:
    values: dict[str, object] = {
        "dose_id": dose_id_for("c-1", "FA1234", 1, AT),
        "citizen_id": "c-1",
        "site_id": "SITE-0001",
        "site_municipality_code": "70092",
        "citizen_municipality_code": "70122",
        "product_code": "EU/1/20/1528",
        "lot_number": "FA1234",
        "dose_number": 1,
        "series_length": 2,
        "administered_at": AT,
        "age_at_vaccination": 51,
        "sex": "female",
        "vaccinator_id": "V-7",
        "injection_site": "left_arm",
    }
    values.update(changes)
    return msgspec.convert(values, DoseFacts, from_attributes=True)


def replay(*events: Event) -> DoseState:
    state = DoseState()
    for event in events:
        # Through the wire format, as the store would load them.
        state = evolve_dose(state, CONTEXT.decode(CONTEXT.encode(event)))
    return state


def recorded(**changes: object) -> DoseState:
    [event] = decide_dose(DoseState(), Administer(seal=SEAL, facts=facts(**changes)))
    return replay(event)


def voided() -> DoseState:
    state = recorded()
    [event] = decide_dose(state, Void(seal=SEAL, reason="recorded for the wrong citizen"))
    return evolve_dose(state, event)


# --- the dose id ------------------------------------------------------------------------------


def test_the_same_dose_has_the_same_id_in_any_time_zone() -> None:
    belgrade = AT.astimezone(ZoneInfo("Europe/Belgrade"))
    assert dose_id_for("c-1", "FA1234", 1, AT) == dose_id_for("c-1", "FA1234", 1, belgrade)
    different = [
        dose_id_for("c-2", "FA1234", 1, AT),
        dose_id_for("c-1", "FA1235", 1, AT),
        dose_id_for("c-1", "FA1234", 2, AT),
        dose_id_for("c-1", "FA1234", 1, AT + timedelta(seconds=1)),
    ]
    assert len({dose_id_for("c-1", "FA1234", 1, AT), *different}) == 5


# --- administer -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "series_complete", "booster"),
    [(1, False, False), (2, True, False), (3, True, True)],
)
def test_administer_records_every_field(number: int, series_complete: bool, booster: bool) -> None:
    [event] = decide_dose(DoseState(), Administer(seal=SEAL, facts=facts(dose_number=number)))
    assert isinstance(event, DoseAdministered)
    assert (event.series_complete, event.booster) == (series_complete, booster)
    assert (event.citizen_id, event.site_id, event.lot_number) == ("c-1", "SITE-0001", "FA1234")
    assert (event.site_municipality_code, event.citizen_municipality_code) == ("70092", "70122")
    assert (event.age_at_vaccination, event.sex, event.series_length) == (51, "female", 2)
    assert event.details is None and event.overridden_rules == []


@pytest.mark.parametrize(
    ("violations", "reason", "may_override", "outcome"),
    [
        ([], None, False, "recorded"),
        ([], "no reason needed", True, "recorded"),  # nothing overridden: no reason kept
        ([RECALLED], None, False, "lot_recalled"),
        ([RECALLED], "given before the recall notice reached us", False, "lot_recalled"),
        ([RECALLED], None, True, "lot_recalled"),  # an admin must say why
        ([RECALLED], "   ", True, "lot_recalled"),
        ([RECALLED, SHORT], "given; follow up", True, "overridden"),
        ([UNKNOWN], "please", True, "citizen_unknown"),  # not overridable by anyone
        ([RECALLED, UNKNOWN], "please", True, "lot_recalled"),
    ],
)
def test_administer_override_policy(
    violations: list[Violation], reason: str | None, may_override: bool, outcome: str
) -> None:
    command = Administer(
        seal=SEAL,
        facts=facts(),
        violations=violations,
        override_reason=reason,
        may_override=may_override,
    )
    if outcome in ("recorded", "overridden"):
        [event] = decide_dose(DoseState(), command)
        assert isinstance(event, DoseAdministered)
        if outcome == "overridden":
            assert reason is not None
            sent = on_the_wire(event, reason)
            assert isinstance(sent, DoseAdministered) and sent.override_reason is None
            assert notes(sent) == DoseNotes(override_reason=reason)
            assert event.overridden_rules == [v.code for v in violations]
        else:
            assert event.details is None and event.overridden_rules == []
        return
    with pytest.raises(DoseRefused) as refused:
        decide_dose(DoseState(), command)
    assert refused.value.code == outcome
    assert refused.value.violations == violations


def test_administer_twice_is_a_conflict() -> None:
    with pytest.raises(Conflict) as error:
        decide_dose(recorded(), Administer(seal=SEAL, facts=facts()))
    assert error.value.code == "dose_already_recorded"


# --- correct ---------------------------------------------------------------------------------


def test_correct_restates_the_record_with_the_reason() -> None:
    state = recorded()
    corrected = facts(lot_number="FA9999", injection_site="right_arm", vaccinator_id="V-8")
    [event] = decide_dose(
        state, Correct(seal=SEAL, facts=corrected, reason="typo in the lot number")
    )
    assert isinstance(event, DoseCorrected)
    assert (event.lot_number, event.injection_site, event.vaccinator_id) == (
        "FA9999",
        "right_arm",
        "V-8",
    )
    sent = on_the_wire(event, "typo in the lot number")
    assert isinstance(sent, DoseCorrected) and sent.reason == ""
    assert notes(sent) == DoseNotes(reason="typo in the lot number")
    assert (event.age_at_vaccination, event.sex, event.site_municipality_code) == (
        51,
        "female",
        "70092",
    )
    after = evolve_dose(state, event)
    assert after.facts == corrected and after.corrections == 1 and after.status == "completed"


@pytest.mark.parametrize(
    ("state", "command", "error", "code"),
    [
        (DoseState(), Correct(seal=SEAL, facts=facts(), reason="x"), NotFound, "dose_not_found"),
        (
            voided(),
            Correct(seal=SEAL, facts=facts(lot_number="X"), reason="x"),
            Conflict,
            "dose_voided",
        ),
        (
            recorded(),
            Correct(seal=SEAL, facts=facts(lot_number="X"), reason="  "),
            RuleViolation,
            "reason_required",
        ),
        (
            recorded(),
            Correct(seal=SEAL, facts=facts(citizen_id="c-2"), reason="x"),
            RuleViolation,
            "identity_unchanged",
        ),
        (
            recorded(),
            Correct(seal=SEAL, facts=facts(site_id="SITE-0002"), reason="x"),
            RuleViolation,
            "identity_unchanged",
        ),
        (
            recorded(),
            Correct(seal=SEAL, facts=facts(lot_number="X"), reason="x", violations=[RECALLED]),
            DoseRefused,
            "lot_recalled",
        ),
    ],
)
def test_correct_refusals(
    state: DoseState, command: Correct, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as raised:
        decide_dose(state, command)
    assert getattr(raised.value, "code", None) == code


def test_a_correction_that_changes_nothing_records_nothing() -> None:
    assert decide_dose(recorded(), Correct(seal=SEAL, facts=facts(), reason="checking")) == []


def test_an_admin_correction_may_override() -> None:
    command = Correct(
        seal=SEAL,
        facts=facts(lot_number="X"),
        reason="real lot",
        violations=[RECALLED],
        override_reason="the recalled lot was given; AEFI follow-up",
        may_override=True,
    )
    [event] = decide_dose(recorded(), command)
    assert isinstance(event, DoseCorrected)
    assert event.overridden_rules == ["lot_recalled"]
    sent = on_the_wire(event, "real lot", "AEFI follow-up")
    assert isinstance(sent, DoseCorrected) and sent.override_reason is None
    assert notes(sent) == DoseNotes(
        override_reason="the recalled lot was given; AEFI follow-up", reason="real lot"
    )


# --- void ---------------------------------------------------------------------------------


def test_void_marks_entered_in_error_and_keeps_the_record() -> None:
    state = recorded()
    [event] = decide_dose(state, Void(seal=SEAL, reason="recorded for the wrong citizen"))
    assert isinstance(event, DoseVoided)
    assert (event.dose_id, event.lot_number, event.dose_number) == (
        facts().dose_id,
        "FA1234",
        1,
    )
    sent = on_the_wire(event, "wrong citizen")
    assert isinstance(sent, DoseVoided) and sent.reason == ""
    assert notes(sent) == DoseNotes(reason="recorded for the wrong citizen")
    after = evolve_dose(state, event)
    assert after.status == "entered-in-error" and after.facts == state.facts
    assert (
        decide_dose(after, Void(seal=SEAL, reason="again")) == []
    )  # voiding twice changes nothing


@pytest.mark.parametrize(
    ("state", "reason", "error", "code"),
    [
        (DoseState(), "x", NotFound, "dose_not_found"),
        (recorded(), " ", RuleViolation, "reason_required"),
    ],
)
def test_void_refusals(state: DoseState, reason: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as raised:
        decide_dose(state, Void(seal=SEAL, reason=reason))
    assert getattr(raised.value, "code", None) == code


# --- adverse events --------------------------------------------------------------------------


def report(dose: DoseState, **changes: object) -> ReportAdverseEvent:
    values: dict[str, object] = {
        "report_id": "r-1",
        "dose": dose,
        "symptoms": ["fever", " headache "],
        "onset_at": AT + timedelta(hours=8),
        "serious": False,
        "outcome": "resolved",
        "reporter_role": "site_staff",
        "now": AT + timedelta(days=1),
        "seal": SEAL,
        "description": "fever of 39.5 the night after",
    }
    values.update(changes)
    return ReportAdverseEvent(**values)  # type: ignore[arg-type]


def test_an_adverse_event_is_reported_against_the_dose() -> None:
    [event] = decide_adverse_event(AdverseEventState(), report(recorded()))
    assert isinstance(event, AdverseEventReported)
    sent = on_the_wire(event, "fever", "headache", "resolved", "39.5")
    assert isinstance(sent, AdverseEventReported)
    assert (sent.symptoms, sent.outcome, sent.description) == ([], "", None)
    assert details(sent) == AdverseEventDetails(
        symptoms=["fever", "headache"],
        outcome="resolved",
        description="fever of 39.5 the night after",
    )
    assert (event.dose_id, event.citizen_id, event.lot_number, event.site_id) == (
        facts().dose_id,
        "c-1",
        "FA1234",
        "SITE-0001",
    )
    assert (event.serious, event.reporter_role, event.onset_at) == (
        False,
        "site_staff",
        AT + timedelta(hours=8),
    )


@pytest.mark.parametrize(
    ("dose", "changes", "error", "code"),
    [
        (DoseState(), {}, NotFound, "dose_not_found"),
        (recorded(), {"symptoms": [" ", ""]}, RuleViolation, "symptoms_required"),
        (recorded(), {"onset_at": AT - timedelta(minutes=1)}, RuleViolation, "onset_before_dose"),
        (recorded(), {"onset_at": AT + timedelta(days=2)}, RuleViolation, "onset_in_future"),
    ],
)
def test_adverse_event_refusals(
    dose: DoseState, changes: dict[str, object], error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as raised:
        decide_adverse_event(AdverseEventState(), report(dose, **changes))
    assert getattr(raised.value, "code", None) == code


def test_no_adverse_event_against_a_voided_dose() -> None:
    with pytest.raises(Conflict) as raised:
        decide_adverse_event(AdverseEventState(), report(voided()))
    assert raised.value.code == "dose_voided"


# --- rules a request meets before the dose is judged ------------------------------------------


@pytest.mark.parametrize(
    ("may_override", "reason", "refused"),
    [(False, None, False), (False, "given abroad", True), (True, "given abroad", False)],
)
def test_only_an_administrator_may_send_an_override_reason(
    may_override: bool, reason: str | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(OverrideNotAllowed) as error:
            require_override_right(may_override, reason)
        assert (error.value.status, error.value.code) == (403, "override_not_allowed")
    else:
        require_override_right(may_override, reason)


def test_a_dose_time_may_run_ahead_of_the_clock_by_the_skew_only() -> None:
    require_past("administered_at", AT + timedelta(minutes=5), now=AT)
    with pytest.raises(NotYetHappened) as error:
        require_past("administered_at", AT + timedelta(minutes=6), now=AT)
    assert (error.value.code, error.value.field) == ("invalid_fields", "administered_at")


def test_a_dose_sent_again_after_it_was_voided_is_a_conflict() -> None:
    require_not_voided(recorded())
    with pytest.raises(Conflict) as error:
        require_not_voided(voided())
    assert error.value.code == "dose_voided"


def test_a_correction_keeps_the_citizens_municipality_and_sex_as_first_recorded() -> None:
    current = facts()
    moved = CitizenFacts("c-1", "active", date(1970, 1, 1), "male", "11000")
    request = DoseRequest(
        citizen_id="c-1",
        site_id="SITE-0001",
        lot_number="FA1234",
        product_code="EU/1/20/1528",
        dose_number=1,
        administered_at=AT,
    )

    corrected = corrected_facts(
        current, request, moved, 2, vaccinator_id="V-8", appointment_id=None, injection_site=None
    )

    assert (corrected.citizen_municipality_code, corrected.sex) == ("70122", "female")
    assert (corrected.vaccinator_id, corrected.injection_site) == ("V-8", None)
