"""The administration service on a real server, PostgreSQL and Kafka, one fresh schema per
test module. Its read models are fed the way production feeds them: registration,
inventory and booking events are published (as those services' envelopes, with fresh
ids) onto the real shared topics, and the tests wait for the consumer to apply them."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from immunreg.config import Settings
from immunreg.contracts import booking, inventory, registration
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Context, Event, encode_envelope
from immunreg.eventstore.database import create_pool
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from services.administration.app import service

Client = TestClient[web.Request, web.Application]

COMIRNATY = "EU/1/20/1528"
WAIT_SECONDS = 90.0  # a fresh consumer group first reads the shared topics' whole history


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def new_citizen_id() -> str:
    """A citizen id shaped like registration's (c- and 20 base32 characters), never used."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return "c-" + "".join(secrets.choice(alphabet) for _ in range(20))


@dataclass
class Administration:
    """The running service, a producer onto the shared topics, and request helpers."""

    client: Client
    pool: asyncpg.Pool  # the service's schema, for assertions
    schema: str
    producer: AIOKafkaProducer
    private_pem: bytes
    versions: dict[str, int] = field(default_factory=dict)

    # --- tokens ---------------------------------------------------------------------------

    def auth(self, role: Role, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.private_pem, role, **claims)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(Role.ADMIN, subject="test-admin")

    def staff(self, site_id: str) -> dict[str, str]:
        return self.auth(Role.SITE_STAFF, site_id=site_id, subject=f"nurse@{site_id}")

    def citizen(self, citizen_id: str) -> dict[str, str]:
        return self.auth(Role.CITIZEN, citizen_id=citizen_id)

    # --- other contexts' events, through Kafka ---------------------------------------------

    async def publish(
        self, context: Context, stream_id: str, stream_type: str, event: Event
    ) -> None:
        version = self.versions.get(stream_id, 0) + 1
        self.versions[stream_id] = version
        envelope = context.envelope(
            event, stream_id=stream_id, stream_type=stream_type, version=version
        )
        await self.producer.send_and_wait(
            context.topic, encode_envelope(envelope), key=stream_id.encode()
        )

    async def wait_for(self, sql: str, *args: object) -> None:
        """Poll until `sql` returns true (the consumer applied what we published)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if await self.pool.fetchval(sql, *args):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the read model never satisfied: {sql} {args}")

    async def register(
        self,
        *,
        born: date = date(1970, 5, 5),
        sex: str = "female",
        municipality: str = "70122",
    ) -> str:
        citizen_id = new_citizen_id()
        await self.publish(
            registration.CONTEXT,
            citizen_id,
            "Citizen",
            registration.CitizenRegistered(
                citizen_id=citizen_id,
                birth_date=born,
                sex=sex,  # type: ignore[arg-type]
                municipality_code=municipality,
                priority_group="general",
                consent=registration.Consent(data_processing=True),
                personal=Sealed(key_id="k", nonce="n", ciphertext="sealed"),
            ),
        )
        await self.wait_for(
            "SELECT EXISTS (SELECT 1 FROM citizens WHERE citizen_id = $1)", citizen_id
        )
        return citizen_id

    async def erase(self, citizen_id: str) -> None:
        await self.publish(
            registration.CONTEXT,
            citizen_id,
            "Citizen",
            registration.CitizenErased(citizen_id=citizen_id),
        )
        await self.wait_for(
            "SELECT status = 'erased' FROM citizens WHERE citizen_id = $1", citizen_id
        )

    async def deliver_lot(
        self, site_id: str, *, product: str = COMIRNATY, expires: date | None = None
    ) -> str:
        """A lot received at the national warehouse and shipped to `site_id`."""
        lot = unique("LOT")
        expiry = expires or date.today() + timedelta(days=120)
        await self.publish(
            inventory.CONTEXT,
            f"lot-{lot}",
            "Lot",
            inventory.LotReceived(
                lot_number=lot,
                product_code=product,
                manufacturer_code="ORG-100030215",
                expiry_date=expiry,
                vials=100,
                doses_per_vial=6,
                storage="ultra_cold",
                location_id="WH-NATIONAL",
            ),
        )
        shipment = unique("SHP")
        await self.publish(
            inventory.CONTEXT,
            f"shipment-{shipment}",
            "Shipment",
            inventory.ShipmentReceived(
                shipment_id=shipment,
                lot_number=lot,
                product_code=product,
                to_location=site_id,
                vials_received=10,
                from_location="WH-NATIONAL",
            ),
        )
        await self.wait_for(
            "SELECT EXISTS (SELECT 1 FROM site_lots s JOIN lots l USING (lot_number)"
            " WHERE s.site_id = $1 AND s.lot_number = $2)",
            site_id,
            lot,
        )
        return lot

    async def recall(self, lot: str, product: str = COMIRNATY) -> None:
        await self.publish(
            inventory.CONTEXT,
            f"lot-{lot}",
            "Lot",
            inventory.LotRecalled(lot_number=lot, product_code=product, reason="particles seen"),
        )
        await self.wait_for("SELECT recalled_at IS NOT NULL FROM lots WHERE lot_number = $1", lot)

    async def define_site(self, site_id: str, municipality: str) -> None:
        await self.publish(
            booking.CONTEXT,
            f"site-{site_id}",
            "Site",
            booking.SiteDefined(
                site_id=site_id,
                name=f"Dom zdravlja {site_id}",
                municipality_code=municipality,
                address="Bulevar 1",
            ),
        )
        await self.wait_for("SELECT EXISTS (SELECT 1 FROM sites WHERE site_id = $1)", site_id)

    # --- requests ------------------------------------------------------------------------

    @staticmethod
    def dose(citizen_id: str, site_id: str, lot: str, **changes: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "citizen_id": citizen_id,
            "site_id": site_id,
            "lot_number": lot,
            "product_code": COMIRNATY,
            "dose_number": 1,
            "administered_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
            "vaccinator_id": "V-0007",
            "injection_site": "left_arm",
        }
        body.update(changes)
        return body

    async def record(self, body: dict[str, Any], headers: dict[str, str]) -> str:
        response = await self.client.post("/v1/doses", json=body, headers=headers)
        assert response.status == 201, await response.text()
        dose_id: str = (await response.json())["dose_id"]
        return dose_id

    async def events(self, stream_id: str | None = None) -> list[asyncpg.Record]:
        if stream_id is None:
            return list(await self.pool.fetch("SELECT * FROM events ORDER BY recorded_at"))
        return list(
            await self.pool.fetch(
                "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version", stream_id
            )
        )

    async def count(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM events"))


@pytest.fixture(scope="module")
async def administration(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Administration]:
    keys = tmp_path_factory.mktemp("administration-keys")
    private, public = ensure_dev_keys(keys)
    schema = f"t_adm_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        service="administration",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
    )
    client: Client = TestClient(TestServer(create_app(service, settings)))
    await client.start_server()
    pool = await create_pool(dsn, schema, min_size=1, max_size=4)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while (await client.get("/readyz")).status != 200:
            assert time.monotonic() < deadline, "the consumer never joined"
            await asyncio.sleep(0.2)
        yield Administration(client, pool, schema, producer, private.read_bytes())
    finally:
        await producer.stop()
        await client.close()
        await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await pool.close()
