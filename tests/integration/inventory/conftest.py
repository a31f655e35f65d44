"""An inventory app on a fresh schema, with tokens and a few helpers over HTTP."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from immunreg.config import Settings
from immunreg.eventstore.database import Connection
from immunreg.http.app import CONSUMER_KEY, create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from services.inventory.app import LEDGER_KEY, build_service
from services.inventory.handlers import Ledger

Client = TestClient[web.Request, web.Application]

PRODUCTS = {
    "EU/1/20/1528": ("ORG-100030215", 6),
    "EU/1/20/1507": ("ORG-100031184", 10),
    "BBIBP-CorV": ("ORG-100020693", 1),
}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


def site() -> str:
    """A site id no other test (or engineer) uses: doses on the shared topic name it."""
    return f"SITE-T{uuid.uuid4().hex[:10].upper()}"


class Inventory:
    """The app under test, its database, and requests as logistics or site staff."""

    def __init__(self, client: Client, private_key: bytes) -> None:
        self.client = client
        self.app = client.app
        self.private_key = private_key
        self.logistics = self.headers(Role.LOGISTICS)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[POOL_KEY]

    @property
    def ledger(self) -> Ledger[Connection]:
        return self.app[LEDGER_KEY]

    def headers(self, role: Role, site_id: str | None = None) -> dict[str, str]:
        token = issue_token(self.private_key, role, site_id=site_id)
        return {"Authorization": f"Bearer {token}"}

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> ClientResponse:
        kwargs: dict[str, Any] = {"headers": headers or self.logistics}
        if body is not None:
            kwargs["json"] = body
        return await self.client.post(path, **kwargs)

    async def ok(self, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        response = await self.post(path, body, **kw)
        assert response.status == status, await response.text()
        return await response.json()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        response = await self.client.get(path, headers=headers or self.logistics)
        assert response.status == 200, await response.text()
        return await response.json()

    async def receive_lot(
        self,
        vials: int,
        *,
        product: str = "EU/1/20/1528",
        location: str = "WH-NATIONAL",
        expiry: date | None = None,
    ) -> str:
        lot = unique("LT")
        manufacturer, doses = PRODUCTS[product]
        await self.ok(
            "/v1/lots",
            {
                "lot_number": lot,
                "product_code": product,
                "manufacturer_code": manufacturer,
                "expiry_date": (expiry or date.today() + timedelta(days=90)).isoformat(),
                "vials": vials,
                "doses_per_vial": doses,
                "location_id": location,
            },
            status=201,
        )
        return lot

    async def ship(
        self, lot: str, to: str, vials: int, *, source: str = "WH-NATIONAL", receive: bool = True
    ) -> str:
        shipment = await self.ok(
            "/v1/shipments",
            {"lot_number": lot, "from_location": source, "to_location": to, "vials": vials},
            status=201,
        )
        shipment_id: str = shipment["shipment_id"]
        await self.ok(f"/v1/shipments/{shipment_id}/dispatch")
        if receive:
            await self.ok(f"/v1/shipments/{shipment_id}/receive", {"vials_received": vials})
        return shipment_id

    async def stock(self, location: str, lot: str) -> dict[str, Any]:
        body = await self.get(f"/v1/sites/{location}/stock")
        [row] = [r for r in body["lots"] if r["lot_number"] == lot]
        return row  # type: ignore[no-any-return]

    async def events(self, stream_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version", stream_id
        )
        return [r["type"] for r in rows]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0
) -> None:
    """Poll until `check` holds (no sleeps as assertions)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


_LAG = re.compile(r"^immunreg_consumer_lag_messages\{[^}]*\} (\S+)$", re.MULTILINE)


async def caught_up(app: web.Application, partitions: int) -> bool:
    """The consumer has joined and reports no lag on any of its partitions."""
    if not app[CONSUMER_KEY].joined.is_set():
        return False
    lags = _LAG.findall(app[METRICS_KEY].exposition().decode())
    return len(lags) >= partitions and all(float(lag) == 0 for lag in lags)


@pytest.fixture
async def inventory(dsn: str, bootstrap: str, tmp_path: Path) -> AsyncIterator[Inventory]:
    schema = f"t_inv_{uuid.uuid4().hex[:10]}"
    private, public = ensure_dev_keys(tmp_path / "keys")
    settings = Settings(
        service="inventory",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        extra={"expiry_interval": "0.5"},
    )
    service = build_service()
    client: Client = TestClient(TestServer(create_app(service, settings)))
    await client.start_server()
    try:
        # Its consumer reads the session's topics from the start (other tests' doses and
        # supply deliveries among them): a test begins once that backlog is applied.
        assert service.reactions is not None
        partitions = len(service.reactions.topics) * settings.kafka_partitions
        await eventually(lambda: caught_up(client.app, partitions), "the backlog is applied")
        yield Inventory(client, private.read_bytes())
    finally:
        await client.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
