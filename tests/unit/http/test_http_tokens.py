"""Token verification (algorithm, kid, issuer, audience, lifetime), key rotation through
the JWKS, production mode's refusals, and the development token command."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web

from conftest import Client, build_app, signed_token, token_claims
from immunreg.cli import main
from immunreg.config import PRODUCTION, Settings
from immunreg.http import Api, Principal, Problem, Role, TokenVerifier, TrustedKeys, issue_token
from immunreg.http.auth import ensure_dev_keys, production_problems, token_verifier
from immunreg.http.jwks import signing_key_id
from immunreg.observability.metrics import Metrics

Serve = Callable[..., Any]
HOUR = timedelta(hours=1)


def _unsigned(kid: str) -> str:
    # `alg: none`: no signature at all, the oldest JWT forgery.
    return jwt.encode(token_claims(), "", algorithm="none", headers={"kid": kid})


def _public_api() -> Api:
    api = Api("t", "1")

    @api.get("/v1/who", responses={200: None}, roles={Role.ADMIN})
    async def who(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    return api


@pytest.fixture
async def client(serve: Serve, verifier: TokenVerifier) -> Client:
    client: Client = await serve(build_app(_public_api(), Metrics("tokens"), verifier))
    return client


def _refusals(private_pem: bytes) -> dict[str, tuple[str, str]]:
    kid = signing_key_id(private_pem)
    now = datetime.now(UTC)
    return {
        "alg none": (_unsigned(kid), "only ES256"),
        "wrong issuer": (signed_token(private_pem, kid, iss="somebody-else"), "issuer"),
        "wrong audience": (signed_token(private_pem, kid, aud="elsewhere"), "audience"),
        "over-long lifetime": (
            signed_token(private_pem, kid, exp=now + timedelta(hours=12, minutes=1)),
            "longer than the maximum",
        ),
        "no exp": (signed_token(private_pem, kid, exp=None), "'exp'"),
        "no iat": (signed_token(private_pem, kid, iat=None), "'iat'"),
        "unknown kid": (signed_token(private_pem, "retired-2019"), "unknown key"),
        "no kid": (signed_token(private_pem, None), "kid"),
        "issued in the future": (
            signed_token(private_pem, kid, iat=now + HOUR, exp=now + 2 * HOUR),
            "future",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "alg none",
        "wrong issuer",
        "wrong audience",
        "over-long lifetime",
        "no exp",
        "no iat",
        "unknown kid",
        "no kid",
        "issued in the future",
    ],
)
async def test_a_bad_token_is_401_problem_json_naming_why(
    client: Client, private_pem: bytes, case: str
) -> None:
    token, reason = _refusals(private_pem)[case]
    response = await client.get("/v1/who", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert response.content_type == "application/problem+json"
    assert reason in (await response.json())["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    # The one difference is what is refused: the honest token passes.
    good = signed_token(private_pem, signing_key_id(private_pem))
    assert (await client.get("/v1/who", headers={"Authorization": f"Bearer {good}"})).status == 204


def _jwks_of(*paths: Path) -> bytes:
    keys = [k for p in paths for k in json.loads(p.read_text())["keys"]]
    return json.dumps({"keys": keys}).encode()


def test_two_trusted_keys_both_verify_and_a_dropped_key_no_longer_does(tmp_path: Path) -> None:
    old_private, old_jwks = ensure_dev_keys(tmp_path / "old")
    new_private, new_jwks = ensure_dev_keys(tmp_path / "new")
    during = TokenVerifier(TrustedKeys.from_jwks(_jwks_of(old_jwks, new_jwks)))
    old_token = issue_token(old_private.read_bytes(), Role.ADMIN, subject="a")
    new_token = issue_token(new_private.read_bytes(), Role.ADMIN, subject="b")
    assert during.verify(old_token) == Principal("a", Role.ADMIN)
    assert during.verify(new_token) == Principal("b", Role.ADMIN)
    after = TokenVerifier(TrustedKeys.read(new_jwks))
    assert after.verify(new_token) == Principal("b", Role.ADMIN)
    with pytest.raises(Problem, match="unknown key"):
        after.verify(old_token)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda k: {**k, "d": "secret"}, "private members"),
        (lambda k: {**k, "alg": "RS256"}, "is for RS256"),
        (lambda k: {key: v for key, v in k.items() if key != "kid"}, "no kid"),
    ],
)
def test_a_jwks_entry_that_is_not_a_public_es256_key_is_refused(
    key_paths: tuple[Path, Path], change: Callable[[dict[str, Any]], dict[str, Any]], reason: str
) -> None:
    entry = json.loads(key_paths[1].read_text())["keys"][0]
    with pytest.raises(ValueError, match=reason):
        TrustedKeys.from_jwks(json.dumps({"keys": [change(entry)]}))
    with pytest.raises(ValueError, match="twice"):
        TrustedKeys.from_jwks(json.dumps({"keys": [entry, entry]}))


# --- production mode --------------------------------------------------------------------


def _settings(**overrides: Any) -> Settings:
    return Settings(
        service="registration",
        database_url="postgresql://unused",
        db_schema="registration",
        kafka_bootstrap="unused:9092",
        **overrides,
    )


@pytest.fixture(autouse=True)
def kafka_authenticates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Production's Kafka settings (tests/unit/foundation/test_kafka_access.py checks them)."""
    password = tmp_path / "kafka-password"
    password.write_text("secret")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "registration")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(password))


@pytest.fixture
def production_keys(tmp_path: Path) -> Path:
    """A JWKS as production would hold it: a key not named dev-, alone in its folder."""
    _, jwks = ensure_dev_keys(tmp_path / "issuer")
    entry = json.loads(jwks.read_text())["keys"][0]
    entry["kid"] = "registry-2026-01"
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "jwks.json").write_text(json.dumps({"keys": [entry]}))
    return trusted / "jwks.json"


def _production(jwks: Path | None) -> Settings:
    return _settings(
        environment=PRODUCTION,
        jwt_jwks_file=str(jwks) if jwks else None,
        jwt_issuer="https://id.example.rs",
        jwt_audience="immunreg",
    )


def test_production_starts_with_an_issuer_an_audience_and_public_keys_only(
    production_keys: Path,
) -> None:
    assert production_problems(_production(production_keys)) == []
    assert token_verifier(_production(production_keys)) is not None


def test_production_refuses_missing_issuer_and_audience(production_keys: Path) -> None:
    settings = replace(_production(production_keys), jwt_issuer=None, jwt_audience=None)
    with pytest.raises(RuntimeError) as refused:
        token_verifier(settings)
    assert "refuses to start in production mode" in str(refused.value)
    assert "JWT_ISSUER is not set" in str(refused.value)
    assert "JWT_AUDIENCE is not set" in str(refused.value)


def test_production_refuses_the_generated_development_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMMUNREG_KEYS_DIR", str(tmp_path / "keys"))
    _, dev_jwks = ensure_dev_keys(tmp_path / "keys")
    assert token_verifier(_settings()) is not None  # development: the default, as before
    unset = production_problems(_production(None))
    assert ["JWT_JWKS_FILE is not set" in p for p in unset] == [True]
    named = production_problems(_production(dev_jwks))
    assert any("generated development keys" in p for p in named), named


def test_production_refuses_a_readable_private_key_beside_the_trusted_keys(
    production_keys: Path, key_paths: tuple[Path, Path]
) -> None:
    stray = production_keys.with_name("signing.pem")
    stray.write_bytes(key_paths[0].read_bytes())
    problems = production_problems(_production(production_keys))
    assert any("readable" in p and "signing.pem" in p for p in problems), problems
    stray.unlink()
    if os.geteuid() != 0:  # root reads any file, so an unreadable key cannot be shown here
        stray.write_bytes(key_paths[0].read_bytes())
        stray.chmod(0)
        assert production_problems(_production(production_keys)) == []


def test_production_refuses_a_jwks_carrying_private_members(production_keys: Path) -> None:
    document = json.loads(production_keys.read_text())
    document["keys"][0]["d"] = "c2VjcmV0"
    production_keys.write_text(json.dumps(document))
    problems = production_problems(_production(production_keys))
    assert any("private members" in p for p in problems), problems


# --- the development token command ---------------------------------------------------------


def test_the_token_command_mints_with_a_kid_and_a_bounded_lifetime(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IMMUNREG_KEYS_DIR", str(tmp_path))
    assert main(["token", "--role", "admin", "--hours", "2"]) == 0
    token = capsys.readouterr().out.strip()
    private, jwks = ensure_dev_keys(tmp_path)
    assert jwt.get_unverified_header(token)["kid"] == signing_key_id(private.read_bytes())
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 2 * 3600
    assert TokenVerifier(TrustedKeys.read(jwks)).verify(token).role is Role.ADMIN

    assert main(["token", "--role", "admin", "--hours", "13"]) == 1
    assert "longer than the maximum token lifetime" in capsys.readouterr().err
    monkeypatch.setenv("IMMUNREG_ENV", "production")
    assert main(["token", "--role", "admin"]) == 1
    assert "not in production mode" in capsys.readouterr().err
