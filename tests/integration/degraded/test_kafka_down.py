"""Kafka down: commands keep succeeding into the outbox, the instance stays in
rotation (degraded), and when Kafka returns every accepted event is published in order.

The test runs a Kafka broker of its own (the official jars the worktree already
fetched, a small heap, free ports), so stopping it disturbs nothing else; it
costs a broker start and a restart, about 10-20 s on two cores.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from immunreg.contracts.envelope import decode_envelope
from immunreg.contracts.registration import CONTEXT
from immunreg.eventstore.relay import POSITION_HEADER, decode_position
from immunreg.localinfra.kafka import LocalKafka
from immunreg.localinfra.stack import share_jars
from immunreg.messaging.topics import ensure_topics, wait_for_kafka

from ..registration.conftest import Registration, running_registration
from ..support.kafka import KafkaTools
from ..support.ports import free_port

ACCEPTED_WHILE_DOWN = 6


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    root = tmp_path_factory.mktemp("kafka")
    share_jars(root / "libs")
    kafka = LocalKafka(root, port=free_port(), controller_port=free_port(), heap="256m")
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


async def metric(registration: Registration, line_start: str) -> float:
    text = await (await registration.client.get("/metrics")).text()
    line = next(line for line in text.splitlines() if line.startswith(line_start))
    return float(line.rsplit(" ", 1)[1])


async def until_ready(registration: Registration, failure: str) -> None:
    """Registration consumes booking's and administration's events (its `citizen_sites`):
    it is ready once its consumer has joined, which takes a moment after start."""
    deadline = time.monotonic() + 30
    while (await (await registration.client.get("/readyz")).json())["status"] != "ready":
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.3)


async def test_with_kafka_down_commands_succeed_and_are_published_in_order_later(
    dsn: str, own_kafka: LocalKafka, tmp_path: Path
) -> None:
    await wait_for_kafka(own_kafka.bootstrap, seconds=60)
    await ensure_topics(own_kafka.bootstrap, [CONTEXT.topic], partitions=3)
    async with running_registration(dsn, own_kafka.bootstrap, tmp_path) as registration:
        accepted = [await registration.register()]
        await until_ready(registration, "not ready with Kafka up")

        await asyncio.to_thread(own_kafka.stop)
        for _ in range(ACCEPTED_WHILE_DOWN):
            started = time.monotonic()
            accepted.append(await registration.register())  # 201, into the outbox
            assert time.monotonic() - started < 2.0
        ready = await registration.client.get("/readyz")
        body = await ready.json()
        assert ready.status == 200, body
        assert body["status"] == "degraded" and body["degraded"] == ["kafka"], body
        # Registration now consumes (citizen_sites): its consumer is listed, and counts
        # as degraded, not failed, while Kafka is down.
        assert body["checks"] == {"database": True, "kafka": False, "consumers": True}
        assert await metric(registration, 'immunreg_dependency_up{dependency="kafka"}') == 0
        assert await metric(registration, 'immunreg_dependency_up{dependency="database"}') == 1
        backlog = await registration.pool.fetchval("SELECT count(*) FROM outbox")
        assert backlog >= ACCEPTED_WHILE_DOWN

        await asyncio.to_thread(own_kafka.start)
        # Every registration writes one event (no holder runs here to be granted a key).
        records = await KafkaTools(own_kafka.bootstrap).read_all(
            CONTEXT.topic, expect=len(accepted), timeout=45
        )
        mine = [r for r in records if r.key is not None and r.key.decode() in accepted]
        assert sorted({r.key.decode() for r in mine if r.key}) == sorted(accepted)
        assert len(mine) == len(accepted)  # none lost, none twice
        by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
        by_stream: dict[str, list[int]] = defaultdict(list)
        for record in mine:
            headers = dict(record.headers)
            by_partition[record.partition].append(decode_position(headers[POSITION_HEADER]))
            envelope = decode_envelope(record.value)
            by_stream[envelope.stream_id].append(envelope.version)
        for positions in by_partition.values():
            assert positions == sorted(positions)  # the outbox's order, nothing skipped
        assert all(versions == [1] for versions in by_stream.values()), by_stream
        assert await registration.pool.fetchval("SELECT count(*) FROM outbox") == 0

        await until_ready(registration, "not ready again after Kafka returned")
        assert await metric(registration, 'immunreg_dependency_up{dependency="kafka"}') == 1
