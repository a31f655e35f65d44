"""Inventory's HTTP surface: the contract's routes, who may call them, a valid OpenAPI document."""

from __future__ import annotations

import msgspec
import pytest

from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.http.auth import Role
from services.inventory.app import api, build_service
from services.inventory.schemas import LotIn, WasteIn

L, A, S, P = Role.LOGISTICS, Role.ADMIN, Role.SITE_STAFF, Role.PUBLIC_HEALTH

ROUTES = {
    ("POST", "/v1/lots"): {L, A},
    ("POST", "/v1/lots/{lot_number}/recall"): {L, A},
    ("GET", "/v1/lots/{lot_number}"): {L, A, S, P},
    ("POST", "/v1/shipments"): {L, A},
    ("GET", "/v1/shipments/{shipment_id}"): {L, A, S, P},
    ("POST", "/v1/shipments/{shipment_id}/dispatch"): {L, A},
    ("POST", "/v1/shipments/{shipment_id}/receive"): {L, A, S},
    ("POST", "/v1/sites/{site_id}/stock/{lot_number}/open-vial"): {L, A, S},
    ("POST", "/v1/sites/{site_id}/stock/{lot_number}/waste"): {L, A, S},
    ("GET", "/v1/sites/{site_id}/stock"): {L, A, S, P},
}


def test_every_route_of_the_contract_with_its_roles() -> None:
    declared = {(r.method, r.path): set(r.roles or ()) for r in api.routes}
    assert declared == ROUTES
    assert all(r.idempotent for r in api.routes if r.method == "POST")
    assert not any(Role.CITIZEN in roles for roles in declared.values())


def test_the_openapi_document_is_valid() -> None:
    from openapi_spec_validator import validate

    validate(api.openapi())


def test_the_service_publishes_inventory_events_and_reacts_to_doses_and_supply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without a run's namespace (the suite sets one): the names production uses.
    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)
    service = build_service()
    assert service.topics == [
        "inventory.events.v1",
        "administration.events.v1",
        "supply.events.v1",
        "administration.events.v1.dlq",
        "supply.events.v1.dlq",
    ]
    assert build_service().reactions is not service.reactions  # one per app


@pytest.mark.parametrize(
    "body",
    [
        {
            "lot_number": "",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 1,
        },
        {
            "lot_number": "L 1",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 1,
        },
        {
            "lot_number": "L1",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 0,
        },
        {
            "lot_number": "L1",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 1,
            "location_id": "wh:national",
        },
        {
            "lot_number": "L1",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 1,
            "storage": "warm",
        },
        {
            "lot_number": "L1",
            "product_code": "P",
            "manufacturer_code": "M",
            "expiry_date": "2030-01-01",
            "vials": 1,
            "vial": 2,
        },
    ],
)
def test_malformed_lots_are_refused_at_decoding(body: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(body), type=LotIn)


def test_waste_needs_a_known_reason() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"doses": 1, "reason": "bored"}, WasteIn)
    assert msgspec.convert({"doses": 1, "reason": "dropped"}, WasteIn).doses == 1
