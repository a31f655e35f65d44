"""Bad input is a problem+json naming the field and stores nothing; sites act only at home."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from immunreg.http.auth import Role, issue_token

from .conftest import Inventory, site

NEXT_YEAR = (date.today() + timedelta(days=365)).isoformat()
GOOD_LOT: dict[str, Any] = {
    "lot_number": "GOOD1",
    "product_code": "EU/1/20/1528",
    "manufacturer_code": "ORG-100030215",
    "expiry_date": NEXT_YEAR,
    "vials": 10,
}
# What commands over HTTP write. Rows caused by doses read from the shared topic (other
# tests' and engineers' sites, with a causation id) are left out; outbox rows are left
# out because the relay deletes them as it publishes.
COUNTS = {
    "events": "SELECT count(*) FROM events WHERE causation_id IS NULL",
    "lot_history": "SELECT count(*) FROM lot_history h JOIN events e USING (event_id) "
    "WHERE e.causation_id IS NULL",
    "stock_levels": "SELECT count(*) FROM stock_levels WHERE status <> 'none'",
    "product_levels": "SELECT count(*) FROM product_levels WHERE version > 0",
    "lots": "SELECT count(*) FROM lots",
    "shipments": "SELECT count(*) FROM shipments",
    "snapshots": "SELECT count(*) FROM snapshots",
}


async def counts(inventory: Inventory) -> dict[str, int]:
    return {name: await inventory.pool.fetchval(sql) for name, sql in COUNTS.items()}


@pytest.mark.parametrize(
    ("path", "body", "field", "code"),
    [
        ("/v1/lots", {**GOOD_LOT, "vials": 0}, "body.vials", None),
        ("/v1/lots", {**GOOD_LOT, "vials": "ten"}, "body.vials", None),
        ("/v1/lots", {**GOOD_LOT, "expiry_date": "31.12.2030"}, "body.expiry_date", None),
        ("/v1/lots", {**GOOD_LOT, "lot_number": "A B"}, "body.lot_number", None),
        ("/v1/lots", {**GOOD_LOT, "location_id": "site 1"}, "body.location_id", None),
        ("/v1/lots", {**GOOD_LOT, "storage": "warm"}, "body.storage", None),
        ("/v1/lots", {**GOOD_LOT, "colour": "red"}, "body.colour", None),
        ("/v1/lots", {k: v for k, v in GOOD_LOT.items() if k != "vials"}, "body.vials", None),
        ("/v1/lots", {**GOOD_LOT, "product_code": "EU/1/99/9999"}, "body.product_code",
         "unknown_product"),
        ("/v1/lots", {**GOOD_LOT, "manufacturer_code": "ORG-1"}, "body.manufacturer_code",
         "manufacturer_mismatch"),
        ("/v1/lots", {**GOOD_LOT, "doses_per_vial": 5}, "body.doses_per_vial",
         "doses_per_vial_mismatch"),
        ("/v1/lots", {**GOOD_LOT, "expiry_date": "2021-01-01"}, "body.expiry_date",
         "expired_on_arrival"),
        ("/v1/shipments", {"lot_number": "NOPE", "to_location": "SITE-0001", "vials": 1},
         "body.lot_number", "unknown_lot"),
        ("/v1/shipments", {"lot_number": "GOOD1", "to_location": "SITE-0001", "vials": -1},
         "body.vials", None),
        ("/v1/shipments", {"lot_number": "GOOD1", "to_location": "WH-NATIONAL", "vials": 1},
         "body.to_location", "same_location"),
        ("/v1/lots/GOOD1/recall", {"reason": ""}, "body.reason", None),
        ("/v1/sites/SITE-0001/stock/GOOD1/waste", {"doses": 1, "reason": "bored"},
         "body.reason", None),
        ("/v1/sites/SITE-0001/stock/GOOD1/waste", {"doses": 0, "reason": "dropped"},
         "body.doses", None),
    ],
)  # fmt: skip
async def test_bad_input_is_422_with_the_field_and_nothing_is_stored(
    inventory: Inventory, path: str, body: dict[str, Any], field: str, code: str | None
) -> None:
    if path != "/v1/lots":
        await inventory.ok("/v1/lots", GOOD_LOT, status=201)
    before = await counts(inventory)

    response = await inventory.post(path, body)

    assert response.status == 422, await response.text()
    assert response.content_type == "application/problem+json"
    problem = await response.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert problem.get("code") == code
    assert await counts(inventory) == before


async def test_who_may_do_what(inventory: Inventory) -> None:
    lot = await inventory.receive_lot(4)
    home, away = site(), site()
    await inventory.ship(lot, home, 2)
    staff = inventory.headers(Role.SITE_STAFF, site_id=home)
    stranger = inventory.headers(Role.SITE_STAFF, site_id=away)
    public_health = inventory.headers(Role.PUBLIC_HEALTH)
    citizen = {
        "Authorization": "Bearer "
        + issue_token(inventory.private_key, Role.CITIZEN, citizen_id="c-1")
    }
    before = await counts(inventory)

    refused = [
        await inventory.post("/v1/lots", {**GOOD_LOT, "lot_number": "X1"}, staff),
        await inventory.post(f"/v1/lots/{lot}/recall", {"reason": "r"}, public_health),
        await inventory.post(f"/v1/sites/{home}/stock/{lot}/open-vial", headers=stranger),
        await inventory.post(f"/v1/sites/{home}/stock/{lot}/open-vial", headers=public_health),
        await inventory.client.get(f"/v1/sites/{home}/stock", headers=stranger),
        await inventory.client.get(f"/v1/sites/{home}/stock"),
    ]
    assert [r.status for r in refused] == [403, 403, 403, 403, 403, 401]
    assert await counts(inventory) == before
    assert (await inventory.client.get(f"/v1/lots/{lot}", headers=citizen)).status == 403

    assert (await inventory.get(f"/v1/sites/{home}/stock", staff))["lots"]
    assert (await inventory.get(f"/v1/sites/{home}/stock", public_health))["lots"]


async def test_a_site_opens_vials_and_records_waste(inventory: Inventory) -> None:
    lot = await inventory.receive_lot(5, product="EU/1/20/1507")
    here = site()
    await inventory.ship(lot, here, 3)
    staff = inventory.headers(Role.SITE_STAFF, site_id=here)
    once = {**staff, "Idempotency-Key": "open-1"}

    opened = await inventory.ok(f"/v1/sites/{here}/stock/{lot}/open-vial", headers=once)
    replayed = await inventory.post(f"/v1/sites/{here}/stock/{lot}/open-vial", headers=once)
    assert await replayed.json() == opened and replayed.headers["Idempotent-Replayed"] == "true"
    assert (opened["sealed_vials"], opened["open_vials"], opened["open_doses"]) == (2, 1, 10)
    assert opened["next_vial_expiry"] is not None

    wasted = await inventory.ok(
        f"/v1/sites/{here}/stock/{lot}/waste",
        {"doses": 12, "reason": "cold_chain_break"},
        headers=staff,
    )
    assert (wasted["sealed_vials"], wasted["open_doses"], wasted["doses_wasted"]) == (1, 8, 12)
    assert wasted["doses_available"] == 18
    too_many = await inventory.post(
        f"/v1/sites/{here}/stock/{lot}/waste", {"doses": 19, "reason": "dropped"}, staff
    )
    assert (too_many.status, (await too_many.json())["code"]) == (409, "insufficient_doses")
    not_held = await inventory.post(f"/v1/sites/{site()}/stock/{lot}/open-vial")
    assert (not_held.status, (await not_held.json())["code"]) == (404, "stock_not_found")

    assert await inventory.events(f"stock-{here}:{lot}") == [
        "StockReceived",
        "VialOpened",
        "VialOpened",
        "DosesWasted",
    ]
    levels = await inventory.pool.fetch(
        "SELECT data->>'doses_available' AS doses FROM events WHERE stream_id = $1 "
        "ORDER BY version",
        f"level-{here}:EU/1/20/1507",
    )
    assert [int(r["doses"]) for r in levels] == [30, 18]  # opening a vial changes no usable dose
    metrics = await (await inventory.client.get("/metrics")).text()
    assert 'immunreg_inventory_doses_wasted_total{reason="cold_chain_break"} 12.0' in metrics
