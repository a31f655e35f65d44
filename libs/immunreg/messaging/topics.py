"""Topic administration: waiting for the cluster and creating topics idempotently."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from immunreg.messaging.connection import client_options

# Event topics are the system of record for rebuilding projections.
TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1"}


async def wait_for_kafka(bootstrap: str, seconds: float = 60) -> None:
    """Wait until the cluster answers a metadata request."""
    deadline = time.monotonic() + seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=5000
        )
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            last = exc
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
    raise RuntimeError(f"Kafka at {bootstrap} did not answer within {seconds}s: {last!r}")


async def cluster_id(bootstrap: str, timeout: float = 10) -> str | None:
    """The id of the Kafka cluster at bootstrap, or None if nothing there answers as Kafka."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=int(timeout * 1000)
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            found = (await admin.describe_cluster()).get("cluster_id")
    except (KafkaError, OSError, TimeoutError):
        return None
    finally:
        await admin.close()
    return str(found) if found else None


async def ensure_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    """Create every topic in names that does not exist yet (replication 1 locally)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=30000
    )
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1, topic_configs=dict(TOPIC_CONFIG))
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if not missing:
            return
        # Another process may create one between list and create.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(missing)
        # Metadata propagates asynchronously; wait until every topic is listed.
        for _ in range(100):
            if {t.name for t in missing} <= set(await admin.list_topics()):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_namespace(bootstrap: str, namespace: str) -> list[str]:
    """Delete every topic whose name starts with namespace (a finished run's topics)."""
    if not namespace:
        raise ValueError("refusing to delete every topic: the namespace is empty")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=30000
    )
    try:
        await admin.start()
        doomed = [t for t in await admin.list_topics() if t.startswith(namespace)]
        if doomed:
            await admin.delete_topics(doomed)
        return doomed
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every committed message of `topic`, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_options(),
        isolation_level="read_committed",
        enable_auto_commit=False,
        group_id=None,
    )
    records: list[ConsumerRecord] = []
    try:
        await consumer.start()
        partitions = await topic_partitions(consumer, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
            empty_polls = 0
            # Transaction markers occupy offsets too: a few empty polls short of
            # the end mean only markers remain.
            while await consumer.position(tp) < ends[tp] and empty_polls < 3:
                batch = await consumer.getmany(tp, timeout_ms=500)
                empty_polls = 0 if batch else empty_polls + 1
                records.extend(r for r in batch.get(tp, []) if r.offset < ends[tp])
    finally:
        await consumer.stop()
    return records


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The topic's partitions, refreshing metadata until the broker knows the topic."""
    client: Any = consumer._client  # the public API offers no metadata refresh
    for _ in range(20):
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        await client.force_metadata_update()
    raise RuntimeError(f"there is no topic {topic!r}")
