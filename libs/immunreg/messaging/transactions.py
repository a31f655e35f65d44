"""One Kafka transaction around a batch of sends: all of it is visible, or none of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from aiokafka import AIOKafkaProducer


@contextlib.asynccontextmanager
async def kafka_transaction(producer: AIOKafkaProducer) -> AsyncIterator[list[Awaitable[Any]]]:
    """Begin a transaction; yield a list for the sends' delivery futures.

    On leaving the block every send is awaited, then the transaction commits. Any
    failure (a send, the commit, or the block itself) aborts it and is raised again.
    A process that dies inside aborts nothing itself: the next producer with the same
    transactional id fences the open transaction, and read_committed consumers never
    see its messages.
    """
    await producer.begin_transaction()
    try:
        deliveries: list[Awaitable[Any]] = []
        yield deliveries
        await asyncio.gather(*deliveries)
        await producer.commit_transaction()
    except BaseException:
        with contextlib.suppress(Exception):
            await producer.abort_transaction()
        raise
