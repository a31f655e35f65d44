"""Session-wide fixtures: the real PostgreSQL and Kafka, started once per run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from immunreg import localinfra


@pytest.fixture(scope="session")
def infra() -> Iterator[dict[str, str]]:
    """Endpoints of the local (or environment-named) PostgreSQL and Kafka.

    `make test` has already brought them up; this only makes a direct
    `pytest` run work too.
    """
    endpoints = localinfra.up()
    os.environ.setdefault("DATABASE_URL", endpoints["DATABASE_URL"])
    os.environ.setdefault("KAFKA_BOOTSTRAP_SERVERS", endpoints["KAFKA_BOOTSTRAP_SERVERS"])
    yield endpoints


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """API fuzzing goes last: it leaves random citizens, sites and lots in the e2e stack."""
    items.sort(key=lambda item: item.get_closest_marker("fuzz") is not None)
