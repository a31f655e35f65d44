"""Certificates' commands and reactions, as plain functions over their dependencies.

The explicit map is `REACTIONS` (which handler runs for which event); the
API's commands are `rotate_signing_key`, `revoke_signing_key` and `verify_hc1`,
called by app.py.

Trust: at start the signer's DSC must chain to a configured CSCA and not be
revoked, or the service refuses to start; the trust list is rebuilt from
`signing_keys`, the foreign DSCs and `signer_revocations` (`refresh_trust`),
and a DSC that chains to no configured CSCA (a forged row, a foreign DSC
without its CSCA) is left out and logged once.

registration.events.v1
- CitizenRegistered, ContactDetailsChanged: keep the birth date and the sealed
  personal data; issue certificates that were waiting for them. On a registration,
  bind the pooled key it carries a grant to (the grant kept with it), else make a key
  pair for the citizen and offer its public half (`HolderKeyOffered` on
  certificates.events.v1); `immunreg.holderkeys`.
- PersonalDataKeyGranted (recipient `certificates`, to the key offered): keep it
  (still wrapped to that key); issue what was waiting for it.
- CitizenErased: delete the key pair, the grant and the names, revoke the citizen's
  certificates (`citizen_erased`) and delete their signed payloads: a
  certificate nobody can account for any more must not keep verifying, and
  the payload is personal data. The revocation list keeps only UVCI hashes.

administration.events.v1
- DoseAdministered: issue the dose's certificate (pending until the names arrive).
- DoseCorrected: when what the certificate says changed, revoke it and issue
  one that `supersedes` it; a correction that changes nothing in the DCC
  (e.g. the time of day) keeps it.
- DoseVoided: revoke it (`dose_voided`).

inventory.events.v1
- LotRecalled: revoke the certificate of every dose from the lot
  (`lot_recalled`); doses from it that arrive later get none.

Every change runs in the consumer's transaction: the dose, citizen or lot row
is written, then each affected dose is reconciled (`reconcile_dose`): its
Certificate stream loaded, `certificate_due` and `decide` (domain.py) asked what
to change, the events appended on the same connection, and the HC1 signed and
stored for an issue. A conflicting append rolls the message back and the
consumer decides it again. `reconcile_dose` is written against any event store
and any `CertificateBooks`, so it also runs on the in-memory store
(tests/unit/certificates/test_certificates_handlers.py).

Races between replicas. A dose and its holder's key arrive on different
topics, as may a dose and a recall of its lot; two transactions that each
miss the other's uncommitted row would both conclude "nothing to do". So
every path takes transaction-scoped advisory locks before reading: the
citizen first, then lots in sorted order (a recall takes only its lot). A
deadlock across replicas is possible only between batches in opposite
orders; PostgreSQL breaks it and the consumer re-reads the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import asyncpg
import msgspec
from cryptography import x509
from prometheus_client import Counter

from immunreg import holderkeys
from immunreg.config import Settings
from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.certificates import (
    CONTEXT,
    CertificateIssued,
    CertificateRevoked,
    SigningKeyRevoked,
)
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Envelope, Event, Metadata
from immunreg.contracts.inventory import LotRecalled
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    ContactDetailsChanged,
    PersonalData,
    PersonalDataKeyGranted,
)
from immunreg.domain import Conflict
from immunreg.eventstore.database import Connection
from immunreg.eventstore.locks import LockKey, lock_all_for_transaction
from immunreg.eventstore.store import EventStore, StreamStore
from immunreg.messaging.reactions import Reactions
from immunreg.observability.metrics import Metrics
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.sealing import UnsealError, unseal

from . import readmodel, render
from .cose import cwt_claims, encode_hc1, sign1
from .domain import (
    CERTIFICATE,
    PRODUCT_OUTSIDE_CATALOG,
    SIGNING_KEY,
    Reconcile,
    RevokeSigningKey,
    certificate_due,
    issuance,
    signing_key_stream_id,
    stream_id,
)
from .hcert import Holder, IssuerConfig, Vaccination, build_payload
from .hsm import Pkcs11EcKey
from .keys import (
    KeyConfigError,
    SignerConfig,
    SigningKey,
    TrustedKey,
    TrustList,
    build_trust_list,
    kid_text,
    load_cscas,
    load_signing_key,
    load_trusted_dir,
    rotate_dev_signing_key,
    signer_config,
    trusted_dir,
)
from .readmodel import DoseHolder, DoseOnFile
from .uvci import new_uvci
from .verify import Reason, Verification, uvci_sha256, verify

log = logging.getLogger(__name__)

RECIPIENT = "certificates"  # the name registration grants data keys to
TRUST_REFRESH_SECONDS = 5.0

Tx = TypeVar("Tx")
# The books only take the transaction handle (never return one), hence contravariant.
Tx_contra = TypeVar("Tx_contra", contravariant=True)

_sealed_decoder = msgspec.json.Decoder(Sealed)
_personal_decoder = msgspec.json.Decoder(PersonalData)


class CertificateMetrics:
    """Domain counters (created once per app)."""

    def __init__(self, metrics: Metrics) -> None:
        self.issued: Counter = metrics.counter(
            "immunreg_certificates_issued_total", "Certificates signed, by product.", ["product"]
        )
        self.revoked: Counter = metrics.counter(
            "immunreg_certificates_revoked_total", "Certificates revoked, by reason.", ["reason"]
        )
        self.verified: Counter = metrics.counter(
            "immunreg_certificates_verified_total",
            "POST /v1/verify answers, by reason.",
            ["reason"],
        )
        self.refused_keys: Counter = metrics.counter(
            "immunreg_certificates_key_grants_refused_total",
            "PersonalDataKeyGranted for certificates that is not for a key it holds now.",
        )
        self.unissuable: Counter = metrics.counter(
            "immunreg_certificates_doses_without_certificate_total",
            "Doses no DCC can be made for (product outside the EU value sets, bad numbers).",
        )
        self.qr_rendered: Counter = metrics.counter(
            "immunreg_certificates_qr_rendered_total",
            "Certificates whose QR images were rendered, by who rendered them "
            "(at issue; for certificates issued before that, the background renderer or a "
            "download that came first).",
            ["by"],
        )


@dataclass(eq=False)
class Issuer:
    """What this process signs and verifies with, and the issuer it signs as.

    `signer` changes on rotation and `trust` on every refresh; the rest is fixed at start.
    """

    signer: SigningKey
    signer_config: SignerConfig
    config: IssuerConfig
    cscas: list[x509.Certificate] = field(default_factory=list)  # what every DSC chains to
    foreign: list[TrustedKey] = field(default_factory=list)
    metrics: CertificateMetrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    trust: TrustList = field(init=False)
    trust_loaded_at: float = 0.0
    # kids of DSCs refused from the trust list (each logged once)
    refused: set[bytes] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.trust = TrustList([])


@dataclass(frozen=True)
class Dependencies:
    """What the reactions are given besides the consumer's connection."""

    store: EventStore
    issuer: Issuer


# --- keys and trust -------------------------------------------------------------------


async def start_issuer(
    pool: asyncpg.Pool, settings: Settings, metrics: CertificateMetrics | None = None
) -> Issuer:
    """Load the keys the settings name (dev keys created), check the signer's chain, record
    it, load trust. A signer that chains to no configured CSCA, or was revoked, is refused."""
    config = IssuerConfig.from_settings(settings)
    signer_cfg = signer_config(settings)
    signer = load_signing_key(signer_cfg, config.country)
    if signer.certificate.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=1):
        if not signer_cfg.development or signer_cfg.dev_dir is None:
            raise RuntimeError("the configured DSC expires within a day: configure a new one")
        signer = rotate_dev_signing_key(signer_cfg.dev_dir, config.country)
    issuer = Issuer(
        signer=signer,
        signer_config=signer_cfg,
        config=config,
        cscas=load_cscas(settings, signer_cfg),
        foreign=load_trusted_dir(trusted_dir(settings)),
        metrics=metrics,
    )
    trust = await refresh_trust(issuer, pool)
    own = trust.get(signer.kid)
    if own is None:
        raise KeyConfigError(
            f"the DSC {kid_text(signer.kid)} does not chain to any configured CSCA "
            "(CERTIFICATES_CSCA_DIR)"
        )
    if own.revoked is not None:
        raise KeyConfigError(
            f"the DSC {kid_text(signer.kid)} was revoked ({own.revoked.reason}): "
            "configure a new one"
        )
    # On the trust list for good before it signs anything.
    await readmodel.record_signer(pool, issuer.signer)
    return issuer


def stop_issuer(issuer: Issuer) -> None:
    """Close what the signer holds open (a PKCS#11 session)."""
    if isinstance(issuer.signer.private_key, Pkcs11EcKey):
        issuer.signer.private_key.close()


async def refresh_trust(issuer: Issuer, pool: asyncpg.Pool) -> TrustList:
    """Rebuild the trust list: the signer, every DSC ever used here (newest first), then
    foreign ones; only those that chain to a configured CSCA, revoked ones marked."""
    own = [TrustedKey.of(c, "issuer") for c in await readmodel.signing_certificates(pool)]
    trust, refused = build_trust_list(
        [issuer.signer.trusted, *own, *issuer.foreign],
        issuer.cscas,
        await readmodel.signer_revocations(pool),
    )
    for key, why in refused:
        if key.kid not in issuer.refused:
            issuer.refused.add(key.kid)
            log.warning(
                "a DSC is left off the trust list: %s",
                why,
                extra={"kid": kid_text(key.kid), "source": key.source},
            )
    issuer.trust = trust
    issuer.trust_loaded_at = issuer.clock().timestamp()
    return issuer.trust


async def trust_for(issuer: Issuer, pool: asyncpg.Pool, kid: bytes | None) -> TrustList:
    """The trust list, reloaded first if `kid` is unknown (another replica may have rotated)."""
    stale = issuer.clock().timestamp() - issuer.trust_loaded_at > TRUST_REFRESH_SECONDS
    if kid is not None and issuer.trust.get(kid) is None and stale:
        return await refresh_trust(issuer, pool)
    return issuer.trust


async def rotate_signing_key(issuer: Issuer, pool: asyncpg.Pool) -> SigningKey:
    """Sign with a new development DSC from now on; the old one stays trusted."""
    if issuer.signer_config.dev_dir is None:
        raise Conflict(
            "rotation_needs_configuration",
            "the signer is configured (key file or PKCS#11): issue a new DSC with "
            "`immunreg certificates dsc issue`, configure it and restart (the current one "
            "stays on the trust list)",
        )
    new = rotate_dev_signing_key(issuer.signer_config.dev_dir, issuer.config.country)
    previous = issuer.signer
    issuer.signer = new
    try:
        await readmodel.record_signer(pool, new)
    except BaseException:
        issuer.signer = previous
        raise
    await refresh_trust(issuer, pool)
    return new


async def revoke_signing_key(
    issuer: Issuer,
    store: EventStore,
    kid: bytes,
    reason: str,
    *,
    metadata: Metadata | None = None,
) -> tuple[TrustedKey, bool]:
    """Revoke a DSC on the trust list (not the one signing now): recorded as a
    `SigningKeyRevoked` event with its row in `signer_revocations`, in one transaction.
    The key as the trust list now shows it, and whether this call revoked it."""
    trust = await refresh_trust(issuer, store.pool)
    key = trust.get(kid)
    command = RevokeSigningKey(
        kid=kid_text(kid),
        reason=reason,
        listed=key is not None,
        active=kid == issuer.signer.kid,
        country=key.country if key is not None else None,
        source=key.source if key is not None else "issuer",
    )

    async def work(conn: Connection) -> bool:
        outcome = await store.execute_in(
            conn, SIGNING_KEY, signing_key_stream_id(kid), command, metadata=metadata
        )
        for envelope in outcome.events:
            event = CONTEXT.read(envelope)
            assert isinstance(event, SigningKeyRevoked)
            await readmodel.record_signer_revocation(conn, kid, event.reason, envelope.recorded_at)
        return bool(outcome.events)

    revoked = await store.transact(work)
    revoked_key = (await refresh_trust(issuer, store.pool)).get(kid)
    assert revoked_key is not None
    return revoked_key, revoked


async def verify_hc1(
    issuer: Issuer, pool: asyncpg.Pool, hc1: str, now: datetime, at: datetime | None = None
) -> Verification:
    """Verify an `HC1:` string on the clock `now` (`at`: the moment a caller asks about; it
    can only make the expiry check stricter) against the trust list and this issuer's
    revocations."""
    result = verify(hc1, issuer.trust, now, at=at)
    if result.reason is Reason.UNKNOWN_KEY and result.kid is not None:
        result = verify(hc1, await trust_for(issuer, pool, result.kid), now, at=at)
    uvci = result.uvci
    signed = result.reason in (Reason.OK, Reason.EXPIRED)
    if signed and uvci is not None and await readmodel.is_revoked(pool, uvci_sha256(uvci)):
        result = result.revoked()
    if issuer.metrics is not None:
        issuer.metrics.verified.labels(result.reason.value).inc()
    return result


def sign_hc1(issuer: Issuer, holder: Holder, event: CertificateIssued, signer: SigningKey) -> str:
    """Sign the certificate an issue event describes."""
    product = vaccine_catalog()[event.product_code]
    assert event.vaccination_date is not None
    payload = build_payload(
        holder,
        Vaccination(
            product=product,
            dose_number=event.dose_number,
            total_doses=event.total_doses,
            vaccination_date=event.vaccination_date,
            country=event.country,
            issuer=issuer.config.issuer,
            uvci=event.uvci,
        ),
    )
    claims = cwt_claims(
        payload, issuer=event.country, issued_at=event.issued_at, expires_at=event.expires_at
    )
    return encode_hc1(sign1(claims, signer.private_key, signer.kid))


def open_holder(citizen_id: str, on_file: DoseHolder) -> Holder | None:
    """The holder's names, if the granted key and the sealed data are here (else: pending)."""
    if (
        on_file.wrapped_key is None
        or on_file.private_key is None
        or on_file.personal is None
        or on_file.birth_date is None
    ):
        return None
    try:
        key = holderkeys.open_grant(RECIPIENT, citizen_id, on_file.private_key, on_file.wrapped_key)
        sealed = _sealed_decoder.decode(on_file.personal)
        personal = _personal_decoder.decode(unseal(key, sealed, citizen_id.encode()))
    except (UnsealError, ValueError, msgspec.DecodeError):
        log.warning("the granted key does not open the citizen's personal data")
        return None
    return Holder(
        family_name=personal.family_name,
        given_name=personal.given_name,
        birth_date=on_file.birth_date,
    )


# --- reconciling a dose ---------------------------------------------------------------


class CertificateBooks(Protocol[Tx_contra]):
    """What reconciling reads and writes beside the Certificate stream, in its transaction."""

    async def dose_on_file(self, tx: Tx_contra, dose_id: str) -> DoseOnFile | None:
        """The dose, its lot's recall and what is known of its holder."""
        ...

    async def record_issued(
        self, tx: Tx_contra, event: CertificateIssued, hc1: str, images: render.QrImages
    ) -> None:
        """Keep an issued certificate, its `HC1:` string and its QR images."""
        ...

    async def record_revoked(self, tx: Tx_contra, event: CertificateRevoked, at: datetime) -> None:
        """Mark a certificate revoked."""
        ...


class PostgresBooks:
    """The service's books: its tables (readmodel.py)."""

    async def dose_on_file(self, tx: Connection, dose_id: str) -> DoseOnFile | None:
        return await readmodel.dose_on_file(tx, dose_id)

    async def record_issued(
        self, tx: Connection, event: CertificateIssued, hc1: str, images: render.QrImages
    ) -> None:
        await readmodel.record_issued(tx, event, hc1, images)

    async def record_revoked(self, tx: Connection, event: CertificateRevoked, at: datetime) -> None:
        await readmodel.record_revoked(tx, event, at)


BOOKS = PostgresBooks()


async def reconcile_dose(
    store: StreamStore[Tx],
    books: CertificateBooks[Tx],
    issuer: Issuer,
    tx: Tx,
    dose_id: str,
    *,
    metadata: Metadata | None = None,
) -> list[Event]:
    """Make the dose's certificates match what is known of it now; the events appended."""
    on_file = await books.dose_on_file(tx, dose_id)
    if on_file is None:
        return []
    facts = on_file.facts
    due = certificate_due(facts, issuer.config.zone)
    if due.unissuable is not None:
        if due.unissuable == PRODUCT_OUTSIDE_CATALOG:
            log.warning("no DCC for a product outside the catalog", extra={"dose": dose_id})
        if issuer.metrics is not None:
            issuer.metrics.unissuable.inc()
    loaded = await store.load_state(CERTIFICATE, stream_id(dose_id), tx)
    current = loaded.state.current
    holder: Holder | None = None
    if due.content is not None and (current is None or current.content != due.content):
        holder = open_holder(facts.citizen_id, on_file.holder)
    # The signer may rotate meanwhile: sign with the one the issuance names.
    signer = issuer.signer
    new = None
    if holder is not None:
        new = issuance(
            uvci=new_uvci(issuer.config.country),
            now=issuer.clock(),
            validity=issuer.config.validity,
            signer_expires=signer.certificate.not_valid_after_utc,
            key_id=kid_text(signer.kid),
            country=issuer.config.country,
        )
    command = Reconcile(
        dose_id=dose_id,
        citizen_id=facts.citizen_id,
        want=due.content,
        reason=due.reason,
        issuance=new,
    )
    outcome = await store.decide_and_append(
        tx, CERTIFICATE, stream_id(dose_id), loaded, command, metadata=metadata
    )
    events = []
    for envelope in outcome.events:
        event = CONTEXT.read(envelope)
        events.append(event)
        if isinstance(event, CertificateIssued):
            assert holder is not None
            hc1 = sign_hc1(issuer, holder, event, signer)
            # Rendered here, in the transaction that keeps the certificate, so no row is
            # without its images and a download never renders (a few ms: bench.certificates;
            # in a worker thread so the event loop keeps answering meanwhile).
            images = await asyncio.to_thread(render.qr_images, hc1)
            await books.record_issued(tx, event, hc1, images)
            if issuer.metrics is not None:
                issuer.metrics.issued.labels(event.product_code).inc()
                issuer.metrics.qr_rendered.labels("issue").inc()
        elif isinstance(event, CertificateRevoked):
            await books.record_revoked(tx, event, envelope.recorded_at)
            if issuer.metrics is not None:
                issuer.metrics.revoked.labels(event.reason).inc()
    return events


# --- reactions ------------------------------------------------------------------------


async def _lock(conn: Connection, *names: str) -> None:
    """Transaction-scoped advisory locks, in the order given (see the module docstring),
    with one statement."""
    await lock_all_for_transaction(conn, names, key=LockKey.SCHEMA_AND_NAME)


def _citizen_lock(citizen_id: str) -> str:
    return f"certificates:citizen:{citizen_id}"


def _lot_lock(lot_number: str) -> str:
    return f"certificates:lot:{lot_number}"


async def _reconcile_citizen(
    deps: Dependencies, conn: Connection, citizen_id: str, metadata: Metadata
) -> None:
    lots_by_dose = await readmodel.dose_lots_of_citizen(conn, citizen_id)
    await _lock(conn, *(_lot_lock(lot) for lot in sorted(set(lots_by_dose.values()))))
    for dose_id in lots_by_dose:
        await reconcile_dose(deps.store, BOOKS, deps.issuer, conn, dose_id, metadata=metadata)


async def citizen_registered(
    deps: Dependencies, conn: Connection, event: CitizenRegistered, envelope: Envelope
) -> None:
    """Keep the birth date and the sealed names, bind the pooled key granted the
    citizen's data key (or offer one); issue what waited for them."""
    await _lock(conn, _citizen_lock(event.citizen_id))
    await readmodel.keep_citizen(conn, event.citizen_id, event.birth_date, event.personal)
    metadata = Metadata.caused_by(envelope)
    await holderkeys.offer(deps.store, conn, CONTEXT, event, metadata=metadata)
    await _reconcile_citizen(deps, conn, event.citizen_id, metadata)


async def contact_changed(
    deps: Dependencies, conn: Connection, event: ContactDetailsChanged, envelope: Envelope
) -> None:
    """The sealed personal data was re-sealed: keep the new copy (names do not change)."""
    await _lock(conn, _citizen_lock(event.citizen_id))
    await readmodel.replace_personal(conn, event.citizen_id, event.personal)
    await _reconcile_citizen(deps, conn, event.citizen_id, Metadata.caused_by(envelope))


async def key_granted(
    deps: Dependencies, conn: Connection, event: PersonalDataKeyGranted, envelope: Envelope
) -> None:
    """Keep a data key granted to this service's key for the citizen (still wrapped to
    it); issue what waited for it.

    A grant to a key no longer here (the citizen was erased, or registered again with a
    new data key) or one that does not open with it is counted and skipped: no retry
    would ever open it.
    """
    if event.recipient != RECIPIENT:
        return
    await _lock(conn, _citizen_lock(event.citizen_id))
    if not await holderkeys.keep_grant(conn, RECIPIENT, event):
        if deps.issuer.metrics is not None:
            deps.issuer.metrics.refused_keys.inc()
        return
    await _reconcile_citizen(deps, conn, event.citizen_id, Metadata.caused_by(envelope))


async def citizen_erased(
    deps: Dependencies, conn: Connection, event: CitizenErased, envelope: Envelope
) -> None:
    """Drop the key pair, grant and names, revoke the citizen's certificates, delete
    their HC1s."""
    citizen_id = event.citizen_id
    await _lock(conn, _citizen_lock(citizen_id))
    await readmodel.erase_citizen(conn, citizen_id)
    await _reconcile_citizen(deps, conn, citizen_id, Metadata.caused_by(envelope))
    await readmodel.delete_signed_payloads(conn, citizen_id)


async def dose_recorded(
    deps: Dependencies,
    conn: Connection,
    event: DoseAdministered | DoseCorrected,
    envelope: Envelope,
) -> None:
    """A dose was given (or its record corrected): issue, or re-issue, its certificate."""
    # Only this dose's own events (one partition, in order) change its row: reading it
    # before locking is safe, and lets a correction lock both holders and both lots.
    previous = await readmodel.dose_owners(conn, event.dose_id)
    citizens = {event.citizen_id, *([previous.citizen_id] if previous else [])}
    lots = {event.lot_number, *([previous.lot_number] if previous else [])}
    await _lock(
        conn,
        *(_citizen_lock(c) for c in sorted(citizens)),
        *(_lot_lock(lot) for lot in sorted(lots)),
    )
    await readmodel.record_dose(
        conn,
        dose_id=event.dose_id,
        citizen_id=event.citizen_id,
        product_code=event.product_code,
        lot_number=event.lot_number,
        dose_number=event.dose_number,
        series_length=event.series_length,
        administered_at=event.administered_at,
    )
    await reconcile_dose(
        deps.store, BOOKS, deps.issuer, conn, event.dose_id, metadata=Metadata.caused_by(envelope)
    )


async def dose_voided(
    deps: Dependencies, conn: Connection, event: DoseVoided, envelope: Envelope
) -> None:
    """The dose did not happen as recorded: revoke its certificate (or never issue one)."""
    await _lock(conn, _citizen_lock(event.citizen_id), _lot_lock(event.lot_number))
    await readmodel.record_voided_dose(
        conn,
        dose_id=event.dose_id,
        citizen_id=event.citizen_id,
        product_code=event.product_code,
        lot_number=event.lot_number,
        dose_number=event.dose_number,
        voided_at=envelope.occurred_at,
    )
    await reconcile_dose(
        deps.store, BOOKS, deps.issuer, conn, event.dose_id, metadata=Metadata.caused_by(envelope)
    )


async def lot_recalled(
    deps: Dependencies, conn: Connection, event: LotRecalled, envelope: Envelope
) -> None:
    """Revoke the certificate of every dose from the lot (and issue none for later ones)."""
    await _lock(conn, _lot_lock(event.lot_number))
    await readmodel.record_recall(conn, event.lot_number, event.reason, envelope.occurred_at)
    metadata = Metadata.caused_by(envelope)
    for dose_id in await readmodel.doses_of_lot(conn, event.lot_number):
        await reconcile_dose(deps.store, BOOKS, deps.issuer, conn, dose_id, metadata=metadata)


Reaction = Callable[[Dependencies, Connection, Any, Envelope], Awaitable[None]]

# Every reaction of the service: which handler runs when which event arrives.
REACTIONS: tuple[tuple[Any, type[Event], Reaction], ...] = (
    (registration.CONTEXT, CitizenRegistered, citizen_registered),
    (registration.CONTEXT, ContactDetailsChanged, contact_changed),
    (registration.CONTEXT, PersonalDataKeyGranted, key_granted),
    (registration.CONTEXT, CitizenErased, citizen_erased),
    (administration.CONTEXT, DoseAdministered, dose_recorded),
    (administration.CONTEXT, DoseCorrected, dose_recorded),
    (administration.CONTEXT, DoseVoided, dose_voided),
    (inventory.CONTEXT, LotRecalled, lot_recalled),
)


def _given(
    reaction: Reaction, dependencies: Callable[[], Dependencies]
) -> Callable[[Connection, Any, Envelope], Awaitable[None]]:
    async def handle(conn: Connection, event: Any, envelope: Envelope) -> None:
        await reaction(dependencies(), conn, event, envelope)

    return handle


def build_reactions(dependencies: Callable[[], Dependencies]) -> Reactions:
    """The `REACTIONS` table, each handler given the dependencies of the running app."""
    reactions = Reactions()
    for context, event_type, reaction in REACTIONS:
        reactions.add(context, event_type, _given(reaction, dependencies))
    return reactions
