"""Which public routes are rate limited: a route leaving the list must be a decision.

Registering interest and citizens' sign-in are public (a citizen has no token yet) and
limited per address here, and sign-in per contact by registration itself (docs/security.md,
"Citizens' sign-in")."""

from __future__ import annotations

from immunreg.discovery import available_services, load_service


def test_the_public_verification_statistics_registration_and_sign_in_routes_are_limited() -> None:
    limited = {
        (name, route.method, route.path)
        for name in available_services()
        for route in load_service(name).api.routes
        if route.rate_limited
    }
    assert limited == {
        ("certificates", "POST", "/v1/verify"),
        ("projections", "GET", "/v1/coverage"),
        ("projections", "GET", "/v1/doses/daily"),
        ("registration", "POST", "/v1/citizens"),
        ("registration", "POST", "/v1/sign-in/codes"),
        ("registration", "POST", "/v1/sign-in/tokens"),
    }
    for name, method, path in limited:
        operation = load_service(name).api.openapi()["paths"][path][method.lower()]
        assert "429" in operation["responses"]
