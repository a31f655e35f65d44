"""The Api wrapper and the middleware stack, over a real aiohttp server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import Client, build_app, signed_token, token_claims
from immunreg.http import (
    Api,
    Role,
    TokenVerifier,
    current_principal,
    issue_token,
    json_response,
    metadata_from_request,
)
from immunreg.http.jwks import signing_key_id
from immunreg.observability.metrics import Metrics

Serve = Callable[[web.Application], Awaitable[Client]]


class Dose(msgspec.Struct):
    lot: str
    count: int


class Visit(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    birth_date: date
    doses: list[Dose] = []


class Recorded(msgspec.Struct):
    visit_id: str
    doses: int


class Window(msgspec.Struct):
    day: date
    limit: int = 10


def make_api() -> Api:
    api = Api(title="test", version="0.0.1")

    @api.post("/v1/visits", body=Visit, responses={201: Recorded}, roles={Role.SITE_STAFF})
    async def record_visit(request: web.Request, body: Visit) -> web.StreamResponse:
        return json_response(Recorded(visit_id=body.name, doses=len(body.doses)), status=201)

    @api.get(
        "/v1/visits/{visit_id}",
        responses={200: dict[str, Any]},
        roles={Role.ADMIN, Role.PUBLIC_HEALTH},
        query=Window,
    )
    async def read_visit(request: web.Request, query: Window) -> web.StreamResponse:
        principal = current_principal(request)
        assert principal is not None
        return json_response(
            {
                "visit_id": request.match_info["visit_id"],
                "day": query.day,
                "limit": query.limit,
                "subject": principal.subject,
            }
        )

    @api.get("/v1/public", responses={200: dict[str, Any]})
    async def public(request: web.Request) -> web.StreamResponse:
        meta = metadata_from_request(request)
        return json_response({"correlation_id": meta.correlation_id})

    @api.get("/v1/boom", responses={200: None})
    async def boom(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("password=hunter2 at db-7.internal")

    return api


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("test")


@pytest.fixture
async def client(serve: Serve, metrics: Metrics, verifier: TokenVerifier) -> Client:
    return await serve(build_app(make_api(), metrics, verifier))


STAFF = {"role": Role.SITE_STAFF, "site_id": "site-1"}
GOOD_VISIT = {"name": "v1", "birth_date": "1990-02-03", "doses": [{"lot": "L1", "count": 1}]}


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["status"] == status
    return body


# --- body decoding -----------------------------------------------------------------------


async def test_valid_body_reaches_handler_decoded(client: Client, bearer: Any) -> None:
    response = await client.post("/v1/visits", json=GOOD_VISIT, headers=bearer(**STAFF))
    assert response.status == 201
    assert await response.json() == {"visit_id": "v1", "doses": 1}


async def test_malformed_json_is_400(client: Client, bearer: Any) -> None:
    headers = {**bearer(**STAFF), "Content-Type": "application/json"}
    response = await client.post("/v1/visits", data=b'{"name": ', headers=headers)
    body = await problem_of(response, 400)
    assert body["errors"][0]["field"] == "body"


async def test_wrong_content_type_is_415(client: Client, bearer: Any) -> None:
    headers = {**bearer(**STAFF), "Content-Type": "text/plain"}
    response = await client.post(
        "/v1/visits", data=msgspec.json.encode(GOOD_VISIT), headers=headers
    )
    await problem_of(response, 415)


@pytest.mark.parametrize(
    ("visit", "field"),
    [
        ({"birth_date": "1990-02-03"}, "body.name"),
        ({"name": "v", "birth_date": "1990-02-30"}, "body.birth_date"),
        ({"name": "v", "birth_date": "1990-02-03", "doses": [{"lot": "L"}]}, "body.doses[0].count"),
        ({**GOOD_VISIT, "extra": True}, "body.extra"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    client: Client, bearer: Any, visit: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/visits", json=visit, headers=bearer(**STAFF))
    body = await problem_of(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]


async def test_query_is_decoded_and_validated(client: Client, bearer: Any) -> None:
    headers = bearer(Role.ADMIN, subject="root")
    ok = await client.get(
        "/v1/visits/abc", params={"day": "2021-05-01", "limit": "3"}, headers=headers
    )
    assert ok.status == 200
    assert await ok.json() == {
        "visit_id": "abc",
        "day": "2021-05-01",
        "limit": 3,
        "subject": "root",
    }
    bad = await client.get("/v1/visits/abc", params={"day": "may"}, headers=headers)
    assert [e["field"] for e in (await problem_of(bad, 422))["errors"]] == ["query.day"]
    missing = await client.get("/v1/visits/abc", headers=headers)
    assert (await problem_of(missing, 422))["errors"] == [
        {"field": "query.day", "reason": "missing required field"}
    ]


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        (b'{"name": "a\\u0000b", "birth_date": "1990-02-03"}', "body.name", "control"),
        (
            b'{"name": "v", "birth_date": "1990-02-03", '
            b'"doses": [{"lot": "L\\u001b", "count": 1}]}',
            "body.doses[0].lot",
            "control",
        ),
    ],
)
async def test_text_that_cannot_be_stored_is_422_naming_the_field(
    client: Client, bearer: Any, raw: bytes, field: str, reason: str
) -> None:
    headers = {**bearer(**STAFF), "Content-Type": "application/json"}
    response = await client.post("/v1/visits", data=raw, headers=headers)
    body = await problem_of(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert reason in body["errors"][0]["reason"]


async def test_free_text_keeps_tabs_and_newlines(client: Client, bearer: Any) -> None:
    visit = {**GOOD_VISIT, "name": "line one\n\tline two"}
    response = await client.post("/v1/visits", json=visit, headers=bearer(**STAFF))
    assert response.status == 201


async def test_control_characters_in_path_and_query_are_422(client: Client, bearer: Any) -> None:
    headers = bearer(Role.ADMIN, subject="root")
    in_path = await client.get("/v1/visits/a%00b", params={"day": "2021-05-01"}, headers=headers)
    assert (await problem_of(in_path, 422))["errors"][0]["field"] == "path.visit_id"


# --- roles -------------------------------------------------------------------------------


async def test_no_token_is_401_with_challenge(client: Client) -> None:
    response = await client.post("/v1/visits", json=GOOD_VISIT)
    await problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_role_is_403_right_role_is_200(client: Client, bearer: Any) -> None:
    citizen = bearer(Role.CITIZEN, citizen_id="c-1")
    await problem_of(await client.get("/v1/visits/x?day=2021-01-01", headers=citizen), 403)
    await problem_of(await client.post("/v1/visits", json=GOOD_VISIT, headers=citizen), 403)
    health = bearer(Role.PUBLIC_HEALTH)
    assert (await client.get("/v1/visits/x?day=2021-01-01", headers=health)).status == 200


async def test_expired_token_is_401(client: Client, private_pem: bytes) -> None:
    token = issue_token(
        private_pem,
        Role.SITE_STAFF,
        site_id="site-1",
        ttl=timedelta(minutes=5),
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    response = await client.post(
        "/v1/visits", json=GOOD_VISIT, headers={"Authorization": f"Bearer {token}"}
    )
    body = await problem_of(response, 401)
    assert "expired" in body["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    # Built by hand: PyJWT (rightly) refuses to sign HS256 with a PEM key.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    header = b64(msgspec.json.encode({"alg": "HS256", "typ": "JWT"}))
    signing_input = f"{header}.{b64(msgspec.json.encode(payload))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_bad_tokens_are_401_even_on_public_routes(
    client: Client, private_pem: bytes, key_paths: Any
) -> None:
    public_jwks = key_paths[1].read_bytes()
    kid = signing_key_id(private_pem)

    def signed(**claims: Any) -> str:
        return signed_token(private_pem, kid, **claims)

    tokens = {
        # A key nobody trusts, though the token names a trusted kid.
        "other key": signed_token(ec.generate_private_key(ec.SECP256R1()), kid),
        # The classic confusion: HS256 "signed" with the public key as the secret.
        "hs256 with public key": _hs256(token_claims(), secret=public_jwks),
        "wrong audience": signed(aud="elsewhere"),
        "unknown role": signed(role="mayor"),
        "staff without site": signed(role="site_staff"),
        "garbage": "not.a.token",
    }
    expected = {
        "other key": "signature",
        "hs256 with public key": "ES256",
        "wrong audience": "audience",
        "unknown role": "role",
        "staff without site": "site_id",
        "garbage": "malformed",
    }
    # The same claims, untampered, pass: each refusal above is the one change it names.
    assert (await client.get("/v1/public", headers=_bearer(signed()))).status == 200
    for name, token in tokens.items():
        response = await client.get("/v1/public", headers=_bearer(token))
        body = await problem_of(response, 401)
        assert expected[name] in body["detail"], (name, body["detail"])
    basic = await client.get("/v1/public", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status == 401


async def test_service_without_verifier_refuses_tokens(serve: Serve, bearer: Any) -> None:
    client = await serve(build_app(make_api(), Metrics("t"), None))
    assert (await client.get("/v1/public")).status == 200
    assert (await client.get("/v1/public", headers=bearer(Role.ADMIN))).status == 401


# --- middleware --------------------------------------------------------------------------


async def test_unexpected_error_is_500_without_internals(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = await client.get("/v1/boom")
    body = await problem_of(response, 500)
    text = msgspec.json.encode(body).decode()
    assert "hunter2" not in text
    assert "RuntimeError" not in text
    assert body["instance"] == f"urn:uuid:{response.headers['X-Correlation-ID']}"
    [record] = [r for r in caplog.records if r.exc_info]
    assert "hunter2" in str(record.exc_info[1])  # type: ignore[index]


async def test_correlation_id_is_echoed_or_minted(client: Client) -> None:
    given = str(uuid.uuid4())
    response = await client.get("/v1/public", headers={"X-Correlation-ID": given})
    assert response.headers["X-Correlation-ID"] == given
    assert (await response.json())["correlation_id"] == given

    minted = await client.get("/v1/public", headers={"X-Correlation-ID": "drop table;"})
    assert minted.headers["X-Correlation-ID"] != "drop table;"
    assert uuid.UUID(minted.headers["X-Correlation-ID"]).version == 4

    # Problems carry it too.
    problem = await client.get("/nowhere", headers={"X-Correlation-ID": given})
    assert problem.status == 404
    assert problem.headers["X-Correlation-ID"] == given


async def test_aiohttp_errors_become_problems(client: Client) -> None:
    await problem_of(await client.get("/nowhere"), 404)
    response = await client.put("/v1/public")
    await problem_of(response, 405)
    assert "GET" in response.headers["Allow"]


async def test_metrics_label_route_templates_not_paths(
    client: Client, metrics: Metrics, bearer: Any
) -> None:
    headers = bearer(Role.ADMIN)
    for visit in ("a", "b", "c"):
        assert (
            await client.get(f"/v1/visits/{visit}?day=2021-01-01", headers=headers)
        ).status == 200
    await client.get("/v1/boom")
    await client.get("/no/such/path")

    def count(route: str, method: str, status: str) -> float | None:
        return metrics.registry.get_sample_value(
            "immunreg_http_requests_total", {"route": route, "method": method, "status": status}
        )

    assert count("/v1/visits/{visit_id}", "GET", "200") == 3
    assert count("/v1/boom", "GET", "500") == 1
    assert count("unmatched", "GET", "404") == 1
    exposition = metrics.exposition().decode()
    assert "/v1/visits/a" not in exposition
    assert "/no/such/path" not in exposition
    assert (
        metrics.registry.get_sample_value(
            "immunreg_http_request_duration_seconds_count",
            {"route": "/v1/visits/{visit_id}", "method": "GET"},
        )
        == 3
    )
