"""Errors the event store raises."""

from __future__ import annotations

import socket

import asyncpg


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream first: load again and re-decide."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


class StreamNotFound(Exception):
    """The stream has no events."""


# The server is there but refuses work for now: starting, shutting down, full.
_SERVER_REFUSES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def database_unavailable(error: BaseException) -> str | None:
    """Why `error` means PostgreSQL cannot serve now (a reason for metrics), or None.

    None for everything else, including errors in the request or the code: only
    these may be retried by the client as they are.
    """
    for cause in (error, error.__cause__):
        if cause is None:
            continue
        if isinstance(cause, asyncpg.exceptions.QueryCanceledError):
            return "statement_timeout"  # statement_timeout (or an operator's cancel)
        if isinstance(cause, asyncpg.exceptions.IdleInTransactionSessionTimeoutError):
            return "statement_timeout"
        if isinstance(cause, _SERVER_REFUSES):
            return "server_refuses"
        if isinstance(cause, asyncpg.PostgresConnectionError):
            return "connection_lost"
        if isinstance(cause, TimeoutError):
            # Pool acquire, connect or command timeout: the server does not answer.
            return "timeout"
        # Connection refused or reset; a plain OSError is what asyncio raises when
        # no address of the host answers. Subclasses such as FileNotFoundError are bugs.
        if isinstance(cause, ConnectionError | socket.gaierror) or type(cause) is OSError:
            return "unreachable"
    return None
