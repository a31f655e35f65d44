"""Reading what actually reached Kafka, for assertions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from immunreg.messaging.topics import ensure_topics


@dataclass
class KafkaTools:
    bootstrap: str

    async def create(self, *topics: str, partitions: int = 3) -> None:
        await ensure_topics(self.bootstrap, topics, partitions=partitions)

    async def read_all(
        self,
        topic: str,
        expect: int,
        timeout: float = 60.0,
        settle: float = 1.0,
        isolation_level: str = "read_committed",
    ) -> list[ConsumerRecord]:
        """Every committed message on topic (with "read_uncommitted", aborted ones too);
        waits for `expect`, then `settle` more seconds so that surplus (duplicate)
        messages would show up too."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level=isolation_level,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        records: list[ConsumerRecord] = []
        try:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + timeout
            settled_at: float | None = None
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=250)
                for messages in batch.values():
                    records.extend(messages)
                if len(records) >= expect:
                    settled_at = settled_at or time.monotonic()
                    if time.monotonic() - settled_at >= settle:
                        break
                await asyncio.sleep(0)
        finally:
            await consumer.stop()
        return records
