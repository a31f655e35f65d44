"""Administration's command path on the in-memory event store.

`handlers.record_dose`, `correct_dose`, `void_dose` and `report_adverse_event` run
here exactly as in the service; only the store (InMemoryEventStore) and the books (a
fake of the read models) are swapped. The row lock and the SQL of the read models
stay in tests/integration/administration.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest

from immunreg.contracts.administration import (
    CONTEXT,
    AdverseEventDetails,
    AdverseEventReported,
    DoseAdministered,
    DoseNotes,
    DoseVoided,
)
from immunreg.contracts.envelope import Envelope, Event, decode_envelope
from immunreg.domain import Conflict
from immunreg.eventstore.errors import ConcurrencyConflict
from immunreg.eventstore.memory import InMemoryEventStore, MemoryTransaction
from immunreg.http.auth import Principal, Role
from immunreg.http.problems import Problem
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.sealing import CitizenKey
from services.administration import handlers
from services.administration.domain import (
    DetailsErased,
    DoseRefused,
    NotYetHappened,
    OverrideNotAllowed,
    aggregates,
    dose_stream,
)
from services.administration.handlers import DoseRecording
from services.administration.keys import adverse_details, dose_notes
from services.administration.readmodel import Administering
from services.administration.rules import CitizenFacts, LotFacts, PriorDose
from services.administration.schemas import CorrectDose, RecordDose, ReportAdverseEvent, VoidDose

CID = "c-aaaaaaaaaaaaaaaaaaaa"
SITE = "SITE-0001"
LOT = "FA1234"
COMIRNATY = "EU/1/20/1528"
NOW = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
GIVEN = NOW - timedelta(hours=2)
ADMIN = Principal(subject="admin", role=Role.ADMIN)
NURSE = Principal(subject="nurse", role=Role.SITE_STAFF, site_id=SITE)
AGGREGATES = aggregates(CONTEXT)


class FakeBooks:
    """The read models as dicts: what other contexts told us, and the doses recorded."""

    def __init__(self) -> None:
        self.citizens = {
            CID: CitizenFacts(CID, "active", date(1970, 1, 1), "female", "70092"),
        }
        self.lots = {
            (LOT, SITE): LotFacts(LOT, COMIRNATY, date(2021, 12, 31), None, False, True),
        }
        self.doses: dict[str, PriorDose] = {}
        self.events: list[str] = []  # event types recorded, in order
        self.keys: dict[str, CitizenKey] = {}
        self.keys_made = 0

    async def lock_citizen(self, tx: MemoryTransaction, citizen_id: str) -> CitizenFacts | None:
        return self.citizens.get(citizen_id)

    async def citizen(self, tx: MemoryTransaction, citizen_id: str) -> CitizenFacts | None:
        return self.citizens.get(citizen_id)

    async def lot(self, tx: MemoryTransaction, lot_number: str, site_id: str) -> LotFacts | None:
        return self.lots.get((lot_number, site_id))

    async def history(
        self, tx: MemoryTransaction, citizen_id: str, *, excluding: str | None = None
    ) -> list[PriorDose]:
        return [dose for dose in self.doses.values() if dose.dose_id != excluding]

    async def site_municipality(self, tx: MemoryTransaction, site_id: str) -> str | None:
        return "70092"

    async def administering(
        self, tx: MemoryTransaction, citizen_id: str, lot_number: str, site_id: str
    ) -> Administering:
        return Administering(
            lot=await self.lot(tx, lot_number, site_id),
            history=await self.history(tx, citizen_id),
            key=await self.citizen_key(tx, citizen_id),
            site_municipality=await self.site_municipality(tx, site_id),
        )

    async def citizen_key(self, tx: MemoryTransaction, citizen_id: str) -> CitizenKey | None:
        return self.keys.get(citizen_id)

    async def keep_citizen_key(
        self, tx: MemoryTransaction, citizen_id: str, key: CitizenKey
    ) -> None:
        assert citizen_id not in self.keys, "a second key for one citizen"
        self.keys[citizen_id] = key
        self.keys_made += 1

    async def record(self, tx: MemoryTransaction, envelope: Envelope, event: Event) -> None:
        self.events.append(envelope.type)


FIRST_DOSE = RecordDose(
    citizen_id=CID,
    site_id=SITE,
    lot_number=LOT,
    product_code=COMIRNATY,
    dose_number=1,
    administered_at=GIVEN,
    vaccinator_id="V-7",
)


def dose(**changes: object) -> RecordDose:
    return msgspec.structs.replace(FIRST_DOSE, **changes)


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def books() -> FakeBooks:
    return FakeBooks()


async def record(
    store: InMemoryEventStore, books: FakeBooks, body: RecordDose, caller: Principal = NURSE
) -> DoseRecording:
    return await handlers.record_dose(
        store, books, AGGREGATES, body, caller=caller, catalog=vaccine_catalog(), now=NOW
    )


async def test_recording_appends_publishes_and_keeps_the_books(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(store, books, dose())

    assert recording.created and recording.version == 1
    [stored] = await store.load(dose_stream(recording.dose_id))
    assert stored.type == "DoseAdministered"
    [row] = store.memory.outbox
    assert row.topic == CONTEXT.topic
    assert decode_envelope(row.payload).event_id == stored.event_id
    assert books.events == ["DoseAdministered"]


async def test_the_same_dose_sent_again_is_found_not_recorded_again(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await record(store, books, dose())

    again = await record(store, books, dose())

    assert not again.created and again.dose_id == first.dose_id
    assert len(store.memory.outbox) == 1 and books.events == ["DoseAdministered"]


async def test_a_voided_dose_sent_again_is_a_conflict(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    first = await record(store, books, dose())
    await handlers.void_dose(
        store, books, AGGREGATES, first.dose_id, VoidDose(reason="wrong citizen"), caller=NURSE
    )

    with pytest.raises(Conflict) as refused:
        await record(store, books, dose())

    assert refused.value.code == "dose_voided"
    assert books.events == ["DoseAdministered", "DoseVoided"]


async def test_only_an_administrator_may_send_an_override_reason(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    with pytest.raises(OverrideNotAllowed) as refused:
        await record(store, books, dose(override_reason="given in the field"))

    assert (refused.value.code, refused.value.status) == ("override_not_allowed", 403)
    assert store.memory.outbox == [] and books.events == []


async def test_a_dose_given_in_the_future_is_refused_before_anything_is_read(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    with pytest.raises(NotYetHappened) as refused:
        await record(store, books, dose(administered_at=NOW + timedelta(hours=1)))

    assert refused.value.field == "administered_at"
    assert store.memory.outbox == []


async def test_a_broken_rule_refuses_staff_and_yields_to_an_administrators_reason(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    with pytest.raises(DoseRefused) as refused:
        await record(store, books, dose(dose_number=2))
    assert refused.value.code == "dose_number_out_of_sequence"
    assert store.memory.outbox == []

    recording = await record(
        store, books, dose(dose_number=2, override_reason="first dose abroad"), caller=ADMIN
    )

    assert recording.state.overridden_rules == ["dose_number_out_of_sequence"]


async def test_a_correction_with_a_stale_if_match_is_final(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(store, books, dose())
    correction = CorrectDose(reason="wrong arm", injection_site="right_arm")

    async def correct(expected_version: int) -> None:
        await handlers.correct_dose(
            store,
            books,
            AGGREGATES,
            recording.dose_id,
            correction,
            caller=NURSE,
            catalog=vaccine_catalog(),
            now=NOW,
            expected_version=expected_version,
        )

    with pytest.raises(ConcurrencyConflict):
        await correct(expected_version=0)
    await correct(expected_version=1)

    assert books.events == ["DoseAdministered", "DoseCorrected"]


async def test_the_site_then_the_if_match_are_checked_before_the_correction_s_rules(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    # The order a client sees: 403 (not your site), then 412 (stale If-Match), and only
    # then 422 (the corrected record breaks a rule), so a stale client re-reads first.
    recording = await record(store, books, dose())
    breaks_a_rule = CorrectDose(reason="typo", dose_number=3)
    other_site = Principal(subject="nurse-2", role=Role.SITE_STAFF, site_id="SITE-0002")

    async def correct(caller: Principal, expected_version: int) -> None:
        await handlers.correct_dose(
            store,
            books,
            AGGREGATES,
            recording.dose_id,
            breaks_a_rule,
            caller=caller,
            catalog=vaccine_catalog(),
            now=NOW,
            expected_version=expected_version,
        )

    with pytest.raises(Problem) as forbidden:
        await correct(other_site, expected_version=0)
    assert forbidden.value.status == 403
    with pytest.raises(ConcurrencyConflict):
        await correct(NURSE, expected_version=0)
    with pytest.raises(DoseRefused) as refused:
        await correct(NURSE, expected_version=1)
    assert refused.value.code == "dose_number_out_of_sequence"
    assert books.events == ["DoseAdministered"]


async def test_an_unknown_dose_takes_no_void_and_no_report(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    with pytest.raises(handlers.DoseNotFound):
        await handlers.void_dose(
            store, books, AGGREGATES, "no-such-dose", VoidDose(reason="?"), caller=NURSE
        )
    report = ReportAdverseEvent(
        dose_id="no-such-dose", symptoms=["fever"], onset_at=NOW, serious=False, outcome="resolved"
    )
    with pytest.raises(handlers.DoseNotFound):
        await handlers.report_adverse_event(store, books, AGGREGATES, report, caller=NURSE, now=NOW)

    assert store.memory.outbox == []


async def test_an_adverse_event_is_reported_against_a_recorded_dose(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(store, books, dose())
    report = ReportAdverseEvent(
        dose_id=recording.dose_id,
        symptoms=["fever"],
        onset_at=GIVEN + timedelta(hours=1),
        serious=False,
        outcome="resolved",
    )

    report_id = await handlers.report_adverse_event(
        store, books, AGGREGATES, report, caller=NURSE, now=NOW
    )

    [stored] = await store.load(f"aefi-{report_id}")
    assert stored.type == "AdverseEventReported"
    assert books.events == ["DoseAdministered", "AdverseEventReported"]


# --- health details: sealed under the citizen's key, made with the first that needs it ----


async def test_a_dose_with_nothing_to_seal_makes_no_key(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    await record(store, books, dose(override_reason="nothing to override"), caller=ADMIN)

    assert books.keys == {}


async def test_details_are_sealed_under_one_key_kept_with_the_first_event(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(
        store, books, dose(dose_number=2, override_reason="first dose abroad"), caller=ADMIN
    )
    await handlers.void_dose(
        store, books, AGGREGATES, recording.dose_id, VoidDose(reason="wrong arm"), caller=NURSE
    )
    report = ReportAdverseEvent(
        dose_id=recording.dose_id,
        symptoms=["urticaria"],
        onset_at=GIVEN + timedelta(hours=1),
        serious=True,
        outcome="recovering",
        description="hives on both arms",
    )
    books.events.clear()
    with pytest.raises(Conflict):  # a voided dose takes no report
        await handlers.report_adverse_event(store, books, AGGREGATES, report, caller=NURSE, now=NOW)

    assert books.keys_made == 1
    key = books.keys[CID]
    wire = b"".join(row.payload for row in store.memory.outbox)
    for text in (b"first dose abroad", b"wrong arm", b"hives", b"urticaria"):
        assert text not in wire
    administered, voided = [
        CONTEXT.read(e) for e in await store.load(dose_stream(recording.dose_id))
    ]
    assert isinstance(administered, DoseAdministered) and isinstance(voided, DoseVoided)
    assert dose_notes(administered, key) == DoseNotes(override_reason="first dose abroad")
    assert dose_notes(voided, key) == DoseNotes(reason="wrong arm")
    assert dose_notes(voided, None) == DoseNotes()  # the key gone, nothing opens


async def test_an_adverse_event_is_sealed_under_the_citizens_key(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(store, books, dose())
    report = ReportAdverseEvent(
        dose_id=recording.dose_id,
        symptoms=["urticaria"],
        onset_at=GIVEN + timedelta(hours=1),
        serious=True,
        outcome="recovering",
        description="hives on both arms",
    )

    report_id = await handlers.report_adverse_event(
        store, books, AGGREGATES, report, caller=NURSE, now=NOW
    )

    [stored] = await store.load(f"aefi-{report_id}")
    assert b"urticaria" not in bytes(stored.data) and b"hives" not in bytes(stored.data)
    event = CONTEXT.read(stored)
    assert isinstance(event, AdverseEventReported)
    assert adverse_details(event, books.keys[CID]) == AdverseEventDetails(
        symptoms=["urticaria"], outcome="recovering", description="hives on both arms"
    )


async def test_an_erased_citizens_dose_takes_no_void_and_no_report(
    store: InMemoryEventStore, books: FakeBooks
) -> None:
    recording = await record(store, books, dose())
    books.citizens[CID] = CitizenFacts(CID, "erased", None, None, None)
    report = ReportAdverseEvent(
        dose_id=recording.dose_id,
        symptoms=["fever"],
        onset_at=GIVEN + timedelta(hours=1),
        serious=False,
        outcome="resolved",
    )

    with pytest.raises(DetailsErased):
        await handlers.void_dose(
            store, books, AGGREGATES, recording.dose_id, VoidDose(reason="x"), caller=NURSE
        )
    with pytest.raises(DetailsErased):
        await handlers.report_adverse_event(store, books, AGGREGATES, report, caller=NURSE, now=NOW)

    assert books.keys == {} and books.events == ["DoseAdministered"]
    assert len(store.memory.outbox) == 1
