"""Doses administered elsewhere arrive from Kafka and are taken from the site's stock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from immunreg.contracts import administration
from immunreg.contracts.administration import DoseAdministered
from immunreg.contracts.envelope import Envelope, encode_envelope, utcnow

from .conftest import Inventory, eventually, site


def dose_administered(
    site_id: str, lot: str, *, product: str = "EU/1/20/1528", at: datetime | None = None
) -> Envelope:
    event = DoseAdministered(
        dose_id=str(uuid.uuid4()),
        citizen_id=str(uuid.uuid4()),
        site_id=site_id,
        site_municipality_code="70181",
        citizen_municipality_code="70181",
        product_code=product,
        lot_number=lot,
        dose_number=1,
        series_length=2,
        series_complete=False,
        administered_at=at or utcnow(),
        age_at_vaccination=52,
        sex="female",
        vaccinator_id="vaccinator-1",
    )
    return administration.CONTEXT.envelope(
        event, stream_id=f"dose-{event.dose_id}", stream_type="DoseRecord", version=1
    )


async def publish(bootstrap: str, *envelopes: Envelope) -> list[Any]:
    """Publish envelopes as administration's relay would (a plain producer: duplicates allowed)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return [
            await producer.send_and_wait(
                administration.CONTEXT.topic,
                encode_envelope(envelope),
                key=envelope.stream_id.encode(),
            )
            for envelope in envelopes
        ]
    finally:
        await producer.stop()


async def consumed_past(inventory: Inventory, records: list[Any]) -> None:
    """Wait until the consumer's stored position is past every record."""

    async def done() -> bool:
        rows = await inventory.pool.fetch(
            "SELECT partition, next_offset FROM consumer_positions WHERE topic = $1",
            administration.CONTEXT.topic,
        )
        positions = {r["partition"]: r["next_offset"] for r in rows}
        return all(positions.get(r.partition, -1) > r.offset for r in records)

    await eventually(done, "the consumer has applied the published doses", timeout=120)


async def test_a_consumed_dose_delivered_twice_consumes_one_dose(
    inventory: Inventory, bootstrap: str
) -> None:
    lot = await inventory.receive_lot(10)
    here = site()
    await inventory.ship(lot, here, 2)
    envelope = dose_administered(here, lot)

    records = await publish(bootstrap, envelope, envelope)

    assert records[0].offset != records[1].offset  # two messages on the topic
    await consumed_past(inventory, records)
    assert await inventory.events(f"stock-{here}:{lot}") == [
        "StockReceived",
        "VialOpened",
        "DoseConsumed",
    ]
    stock = await inventory.stock(here, lot)
    assert (stock["doses_consumed"], stock["sealed_vials"], stock["open_doses"]) == (1, 1, 5)
    assert stock["doses_available"] == 11
    consumed = await inventory.pool.fetchrow(
        "SELECT causation_id, occurred_at FROM events WHERE stream_id = $1 AND type = $2",
        f"stock-{here}:{lot}",
        "DoseConsumed",
    )
    assert consumed is not None and consumed["causation_id"] == envelope.event_id


async def test_a_dose_the_stock_cannot_account_for_is_a_discrepancy(
    inventory: Inventory, bootstrap: str
) -> None:
    lot = await inventory.receive_lot(5, product="BBIBP-CorV")
    here, elsewhere = site(), site()
    await inventory.ship(lot, here, 1)
    first, second = (
        dose_administered(here, lot, product="BBIBP-CorV"),
        dose_administered(here, lot, product="BBIBP-CorV"),
    )
    nowhere = dose_administered(elsewhere, lot, product="BBIBP-CorV")

    await consumed_past(inventory, await publish(bootstrap, first, second, nowhere))

    assert await inventory.events(f"stock-{here}:{lot}") == [
        "StockReceived",
        "VialOpened",
        "DoseConsumed",
        "StockDiscrepancyDetected",
    ]
    # (The topic is shared: earlier runs' doses name other sites and lots.)
    reasons = await inventory.pool.fetch(
        "SELECT stream_id, data->>'reason' AS reason FROM events "
        "WHERE type = 'StockDiscrepancyDetected' AND stream_id = ANY($1)",
        [f"stock-{here}:{lot}", f"stock-{elsewhere}:{lot}"],
    )
    assert {(r["stream_id"], r["reason"]) for r in reasons} == {
        (f"stock-{here}:{lot}", "no_doses_left"),
        (f"stock-{elsewhere}:{lot}", "lot_not_held"),
    }
    stock = await inventory.stock(here, lot)
    assert (stock["sealed_vials"], stock["open_doses"], stock["discrepancies"]) == (0, 0, 1)
    metrics = await (await inventory.client.get("/metrics")).text()
    # (lot_not_held also counts earlier runs' doses, read from the shared topic.)
    assert 'immunreg_inventory_stock_discrepancies_total{reason="no_doses_left"} 1.0' in metrics


async def test_the_expiry_sweep_records_an_open_vial_that_ran_out_of_time(
    inventory: Inventory, bootstrap: str
) -> None:
    lot = await inventory.receive_lot(10)
    here = site()
    await inventory.ship(lot, here, 2)
    # Given 8 hours ago: the vial it opened was usable for 6 hours (Comirnaty).
    await publish(bootstrap, dose_administered(here, lot, at=utcnow() - timedelta(hours=8)))

    async def expired() -> bool:
        return "OpenedVialExpired" in await inventory.events(f"stock-{here}:{lot}")

    await eventually(expired, "the background sweep expired the open vial")
    assert await inventory.events(f"stock-{here}:{lot}") == [
        "StockReceived",
        "VialOpened",
        "DoseConsumed",
        "OpenedVialExpired",
    ]
    stock = await inventory.stock(here, lot)
    assert (stock["open_vials"], stock["sealed_vials"], stock["doses_available"]) == (0, 1, 6)
    metrics = await (await inventory.client.get("/metrics")).text()
    assert 'immunreg_inventory_doses_wasted_total{reason="opened_vial_expired"} 5.0' in metrics
