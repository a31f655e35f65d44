"""Shipments under concurrency: the warehouse never ships vials it does not hold."""

from __future__ import annotations

import asyncio
import json

from immunreg.http.auth import Role

from .conftest import Inventory, site


async def test_twenty_concurrent_shipments_against_stock_for_ten(inventory: Inventory) -> None:
    lot = await inventory.receive_lot(10)

    async def create(to: str) -> str:
        body = await inventory.ok(
            "/v1/shipments", {"lot_number": lot, "to_location": to, "vials": 1}, status=201
        )
        return str(body["shipment_id"])

    shipments = await asyncio.gather(*(create(site()) for _ in range(20)))

    async def dispatch(shipment_id: str) -> tuple[int, str, dict[str, object]]:
        response = await inventory.post(f"/v1/shipments/{shipment_id}/dispatch")
        return response.status, response.content_type, await response.json()

    results = await asyncio.gather(*(dispatch(s) for s in shipments))

    assert sorted(status for status, _, _ in results) == [200] * 10 + [409] * 10
    for status, content_type, body in results:
        if status == 409:
            assert content_type == "application/problem+json"
            assert body["code"] == "insufficient_stock"
            assert body["errors"] == [{"field": "body.vials", "reason": body["detail"]}]
        else:
            assert body["status"] == "dispatched"

    warehouse = await inventory.stock("WH-NATIONAL", lot)
    assert (warehouse["sealed_vials"], warehouse["doses_available"]) == (0, 0)

    # The warehouse's ledger, replayed: exactly ten vials out, never below zero.
    rows = await inventory.pool.fetch(
        "SELECT type, data::text AS data FROM events WHERE stream_id = $1 ORDER BY version",
        f"stock-WH-NATIONAL:{lot}",
    )
    sealed = 0
    for row in rows:
        data = json.loads(row["data"])
        sealed += {"StockReceived": data["vials"], "StockDispatched": -data.get("vials", 0)}[
            row["type"]
        ]
        assert sealed >= 0
    assert [r["type"] for r in rows] == ["StockReceived"] + ["StockDispatched"] * 10
    counts = await inventory.pool.fetch(
        "SELECT status, count(*) AS n FROM shipments WHERE lot_number = $1 GROUP BY status", lot
    )
    assert {r["status"]: r["n"] for r in counts} == {"dispatched": 10, "created": 10}
    levels = await inventory.pool.fetch(
        "SELECT data->>'doses_available' AS doses FROM events "
        "WHERE stream_id = 'level-WH-NATIONAL:EU/1/20/1528' ORDER BY version"
    )
    assert [int(r["doses"]) for r in levels] == [60 - 6 * i for i in range(11)]


async def test_partial_receipt_and_loss_in_transit(inventory: Inventory) -> None:
    lot = await inventory.receive_lot(20, product="EU/1/20/1507")
    district = "WH-RS-00"
    shipment_id = await inventory.ship(lot, district, 12, receive=False)
    refused = await inventory.post(
        f"/v1/shipments/{shipment_id}/receive", {"vials_received": 9, "vials_lost": 1}
    )
    assert refused.status == 422
    assert (await refused.json())["code"] == "vials_unaccounted"

    received = await inventory.ok(
        f"/v1/shipments/{shipment_id}/receive",
        {"vials_received": 9, "loss_reason": "broken in transit"},
    )
    assert (received["vials_received"], received["vials_lost"]) == (9, 3)
    assert received["loss_reason"] == "broken in transit"
    again = await inventory.post(f"/v1/shipments/{shipment_id}/receive", {"vials_received": 9})
    assert (again.status, (await again.json())["code"]) == (409, "shipment_already_received")

    assert (await inventory.stock(district, lot))["sealed_vials"] == 9
    assert (await inventory.stock("WH-NATIONAL", lot))["sealed_vials"] == 8
    expiry = (await inventory.get(f"/v1/lots/{lot}"))["lot"]["expiry_date"]
    district_stock = await inventory.get(f"/v1/sites/{district}/stock")
    assert district_stock["products"] == [
        {"product_code": "EU/1/20/1507", "doses_available": 90, "earliest_expiry": expiry}
    ]

    # A district warehouse ships on to a site, and that site's staff receive it.
    onward = await inventory.ok(
        "/v1/shipments",
        {"lot_number": lot, "from_location": district, "to_location": "SITE-0001", "vials": 4},
        status=201,
    )
    await inventory.ok(f"/v1/shipments/{onward['shipment_id']}/dispatch")
    other_site = inventory.headers(Role.SITE_STAFF, site_id="SITE-0002")
    denied = await inventory.post(
        f"/v1/shipments/{onward['shipment_id']}/receive", {"vials_received": 4}, other_site
    )
    assert denied.status == 403
    staff = inventory.headers(Role.SITE_STAFF, site_id="SITE-0001")
    await inventory.ok(
        f"/v1/shipments/{onward['shipment_id']}/receive", {"vials_received": 4}, headers=staff
    )
    assert (await inventory.stock(district, lot))["sealed_vials"] == 5
    assert (await inventory.stock("SITE-0001", lot))["sealed_vials"] == 4


async def test_the_published_level_stays_right_when_lots_arrive_and_leave_together(
    inventory: Inventory,
) -> None:
    lots = await asyncio.gather(*(inventory.receive_lot(5) for _ in range(10)))
    await asyncio.gather(*(inventory.ship(lot, site(), 2) for lot in lots))

    levels = await inventory.pool.fetch(
        "SELECT data->>'doses_available' AS doses FROM events "
        "WHERE stream_id = 'level-WH-NATIONAL:EU/1/20/1528' ORDER BY version"
    )
    doses = [int(r["doses"]) for r in levels]
    # Each change published once, in order, each on top of the one before.
    assert doses == [30 * n for n in range(1, 11)] + [300 - 12 * n for n in range(1, 11)]
    body = await inventory.get("/v1/sites/WH-NATIONAL/stock")
    assert body["products"][0]["doses_available"] == 180
    assert sum(r["doses_available"] for r in body["lots"]) == 180
