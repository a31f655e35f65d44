"""The per-citizen key that seals administration's health details (keys.py): made once
on first use, bound to its citizen, refused for an erased citizen; events written before
sealing still read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from immunreg.contracts.administration import (
    CONTEXT,
    AdverseEventDetails,
    AdverseEventReported,
    DoseNotes,
    DoseVoided,
)
from immunreg.sealing import CitizenKey
from services.administration.domain import DetailsErased
from services.administration.keys import DetailsSealer, adverse_details, dose_notes

AT = datetime(2021, 6, 1, 10, 0, tzinfo=UTC)
WHAT = AdverseEventDetails(symptoms=["anaphylaxis"], outcome="recovering", description="ER")


def reported(sealer: DetailsSealer, citizen_id: str = "c-1") -> AdverseEventReported:
    return AdverseEventReported(
        report_id="r-1",
        dose_id="d-1",
        citizen_id=citizen_id,
        product_code="EU/1/20/1528",
        lot_number="FA1234",
        onset_at=AT,
        serious=True,
        details=sealer(WHAT),
    )


def test_the_first_seal_makes_the_key_and_the_next_ones_use_it() -> None:
    sealer = DetailsSealer("c-1", None, erased=False)
    first = reported(sealer)
    key = sealer.new_key
    assert key is not None and first.details is not None
    assert first.details.key_id == key.key_id
    assert reported(sealer).details.key_id == key.key_id  # type: ignore[union-attr]
    assert adverse_details(first, key) == WHAT


def test_an_existing_key_is_used_and_no_new_one_made() -> None:
    key = CitizenKey.new()
    sealer = DetailsSealer("c-1", key, erased=False)
    assert adverse_details(reported(sealer), key) == WHAT
    assert sealer.new_key is None


def test_details_open_with_their_citizens_key_only() -> None:
    key = CitizenKey.new()
    event = reported(DetailsSealer("c-1", key, erased=False))
    empty = AdverseEventDetails(symptoms=[], outcome="")
    assert adverse_details(event, None) == empty  # the key is gone: erased
    assert adverse_details(event, CitizenKey(key.key_id, CitizenKey.new().key)) == empty
    moved = reported(DetailsSealer("c-1", key, erased=False), citizen_id="c-2")
    assert adverse_details(moved, key) == empty  # copied to another citizen


def test_nothing_is_sealed_for_an_erased_citizen() -> None:
    sealer = DetailsSealer("c-1", None, erased=True)
    with pytest.raises(DetailsErased) as refused:
        sealer(DoseNotes(reason="x"))
    assert (refused.value.status, refused.value.code) == (410, "citizen_erased")
    assert sealer.new_key is None


def test_events_written_before_sealing_still_read() -> None:
    old_void = (
        b'{"type":"DoseVoided","dose_id":"d-1","citizen_id":"c-1","site_id":"S",'
        b'"product_code":"P","lot_number":"L","dose_number":1,"reason":"wrong citizen"}'
    )
    old_report = (
        b'{"type":"AdverseEventReported","report_id":"r","dose_id":"d-1","citizen_id":"c-1",'
        b'"product_code":"P","lot_number":"L","symptoms":["fever"],'
        b'"onset_at":"2021-06-01T10:00:00Z","serious":false,"outcome":"resolved"}'
    )
    void = CONTEXT.decode(old_void)
    report = CONTEXT.decode(old_report)
    assert isinstance(void, DoseVoided) and isinstance(report, AdverseEventReported)
    assert dose_notes(void, None) == DoseNotes(reason="wrong citizen")
    assert adverse_details(report, None) == AdverseEventDetails(
        symptoms=["fever"], outcome="resolved"
    )
