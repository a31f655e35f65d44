"""The delivery loop: sends what is due, one sender per schema.

A session advisory lock elects the sender among replicas (like the outbox relay), so
a message is never sent by two processes at once. The one that takes the lock first
puts every message a dead sender left `sending` back in the queue: such a message may
or may not have reached the server, and is sent again under the same id (see
docs/security.md, "Notifications": exactly once at the SMS gateway, at least once over
SMTP).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from immunreg.eventstore.locks import session_lock

from . import readmodel
from .handlers import Dependencies, deliver_due

log = logging.getLogger(__name__)


async def run_sender(deps: Dependencies, pool: asyncpg.Pool, schema: str, poll: float) -> None:
    """Deliver due messages for ever (cancel to stop)."""
    while True:
        try:
            async with pool.acquire() as conn, session_lock(conn, f"{schema}:sender") as leader:
                if not leader:
                    await asyncio.sleep(poll)
                    continue
                released = await readmodel.release_claims(conn)
                if released:
                    log.warning(
                        "%d message(s) left mid-send by a stopped sender: sending again", released
                    )
                while True:
                    if not await deliver_due(deps, pool):
                        await asyncio.sleep(poll)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the sender failed; starting again")
            await asyncio.sleep(poll)
