"""Which errors mean "PostgreSQL cannot serve now" (a 503 to retry) and which are bugs."""

from __future__ import annotations

import asyncpg
import pytest

from immunreg.eventstore.errors import database_unavailable


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (ConnectionResetError(), "unreachable"),
        (OSError("Multiple exceptions: connect call failed"), "unreachable"),
        (TimeoutError(), "timeout"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("closed"), "connection_lost"),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), "server_refuses"),
        (asyncpg.exceptions.AdminShutdownError("terminating"), "server_refuses"),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), "server_refuses"),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), "statement_timeout"),
    ],
)
def test_outages_are_recognised(error: BaseException, reason: str) -> None:
    assert database_unavailable(error) == reason


def test_the_cause_counts_too() -> None:
    try:
        raise RuntimeError("wrapped") from ConnectionRefusedError()
    except RuntimeError as error:
        assert database_unavailable(error) == "unreachable"


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        FileNotFoundError("key file"),
        asyncpg.exceptions.UniqueViolationError("duplicate"),
        asyncpg.exceptions.UndefinedTableError("missing"),
    ],
)
def test_bugs_and_refusals_are_not_outages(error: BaseException) -> None:
    assert database_unavailable(error) is None
