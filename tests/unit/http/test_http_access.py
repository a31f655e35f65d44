"""Route rules (role -> reach) on declarations: defaults, the Access-Reason header, the
check a citizen's or linked reach needs, and the rule in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from conftest import Client, build_app
from immunreg.http import Api, json_response
from immunreg.http.api import access_reason
from immunreg.http.auth import Reach, Role, TokenVerifier, access_rule, require_principal
from immunreg.observability.metrics import Metrics

Serve = Callable[[web.Application], Awaitable[Client]]
LINKED = {Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.LINKED, Role.ADMIN: Reach.ANY}


def make_api() -> Api:
    api = Api("access", "1")

    @api.get("/v1/citizens/{citizen_id}/checked", responses={200: None}, roles=LINKED)
    async def checked(request: web.Request) -> web.StreamResponse:
        """Makes the own-record check, and echoes the stated reason."""
        require_principal(request).require_own(request.match_info["citizen_id"], "not yours")
        return json_response({"reason": access_reason(request)})

    @api.get("/v1/citizens/{citizen_id}/forgetful", responses={200: None}, roles=LINKED)
    async def forgetful(request: web.Request) -> web.StreamResponse:
        """Answers without any check: a rule the code does not keep."""
        return json_response({})

    return api


def test_a_plain_set_of_roles_keeps_the_checks_handlers_always_made() -> None:
    assert access_rule({Role.CITIZEN, Role.SITE_STAFF, Role.LOGISTICS}) == {
        Role.CITIZEN: Reach.OWN,
        Role.SITE_STAFF: Reach.SITE,
        Role.LOGISTICS: Reach.ANY,
    }
    assert access_rule(LINKED) == LINKED


def test_the_rule_and_the_reason_header_are_in_the_openapi_document() -> None:
    operation = make_api().openapi()["paths"]["/v1/citizens/{citizen_id}/checked"]["get"]
    assert operation["x-access"] == {"admin": "any", "citizen": "own", "site_staff": "linked"}
    (header,) = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Access-Reason" and header["schema"]["maxLength"] == 200


async def test_an_answer_without_the_check_its_callers_reach_needs_is_never_sent(
    serve: Serve, verifier: TokenVerifier, bearer: Any
) -> None:
    client = await serve(build_app(make_api(), Metrics("access"), verifier))
    citizen = bearer(Role.CITIZEN, citizen_id="c-1")
    assert (await client.get("/v1/citizens/c-1/checked", headers=citizen)).status == 200
    forgot = await client.get("/v1/citizens/c-1/forgetful", headers=citizen)
    assert forgot.status == 500
    # Admins reach any record: no check is owed.
    assert (
        await client.get("/v1/citizens/c-1/forgetful", headers=bearer(Role.ADMIN))
    ).status == 200


async def test_a_stated_reason_is_kept_and_a_bad_one_is_422_naming_the_header(
    serve: Serve, verifier: TokenVerifier, bearer: Any
) -> None:
    client = await serve(build_app(make_api(), Metrics("access"), verifier))
    staff = bearer(Role.SITE_STAFF, site_id="site-1")
    url = "/v1/citizens/c-1/checked"
    stated = await client.get(url, headers={**staff, "Access-Reason": "  walk-in  "})
    assert (await stated.json()) == {"reason": "walk-in"}
    for bad in ("   ", "x" * 201, "tab\there"):
        response = await client.get(url, headers={**staff, "Access-Reason": bad})
        assert response.status == 422, bad
        body = await response.json()
        assert body["code"] == "invalid_access_reason"
        assert body["errors"][0]["field"] == "header.Access-Reason"
