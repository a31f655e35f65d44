"""The Certificate aggregate: issue, keep, revoke, replace - and nothing twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from immunreg.contracts.certificates import CertificateIssued, CertificateRevoked
from immunreg.contracts.envelope import Event
from services.certificates.domain import (
    CITIZEN_ERASED,
    DOSE_CORRECTED,
    DOSE_VOIDED,
    LOT_RECALLED,
    CertificateState,
    Content,
    Issuance,
    Reconcile,
    decide,
    evolve,
)

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DOSE = Content(
    citizen_id="c-1",
    product_code="EU/1/20/1528",
    dose_number=1,
    total_doses=2,
    vaccination_date=date(2026, 3, 1),
)


def issuance(uvci: str) -> Issuance:
    return Issuance(
        uvci=uvci, issued_at=AT, expires_at=AT + timedelta(days=365), key_id="k", country="RS"
    )


def command(
    want: Content | None, reason: str = DOSE_CORRECTED, uvci: str | None = "U1"
) -> Reconcile:
    return Reconcile(
        dose_id="d-1",
        citizen_id=want.citizen_id if want else "c-1",
        want=want,
        reason=reason,
        issuance=issuance(uvci) if uvci else None,
    )


def run(state: CertificateState, cmd: Reconcile) -> tuple[CertificateState, list[Event]]:
    events = decide(state, cmd)
    for event in events:
        state = evolve(state, event)
    return state, events


def issued() -> CertificateState:
    state, _ = run(CertificateState(), command(DOSE))
    return state


def test_a_dose_gets_a_certificate() -> None:
    state, events = run(CertificateState(), command(DOSE))
    [event] = events
    assert isinstance(event, CertificateIssued)
    assert (event.uvci, event.dose_number, event.total_doses, event.supersedes) == (
        "U1",
        1,
        2,
        None,
    )
    assert event.vaccination_date == date(2026, 3, 1) and event.citizen_id == "c-1"
    assert state.current is not None and state.current.uvci == "U1"


def test_deciding_again_on_the_same_facts_changes_nothing() -> None:
    assert decide(issued(), command(DOSE, uvci="U2")) == []
    assert decide(issued(), command(DOSE, uvci=None)) == []


def test_without_names_the_issue_waits() -> None:
    assert decide(CertificateState(), command(DOSE, uvci=None)) == []


def test_a_correction_revokes_and_reissues() -> None:
    corrected = Content(
        citizen_id="c-1",
        product_code="EU/1/20/1507",
        dose_number=1,
        total_doses=2,
        vaccination_date=date(2026, 3, 1),
    )
    state, events = run(issued(), command(corrected, uvci="U2"))
    revoked, reissued = events
    assert isinstance(revoked, CertificateRevoked) and isinstance(reissued, CertificateIssued)
    assert (revoked.uvci, revoked.reason, revoked.superseded_by) == ("U1", DOSE_CORRECTED, "U2")
    assert (reissued.uvci, reissued.supersedes, reissued.product_code) == (
        "U2",
        "U1",
        "EU/1/20/1507",
    )
    assert state.current is not None and state.current.uvci == "U2"
    assert [c.valid for c in state.certificates] == [False, True]


def test_a_correction_to_another_citizen_revokes_at_once_even_before_names() -> None:
    other = Content(
        citizen_id="c-2",
        product_code=DOSE.product_code,
        dose_number=1,
        total_doses=2,
        vaccination_date=DOSE.vaccination_date,
    )
    state, events = run(issued(), command(other, uvci=None))
    [revoked] = events
    assert isinstance(revoked, CertificateRevoked)
    assert (revoked.citizen_id, revoked.superseded_by) == ("c-1", None)
    state, events = run(state, command(other, uvci="U3"))
    [reissued] = events
    assert isinstance(reissued, CertificateIssued)
    assert (reissued.citizen_id, reissued.supersedes) == ("c-2", "U1")


def test_void_recall_and_erasure_revoke_once() -> None:
    for reason in (DOSE_VOIDED, LOT_RECALLED, CITIZEN_ERASED):
        state, events = run(issued(), command(None, reason))
        [revoked] = events
        assert isinstance(revoked, CertificateRevoked) and revoked.reason == reason
        assert state.current is None
        assert decide(state, command(None, reason)) == []


def test_nothing_to_revoke_when_none_was_issued() -> None:
    assert decide(CertificateState(), command(None, LOT_RECALLED)) == []


def test_a_dose_moved_off_a_recalled_lot_gets_a_new_certificate() -> None:
    state, _ = run(issued(), command(None, LOT_RECALLED))
    state, events = run(state, command(DOSE, uvci="U2"))
    [event] = events
    assert isinstance(event, CertificateIssued) and event.supersedes == "U1"
