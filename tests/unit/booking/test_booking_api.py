"""The booking API's declared contract: a valid OpenAPI 3.1 document, roles on every route."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from immunreg.contracts.topics import TOPIC_NAMESPACE_VARIABLE
from immunreg.http.auth import Role
from services.booking.app import api, build_service


def test_openapi_document_is_valid_and_complete() -> None:
    document = api.openapi()
    validate(document)
    assert set(document["paths"]) == {
        "/v1/sites",
        "/v1/sites/{site_id}",
        "/v1/sites/{site_id}/days/{date}",
        "/v1/sites/{site_id}/appointments",
        "/v1/scheduling/runs",
        "/v1/scheduling/runs/{run_id}",
        "/v1/citizens/{citizen_id}/appointments",
        "/v1/appointments/{appointment_id}/reschedule",
        "/v1/appointments/{appointment_id}/cancel",
        "/v1/audit/reads",
        "/v1/citizens/{citizen_id}/reads",
    }


def test_every_route_names_its_roles() -> None:
    roles = {(r.method, r.path): r.roles for r in api.routes}
    assert all(r is not None for r in roles.values())
    assert roles[("PUT", "/v1/sites/{site_id}")] == frozenset({Role.ADMIN})
    assert roles[("POST", "/v1/scheduling/runs")] == frozenset({Role.ADMIN})
    assert roles[("GET", "/v1/scheduling/runs/{run_id}")] == frozenset({Role.ADMIN})
    assert Role.PUBLIC_HEALTH in (roles[("GET", "/v1/sites")] or set())
    assert roles[("GET", "/v1/sites/{site_id}/appointments")] == frozenset(
        {Role.SITE_STAFF, Role.ADMIN}
    )


def test_the_service_consumes_the_three_topics_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a run's namespace (the suite sets one): the names production uses.
    monkeypatch.delenv(TOPIC_NAMESPACE_VARIABLE, raising=False)
    service = build_service()
    assert service.reactions is not None
    assert service.reactions.topics == [
        "administration.events.v1",
        "inventory.events.v1",
        "registration.events.v1",
    ]
    assert build_service(consume=False).reactions is None
