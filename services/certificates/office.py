"""The certificate office: what happens to certificates when facts arrive, and the keys
it signs and verifies with.

Every change runs in the caller's transaction (the consumer's, for reactions):
the dose, citizen or lot row is written, then each affected dose is
reconciled - its Certificate stream loaded, `decide` asked what to change,
the events appended on the same connection, and the HC1 signed and stored
for an issue. A conflicting append rolls the message back and the consumer
decides it again.

Races between replicas. A dose and its holder's key arrive on different
topics, as may a dose and a recall of its lot; two transactions that each
miss the other's uncommitted row would both conclude "nothing to do". So
every path takes transaction-scoped advisory locks before reading: the
citizen first, then lots in sorted order (a recall takes only its lot). A
deadlock across replicas is possible only between batches in opposite
orders; PostgreSQL breaks it and the consumer re-reads the batch.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import Counter

from immunreg.config import Settings, setting
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.certificates import CONTEXT, CertificateIssued, CertificateRevoked
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Envelope, Metadata
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
from immunreg.eventstore.locks import LockKey, lock_for_transaction
from immunreg.eventstore.store import EventStore
from immunreg.observability.metrics import Metrics
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.sealing import UnsealError, unseal, unwrap_key

from .cose import cwt_claims, encode_hc1, sign1
from .domain import (
    CERTIFICATE,
    CITIZEN_ERASED,
    DOSE_CORRECTED,
    DOSE_VOIDED,
    LOT_RECALLED,
    Content,
    Issuance,
    Reconcile,
    stream_id,
)
from .hcert import Holder, Vaccination, build_payload, dose_numbers, local_date
from .keys import (
    SignerConfig,
    SigningKey,
    TrustedKey,
    TrustList,
    kid_text,
    load_signing_key,
    load_trusted_dir,
    load_unwrap_key,
    rotate_dev_signing_key,
    signer_config,
    trusted_dir,
)
from .uvci import new_uvci
from .verify import uvci_sha256

log = logging.getLogger(__name__)

SERVICE = "certificates"
RECIPIENT = "certificates"  # the name registration grants data keys to
DEFAULT_ISSUER = "Ministry of Health of the Republic of Serbia"
DEFAULT_COUNTRY = "RS"
DEFAULT_VALIDITY_DAYS = 365
DEFAULT_TIMEZONE = "Europe/Belgrade"
KEY_CACHE_SIZE = 10_000
TRUST_REFRESH_SECONDS = 5.0

_personal_decoder = msgspec.json.Decoder(PersonalData)
_sealed_decoder = msgspec.json.Decoder(Sealed)
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class IssuerConfig:
    """Who issues, for how long, and in which time zone a dose's date is counted."""

    issuer: str = DEFAULT_ISSUER  # `is`
    country: str = DEFAULT_COUNTRY  # `co`, the CWT `iss` and the UVCI's country
    validity: timedelta = timedelta(days=DEFAULT_VALIDITY_DAYS)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))

    @classmethod
    def from_settings(cls, settings: Settings) -> IssuerConfig:
        """`CERTIFICATES_ISSUER_NAME`, `_COUNTRY`, `_VALIDITY_DAYS`, `_TIMEZONE`."""

        def get(name: str, default: str) -> str:
            return settings.extra.get(name) or setting(name, SERVICE) or default

        return cls(
            issuer=get("ISSUER_NAME", DEFAULT_ISSUER),
            country=get("COUNTRY", DEFAULT_COUNTRY).upper(),
            validity=timedelta(days=int(get("VALIDITY_DAYS", str(DEFAULT_VALIDITY_DAYS)))),
            zone=ZoneInfo(get("TIMEZONE", DEFAULT_TIMEZONE)),
        )


class OfficeMetrics:
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
            "PersonalDataKeyGranted for certificates that this service's key cannot unwrap.",
        )
        self.unissuable: Counter = metrics.counter(
            "immunreg_certificates_doses_without_certificate_total",
            "Doses no DCC can be made for (product outside the EU value sets, bad numbers).",
        )


class _KeyCache:
    """Unwrapped citizen data keys, by (citizen, wrapped form): spares an RSA decryption per
    certificate. Consulted only after reading the wrapped key from `citizen_keys`, so an
    erased citizen's key (row deleted) is never used again."""

    def __init__(self, size: int = KEY_CACHE_SIZE) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def get(self, citizen_id: str, wrapped: str, unwrap: Callable[[str], bytes]) -> bytes:
        entry = (citizen_id, wrapped)
        key = self._keys.get(entry)
        if key is None:
            key = unwrap(wrapped)
            self._keys[entry] = key
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(entry)
        return key

    def forget(self, citizen_id: str) -> None:
        for entry in [e for e in self._keys if e[0] == citizen_id]:
            del self._keys[entry]


def metadata_of(envelope: Envelope) -> Metadata:
    """Events decided in reaction to `envelope` are caused by it."""
    return Metadata(correlation_id=envelope.correlation_id, causation_id=envelope.event_id)


async def _lock(conn: Connection, *keys: str) -> None:
    """Transaction-scoped advisory locks, in the order given (see the module docstring)."""
    for key in keys:
        await lock_for_transaction(conn, key, key=LockKey.SCHEMA_AND_NAME)


def _citizen_lock(citizen_id: str) -> str:
    return f"certificates:citizen:{citizen_id}"


def _lot_lock(lot_number: str) -> str:
    return f"certificates:lot:{lot_number}"


class CertificateOffice:
    """Issues, re-issues and revokes certificates; holds the signing and trust keys."""

    def __init__(
        self,
        store: EventStore,
        *,
        signer: SigningKey,
        signer_config: SignerConfig,
        unwrap_key: rsa.RSAPrivateKey,
        config: IssuerConfig,
        foreign: Iterable[TrustedKey] = (),
        metrics: OfficeMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.signer = signer
        self.signer_config = signer_config
        self.unwrap_key = unwrap_key
        self.config = config
        self.foreign = list(foreign)
        self.metrics = metrics
        self.clock = clock
        self.trust = TrustList([signer.trusted, *self.foreign])
        self._trust_loaded_at = 0.0
        self._keys = _KeyCache()

    @classmethod
    async def start(
        cls, store: EventStore, settings: Settings, metrics: OfficeMetrics | None = None
    ) -> CertificateOffice:
        """Load the keys the settings name (dev keys created), record the signer, load trust."""
        config = IssuerConfig.from_settings(settings)
        signer_cfg = signer_config(settings)
        signer = load_signing_key(signer_cfg, config.country)
        if signer.certificate.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=1):
            if not signer_cfg.development or signer_cfg.dev_dir is None:
                raise RuntimeError("the configured DSC expires within a day: configure a new one")
            signer = rotate_dev_signing_key(signer_cfg.dev_dir, config.country)
        office = cls(
            store,
            signer=signer,
            signer_config=signer_cfg,
            unwrap_key=load_unwrap_key(settings),
            config=config,
            foreign=load_trusted_dir(trusted_dir(settings)),
            metrics=metrics,
        )
        await office.record_signer()
        await office.refresh_trust()
        return office

    # --- keys -----------------------------------------------------------------------

    @property
    def unwrap_public_pem(self) -> bytes:
        """What registration wraps data keys for (`KEY_RECIPIENTS=certificates=<this>`)."""
        return self.unwrap_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    async def record_signer(self) -> None:
        """Put the signer's DSC on the trust list for good (before it signs anything)."""
        certificate = self.signer.certificate
        await self.store.pool.execute(
            "INSERT INTO signing_keys (kid, certificate, not_before, not_after) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING",
            self.signer.kid,
            certificate.public_bytes(serialization.Encoding.DER),
            certificate.not_valid_before_utc,
            certificate.not_valid_after_utc,
        )

    async def refresh_trust(self) -> TrustList:
        """Reload the trust list: every DSC ever used here (newest first), then foreign ones."""
        rows = await self.store.pool.fetch(
            "SELECT certificate FROM signing_keys ORDER BY first_used_at DESC, kid"
        )
        own = [
            TrustedKey.of(x509.load_der_x509_certificate(r["certificate"]), "issuer") for r in rows
        ]
        self.trust = TrustList([self.signer.trusted, *own, *self.foreign])
        self._trust_loaded_at = self.clock().timestamp()
        return self.trust

    async def trust_for(self, kid: bytes | None) -> TrustList:
        """The trust list, reloaded first if `kid` is unknown (another replica may have rotated)."""
        stale = self.clock().timestamp() - self._trust_loaded_at > TRUST_REFRESH_SECONDS
        if kid is not None and self.trust.get(kid) is None and stale:
            return await self.refresh_trust()
        return self.trust

    async def rotate(self) -> SigningKey:
        """Sign with a new development DSC from now on; the old one stays trusted."""
        if self.signer_config.dev_dir is None:
            raise Conflict(
                "rotation_needs_configuration",
                "the signer comes from CERTIFICATES_DSC_KEY_FILE/_CERT_FILE: configure the new "
                "DSC there and restart (the current one stays on the trust list)",
            )
        new = rotate_dev_signing_key(self.signer_config.dev_dir, self.config.country)
        previous = self.signer
        self.signer = new
        try:
            await self.record_signer()
        except BaseException:
            self.signer = previous
            raise
        await self.refresh_trust()
        return new

    def issue_hc1(
        self,
        holder: Holder,
        event: CertificateIssued,
        signer: SigningKey,
    ) -> str:
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
                issuer=self.config.issuer,
                uvci=event.uvci,
            ),
        )
        claims = cwt_claims(
            payload, issuer=event.country, issued_at=event.issued_at, expires_at=event.expires_at
        )
        return encode_hc1(sign1(claims, signer.private_key, signer.kid))

    # --- reactions --------------------------------------------------------------------

    async def citizen_registered(
        self, conn: Connection, event: CitizenRegistered, envelope: Envelope
    ) -> None:
        """Keep the birth date and the sealed names; issue what waited for them."""
        await _lock(conn, _citizen_lock(event.citizen_id))
        await conn.execute(
            """
            INSERT INTO citizens (citizen_id, birth_date, personal, erased, updated_at)
            VALUES ($1, $2, $3::text::jsonb, false, now())
            ON CONFLICT (citizen_id) DO UPDATE SET birth_date = excluded.birth_date,
                personal = excluded.personal, erased = false, updated_at = now()
            """,
            event.citizen_id,
            event.birth_date,
            _json.encode(event.personal).decode(),
        )
        await self._reconcile_citizen(conn, event.citizen_id, metadata_of(envelope))

    async def contact_changed(
        self, conn: Connection, event: ContactDetailsChanged, envelope: Envelope
    ) -> None:
        """The sealed personal data was re-sealed: keep the new copy (names do not change)."""
        await _lock(conn, _citizen_lock(event.citizen_id))
        await conn.execute(
            """
            INSERT INTO citizens (citizen_id, personal, updated_at)
            VALUES ($1, $2::text::jsonb, now())
            ON CONFLICT (citizen_id) DO UPDATE SET personal = excluded.personal, updated_at = now()
            WHERE NOT citizens.erased
            """,
            event.citizen_id,
            _json.encode(event.personal).decode(),
        )
        await self._reconcile_citizen(conn, event.citizen_id, metadata_of(envelope))

    async def key_granted(
        self, conn: Connection, event: PersonalDataKeyGranted, envelope: Envelope
    ) -> None:
        """Keep a data key granted to this service (still wrapped); issue what waited for it.

        A grant this service's key cannot open (wrapped for another `certificates`
        key pair, e.g. another deployment's) is counted and skipped: no retry
        would ever open it.
        """
        if event.recipient != RECIPIENT:
            return
        try:
            unwrap_key(self.unwrap_key, event.wrapped_key)
        except (UnsealError, ValueError):
            log.warning("a data key granted to certificates does not unwrap with this key")
            if self.metrics is not None:
                self.metrics.refused_keys.inc()
            return
        await _lock(conn, _citizen_lock(event.citizen_id))
        erased = await conn.fetchval(
            "SELECT erased FROM citizens WHERE citizen_id = $1", event.citizen_id
        )
        if erased:
            return
        await conn.execute(
            """
            INSERT INTO citizen_keys (citizen_id, wrapped_key) VALUES ($1, $2)
            ON CONFLICT (citizen_id) DO UPDATE
                SET wrapped_key = excluded.wrapped_key, granted_at = now()
            """,
            event.citizen_id,
            event.wrapped_key,
        )
        await self._reconcile_citizen(conn, event.citizen_id, metadata_of(envelope))

    async def citizen_erased(
        self, conn: Connection, event: CitizenErased, envelope: Envelope
    ) -> None:
        """Drop the key and names, revoke the citizen's certificates, delete their HC1s."""
        citizen_id = event.citizen_id
        await _lock(conn, _citizen_lock(citizen_id))
        await conn.execute(
            """
            INSERT INTO citizens (citizen_id, erased, updated_at) VALUES ($1, true, now())
            ON CONFLICT (citizen_id) DO UPDATE
                SET erased = true, birth_date = NULL, personal = NULL, updated_at = now()
            """,
            citizen_id,
        )
        await conn.execute("DELETE FROM citizen_keys WHERE citizen_id = $1", citizen_id)
        self._keys.forget(citizen_id)
        await self._reconcile_citizen(conn, citizen_id, metadata_of(envelope))
        await conn.execute("UPDATE certificates SET hc1 = NULL WHERE citizen_id = $1", citizen_id)

    async def dose_recorded(
        self, conn: Connection, event: DoseAdministered | DoseCorrected, envelope: Envelope
    ) -> None:
        """A dose was given (or its record corrected): issue, or re-issue, its certificate."""
        # Only this dose's own events (one partition, in order) change its row: reading it
        # before locking is safe, and lets a correction lock both holders and both lots.
        previous = await conn.fetchrow(
            "SELECT citizen_id, lot_number FROM doses WHERE dose_id = $1", event.dose_id
        )
        citizens = {event.citizen_id, *([previous["citizen_id"]] if previous else [])}
        lots = {event.lot_number, *([previous["lot_number"]] if previous else [])}
        await _lock(
            conn,
            *(_citizen_lock(c) for c in sorted(citizens)),
            *(_lot_lock(lot) for lot in sorted(lots)),
        )
        await conn.execute(
            """
            INSERT INTO doses (dose_id, citizen_id, product_code, lot_number, dose_number,
                               series_length, administered_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, now())
            ON CONFLICT (dose_id) DO UPDATE SET citizen_id = excluded.citizen_id,
                product_code = excluded.product_code, lot_number = excluded.lot_number,
                dose_number = excluded.dose_number, series_length = excluded.series_length,
                administered_at = excluded.administered_at, updated_at = now()
            """,
            event.dose_id,
            event.citizen_id,
            event.product_code,
            event.lot_number,
            event.dose_number,
            event.series_length,
            _aware(event.administered_at),
        )
        await self._reconcile_dose(conn, event.dose_id, metadata_of(envelope))

    async def dose_voided(self, conn: Connection, event: DoseVoided, envelope: Envelope) -> None:
        """The dose did not happen as recorded: revoke its certificate (or never issue one)."""
        await _lock(conn, _citizen_lock(event.citizen_id), _lot_lock(event.lot_number))
        await conn.execute(
            """
            INSERT INTO doses (dose_id, citizen_id, product_code, lot_number, dose_number,
                               series_length, administered_at, voided, updated_at)
            VALUES ($1, $2, $3, $4, $5, $5, $6, true, now())
            ON CONFLICT (dose_id) DO UPDATE SET voided = true, updated_at = now()
            """,
            event.dose_id,
            event.citizen_id,
            event.product_code,
            event.lot_number,
            event.dose_number,
            envelope.occurred_at,
        )
        await self._reconcile_dose(conn, event.dose_id, metadata_of(envelope))

    async def lot_recalled(self, conn: Connection, event: LotRecalled, envelope: Envelope) -> None:
        """Revoke the certificate of every dose from the lot (and issue none for later ones)."""
        await _lock(conn, _lot_lock(event.lot_number))
        await conn.execute(
            "INSERT INTO recalled_lots (lot_number, reason, recalled_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (lot_number) DO NOTHING",
            event.lot_number,
            event.reason,
            envelope.occurred_at,
        )
        doses = await conn.fetch(
            "SELECT dose_id FROM doses WHERE lot_number = $1 ORDER BY dose_id", event.lot_number
        )
        metadata = metadata_of(envelope)
        for row in doses:
            await self._reconcile_dose(conn, row["dose_id"], metadata)

    # --- reconciling ------------------------------------------------------------------

    async def _reconcile_citizen(
        self, conn: Connection, citizen_id: str, metadata: Metadata
    ) -> None:
        doses = await conn.fetch(
            "SELECT dose_id, lot_number FROM doses WHERE citizen_id = $1 ORDER BY dose_id",
            citizen_id,
        )
        await _lock(conn, *(_lot_lock(lot) for lot in sorted({r["lot_number"] for r in doses})))
        for row in doses:
            await self._reconcile_dose(conn, row["dose_id"], metadata)

    async def _reconcile_dose(self, conn: Connection, dose_id: str, metadata: Metadata) -> None:
        dose = await conn.fetchrow(
            """
            SELECT d.*, r.lot_number IS NOT NULL AS recalled,
                   c.birth_date, c.personal::text AS personal, coalesce(c.erased, false) AS erased,
                   k.wrapped_key
            FROM doses d
            LEFT JOIN recalled_lots r ON r.lot_number = d.lot_number
            LEFT JOIN citizens c ON c.citizen_id = d.citizen_id
            LEFT JOIN citizen_keys k ON k.citizen_id = d.citizen_id
            WHERE d.dose_id = $1
            """,
            dose_id,
        )
        if dose is None:
            return
        want, reason = self._wanted(dose)
        loaded = await self.store.load_state(CERTIFICATE, stream_id(dose_id), conn)
        current = loaded.state.current
        holder: Holder | None = None
        if want is not None and (current is None or current.content != want):
            holder = self._holder(dose)
        signer = self.signer
        issuance = None
        if holder is not None:
            now = self.clock()
            issuance = Issuance(
                uvci=new_uvci(self.config.country),
                issued_at=now.replace(microsecond=0),
                expires_at=min(
                    now + self.config.validity, signer.certificate.not_valid_after_utc
                ).replace(microsecond=0),
                key_id=kid_text(signer.kid),
                country=self.config.country,
            )
        command = Reconcile(
            dose_id=dose_id,
            citizen_id=dose["citizen_id"],
            want=want,
            reason=reason,
            issuance=issuance,
        )
        outcome = await self.store.decide_and_append(
            conn, CERTIFICATE, stream_id(dose_id), loaded, command, metadata=metadata
        )
        for envelope in outcome.events:
            event = CONTEXT.read(envelope)
            if isinstance(event, CertificateIssued):
                assert holder is not None
                await self._store_issued(conn, event, self.issue_hc1(holder, event, signer))
            elif isinstance(event, CertificateRevoked):
                await self._store_revoked(conn, event, envelope.recorded_at)

    def _wanted(self, dose: asyncpg.Record) -> tuple[Content | None, str]:
        if dose["voided"]:
            return None, DOSE_VOIDED
        if dose["recalled"]:
            return None, LOT_RECALLED
        if dose["erased"]:
            return None, CITIZEN_ERASED
        if dose["product_code"] not in vaccine_catalog():
            log.warning("no DCC for a product outside the catalog", extra={"dose": dose["dose_id"]})
            if self.metrics is not None:
                self.metrics.unissuable.inc()
            return None, DOSE_CORRECTED
        try:
            dn, sd = dose_numbers(dose["dose_number"], dose["series_length"])
        except ValueError:
            if self.metrics is not None:
                self.metrics.unissuable.inc()
            return None, DOSE_CORRECTED
        return (
            Content(
                citizen_id=dose["citizen_id"],
                product_code=dose["product_code"],
                dose_number=dn,
                total_doses=sd,
                vaccination_date=local_date(dose["administered_at"], self.config.zone),
            ),
            DOSE_CORRECTED,
        )

    def _holder(self, dose: asyncpg.Record) -> Holder | None:
        """The holder's names, if the key and the sealed data are here (else: pending)."""
        if dose["wrapped_key"] is None or dose["personal"] is None or dose["birth_date"] is None:
            return None
        citizen_id = dose["citizen_id"]
        try:
            key = self._keys.get(
                citizen_id, dose["wrapped_key"], lambda w: unwrap_key(self.unwrap_key, w)
            )
            sealed = _sealed_decoder.decode(dose["personal"])
            personal = _personal_decoder.decode(unseal(key, sealed, citizen_id.encode()))
        except (UnsealError, ValueError, msgspec.DecodeError):
            log.warning("the granted key does not open the citizen's personal data")
            return None
        return Holder(
            family_name=personal.family_name,
            given_name=personal.given_name,
            birth_date=dose["birth_date"],
        )

    async def _store_issued(self, conn: Connection, event: CertificateIssued, hc1: str) -> None:
        await conn.execute(
            """
            INSERT INTO certificates (uvci, uvci_sha256, dose_id, citizen_id, product_code,
                dose_number, total_doses, vaccination_date, issued_at, expires_at, key_id,
                supersedes, hc1)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            """,
            event.uvci,
            uvci_sha256(event.uvci),
            event.dose_id,
            event.citizen_id,
            event.product_code,
            event.dose_number,
            event.total_doses,
            event.vaccination_date,
            event.issued_at,
            event.expires_at,
            event.key_id,
            event.supersedes,
            hc1,
        )
        if self.metrics is not None:
            self.metrics.issued.labels(event.product_code).inc()

    async def _store_revoked(
        self, conn: Connection, event: CertificateRevoked, at: datetime
    ) -> None:
        await conn.execute(
            """
            UPDATE certificates SET status = 'revoked', revocation_reason = $2,
                superseded_by = $3, revoked_at = $4
            WHERE uvci = $1
            """,
            event.uvci,
            event.reason,
            event.superseded_by,
            at,
        )
        if self.metrics is not None:
            self.metrics.revoked.labels(event.reason).inc()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
