"""All services running as real processes, driven over HTTP as a client would.

Each run uses its own schemas (so its own consumer groups) and its own ports,
so it neither disturbs `make run` nor another test run on the same machine.
Kafka topics are shared: tests use fresh ids and never assume a topic is empty.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from immunreg.config import DEFAULT_E2E_PORT_BASE, local_port
from immunreg.discovery import available_services
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import keys_dir

pytestmark = pytest.mark.e2e


class Stack:
    """URLs of the running services and a way to mint tokens for them."""

    def __init__(self, urls: dict[str, str], private_key: bytes) -> None:
        self.urls = urls
        self._private_key = private_key

    def token(
        self,
        role: str,
        *,
        site_id: str | None = None,
        citizen_id: str | None = None,
        subject: str | None = None,
    ) -> dict[str, str]:
        """Authorization headers for a development token."""
        token = issue_token(
            self._private_key, Role(role), site_id=site_id, citizen_id=citizen_id, subject=subject
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def stack(infra: dict[str, str]) -> Iterator[Stack]:
    names = available_services()
    if not names:
        pytest.skip("no services exist yet")
    private, _ = ensure_dev_keys(keys_dir())
    base = local_port("E2E_PORT_BASE", DEFAULT_E2E_PORT_BASE)
    running = IsolatedStack.start(infra, names, base, f"e2e_{uuid.uuid4().hex[:8]}")
    try:
        yield Stack(running.urls, private.read_bytes())
    finally:
        running.stop()
