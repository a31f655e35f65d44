"""Runs one OutboxRelay in its own process, so a test can SIGKILL it for real.

    python -m tests.integration.support.relay_process DSN SCHEMA BOOTSTRAP BATCH
        [--die-after-sends N | --die-after-commits N]

The --die options make the process kill itself with SIGKILL at an exact point
(mid-batch, or between the Kafka commit and the outbox delete); the relay code
itself is the shipped one, untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer

from immunreg.eventstore.relay import OutboxRelay
from immunreg.eventstore.signal import OutboxSignal


def arm(option: str, count: int) -> None:
    """Die at the count-th message handed to Kafka ("sends": the relay hands over
    record batches, so a batch counts its messages) or Kafka commit ("commits")."""
    calls = 0

    def wrap(method: str, counted: Callable[..., int]) -> None:
        original = getattr(AIOKafkaProducer, method)

        async def wrapped(self: AIOKafkaProducer, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            result = await original(self, *args, **kwargs)
            calls += counted(*args)
            if calls >= count:
                if option == "sends":
                    await asyncio.sleep(0.05)  # let some of the batch reach the broker
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(AIOKafkaProducer, method, wrapped)

    if option == "sends":
        wrap("send", lambda *args: 1)
        wrap("send_batch", lambda batch, *args: batch.record_count())
    else:
        wrap("commit_transaction", lambda *args: 1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("bootstrap")
    parser.add_argument("batch", type=int)
    parser.add_argument("--die-after-sends", type=int)
    parser.add_argument("--die-after-commits", type=int)
    args = parser.parse_args()
    if args.die_after_sends:
        arm("sends", args.die_after_sends)
    if args.die_after_commits:
        arm("commits", args.die_after_commits)
    relay = OutboxRelay(
        args.dsn,
        args.schema,
        args.bootstrap,
        signal=OutboxSignal(args.schema),
        batch_size=args.batch,
        poll_interval=0.1,
        retry_delay=0.2,
    )
    await relay.run()


if __name__ == "__main__":
    asyncio.run(main())
