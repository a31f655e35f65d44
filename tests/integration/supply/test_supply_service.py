"""Supply on the real PostgreSQL (and Kafka for the app): what its reactions learn becomes
the planner's input, and a run accepted before a crash is planned after the restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from immunreg.config import Settings
from immunreg.contracts import booking, inventory, registration
from immunreg.contracts.common import Sealed
from immunreg.contracts.envelope import Context, Envelope, Event
from immunreg.contracts.registration import Consent
from immunreg.eventstore.database import Connection
from immunreg.eventstore.store import EventStore
from immunreg.http.app import create_app
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from services.supply.allocation import AllocationInput
from services.supply.app import SCHEMA_FILE, build_service
from services.supply.domain import RequestRun
from services.supply.handlers import PostgresBooks, Supply, build_reactions, request_run
from services.supply.readmodel import allocation_input, supply_observations

from ..conftest import SchemaFactory

COMIRNATY = "EU/1/20/1528"  # 6 doses a vial, ultra cold
TOMORROW = date.today() + timedelta(days=1)
SEALED = Sealed(key_id="k", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")


class Feed:
    """Events handed to supply's reactions as the consumer would, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.reactions = build_reactions()
        self.versions: dict[str, int] = {}

    async def __call__(self, context: Context, event: Event, stream: str) -> None:
        self.versions[stream] = self.versions.get(stream, 0) + 1
        envelope: Envelope = context.envelope(
            event, stream_id=stream, stream_type="x", version=self.versions[stream]
        )
        found = self.reactions.lookup(context.topic, envelope.type)
        assert found is not None, envelope.type
        await found[1](self.conn, event, envelope)


async def supply_schema(make_schema: SchemaFactory) -> tuple[str, asyncpg.Pool]:
    schema, pool = await make_schema()
    async with pool.acquire() as conn:
        await conn.execute(SCHEMA_FILE.read_text())
    return schema, pool


async def test_what_supply_hears_becomes_the_planners_input(make_schema: SchemaFactory) -> None:
    _, pool = await supply_schema(make_schema)
    async with pool.acquire() as conn:
        feed = Feed(conn)
        b, i, r = booking.CONTEXT, inventory.CONTEXT, registration.CONTEXT
        await feed(
            b,
            booking.SiteDefined(
                site_id="SITE-1",
                name="s",
                municipality_code="70092",
                address="a",
                daily_capacity={COMIRNATY: 10},
            ),
            "site-SITE-1",
        )
        await feed(
            b,
            booking.SiteCapacityChanged(site_id="SITE-1", day=TOMORROW + timedelta(1), closed=True),
            "siteday",
        )
        for n in range(3):
            await feed(
                b,
                booking.AppointmentBooked(
                    appointment_id=f"A{n}",
                    citizen_id=f"C{n}",
                    site_id="SITE-1",
                    municipality_code="70092",
                    day=TOMORROW,
                    product_code=COMIRNATY,
                    dose_number=1,
                    reason="r",
                ),
                f"appointment-A{n}",
            )
        await feed(
            b,
            booking.AppointmentCancelled(
                appointment_id="A2",
                citizen_id="C2",
                site_id="SITE-1",
                day=TOMORROW,
                product_code=COMIRNATY,
                reason="r",
            ),
            "appointment-A2",
        )
        for n in range(4):  # C0 and C1 are booked; C2 and C3 wait
            await feed(
                r,
                registration.CitizenRegistered(
                    citizen_id=f"C{n}",
                    birth_date=date(1970, 1, 1),
                    sex="female",
                    municipality_code="70092",
                    priority_group="general",
                    vaccine_preferences=[COMIRNATY] if n % 2 else [],
                    consent=Consent(data_processing=True),
                    personal=SEALED,
                ),
                f"citizen-C{n}",
            )
        await feed(
            i,
            inventory.LotReceived(
                lot_number="L1",
                product_code=COMIRNATY,
                manufacturer_code="ORG-100030215",
                expiry_date=TOMORROW + timedelta(days=30),
                vials=100,
                doses_per_vial=6,
                storage="ultra_cold",
                location_id="WH-NATIONAL",
            ),
            "lot-L1",
        )
        await feed(
            i,
            inventory.StockReceived(
                location_id="WH-NATIONAL",
                lot_number="L1",
                product_code=COMIRNATY,
                vials=100,
                doses_per_vial=6,
                expiry_date=TOMORROW + timedelta(days=30),
            ),
            "stock-WH-NATIONAL:L1",
        )
        moving = {"lot_number": "L1", "product_code": COMIRNATY, "from_location": "WH-NATIONAL"}
        await feed(
            i,
            inventory.StockDispatched(
                location_id="WH-NATIONAL",
                lot_number="L1",
                product_code=COMIRNATY,
                vials=10,
                shipment_id="S1",
                to_location="SITE-1",
            ),
            "stock-WH-NATIONAL:L1",
        )
        for shipment, vials in (("S1", 10), ("S2", 5)):
            await feed(
                i,
                inventory.ShipmentCreated(
                    shipment_id=shipment, to_location="SITE-1", vials=vials, **moving
                ),
                f"shipment-{shipment}",
            )
        await feed(
            i,
            inventory.ShipmentDispatched(
                shipment_id="S1", to_location="SITE-1", vials=10, **moving
            ),
            "shipment-S1",
        )
        level = inventory.StockLevelChanged(
            location_id="SITE-1", product_code=COMIRNATY, doses_available=7
        )
        await feed(i, level, "level-SITE-1")

    data = await allocation_input(pool, TOMORROW, 3, date.today())
    (site,) = data.sites
    assert (site.district_code, site.storages) == (
        "RS-00",
        frozenset({"refrigerated", "ultra_cold"}),
    )
    assert data.booked == {("SITE-1", TOMORROW, COMIRNATY): 2}
    assert data.free_slots == {
        ("SITE-1", TOMORROW, COMIRNATY): 8,
        ("SITE-1", TOMORROW + timedelta(days=2), COMIRNATY): 10,
    }  # the day after tomorrow is closed
    assert data.waiting == {("70092", "any"): 1, ("70092", COMIRNATY): 1}
    assert data.on_hand == {("SITE-1", COMIRNATY): 7}
    assert data.in_transit == {("SITE-1", COMIRNATY): 15 * 6}
    # 100 received, 10 dispatched, 5 more promised to a planned shipment.
    assert [(x.lot_number, x.storage, x.vials) for x in data.lots] == [("L1", "ultra_cold", 85)]
    observed = await supply_observations(pool, TOMORROW, 7)
    assert observed == [("SITE-1", COMIRNATY, 7 + 90, 2 / 7)]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 60
    while not await check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.2)


async def test_a_run_accepted_before_a_crash_is_planned_after_the_restart(
    make_schema: SchemaFactory, dsn: str, bootstrap: str, tmp_path: Path
) -> None:
    schema, pool = await supply_schema(make_schema)

    async def no_input(start: date, days: int, today: date) -> AllocationInput:
        raise AssertionError("nothing is planned before the restart")

    accepted = Supply(store=EventStore(pool), books=PostgresBooks(), inputs=no_input)
    await request_run(
        accepted,
        RequestRun(run_id="R-CRASH", from_day=TOMORROW, horizon_days=3, today=date.today()),
    )
    private, public = ensure_dev_keys(tmp_path / "keys")
    settings = Settings(
        service="supply",
        database_url=dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        jwt_jwks_file=str(public),
        relay_poll_interval=0.1,
        extra={"planner_interval": "0.2", "replenishment_interval": "0.2"},
    )
    token = issue_token(private.read_bytes(), Role.LOGISTICS)
    async with TestClient(TestServer(create_app(build_service(), settings))) as client:

        async def planned() -> bool:
            response = await client.get(
                "/v1/allocation-runs/R-CRASH", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status == 200, await response.text()
            return bool((await response.json())["status"] == "proposed")

        await eventually(planned, "the run accepted before the crash to be planned")
        metrics = await (await client.get("/metrics")).text()
        assert "immunreg_supply_replenishment_alerts_open" in metrics
