"""Inventory's HTTP API and its Service (port 8083).

Logistics (and admins) receive and recall lots and move them in shipments;
site staff open vials, record waste and receive shipments at their own site;
public health reads stock. Doses administered elsewhere are taken from stock
by a reaction (handlers.py); time passing is recorded by the expiry sweep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from immunreg.config import setting
from immunreg.contracts.envelope import new_id_text
from immunreg.contracts.inventory import CONTEXT
from immunreg.eventstore.database import Connection
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Reach, Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import Problem
from immunreg.messaging.reactions import Provided
from immunreg.service import Resource, Service

from . import handlers, readmodel
from .demo import load as load_demo
from .domain import (
    ReceiveLot,
    ReceiveShipment,
    is_location_id,
    is_lot_number,
    is_shipment_id,
    may_see_shipment,
)
from .handlers import InventoryMetrics, Ledger, PostgresBooks, build_reactions
from .schemas import (
    LotDetail,
    LotIn,
    LotSummary,
    RecallIn,
    ReceiptIn,
    ShipmentIn,
    ShipmentView,
    SiteStock,
    StockLot,
    WasteIn,
)

log = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
LEDGER_KEY: web.AppKey[Ledger[Connection]] = web.AppKey("inventory_ledger")
DEFAULT_EXPIRY_INTERVAL = 60.0

LOGISTICS = {Role.LOGISTICS, Role.ADMIN}
AT_A_SITE = {Role.SITE_STAFF, Role.LOGISTICS, Role.ADMIN}
READERS = {Role.SITE_STAFF, Role.LOGISTICS, Role.PUBLIC_HEALTH, Role.ADMIN}
# A lot's history is not personal and every site may hold the lot: any site staff.
LOT_READERS = {
    Role.SITE_STAFF: Reach.ANY,
    Role.LOGISTICS: Reach.ANY,
    Role.PUBLIC_HEALTH: Reach.ANY,
    Role.ADMIN: Reach.ANY,
}

api = Api(
    "immunreg inventory",
    "1.0.0",
    "Lots, shipments and stock at warehouses and sites, from procurement to the arm.",
)


def _ledger(request: web.Request) -> Ledger[Connection]:
    return request.app[LEDGER_KEY]


def _path_id(request: web.Request, name: str, valid: Callable[[str], bool]) -> str:
    value = request.match_info[name]
    if not valid(value):
        raise Problem.not_found(f"no such {name.replace('_', ' ')}: {value!r}")
    return value


def _location(request: web.Request) -> str:
    site_id = _path_id(request, "site_id", is_location_id)
    require_principal(request).require_site(site_id)
    return site_id


# --- lots --------------------------------------------------------------------------


@api.post(
    "/v1/lots",
    body=LotIn,
    responses={201: LotSummary, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Receive a lot from a manufacturer",
    tags=["lots"],
)
async def receive_lot(request: web.Request, body: LotIn) -> web.StreamResponse:
    """The lot's vials enter stock at `location_id` (the national warehouse by default).

    The product must be in the vaccine catalog, made by its manufacturer, with the
    catalog's doses per vial; a lot number is received once (409 `lot_already_received`).
    """
    ledger = _ledger(request)
    command = ReceiveLot(
        lot_number=body.lot_number,
        product_code=body.product_code,
        manufacturer_code=body.manufacturer_code,
        expiry_date=body.expiry_date,
        vials=body.vials,
        doses_per_vial=body.doses_per_vial,
        storage=body.storage,
        location_id=body.location_id,
        today=ledger.clock().date(),
    )
    lot = await handlers.receive_lot(ledger, command, metadata=metadata_from_request(request))
    return json_response(
        readmodel.lot_summary(lot), status=201, headers={"Location": f"/v1/lots/{lot.lot_number}"}
    )


@api.post(
    "/v1/lots/{lot_number}/recall",
    body=RecallIn,
    responses={200: LotSummary, 404: None, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Recall a lot everywhere it is held",
    tags=["lots"],
)
async def recall_lot(request: web.Request, body: RecallIn) -> web.StreamResponse:
    """No further dose may come from the lot; the stock of every location holding it is told."""
    lot_number = _path_id(request, "lot_number", is_lot_number)
    lot = await handlers.recall_lot(
        _ledger(request), lot_number, body.reason, metadata=metadata_from_request(request)
    )
    return json_response(readmodel.lot_summary(lot))


@api.get(
    "/v1/lots/{lot_number}",
    responses={200: LotDetail, 404: None},
    roles=LOT_READERS,
    summary="A lot, where it is, and its full history",
    tags=["lots"],
)
async def read_lot(request: web.Request) -> web.StreamResponse:
    """Every event that touched the lot - its own, its shipments', its stock's everywhere."""
    lot_number = _path_id(request, "lot_number", is_lot_number)
    detail = await readmodel.lot_detail(request.app[POOL_KEY], lot_number)
    if detail is None:
        raise Problem.not_found(f"no lot {lot_number!r} has been received")
    return json_response(detail)


# --- shipments ---------------------------------------------------------------------


@api.post(
    "/v1/shipments",
    body=ShipmentIn,
    responses={201: ShipmentView, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Plan a shipment of sealed vials",
    tags=["shipments"],
)
async def create_shipment(request: web.Request, body: ShipmentIn) -> web.StreamResponse:
    """Refused (409 `insufficient_stock`, `lot_recalled`, `lot_expired`) if it could not leave now.

    Vials leave only on dispatch, which checks again under concurrency.
    """
    shipment = await handlers.create_shipment(
        _ledger(request),
        shipment_id=body.shipment_id or new_id_text(),
        lot_number=body.lot_number,
        from_location=body.from_location,
        to_location=body.to_location,
        vials=body.vials,
        metadata=metadata_from_request(request),
    )
    return json_response(
        readmodel.shipment_view(shipment),
        status=201,
        headers={"Location": f"/v1/shipments/{shipment.shipment_id}"},
    )


async def _shipment_at(request: web.Request) -> ShipmentView:
    shipment_id = _path_id(request, "shipment_id", is_shipment_id)
    view = await readmodel.shipment_of(request.app[POOL_KEY], shipment_id)
    if view is None:
        raise Problem.not_found(f"no shipment {shipment_id!r}")
    principal = require_principal(request)
    if not may_see_shipment(
        site_staff=principal.role is Role.SITE_STAFF,
        site_id=principal.site_id,
        from_location=view.from_location,
        to_location=view.to_location,
    ):
        raise Problem.forbidden("this shipment is not for your site", code="other_site")
    return view


@api.get(
    "/v1/shipments/{shipment_id}",
    responses={200: ShipmentView, 404: None},
    roles=READERS,
    summary="A shipment",
    tags=["shipments"],
)
async def read_shipment(request: web.Request) -> web.StreamResponse:
    """A shipment and how far it has got."""
    return json_response(await _shipment_at(request))


@api.post(
    "/v1/shipments/{shipment_id}/dispatch",
    responses={200: ShipmentView, 404: None, 409: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Dispatch a shipment",
    tags=["shipments"],
)
async def dispatch_shipment(request: web.Request) -> web.StreamResponse:
    """The vials leave the source: 409 `insufficient_stock` if it no longer holds them."""
    shipment_id = _path_id(request, "shipment_id", is_shipment_id)
    shipment = await handlers.dispatch_shipment(
        _ledger(request), shipment_id, metadata=metadata_from_request(request)
    )
    return json_response(readmodel.shipment_view(shipment))


@api.post(
    "/v1/shipments/{shipment_id}/receive",
    body=ReceiptIn,
    responses={200: ShipmentView, 403: None, 404: None, 409: None, 422: None},
    roles=AT_A_SITE,
    idempotent=True,
    summary="Receive a shipment (all of it, or part and the rest lost)",
    tags=["shipments"],
)
async def receive_shipment(request: web.Request, body: ReceiptIn) -> web.StreamResponse:
    """Received and lost vials must add up to the vials dispatched (422 `vials_unaccounted`)."""
    view = await _shipment_at(request)
    require_principal(request).require_site(view.to_location)
    shipment = await handlers.receive_shipment(
        _ledger(request),
        view.shipment_id,
        ReceiveShipment(
            vials_received=body.vials_received,
            vials_lost=body.vials_lost,
            loss_reason=body.loss_reason,
        ),
        metadata=metadata_from_request(request),
    )
    return json_response(readmodel.shipment_view(shipment))


# --- stock at a location -----------------------------------------------------------


@api.post(
    "/v1/sites/{site_id}/stock/{lot_number}/open-vial",
    responses={200: StockLot, 403: None, 404: None, 409: None},
    roles=AT_A_SITE,
    idempotent=True,
    summary="Open a sealed vial",
    tags=["stock"],
)
async def open_vial(request: web.Request) -> web.StreamResponse:
    """Refused for a recalled or expired lot (409 `lot_recalled`, `lot_expired`)."""
    site_id = _location(request)
    lot_number = _path_id(request, "lot_number", is_lot_number)
    stock = await handlers.open_vial(
        _ledger(request), site_id, lot_number, metadata=metadata_from_request(request)
    )
    return json_response(stock)


@api.post(
    "/v1/sites/{site_id}/stock/{lot_number}/waste",
    body=WasteIn,
    responses={200: StockLot, 403: None, 404: None, 409: None, 422: None},
    roles=AT_A_SITE,
    idempotent=True,
    summary="Record wasted doses",
    tags=["stock"],
)
async def waste(request: web.Request, body: WasteIn) -> web.StreamResponse:
    """Taken from open vials first, then by opening sealed ones (a broken vial: all its doses)."""
    site_id = _location(request)
    lot_number = _path_id(request, "lot_number", is_lot_number)
    stock = await handlers.waste(
        _ledger(request),
        site_id,
        lot_number,
        body.doses,
        body.reason,
        metadata=metadata_from_request(request),
    )
    return json_response(stock)


@api.get(
    "/v1/sites/{site_id}/stock",
    responses={200: SiteStock, 403: None, 404: None},
    roles=READERS,
    summary="What a site or warehouse holds",
    tags=["stock"],
)
async def site_stock(request: web.Request) -> web.StreamResponse:
    """Per lot (sealed and open vials, usable doses, status, expiry) and per product."""
    site_id = _location(request)
    return json_response(await readmodel.site_stock(request.app[POOL_KEY], site_id))


# --- the service -------------------------------------------------------------------


def _ledger_resource(provided: Provided[Ledger[Connection]]) -> Resource:
    async def ledger(app: web.Application) -> AsyncIterator[None]:
        store = app[STORE_KEY]
        instance = Ledger(store, PostgresBooks(store.pool), InventoryMetrics(app[METRICS_KEY]))
        app[LEDGER_KEY] = instance
        async with provided.providing(instance):
            yield

    return ledger


def expiry_interval(app: web.Application) -> float:
    """Seconds between expiry sweeps: settings.extra, else INVENTORY_EXPIRY_INTERVAL, else 60."""
    configured = app[SETTINGS_KEY].extra.get("expiry_interval") or setting(
        "EXPIRY_INTERVAL", "inventory"
    )
    return float(configured) if configured else DEFAULT_EXPIRY_INTERVAL


async def _sweep_forever(ledger: Ledger[Connection], interval: float) -> None:
    while True:
        try:
            result = await handlers.sweep(ledger)
            if result.lots_expired or result.stocks_with_expired_vials:
                log.info(
                    "expiry sweep",
                    extra={
                        "lots_expired": result.lots_expired,
                        "stocks_with_expired_vials": result.stocks_with_expired_vials,
                    },
                )
        except Exception:
            log.exception("expiry sweep failed; trying again later")
        await asyncio.sleep(interval)


async def _expiry_sweep(app: web.Application) -> AsyncIterator[None]:
    async with background_task(_sweep_forever(app[LEDGER_KEY], expiry_interval(app))):
        yield


def build_service() -> Service:
    """A fresh inventory Service (its reactions bound to the app it is started in)."""
    ledger: Provided[Ledger[Connection]] = Provided("the inventory ledger")
    return Service(
        name="inventory",
        api=api,
        publishes=CONTEXT,
        schema_files=[SCHEMA_FILE],
        reactions=build_reactions(ledger),
        resources=(_ledger_resource(ledger), _expiry_sweep),
        demo=load_demo,
    )


service = build_service()
