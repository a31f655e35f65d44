"""Fixtures for the HTTP kit's unit tests: real keys, real servers, no database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization

from immunreg.http import (
    Api,
    Role,
    TokenVerifier,
    TrustedKeys,
    ensure_dev_keys,
    issue_token,
    middlewares,
)
from immunreg.http.auth import DEV_AUDIENCE, DEV_ISSUER
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
    return TokenVerifier(TrustedKeys.read(key_paths[1]))


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


def token_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a good admin token for the development issuer; None drops a claim."""
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "x",
        "role": "admin",
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "iat": now,
        "exp": now + timedelta(hours=1),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def signed_token(key: Any, kid: str | None, **overrides: Any) -> str:
    """A token over `token_claims(**overrides)`, signed ES256 by `key` (a PEM or a key)."""
    if isinstance(key, bytes):
        key = serialization.load_pem_private_key(key, password=None)
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(token_claims(**overrides), key, algorithm="ES256", headers=headers)


def build_app(api: Api, metrics: Metrics, verifier: TokenVerifier | None) -> web.Application:
    app = web.Application(middlewares=middlewares(metrics, verifier))
    api.register(app)
    return app
