"""Supply against demand (`GET /v1/supply-demand`) over a scripted history on private
topics: stock at sites and warehouses, a shipment on the road and one arrived, slots
booked, a supply contract and a delivery; per district and product, and the site that
runs out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from immunreg.contracts import booking, inventory, supply
from immunreg.http.auth import Role
from services.projections.domain import today

from .conftest import History, Projections

COMIRNATY = "EU/1/20/1528"  # 6 doses a vial
BARAJEVO = "70092"  # in RS-00, Grad Beograd


async def test_supply_against_demand_per_district_and_the_site_that_runs_out(
    projections: Projections,
) -> None:
    sources = projections.sources
    b, i, s = sources.booking, sources.inventory, sources.supply
    now = datetime.combine(today(), time(8), UTC)
    history = History(sources, start=now - timedelta(hours=1))
    tomorrow, later = today() + timedelta(days=1), today() + timedelta(days=3)
    for site in ("SITE-1", "SITE-2"):
        history.add(
            b,
            booking.SiteDefined(
                site_id=site,
                name=site,
                municipality_code=BARAJEVO,
                address="x",
                daily_capacity={COMIRNATY: 50},
            ),
            f"site-{site}",
        )

    def level(location: str, doses: int) -> None:
        history.add(
            i,
            inventory.StockLevelChanged(
                location_id=location, product_code=COMIRNATY, doses_available=doses
            ),
            f"level-{location}:{COMIRNATY}",
        )

    level("SITE-1", 10)
    level("SITE-2", 100)
    level("WH-RS-00", 600)
    level("WH-NATIONAL", 6000)

    def reserved(site: str, day: date, ids: list[str]) -> None:
        history.add(
            b,
            booking.SlotsReserved(
                site_id=site, day=day, product_code=COMIRNATY, appointment_ids=ids
            ),
            f"siteday-{site}-{day}",
        )

    reserved("SITE-1", tomorrow, [f"a{n}" for n in range(8)])
    reserved("SITE-1", later, [f"b{n}" for n in range(8)])  # 16 > 10 held + 0 coming
    reserved("SITE-2", tomorrow, ["c1"])
    moving = {"lot_number": "L1", "product_code": COMIRNATY, "from_location": "WH-NATIONAL"}
    history.add(
        i,
        inventory.ShipmentDispatched(shipment_id="S1", to_location="SITE-2", vials=5, **moving),
        "shipment-S1",
    )
    history.add(
        i,
        inventory.ShipmentDispatched(shipment_id="S2", to_location="SITE-2", vials=3, **moving),
        "shipment-S2",
    )
    history.add(
        i,
        inventory.ShipmentReceived(
            shipment_id="S2",
            lot_number="L1",
            product_code=COMIRNATY,
            to_location="SITE-2",
            vials_received=3,
        ),
        "shipment-S2",
    )
    history.add(
        s,
        supply.ContractRecorded(
            contract_id="C1",
            manufacturer_code="ORG-100030215",
            product_code=COMIRNATY,
            total_doses=12_000,
            tranches=[supply.Tranche(tranche_id="T1", expected_date=today(), doses=12_000)],
        ),
        "contract-C1",
    )
    history.add(
        s,
        supply.DeliveryReceived(
            contract_id="C1",
            delivery_id="D1",
            product_code=COMIRNATY,
            manufacturer_code="ORG-100030215",
            location_id="WH-NATIONAL",
            received_on=today(),
            lots=[],
            doses=6000,
        ),
        "contract-C1",
    )
    await projections.apply(history, history.envelopes)

    answer = await projections.get("/v1/supply-demand", role=Role.LOGISTICS)
    assert answer["districts"] == [
        {
            "district_code": "RS-00",
            "district_name": "Grad Beograd",
            "product_code": COMIRNATY,
            "product_name": "Comirnaty",
            "on_hand": 10 + 100 + 600,
            "in_transit": 5 * 6,
            "booked": 17,
            "waiting": 0,
        }
    ]
    assert answer["national_warehouse"] == {COMIRNATY: 6000}
    assert answer["due_from_contracts"] == [
        {
            "product_code": COMIRNATY,
            "product_name": "Comirnaty",
            "contracted": 12_000,
            "delivered": 6000,
            "due": 6000,
        }
    ]
    assert answer["running_out"] == [
        {
            "site_id": "SITE-1",
            "district_code": "RS-00",
            "product_code": COMIRNATY,
            "doses": 10,
            "booked": 16,
            "runs_out_on": later.isoformat(),
        }
    ]
