"""All services running as real processes, driven over HTTP as a client would.

Each run uses its own schemas (so its own consumer groups) and its own ports,
so it neither disturbs `make run` nor another test run on the same machine.
Kafka topics are shared: tests use fresh ids and never assume a topic is empty.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from immunreg.config import DEFAULT_E2E_PORT_BASE, DEFAULT_PORTAL_PORT, local_port
from immunreg.discovery import available_services
from immunreg.http.auth import Role, ensure_dev_keys, issue_token
from immunreg.localinfra.services import IsolatedStack
from immunreg.paths import REPO_ROOT, keys_dir, state_dir

pytestmark = pytest.mark.e2e


class Stack:
    """URLs of the running services and a way to mint tokens for them."""

    def __init__(
        self,
        urls: dict[str, str],
        private_key: bytes,
        mailbox: str,
        portal_port: int,
        log_offsets: dict[Path, int],
        *,
        namespace: str,
    ) -> None:
        self.urls = urls
        self._private_key = private_key
        self.mailbox = mailbox  # the local mailbox's base URL (every e-mail and SMS sent)
        # Where a portal for this stack listens (the services allow it by CORS); the
        # portal's browser test starts it.
        self.portal_port = portal_port
        # How long each log file was before the run: what follows is the run's.
        self.log_offsets = log_offsets
        # The stack's topics are its own (under the session's namespace): the services
        # other tests start never hear it, nor it them.
        self.namespace = namespace

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
    # The portal's place in the stack's ports: 8080's, as the services take theirs.
    portal_port = base + DEFAULT_PORTAL_PORT - 8080
    logs = state_dir() / "logs"
    log_offsets = {log: log.stat().st_size for log in logs.glob("*.log")}
    with mailbox_process() as (smtp_port, mailbox_url):
        outbound = {
            "CORS_ORIGINS": f"http://127.0.0.1:{portal_port}",
            "SMTP_PORT": str(smtp_port),
            "SMS_GATEWAY_URL": f"{mailbox_url}/v1/sms",
            "NOTIFICATIONS_POLL_INTERVAL": "0.2",
        }
        running = IsolatedStack.start(
            {**infra, **outbound}, names, base, f"e2e_{uuid.uuid4().hex[:8]}"
        )
        try:
            yield Stack(
                running.urls,
                private.read_bytes(),
                mailbox_url,
                portal_port,
                log_offsets,
                namespace=running.namespace,
            )
        finally:
            running.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def mailbox_process() -> Iterator[tuple[int, str]]:
    """`immunreg mailbox` on free ports: (its SMTP port, its base URL)."""
    smtp_port, http_port = _free_port(), _free_port()
    env = {"IMMUNREG_SMTP_PORT": str(smtp_port), "IMMUNREG_SMS_GATEWAY_PORT": str(http_port)}
    with cli_server("mailbox", env, http_port) as url:
        yield smtp_port, url


@pytest.fixture
def portal(stack: Stack) -> Iterator[str]:
    """`immunreg portal` for this stack's services, on the port they allow by CORS."""
    env = {f"{name.upper()}_PUBLIC_URL": url for name, url in stack.urls.items()}
    with cli_server("portal", {**env, "PORTAL_PORT": str(stack.portal_port)}, stack.portal_port):
        yield f"http://127.0.0.1:{stack.portal_port}"


@contextlib.contextmanager
def cli_server(command: str, env: dict[str, str], port: int) -> Iterator[str]:
    """`immunreg <command>` with `env` added, once it answers /readyz on `port`: its URL."""
    log = state_dir() / "logs" / f"{command}-e2e-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "immunreg.cli", command],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log.read_text()[-2000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
