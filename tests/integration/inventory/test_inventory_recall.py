"""A recall reaches the stock of every location holding the lot; expiry does the same."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

from immunreg.http.auth import Role
from services.inventory.handlers import Ledger, sweep

from .conftest import Inventory, site


async def test_a_recall_reaches_the_stock_of_every_location_holding_the_lot(
    inventory: Inventory,
) -> None:
    lot = await inventory.receive_lot(40)
    district, first, second, later = "WH-RS-07", site(), site(), site()
    await inventory.ship(lot, district, 10)
    await inventory.ship(lot, first, 5)
    await inventory.ship(lot, second, 5, source=district)
    in_transit = await inventory.ship(lot, later, 2, receive=False)
    staff = inventory.headers(Role.SITE_STAFF, site_id=first)
    await inventory.ok(f"/v1/sites/{first}/stock/{lot}/open-vial", headers=staff)

    recalled = await inventory.ok(f"/v1/lots/{lot}/recall", {"reason": "particles in vials"})

    assert (recalled["status"], recalled["recall_reason"]) == ("recalled", "particles in vials")
    told = await inventory.pool.fetchval(
        "SELECT data->'locations' FROM events WHERE stream_id = $1 AND type = 'LotRecalled'",
        f"lot-{lot}",
    )
    assert sorted(json.loads(told)) == sorted(["WH-NATIONAL", district, first, second])
    for location in ("WH-NATIONAL", district, first, second):
        stock = await inventory.stock(location, lot)
        assert (stock["status"], stock["doses_available"]) == ("recalled", 0), location
        body = await inventory.get(f"/v1/sites/{location}/stock")
        assert body["products"] == [
            {"product_code": "EU/1/20/1528", "doses_available": 0, "earliest_expiry": None}
        ]

    # Vials on the road when the lot was recalled arrive recalled.
    await inventory.ok(f"/v1/shipments/{in_transit}/receive", {"vials_received": 2})
    assert (await inventory.stock(later, lot))["status"] == "recalled"

    # Nothing more comes from it: no vial opened, no shipment, no second recall.
    opened = await inventory.post(f"/v1/sites/{first}/stock/{lot}/open-vial", headers=staff)
    assert (opened.status, (await opened.json())["code"]) == (409, "lot_recalled")
    shipment = await inventory.post(
        "/v1/shipments", {"lot_number": lot, "to_location": site(), "vials": 1}
    )
    assert (shipment.status, (await shipment.json())["code"]) == (409, "lot_recalled")
    again = await inventory.post(f"/v1/lots/{lot}/recall", {"reason": "again"})
    assert (again.status, (await again.json())["code"]) == (409, "lot_already_recalled")

    detail = await inventory.get(f"/v1/lots/{lot}")
    assert {h["location_id"]: h["status"] for h in detail["holdings"]} == {
        "WH-NATIONAL": "recalled",
        district: "recalled",
        first: "recalled",
        second: "recalled",
        later: "recalled",
    }
    types = [entry["type"] for entry in detail["history"]]
    assert types[:2] == ["LotReceived", "StockReceived"]
    assert types.count("StockRecalled") == 5 and types.count("LotRecalled") == 1
    assert types.index("LotRecalled") < types.index("StockRecalled")
    assert "StockLevelChanged" not in types
    recorded = [entry["recorded_at"] for entry in detail["history"]]
    assert recorded == sorted(recorded)


async def test_a_recall_racing_receipts_still_reaches_every_location(
    inventory: Inventory,
) -> None:
    lot = await inventory.receive_lot(30)
    sites = [site() for _ in range(8)]
    shipments = [await inventory.ship(lot, s, 2, receive=False) for s in sites]

    async def receive(shipment_id: str) -> int:
        response = await inventory.post(
            f"/v1/shipments/{shipment_id}/receive", {"vials_received": 2}
        )
        return response.status

    async def recall() -> int:
        await asyncio.sleep(0.005)
        response = await inventory.post(f"/v1/lots/{lot}/recall", {"reason": "race"})
        return response.status

    statuses = await asyncio.gather(*(receive(s) for s in shipments), recall())

    assert statuses == [200] * 9
    rows = await inventory.pool.fetch(
        "SELECT location_id, status, sealed_vials FROM stock_levels WHERE lot_number = $1", lot
    )
    assert len(rows) == 9
    assert {r["status"] for r in rows} == {"recalled"}
    assert sum(r["sealed_vials"] for r in rows) == 30


async def test_an_expired_lot_is_expired_everywhere_it_is_held(inventory: Inventory) -> None:
    lot = await inventory.receive_lot(10, product="EU/1/20/1507", expiry=date.today())
    here = site()
    await inventory.ship(lot, here, 3)
    await inventory.ok(f"/v1/sites/{here}/stock/{lot}/open-vial")

    later = inventory.ledger.clock() + timedelta(days=1)
    swept = await sweep(Ledger(inventory.ledger.store, inventory.ledger.books, clock=lambda: later))

    assert swept.lots_expired == 1 and swept.stocks_with_expired_vials == 1
    assert (await inventory.get(f"/v1/lots/{lot}"))["lot"]["status"] == "expired"
    for location in ("WH-NATIONAL", here):
        stock = await inventory.stock(location, lot)
        assert (stock["status"], stock["doses_available"]) == ("expired", 0)
    assert await inventory.events(f"stock-{here}:{lot}") == [
        "StockReceived",
        "VialOpened",
        "StockExpired",
        "OpenedVialExpired",
    ]
    refused = await inventory.post(f"/v1/sites/{here}/stock/{lot}/open-vial")
    assert (refused.status, (await refused.json())["code"]) == (409, "lot_expired")
    again = await sweep(Ledger(inventory.ledger.store, inventory.ledger.books, clock=lambda: later))
    assert (again.lots_expired, again.stocks_with_expired_vials) == (0, 0)
