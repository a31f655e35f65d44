"""Readiness covers the read model's own consumer, not only the service's database."""

from __future__ import annotations

import asyncio

from .conftest import Projections


async def test_readyz_waits_for_the_read_model_consumer(projections: Projections) -> None:
    body: dict[str, object] = {}
    for _ in range(100):
        response = await projections.client.get("/readyz")
        body = await response.json()
        if response.status == 200:
            break
        await asyncio.sleep(0.1)
    assert body["status"] == "ready", body
    assert body["checks"] == {"database": True, "kafka": True, "read_model": True}
