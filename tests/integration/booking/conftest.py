"""The booking service over a real server, PostgreSQL and Kafka, in a fresh schema.

`booking` has no consumer (tests feed the read models through the real reaction
handlers, so nothing from the shared topics' history gets in); `booking_with_consumer`
consumes the real topics (module-scoped: it reads their history once).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from immunreg.config import Settings
from immunreg.contracts import registration
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Context, Envelope, Event, encode_envelope
from immunreg.contracts.inventory import CONTEXT as INVENTORY
from immunreg.contracts.inventory import StockLevelChanged
from immunreg.contracts.registration import CitizenRegistered, Consent
from immunreg.eventstore.database import create_pool
from immunreg.eventstore.store import EventStore
from immunreg.http.app import STORE_KEY, create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.messaging.reactions import Reactions
from services.booking.app import build_service
from services.booking.config import BookingConfig
from services.booking.handlers import Dependencies, build_reactions

Client = TestClient[web.Request, web.Application]

PFIZER = "EU/1/20/1528"
AZ = "EU/1/21/1529"
SINOPHARM = "BBIBP-CorV"


def sealed() -> Sealed:
    return Sealed(key_id="k", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")


def new_citizen_id() -> str:
    return f"cit_{uuid.uuid4().hex[:20]}"


def new_site_id() -> str:
    return f"SITE-T{uuid.uuid4().hex[:10].upper()}"


def registered(citizen_id: str, **changes: Any) -> CitizenRegistered:
    values: dict[str, Any] = {
        "citizen_id": citizen_id,
        "birth_date": date(1970, 6, 1),
        "sex": "female",
        "municipality_code": "70092",
        "priority_group": "general",
        "conditions": [],
        "vaccine_preferences": ["any"],
        "preferred_municipality_code": None,
        "consent": Consent(data_processing=True),
        "personal": sealed(),
    }
    values.update(changes)
    return CitizenRegistered(**values)


def envelope_of(
    context: Context, event: Event, stream_id: str, stream_type: str, version: int = 1
) -> Envelope:
    return context.envelope(
        event,
        stream_id=stream_id,
        stream_type=stream_type,
        version=version,
        recorded_at=datetime.now(UTC),
    )


@dataclass
class Booking:
    """A running booking service and what tests need around it."""

    client: Client
    pool: asyncpg.Pool  # the service's schema
    schema: str
    private_pem: bytes
    reactions: Reactions = field(default_factory=Reactions)

    def __post_init__(self) -> None:
        # The service's own handlers, on this app's event store, for `feed`.
        dependencies = Dependencies(store=self.store, config=BookingConfig())
        self.reactions = build_reactions(lambda: dependencies)

    def auth(self, role: Role | str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.private_pem, Role(role), **claims)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(Role.ADMIN, subject="test-admin")

    def citizen(self, citizen_id: str) -> dict[str, str]:
        return self.auth(Role.CITIZEN, citizen_id=citizen_id)

    @property
    def store(self) -> EventStore:
        app = self.client.app
        assert app is not None
        return app[STORE_KEY]

    async def define_site(
        self, site_id: str, municipality: str = "70092", capacity: dict[str, int] | None = None
    ) -> dict[str, Any]:
        body = {
            "name": f"Dom zdravlja {site_id}",
            "municipality_code": municipality,
            "address": "Svetog Save 1",
            "daily_capacity": capacity if capacity is not None else {PFIZER: 5},
        }
        response = await self.client.put(f"/v1/sites/{site_id}", json=body, headers=self.admin)
        assert response.status in (200, 201), await response.text()
        result: dict[str, Any] = await response.json()
        return result

    async def feed(self, context: Context, event: Event, envelope: Envelope) -> None:
        """Apply an event through the service's own reaction handler, as the consumer would."""
        entry = self.reactions.lookup(context.topic, event.type_name())
        assert entry is not None
        _, handler = entry
        async with self.pool.acquire() as conn, conn.transaction():
            await handler(conn, event, envelope)

    async def register(self, citizen_id: str | None = None, **changes: Any) -> str:
        citizen_id = citizen_id or new_citizen_id()
        event = registered(citizen_id, **changes)
        await self.feed(
            registration.CONTEXT,
            event,
            envelope_of(registration.CONTEXT, event, citizen_id, "Citizen"),
        )
        return citizen_id

    async def stock(self, site_id: str, product: str, doses: int, version: int = 1) -> None:
        event = StockLevelChanged(location_id=site_id, product_code=product, doses_available=doses)
        await self.feed(
            INVENTORY,
            event,
            envelope_of(INVENTORY, event, f"level-{site_id}:{product}", "StockLevel", version),
        )

    async def start_run(self, from_day: date, horizon_days: int) -> dict[str, Any]:
        """POST a scheduling run: the 202's body (the run, queued)."""
        response = await self.client.post(
            "/v1/scheduling/runs",
            json={"from_day": from_day.isoformat(), "horizon_days": horizon_days},
            headers=self.admin,
        )
        assert response.status == 202, await response.text()
        assert (
            response.headers["Location"]
            == f"/v1/scheduling/runs/{(await response.json())['run_id']}"
        )
        accepted: dict[str, Any] = await response.json()
        return accepted

    async def read_run(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/scheduling/runs/{run_id}", headers=self.admin)
        assert response.status == 200, await response.text()
        view: dict[str, Any] = await response.json()
        return view

    async def finished(self, run_id: str, seconds: float = 60.0) -> dict[str, Any]:
        """The run once it is no longer queued or running (polled)."""
        deadline = asyncio.get_running_loop().time() + seconds
        view = await self.read_run(run_id)
        while view["status"] in ("queued", "running"):
            assert asyncio.get_running_loop().time() < deadline, view
            await asyncio.sleep(0.05)
            view = await self.read_run(run_id)
        return view

    async def run(self, from_day: date, horizon_days: int) -> dict[str, Any]:
        """A scheduling run, started and followed until it completed: its final view."""
        accepted = await self.start_run(from_day, horizon_days)
        view = await self.finished(accepted["run_id"])
        assert view["status"] == "completed", view
        return view

    async def appointments_of(self, citizen_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/v1/citizens/{citizen_id}/appointments", headers=self.citizen(citizen_id)
        )
        assert response.status == 200, await response.text()
        items: list[dict[str, Any]] = (await response.json())["items"]
        return items

    async def counts(self) -> dict[str, int]:
        return {
            table: await self.pool.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("events", "sites", "site_days", "appointments", "background_runs")
        }


async def _start(
    dsn: str,
    bootstrap: str,
    keys: Path,
    *,
    consume: bool,
    schema: str | None = None,
    **extra: str,
) -> tuple[Client, asyncpg.Pool, str, bytes]:
    """A booking app in a fresh schema (or in `schema`, as another process of it would)."""
    private, public = ensure_dev_keys(keys)
    schema = schema or f"t_book_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        service="booking",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        extra={"SCHEDULE_ENABLED": "false", "NO_SHOW_ENABLED": "false", **extra},
    )
    client: Client = TestClient(TestServer(create_app(build_service(consume=consume), settings)))
    await client.start_server()
    pool = await create_pool(dsn, schema, min_size=1, max_size=4)
    return client, pool, schema, private.read_bytes()


async def _stop(client: Client, pool: asyncpg.Pool, schema: str) -> None:
    await client.close()
    await pool.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await pool.close()


@pytest.fixture
async def booking(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Booking]:
    client, pool, schema, pem = await _start(
        dsn, bootstrap, tmp_path_factory.mktemp("booking-keys"), consume=False, COMMIT_BATCH="7"
    )
    try:
        yield Booking(client=client, pool=pool, schema=schema, private_pem=pem)
    finally:
        await _stop(client, pool, schema)


@pytest.fixture(scope="module")
async def booking_with_consumer(
    dsn: str, bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Booking]:
    client, pool, schema, pem = await _start(
        dsn, bootstrap, tmp_path_factory.mktemp("booking-keys"), consume=True
    )
    try:
        yield Booking(client=client, pool=pool, schema=schema, private_pem=pem)
    finally:
        await _stop(client, pool, schema)


@pytest.fixture(scope="module")
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    kafka = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


async def publish(
    producer: AIOKafkaProducer,
    context: Context,
    event: Event,
    stream_id: str,
    stream_type: str,
    *,
    version: int = 1,
) -> None:
    """Publish an event on the context's real topic, in its envelope, keyed by stream id."""
    envelope = envelope_of(context, event, stream_id, stream_type, version)
    await producer.send_and_wait(context.topic, encode_envelope(envelope), key=stream_id.encode())
