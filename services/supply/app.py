"""Supply's HTTP API and its Service (port 8088): procurement contracts and deliveries,
allocation runs (proposed shipments a person approves), replenishment alerts.

Logistics (and admins) record contracts, receive deliveries, run and decide allocation
runs; public health reads them. Routes only decode, call a handler (handlers.py) or a
query (readmodel.py), and encode. Two background jobs: the planner, which plans every
requested run (woken by a request, and polling so a restart resumes what was accepted),
and the replenishment sweep.

Settings (`SUPPLY_<NAME>`, or `Settings.extra[<name>]`):
    REPLENISHMENT_DAYS      3      raise an alert below this many days of supply
    REPLENISHMENT_WINDOW    7      days of bookings the daily demand is averaged over
    REPLENISHMENT_INTERVAL  60     seconds between replenishment sweeps
    PLANNER_INTERVAL        5      seconds between looks for requested runs
    TIMEZONE                Europe/Belgrade  what "today" means
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Gauge

from immunreg.config import Settings, setting
from immunreg.contracts.envelope import new_id_text
from immunreg.contracts.supply import CONTEXT, DeliveredLot, Tranche
from immunreg.http.api import Api, json_response
from immunreg.http.app import SETTINGS_KEY, STORE_KEY, background_task
from immunreg.http.auth import Role, require_principal
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.middleware import metadata_from_request
from immunreg.http.problems import Problem
from immunreg.reference.vaccines import vaccine_catalog
from immunreg.runs import work_off_forever
from immunreg.service import Service

from . import handlers, readmodel
from .allocation import AllocationInput
from .demo import load as load_demo
from .domain import (
    AllocationRun,
    Contract,
    DecideRun,
    LineDecision,
    ReceiveDelivery,
    RecordContract,
    RequestRun,
    contract_position,
    is_id,
)
from .handlers import PostgresBooks, Supply, build_reactions
from .schemas import (
    AlertList,
    ApproveIn,
    ContractIn,
    ContractView,
    DeliveryIn,
    DeliveryView,
    RunIn,
    RunView,
    ShipmentProgress,
)

log = logging.getLogger(__name__)

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
LOGISTICS = {Role.LOGISTICS, Role.ADMIN}
READERS = {Role.LOGISTICS, Role.PUBLIC_HEALTH, Role.ADMIN}

api = Api(
    "immunreg supply",
    "1.0.0",
    "Procurement contracts and deliveries, allocation of vaccine to sites, replenishment.",
)


BELGRADE = ZoneInfo("Europe/Belgrade")


@dataclass(frozen=True)
class SupplyConfig:
    replenishment_days: float = 3.0
    replenishment_window: int = 7
    replenishment_interval: float = 60.0
    planner_interval: float = 5.0
    timezone: ZoneInfo = BELGRADE

    @classmethod
    def from_settings(cls, settings: Settings) -> SupplyConfig:
        def value(name: str, default: str) -> str:
            return settings.extra.get(name.lower()) or setting(name, "supply") or default

        return cls(
            replenishment_days=float(value("REPLENISHMENT_DAYS", "3")),
            replenishment_window=int(value("REPLENISHMENT_WINDOW", "7")),
            replenishment_interval=float(value("REPLENISHMENT_INTERVAL", "60")),
            planner_interval=float(value("PLANNER_INTERVAL", "5")),
            timezone=ZoneInfo(value("TIMEZONE", "Europe/Belgrade")),
        )

    def today(self) -> date:
        """Today where the sites are."""
        return datetime.now(UTC).astimezone(self.timezone).date()


@dataclass(frozen=True)
class SupplyMetrics:
    alerts_open: Gauge
    alerts_raised: Counter
    runs: Counter


@dataclass(frozen=True)
class Runtime:
    supply: Supply
    config: SupplyConfig
    metrics: SupplyMetrics
    wake_planner: asyncio.Event


RUNTIME_KEY = web.AppKey("supply_runtime", Runtime)


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME_KEY]


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not is_id(value):
        raise Problem.not_found(f"no such {name.replace('_', ' ')}: {value!r}")
    return value


# --- contracts -------------------------------------------------------------------------


def contract_view(state: Contract, today: date) -> ContractView:
    """A contract with its delivered, outstanding and late doses as of today."""
    position = contract_position(state, today)
    return ContractView(
        contract_id=state.contract_id,
        manufacturer_code=state.manufacturer_code,
        product_code=state.product_code,
        total_doses=state.total_doses,
        delivered=position.delivered,
        outstanding=position.outstanding,
        late=position.late,
        tranches=position.tranches,
        deliveries=[
            DeliveryView(
                delivery_id=d.delivery_id,
                location_id=d.location_id,
                received_on=d.received_on,
                doses=d.doses,
                lots=[lot.lot_number for lot in d.lots],
            )
            for d in state.deliveries
        ],
        reference=state.reference,
    )


@api.post(
    "/v1/contracts",
    body=ContractIn,
    responses={201: ContractView, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Record a supply contract with a manufacturer",
    tags=["contracts"],
)
async def record_contract(request: web.Request, body: ContractIn) -> web.StreamResponse:
    """The product must be in the catalog and made by the manufacturer; the tranches'
    doses add up to the total (422 `tranches_do_not_add_up`)."""
    runtime = _runtime(request)
    command = RecordContract(
        contract_id=body.contract_id or new_id_text(),
        manufacturer_code=body.manufacturer_code,
        product_code=body.product_code,
        total_doses=body.total_doses,
        tranches=tuple(
            Tranche(
                tranche_id=t.tranche_id or f"T{n}",
                expected_date=t.expected_date,
                doses=t.doses,
            )
            for n, t in enumerate(body.tranches, 1)
        ),
        reference=body.reference,
    )
    state = await handlers.record_contract(
        runtime.supply, command, metadata=metadata_from_request(request)
    )
    return json_response(
        contract_view(state, runtime.config.today()),
        status=201,
        headers={"Location": f"/v1/contracts/{state.contract_id}"},
    )


@api.get(
    "/v1/contracts/{contract_id}",
    responses={200: ContractView, 404: None},
    roles=READERS,
    summary="A contract: delivered, outstanding and late doses",
    tags=["contracts"],
)
async def read_contract(request: web.Request) -> web.StreamResponse:
    """Deliveries count against the tranches earliest first; a tranche is late once its
    date has passed with doses outstanding."""
    contract_id = _path_id(request, "contract_id")
    found = await readmodel.contract(request.app[POOL_KEY], contract_id)
    if found is None:
        raise Problem.not_found(f"no contract {contract_id!r}")
    return json_response(contract_view(found[0], _runtime(request).config.today()))


@api.post(
    "/v1/contracts/{contract_id}/deliveries",
    body=DeliveryIn,
    responses={201: ContractView, 404: None, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Receive a delivery against a contract",
    tags=["contracts"],
)
async def receive_delivery(request: web.Request, body: DeliveryIn) -> web.StreamResponse:
    """Its lots enter stock at `location_id` (inventory receives them from the event).
    Refused when it holds more than the contract has outstanding (422 `over_delivery`),
    for a lot expiring by today (422 `expired_on_arrival`) or a lot already delivered
    (409 `lot_already_received`)."""
    contract_id = _path_id(request, "contract_id")
    runtime = _runtime(request)
    catalog = vaccine_catalog()
    found = await readmodel.contract(request.app[POOL_KEY], contract_id)
    product = catalog.get(found[0].product_code) if found else None
    if product is None:
        raise Problem.not_found(f"no contract {contract_id!r}")
    today = runtime.config.today()
    command = ReceiveDelivery(
        delivery_id=body.delivery_id or new_id_text(),
        location_id=body.location_id,
        received_on=today,
        lots=tuple(
            DeliveredLot(
                lot_number=lot.lot_number,
                expiry_date=lot.expiry_date,
                vials=lot.vials,
                doses_per_vial=lot.doses_per_vial or product.doses_per_vial,
                storage=lot.storage or product.storage,
            )
            for lot in body.lots
        ),
    )
    state = await handlers.receive_delivery(
        runtime.supply, contract_id, command, metadata=metadata_from_request(request)
    )
    return json_response(contract_view(state, today), status=201)


# --- allocation runs -------------------------------------------------------------------


async def run_view(request: web.Request, state: AllocationRun) -> RunView:
    """A run with how far inventory has taken each approved line's shipment."""
    statuses = await readmodel.shipment_statuses(
        request.app[POOL_KEY], [s.shipment_id for s in state.approved]
    )
    return RunView(
        run_id=state.run_id,
        status=state.status,
        from_day=state.from_day,
        horizon_days=state.horizon_days,
        requested_by=state.requested_by,
        lines=list(state.lines),
        balances=list(state.balances),
        shipments=[
            ShipmentProgress(shipment=s, status=statuses.get(s.shipment_id, "requested"))
            for s in state.approved
        ],
        rejected=state.rejected,
        decided_by=state.decided_by,
        failure=state.failure,
    )


@api.post(
    "/v1/allocation-runs",
    body=RunIn,
    responses={202: RunView, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Plan where vaccine should go over the coming days",
    tags=["allocation"],
)
async def request_run(request: web.Request, body: RunIn) -> web.StreamResponse:
    """Accepted at once (202, `Location` of the run); the run is planned in the
    background: poll `GET /v1/allocation-runs/{run_id}` until `status` is `proposed`."""
    runtime = _runtime(request)
    today = runtime.config.today()
    state = await handlers.request_run(
        runtime.supply,
        RequestRun(
            run_id=new_id_text(),
            from_day=body.from_day or today + timedelta(days=1),
            horizon_days=body.horizon_days,
            today=today,
            requested_by=require_principal(request).subject,
        ),
        metadata=metadata_from_request(request),
    )
    runtime.wake_planner.set()
    runtime.metrics.runs.inc()
    return json_response(
        await run_view(request, state),
        status=202,
        headers={"Location": f"/v1/allocation-runs/{state.run_id}"},
    )


@api.get(
    "/v1/allocation-runs/{run_id}",
    responses={200: RunView, 404: None},
    roles=READERS,
    summary="An allocation run: its proposed shipments, each explained, and decisions",
    tags=["allocation"],
)
async def read_run(request: web.Request) -> web.StreamResponse:
    """`requested` until planned; then `proposed` with its lines (why each: booked,
    waiting, on hand, in transit, what it leaves behind) and per-product balances;
    `decided` once a person approved, edited or rejected its lines."""
    run_id = _path_id(request, "run_id")
    state = await readmodel.run(request.app[POOL_KEY], run_id)
    if state is None:
        raise Problem.not_found(f"no allocation run {run_id!r}")
    return json_response(await run_view(request, state))


@api.post(
    "/v1/allocation-runs/{run_id}/approve",
    body=ApproveIn,
    responses={200: RunView, 404: None, 409: None, 422: None},
    roles=LOGISTICS,
    idempotent=True,
    summary="Approve, edit or reject a run's proposed shipments",
    tags=["allocation"],
)
async def approve_run(request: web.Request, body: ApproveIn) -> web.StreamResponse:
    """Approved lines become shipments in inventory (created there, then dispatched and
    received with inventory's routes). Once per run (409 `run_already_decided`)."""
    run_id = _path_id(request, "run_id")
    runtime = _runtime(request)
    state = await handlers.decide_run(
        runtime.supply,
        run_id,
        DecideRun(
            decisions=tuple(
                LineDecision(line=d.line, decision=d.decision, vials=d.vials)
                for d in body.decisions
            ),
            others=body.others,
            decided_by=require_principal(request).subject,
        ),
        metadata=metadata_from_request(request),
    )
    return json_response(await run_view(request, state))


@api.get(
    "/v1/replenishment-alerts",
    responses={200: AlertList},
    roles=READERS,
    summary="Sites whose days of supply of a product are below the threshold",
    tags=["replenishment"],
)
async def alerts(request: web.Request) -> web.StreamResponse:
    """Open alerts by site and product; the next allocation run serves them first."""
    return json_response(AlertList(items=await readmodel.open_alerts(request.app[POOL_KEY])))


# --- the service -----------------------------------------------------------------------


async def _supply_runtime(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL_KEY]
    metrics = app[METRICS_KEY]
    store = app[STORE_KEY]

    async def inputs(start: date, days: int, today: date) -> AllocationInput:
        return await readmodel.allocation_input(pool, start, days, today)

    app[RUNTIME_KEY] = Runtime(
        supply=Supply(store=store, books=PostgresBooks(), inputs=inputs),
        config=SupplyConfig.from_settings(app[SETTINGS_KEY]),
        metrics=SupplyMetrics(
            alerts_open=metrics.gauge(
                "immunreg_supply_replenishment_alerts_open",
                "Sites whose days of supply of a product are below the threshold, by product.",
                ["product"],
            ),
            alerts_raised=metrics.counter(
                "immunreg_supply_replenishment_alerts_raised_total",
                "Replenishment alerts raised by this instance's sweeps.",
            ),
            runs=metrics.counter(
                "immunreg_supply_allocation_runs_total", "Allocation runs requested."
            ),
        ),
        wake_planner=asyncio.Event(),
    )
    yield


async def _plan_requested(runtime: Runtime, pool: asyncpg.Pool) -> None:
    for run_id in await readmodel.pending_runs(pool):
        await handlers.plan_run(runtime.supply, run_id, today=runtime.config.today())


async def _planner(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME_KEY]
    look = functools.partial(_plan_requested, runtime, app[POOL_KEY])
    planner = work_off_forever(
        "allocation planner", look, runtime.wake_planner, runtime.config.planner_interval
    )
    async with background_task(planner):
        yield


async def _sweep(app: web.Application) -> None:
    runtime = app[RUNTIME_KEY]
    pool = app[POOL_KEY]
    config = runtime.config
    open_now = await readmodel.open_alerts(pool)
    raised = await handlers.sweep_replenishment(
        runtime.supply,
        await readmodel.supply_observations(pool, config.today(), config.replenishment_window),
        threshold_days=config.replenishment_days,
        open_alerts=frozenset((a.site_id, a.product_code) for a in open_now),
    )
    runtime.metrics.alerts_raised.inc(raised)
    by_product = await readmodel.alerts_by_product(pool)
    for product in vaccine_catalog().codes():
        runtime.metrics.alerts_open.labels(product).set(by_product.get(product, 0))


async def _replenishment(app: web.Application) -> AsyncIterator[None]:
    sweeps = work_off_forever(
        "replenishment sweep",
        functools.partial(_sweep, app),
        asyncio.Event(),  # nothing wakes it early: a sweep every interval
        app[RUNTIME_KEY].config.replenishment_interval,
    )
    async with background_task(sweeps):
        yield


def build_service() -> Service:
    """A fresh supply Service."""
    return Service(
        name="supply",
        api=api,
        publishes=CONTEXT,
        schema_files=[SCHEMA_FILE],
        reactions=build_reactions(),
        resources=(_supply_runtime, _planner, _replenishment),
        demo=load_demo,
    )


service = build_service()
