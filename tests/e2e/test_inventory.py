"""Inventory as logistics and a site see it: every service running as its own process."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from e2e_http import send

from services.inventory import demo

if TYPE_CHECKING:  # tests/e2e is not a package; the fixture is found by pytest
    from conftest import Stack


def call(method: str, url: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    answer = send(method, url, headers, body)
    return answer.status, answer.json()


def test_receive_a_lot_ship_it_receive_it_and_read_the_stock(stack: Stack) -> None:
    base = stack.urls["inventory"]
    logistics = stack.token("logistics")
    lot = f"E2E{uuid.uuid4().hex[:8].upper()}"
    site = f"SITE-E{uuid.uuid4().hex[:8].upper()}"

    status, received = call(
        "POST",
        f"{base}/v1/lots",
        logistics,
        {
            "lot_number": lot,
            "product_code": "EU/1/21/1529",
            "manufacturer_code": "ORG-100001699",
            "expiry_date": (date.today() + timedelta(days=60)).isoformat(),
            "vials": 30,
            "doses_per_vial": 10,
            "storage": "refrigerated",
        },
    )
    assert status == 201, received
    assert (received["status"], received["location_id"]) == ("active", "WH-NATIONAL")

    status, shipment = call(
        "POST",
        f"{base}/v1/shipments",
        logistics,
        {"lot_number": lot, "to_location": site, "vials": 8},
    )
    assert status == 201, shipment
    shipment_url = f"{base}/v1/shipments/{shipment['shipment_id']}"
    status, dispatched = call("POST", f"{shipment_url}/dispatch", logistics)
    assert (status, dispatched["status"]) == (200, "dispatched"), dispatched

    staff = stack.token("site_staff", site_id=site)
    status, arrived = call("POST", f"{shipment_url}/receive", staff, {"vials_received": 8})
    assert (status, arrived["status"]) == (200, "received"), arrived

    status, stock = call("GET", f"{base}/v1/sites/{site}/stock", staff)
    assert status == 200, stock
    [row] = stock["lots"]
    assert (row["lot_number"], row["sealed_vials"], row["doses_available"]) == (lot, 8, 80)
    assert stock["products"] == [
        {
            "product_code": "EU/1/21/1529",
            "doses_available": 80,
            "earliest_expiry": received["expiry_date"],
        }
    ]
    status, warehouse = call("GET", f"{base}/v1/sites/WH-NATIONAL/stock", logistics)
    assert [r["sealed_vials"] for r in warehouse["lots"] if r["lot_number"] == lot] == [22]

    status, detail = call("GET", f"{base}/v1/lots/{lot}", stack.token("public_health"))
    assert status == 200
    assert [e["type"] for e in detail["history"]] == [
        "LotReceived",
        "StockReceived",
        "ShipmentCreated",
        "ShipmentDispatched",
        "StockDispatched",
        "ShipmentReceived",
        "StockReceived",
    ]


def test_the_demo_data_loads_and_loads_again_without_change(stack: Stack) -> None:
    first = demo.load(stack.urls)
    second = demo.load(stack.urls)
    assert "0 requests applied" in second, (first, second)
    status, stock = call(
        "GET", f"{stack.urls['inventory']}/v1/sites/SITE-0001/stock", stack.token("admin")
    )
    assert status == 200
    assert {row["lot_number"] for row in stock["lots"]} >= {"DEMO-01A", "DEMO-05A"}
    assert sum(row["open_vials"] for row in stock["lots"]) == 1
