"""A certificates app on a fresh schema with its own keys (signer, unwrap key, a foreign
CSCA and its DSC, an EU test DSC whose CSCA is not configured), fed by publishing
registration, administration and inventory events to the real (shared) topics as those
services' relays would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from immunreg.config import Settings
from immunreg.contracts import administration, inventory, registration
from immunreg.contracts.administration import DoseAdministered, DoseCorrected, DoseVoided
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Context, Envelope, Event, encode_envelope
from immunreg.contracts.inventory import LotRecalled
from immunreg.contracts.registration import (
    CitizenErased,
    CitizenRegistered,
    Consent,
    PersonalData,
    PersonalDataKeyGranted,
    grant_context,
)
from immunreg.eventstore.database import create_pool
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.sealing import WRAP_ALG, new_data_key, seal, wrap_key
from services.certificates.app import build_service
from services.certificates.cose import cwt_claims, encode_hc1, sign1
from services.certificates.hcert import Holder, Vaccination, build_payload
from services.certificates.keys import SigningKey
from services.certificates.pki import issue_dsc, new_csca
from services.certificates.uvci import new_uvci

Client = TestClient[web.Request, web.Application]
DCC_DATA = Path(__file__).parents[2] / "data" / "dcc"
_json = msgspec.json.Encoder()


def quoted(uvci: str) -> str:
    """A UVCI as a path segment (`#` must be %23)."""
    return urllib.parse.quote(uvci, safe="")


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 120.0) -> Any:
    """Poll until `check` returns something truthy (no sleeps as assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


@dataclass
class Citizen:
    """A citizen as registration knows them, with the data key it would grant."""

    citizen_id: str
    given_name: str = "Jelena"
    family_name: str = "Petrović"
    birth_date: date = date(1985, 4, 12)
    key: bytes = field(default_factory=new_data_key)
    key_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Dose:
    """A dose as administration records it."""

    dose_id: str
    citizen_id: str
    lot_number: str
    product_code: str = "EU/1/20/1528"
    dose_number: int = 1
    series_length: int = 2
    administered_at: datetime = field(
        default_factory=lambda: datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    )


class Certificates:
    """The app under test and ways to feed it events and call it."""

    def __init__(
        self,
        client: Client,
        pool: asyncpg.Pool,
        jwt_key: bytes,
        bootstrap: str,
        *,
        foreign: list[SigningKey],
    ) -> None:
        self.bootstrap = bootstrap
        # Foreign DSCs (HR) whose CSCA is configured: one to sign with, one a test revokes.
        self.foreign, self.foreign_to_revoke = foreign
        self.client = client
        self.pool = pool
        self.jwt_key = jwt_key
        self.versions: dict[str, int] = {}

    # --- tokens -----------------------------------------------------------------------

    def auth(self, role: Role, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.jwt_key, role, **claims)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(Role.ADMIN, subject="test-admin")

    def citizen_token(self, citizen_id: str) -> dict[str, str]:
        return self.auth(Role.CITIZEN, citizen_id=citizen_id)

    # --- events -----------------------------------------------------------------------

    def envelope(
        self, context: Context, event: Event, stream_id: str, stream_type: str
    ) -> Envelope:
        version = self.versions.get(stream_id, 0) + 1
        self.versions[stream_id] = version
        return context.envelope(
            event, stream_id=stream_id, stream_type=stream_type, version=version
        )

    async def publish(self, context: Context, *envelopes: Envelope) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await producer.start()
        try:
            for envelope in envelopes:
                await producer.send_and_wait(
                    context.topic, encode_envelope(envelope), key=envelope.stream_id.encode()
                )
        finally:
            await producer.stop()

    def new_citizen(self, **changes: Any) -> Citizen:
        citizen_id = "c-" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]
        return Citizen(citizen_id=citizen_id, **changes)

    async def offered_key(self, citizen: Citizen) -> bytes:
        """The public key certificates offered for the citizen (once it has)."""
        key: bytes = await eventually(
            lambda: self.pool.fetchval(
                "SELECT public_key FROM holder_keys WHERE citizen_id = $1 AND data_key_id = $2",
                citizen.citizen_id,
                citizen.key_id,
            ),
            "certificates offered a key for the citizen",
        )
        return key

    def sealed(self, citizen: Citizen) -> Sealed:
        """The citizen's personal data as registration seals it."""
        personal = PersonalData(
            national_id="0101990710008",
            given_name=citizen.given_name,
            family_name=citizen.family_name,
        )
        return seal(
            citizen.key, _json.encode(personal), citizen.citizen_id.encode(), key_id=citizen.key_id
        )

    def registered(self, citizen: Citizen) -> CitizenRegistered:
        """The citizen's CitizenRegistered, names sealed as registration seals them."""
        return CitizenRegistered(
            citizen_id=citizen.citizen_id,
            birth_date=citizen.birth_date,
            sex="female",
            municipality_code="70092",
            priority_group="general",
            consent=Consent(data_processing=True),
            personal=self.sealed(citizen),
        )

    async def register(self, citizen: Citizen, *, grant_to: bytes | None = None) -> None:
        """CitizenRegistered (names sealed), then, as registration would, the data key
        granted to the key certificates offered for it (or wrapped to `grant_to`)."""
        registered = self.registered(citizen)
        await self.publish(
            registration.CONTEXT,
            self.envelope(registration.CONTEXT, registered, citizen.citizen_id, "Citizen"),
        )
        await self.grant(citizen, grant_to=grant_to)

    async def grant(self, citizen: Citizen, *, grant_to: bytes | None = None) -> None:
        """The data key, granted to the key certificates offered (once it has)."""
        offered = await self.offered_key(citizen)
        context = grant_context(citizen.citizen_id, "certificates")
        granted = PersonalDataKeyGranted(
            citizen_id=citizen.citizen_id,
            recipient="certificates",
            wrapped_key=wrap_key(grant_to or offered, citizen.key, context),
            wrap_alg=WRAP_ALG,
            holder_key=base64.b64encode(offered).decode(),
            data_key_id=citizen.key_id,
        )
        grants = f"key-grants-{citizen.citizen_id}"
        await self.publish(
            registration.CONTEXT,
            self.envelope(registration.CONTEXT, granted, grants, "CitizenKeyGrants"),
        )

    async def erase(self, citizen: Citizen) -> None:
        event = CitizenErased(citizen_id=citizen.citizen_id)
        await self.publish(
            registration.CONTEXT,
            self.envelope(registration.CONTEXT, event, citizen.citizen_id, "Citizen"),
        )

    def new_dose(self, citizen: Citizen, **changes: Any) -> Dose:
        values: dict[str, Any] = {
            "dose_id": str(uuid.uuid4()),
            "citizen_id": citizen.citizen_id,
            "lot_number": f"LT{uuid.uuid4().hex[:8].upper()}",
        }
        values.update(changes)
        return Dose(**values)

    async def administer(self, dose: Dose) -> None:
        event = DoseAdministered(
            dose_id=dose.dose_id,
            citizen_id=dose.citizen_id,
            site_id="SITE-T0001",
            site_municipality_code="70092",
            citizen_municipality_code="70092",
            product_code=dose.product_code,
            lot_number=dose.lot_number,
            dose_number=dose.dose_number,
            series_length=dose.series_length,
            series_complete=dose.dose_number >= dose.series_length,
            administered_at=dose.administered_at,
            age_at_vaccination=40,
            sex="female",
            vaccinator_id="vaccinator-1",
        )
        await self._dose_event(dose, event)

    async def correct(self, dose: Dose) -> None:
        event = DoseCorrected(
            dose_id=dose.dose_id,
            citizen_id=dose.citizen_id,
            site_id="SITE-T0001",
            product_code=dose.product_code,
            lot_number=dose.lot_number,
            dose_number=dose.dose_number,
            series_length=dose.series_length,
            series_complete=dose.dose_number >= dose.series_length,
            administered_at=dose.administered_at,
            reason="entered the wrong dose number",
        )
        await self._dose_event(dose, event)

    async def void(self, dose: Dose) -> None:
        event = DoseVoided(
            dose_id=dose.dose_id,
            citizen_id=dose.citizen_id,
            site_id="SITE-T0001",
            product_code=dose.product_code,
            lot_number=dose.lot_number,
            dose_number=dose.dose_number,
            reason="entered in error",
        )
        await self._dose_event(dose, event)

    async def _dose_event(self, dose: Dose, event: Event) -> None:
        stream = f"dose-{dose.dose_id}"
        ctx = administration.CONTEXT
        await self.publish(ctx, self.envelope(ctx, event, stream, "DoseRecord"))

    async def recall(self, lot_number: str, product_code: str = "EU/1/20/1528") -> None:
        event = LotRecalled(lot_number=lot_number, product_code=product_code, reason="potency")
        ctx = inventory.CONTEXT
        await self.publish(ctx, self.envelope(ctx, event, f"lot-{lot_number}", "Lot"))

    # --- HTTP -------------------------------------------------------------------------

    async def get(self, path: str, headers: dict[str, str] | None = None) -> ClientResponse:
        return await self.client.get(path, headers=headers if headers is not None else self.admin)

    async def json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        response = await self.get(path, headers)
        assert response.status == 200, await response.text()
        return await response.json()

    async def listing(self, citizen_id: str) -> dict[str, Any]:
        body: dict[str, Any] = await self.json(f"/v1/citizens/{citizen_id}/certificates")
        return body

    async def verify(self, hc1: str, at: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"hc1": hc1}
        if at is not None:
            body["at"] = at
        response = await self.client.post("/v1/verify", json=body)
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def certificates_of(
        self, citizen_id: str, count: int, *, valid: int | None = None
    ) -> list[dict[str, Any]]:
        """Wait until the citizen has `count` certificates (`valid` of them valid)."""

        async def ready() -> list[dict[str, Any]] | None:
            certificates: list[dict[str, Any]] = (await self.listing(citizen_id))["certificates"]
            valid_now = sum(1 for c in certificates if c["status"] == "valid")
            if len(certificates) == count and (valid is None or valid_now == valid):
                return certificates
            return None

        found: list[dict[str, Any]] = await eventually(
            ready, f"{citizen_id} has {count} certificates ({valid} valid)"
        )
        return found

    async def status_of(self, uvci: str, status: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            body: dict[str, Any] = await self.json(f"/v1/certificates/{quoted(uvci)}")
            return body if body["status"] == status else None

        found: dict[str, Any] = await eventually(check, f"{uvci} is {status}")
        return found


def foreign_certificate(
    signer: SigningKey, *, issuer: str, issued_at: datetime | None = None
) -> str:
    """A vaccination certificate as another country would issue it, signed by `signer`."""
    issued_at = issued_at or datetime.now(UTC)
    hcert = build_payload(
        Holder(family_name="Horvat", given_name="Ana", birth_date=date(1980, 1, 2)),
        Vaccination(
            product=vaccine_catalog()["EU/1/20/1528"],
            dose_number=1,
            total_doses=2,
            vaccination_date=issued_at.date(),
            country=issuer,
            issuer=f"Ministry of Health {issuer}",
            uvci=new_uvci(issuer),
        ),
    )
    claims = cwt_claims(
        hcert, issuer=issuer, issued_at=issued_at, expires_at=issued_at + timedelta(days=30)
    )
    return encode_hc1(sign1(claims, signer.private_key, signer.kid))


def _foreign_keys(keys: Path) -> tuple[Path, Path, list[SigningKey]]:
    """A foreign country's CSCA (in a CSCA folder) and two DSCs of it (in a trusted-DSC
    folder, beside an EU test DSC whose CSCA nobody configured); the foreign DSCs' keys,
    to sign what that country would issue."""
    cscas, trusted = keys / "csca", keys / "trusted"
    cscas.mkdir()
    trusted.mkdir()
    now = datetime.now(UTC) - timedelta(days=90)  # old enough to sign "long ago"
    croatia = new_csca("HR", now=now)
    pem = serialization.Encoding.PEM
    (cscas / "HR-CSCA.pem").write_bytes(croatia.certificate.public_bytes(pem))
    signers = []
    for number in (1, 2):
        dsc_key = ec.generate_private_key(ec.SECP256R1())
        dsc = issue_dsc(croatia, dsc_key.public_key(), now=now)
        (trusted / f"HR-DSC-{number}.crt").write_bytes(dsc.public_bytes(pem))
        signers.append(SigningKey(dsc_key, dsc))
    test = msgspec.json.decode((DCC_DATA / "AT" / "1.json").read_bytes())
    der = base64.b64decode(test["TESTCTX"]["CERTIFICATE"])
    certificate = x509.load_der_x509_certificate(der)
    (trusted / "AT-DSC-1.pem").write_bytes(certificate.public_bytes(pem))
    return cscas, trusted, signers


@contextlib.asynccontextmanager
async def running_certificates(
    dsn: str, bootstrap: str, keys: Path, extra: dict[str, str] | None = None
) -> AsyncIterator[Certificates]:
    """A certificates app on a fresh schema, its keys under `keys` (development DSC keys
    unless `extra` configures a signer), dropped afterwards."""
    private, public = ensure_dev_keys(keys / "jwt")
    cscas, trusted, foreign = _foreign_keys(keys)
    schema = f"t_cert_{uuid.uuid4().hex[:10]}"
    settings = Settings(
        service="certificates",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        # The verifier's tests send hundreds of anonymous verifications from one address;
        # the limit itself is tested in tests/integration/projections/test_projections_public.py.
        rate_limit_burst=100_000,
        extra={
            "KEYS_DIR": str(keys / "dcc"),
            "CSCA_DIR": str(cscas),
            "TRUSTED_DIR": str(trusted),
            **(extra or {}),
        },
    )
    client: Client = TestClient(TestServer(create_app(build_service(), settings)))
    db = await create_pool(dsn, schema, min_size=1, max_size=4)
    try:
        await client.start_server()  # a start that fails still has its schema dropped
        yield Certificates(client, db, private.read_bytes(), bootstrap, foreign=foreign)
    finally:
        await client.close()
        await db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await db.close()


@pytest.fixture(scope="module")
async def certificates(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Certificates]:
    async with running_certificates(
        dsn, bootstrap, tmp_path_factory.mktemp("certificates-keys")
    ) as app:
        yield app
