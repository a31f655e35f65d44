"""Production mode, as an operator meets it: `immunreg serve` refuses to start and says why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from immunreg.http.auth import ensure_dev_keys

pytestmark = pytest.mark.integration


def _serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Endpoints that are never reached: the refusal comes before any connection.
    base = {
        **os.environ,
        "DATABASE_URL": "postgresql://127.0.0.1:1/none",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "IMMUNREG_ENV": "production",
    }
    for name in ("JWT_JWKS_FILE", "JWT_ISSUER", "JWT_AUDIENCE", "KAFKA_SECURITY_PROTOCOL"):
        base.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "immunreg.cli", "serve", "registration"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_refusal_is_named_on_stderr_with_a_non_zero_exit(tmp_path: Path) -> None:
    private, jwks = ensure_dev_keys(tmp_path)
    # The development JWKS, with the signing key copied beside it.
    (jwks.parent / "signer.pem").write_bytes(private.read_bytes())
    done = _serve({"JWT_JWKS_FILE": str(jwks)})
    assert done.returncode == 1
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("immunreg: registration refuses to start in production mode")
    for named in (
        "JWT_ISSUER is not set",
        "JWT_AUDIENCE is not set",
        "generated development keys",
        "signer.pem",
        "KAFKA_SECURITY_PROTOCOL is PLAINTEXT: Kafka clients would not authenticate",
    ):
        assert named in message, (named, message)


def test_without_a_configured_jwks_the_generated_keys_are_refused() -> None:
    done = _serve({"JWT_ISSUER": "https://id.example.rs", "JWT_AUDIENCE": "immunreg"})
    assert done.returncode == 1
    assert "JWT_JWKS_FILE is not set" in done.stderr
