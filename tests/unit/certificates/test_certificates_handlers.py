"""Certificates' command path on the in-memory event store (as registration's handler tests).

`handlers.reconcile_dose` runs here exactly as in the service; only the store
(InMemoryEventStore) and the books (a fake of the doses and certificates tables)
are swapped. What the reactions write and lock through SQL stays in
tests/integration/certificates/.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import pytest
from certificates_support import NOW

from immunreg.contracts.certificates import CONTEXT, CertificateIssued, CertificateRevoked
from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.registration import PersonalData, grant_context
from immunreg.eventstore.memory import InMemoryEventStore, MemoryTransaction
from immunreg.sealing import new_data_key, new_holder_key_pair, seal, wrap_key
from services.certificates.domain import DOSE_CORRECTED, DOSE_VOIDED, DoseFacts, stream_id
from services.certificates.handlers import Issuer, reconcile_dose
from services.certificates.hcert import IssuerConfig
from services.certificates.keys import SignerConfig, SigningKey, TrustList
from services.certificates.readmodel import DoseHolder, DoseOnFile
from services.certificates.render import QrImages, qr_images
from services.certificates.verify import Reason, verify

CID = "c-aaaaaaaaaaaaaaaaaaaa"
DOSE_ID = "d-1"
HOLDER_PRIVATE, HOLDER_PUBLIC = new_holder_key_pair()  # certificates' key for CID


class FakeBooks:
    """The doses on file and the certificates table as dicts."""

    def __init__(self) -> None:
        self.doses: dict[str, DoseOnFile] = {}
        self.signed: dict[str, str] = {}  # uvci -> HC1
        self.images: dict[str, QrImages] = {}  # uvci -> its QR images, kept with it
        self.revoked: dict[str, str] = {}  # uvci -> reason

    async def dose_on_file(self, tx: MemoryTransaction, dose_id: str) -> DoseOnFile | None:
        return self.doses.get(dose_id)

    async def record_issued(
        self, tx: MemoryTransaction, event: CertificateIssued, hc1: str, images: QrImages
    ) -> None:
        self.signed[event.uvci] = hc1
        self.images[event.uvci] = images

    async def record_revoked(
        self, tx: MemoryTransaction, event: CertificateRevoked, at: datetime
    ) -> None:
        self.revoked[event.uvci] = event.reason


def holder_on_file(with_key: bool = True) -> DoseHolder:
    key = new_data_key()
    personal = PersonalData(
        national_id="0101990710008", given_name="Jelena", family_name="Petrović"
    )
    sealed = seal(key, msgspec.json.encode(personal), CID.encode(), key_id="k1")
    return DoseHolder(
        birth_date=date(1985, 4, 12),
        personal=msgspec.json.encode(sealed).decode(),
        private_key=HOLDER_PRIVATE,
        wrapped_key=(
            wrap_key(HOLDER_PUBLIC, key, grant_context(CID, "certificates")) if with_key else None
        ),
    )


def dose(**changes: object) -> DoseFacts:
    facts = DoseFacts(
        dose_id=DOSE_ID,
        citizen_id=CID,
        product_code="EU/1/20/1528",
        dose_number=1,
        series_length=2,
        administered_at=datetime(2026, 2, 27, 10, 0, tzinfo=UTC),
    )
    return msgspec.structs.replace(facts, **changes)


@pytest.fixture
def issuer(signer: SigningKey, tmp_path: Path) -> Issuer:
    return Issuer(
        signer=signer,
        signer_config=SignerConfig(dev_dir=tmp_path),
        config=IssuerConfig(),
        clock=lambda: NOW,
    )


async def test_a_dose_with_its_holder_on_file_gets_a_signed_certificate(issuer: Issuer) -> None:
    store, books = InMemoryEventStore(), FakeBooks()
    books.doses[DOSE_ID] = DoseOnFile(facts=dose(), holder=holder_on_file())
    async with store.transaction() as tx:
        events = await reconcile_dose(store, books, issuer, tx, DOSE_ID)
    [issued] = events
    assert isinstance(issued, CertificateIssued)
    assert [e.type for e in await store.load(stream_id(DOSE_ID))] == ["CertificateIssued"]
    assert decode_envelope(store.memory.outbox[0].payload).type == "CertificateIssued"
    assert store.memory.outbox[0].topic == CONTEXT.topic
    verdict = verify(books.signed[issued.uvci], TrustList([issuer.signer.trusted]), NOW)
    assert verdict.reason is Reason.OK
    assert verdict.uvci == issued.uvci
    # Its QR images are kept with it, in the same transaction: no download renders.
    assert books.images[issued.uvci] == qr_images(books.signed[issued.uvci])
    async with store.transaction() as tx:  # the same facts again: nothing to do
        assert await reconcile_dose(store, books, issuer, tx, DOSE_ID) == []


async def test_without_the_holders_key_the_certificate_waits(issuer: Issuer) -> None:
    store, books = InMemoryEventStore(), FakeBooks()
    books.doses[DOSE_ID] = DoseOnFile(facts=dose(), holder=holder_on_file(with_key=False))
    async with store.transaction() as tx:
        assert await reconcile_dose(store, books, issuer, tx, DOSE_ID) == []
    assert books.signed == {}
    assert await store.load(stream_id(DOSE_ID)) == []


async def test_a_correction_then_a_void_revoke(issuer: Issuer) -> None:
    store, books = InMemoryEventStore(), FakeBooks()
    holder = holder_on_file()
    books.doses[DOSE_ID] = DoseOnFile(facts=dose(), holder=holder)
    async with store.transaction() as tx:
        [first] = await reconcile_dose(store, books, issuer, tx, DOSE_ID)
    books.doses[DOSE_ID] = DoseOnFile(facts=dose(dose_number=2), holder=holder)
    async with store.transaction() as tx:
        correction, reissued = await reconcile_dose(store, books, issuer, tx, DOSE_ID)
    assert isinstance(first, CertificateIssued)
    assert isinstance(correction, CertificateRevoked)
    assert isinstance(reissued, CertificateIssued)
    assert reissued.supersedes == first.uvci
    assert books.revoked == {first.uvci: DOSE_CORRECTED}
    books.doses[DOSE_ID] = DoseOnFile(facts=dose(dose_number=2, voided=True), holder=holder)
    async with store.transaction() as tx:
        [voided] = await reconcile_dose(store, books, issuer, tx, DOSE_ID)
    assert isinstance(voided, CertificateRevoked)
    assert books.revoked[reissued.uvci] == DOSE_VOIDED
    types = [CONTEXT.read(e).type_name() for e in await store.load(stream_id(DOSE_ID))]
    assert types == [
        "CertificateIssued",
        "CertificateRevoked",
        "CertificateIssued",
        "CertificateRevoked",
    ]
