"""Runs one EventConsumer in its own process, so a test can kill it for real.

    python -m tests.integration.support.consumer_process DSN SCHEMA BOOTSTRAP CONTEXT GROUP
        [--die-after-applies N]

Its handler records every application of a Counted event in `applications`
(no unique key, so a double application would show). --die-after-applies makes
the process SIGKILL itself inside the handler, mid-transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from immunreg.contracts.envelope import Context, Envelope
from immunreg.eventstore.database import Connection, create_pool
from immunreg.messaging import EventConsumer, Reactions
from tally import Counted, tally_context

APPLICATIONS_DDL = """
CREATE TABLE IF NOT EXISTS applications (
    event_id uuid NOT NULL, stream_id text NOT NULL, version int NOT NULL
)
"""


async def record_application(conn: Connection, envelope: Envelope) -> None:
    """One row per application of an event: a double application would show."""
    await conn.execute(
        "INSERT INTO applications VALUES ($1, $2, $3)",
        envelope.event_id,
        envelope.stream_id,
        envelope.version,
    )


def counting_reactions(ctx: Context) -> Reactions:
    """Reactions that record every Counted event of `ctx` in `applications`."""
    reactions = Reactions()

    @reactions.on(ctx, Counted)
    async def counted(conn: Connection, event: Counted, envelope: Envelope) -> None:
        await record_application(conn, envelope)

    return reactions


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("dsn", "schema", "bootstrap", "context", "group"):
        parser.add_argument(name)
    parser.add_argument("--die-after-applies", type=int, default=0)
    args = parser.parse_args()
    pool = await create_pool(args.dsn, args.schema)
    ctx = tally_context(args.context)
    reactions = Reactions()
    applied = 0

    @reactions.on(ctx, Counted)
    async def count(conn: Connection, event: Counted, envelope: Envelope) -> None:
        nonlocal applied
        await record_application(conn, envelope)
        applied += 1
        if args.die_after_applies and applied >= args.die_after_applies:
            os.kill(os.getpid(), signal.SIGKILL)

    consumer = EventConsumer(pool, args.bootstrap, args.group, reactions, batch_size=200)
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main())
