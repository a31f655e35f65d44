"""Fixtures for the HTTP kit's unit tests: real keys, real servers, no database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from immunreg.http import Api, Role, TokenVerifier, ensure_dev_keys, issue_token, middlewares
from immunreg.observability.metrics import Metrics

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="session")
def key_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def private_pem(key_paths: tuple[Path, Path]) -> bytes:
    return key_paths[0].read_bytes()


@pytest.fixture(scope="session")
def verifier(key_paths: tuple[Path, Path]) -> TokenVerifier:
    return TokenVerifier(key_paths[1].read_bytes())


@pytest.fixture
def bearer(private_pem: bytes) -> Callable[..., dict[str, str]]:
    """Authorization headers for a freshly issued token."""

    def make(role: Role, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(private_pem, role, **claims)}"}

    return make


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[Client]]]:
    """Start a real server for an app; every server is closed after the test."""
    clients: list[Client] = []

    async def start(app: web.Application) -> Client:
        client: Client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


def build_app(api: Api, metrics: Metrics, verifier: TokenVerifier | None) -> web.Application:
    app = web.Application(middlewares=middlewares(metrics, verifier))
    api.register(app)
    return app
