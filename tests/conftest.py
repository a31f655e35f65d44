"""Session-wide set-up: the real PostgreSQL and Kafka, and a test run isolated from others.

Every pytest session gets a topic namespace and a keys folder of its own, so it
never reads or writes the topics of `make run` (or of another session on the
same broker), never signs with `make run`'s keys, and leaves neither behind.
Schemas and consumer groups are per test or per stack already.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator

import pytest

from immunreg import localinfra
from immunreg.config import setting
from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.messaging.topics import delete_namespace
from immunreg.paths import state_dir


def _run_folder(run: str) -> str:
    return str(state_dir() / "test-runs" / run)


# Set when this file is imported, not in pytest_configure: pytest imports the conftest.py
# files below this one (which import services, whose reactions read topic names) before
# it calls any pytest_configure, and this one first.
RUN = f"t{uuid.uuid4().hex[:10]}"
os.environ[TOPIC_NAMESPACE_VARIABLE] = f"{RUN}."
os.environ["IMMUNREG_KEYS_DIR"] = os.path.join(_run_folder(RUN), "keys")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Delete the session's topics and keys (the broker may already be gone: then skip)."""
    run = RUN
    bootstrap = setting("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        try:
            asyncio.run(asyncio.wait_for(delete_namespace(bootstrap, f"{run}."), 30))
        except Exception as exc:  # a finished session must not fail on its clean-up
            print(f"could not delete the topics of test run {run}: {exc!r}")
    shutil.rmtree(_run_folder(run), ignore_errors=True)


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


# Runs after every other test: it scans what the e2e tests left behind.
PERSONAL_DATA_SCAN = "test_personal_data_scan"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """API fuzzing goes late: it leaves random citizens, sites and lots in the e2e stack;
    the personal-data scan goes last, after everything that writes to that stack."""
    items.sort(
        key=lambda item: (
            item.path.stem == PERSONAL_DATA_SCAN,
            item.get_closest_marker("fuzz") is not None,
        )
    )
