"""The HTTP kit every service uses: typed routes with OpenAPI, problem+json
errors, JWT roles, idempotent POSTs, correlation ids, RED metrics, health."""

from immunreg.http.api import Api, Route, json_response
from immunreg.http.auth import (
    PRINCIPAL_KEY,
    Principal,
    Role,
    TokenVerifier,
    current_principal,
    ensure_dev_keys,
    issue_token,
)
from immunreg.http.health import health_routes, metrics_route
from immunreg.http.idempotency import purge_idempotency_keys, schema_sql
from immunreg.http.jwks import TrustedKeys
from immunreg.http.keys import METRICS_KEY, POOL_KEY
from immunreg.http.logs import CORRELATION_ID, configure_logging
from immunreg.http.middleware import metadata_from_request, middlewares
from immunreg.http.problems import FieldError, Problem, ProblemDetail, problem_response

__all__ = [
    "CORRELATION_ID",
    "METRICS_KEY",
    "POOL_KEY",
    "PRINCIPAL_KEY",
    "Api",
    "FieldError",
    "Principal",
    "Problem",
    "ProblemDetail",
    "Role",
    "Route",
    "TokenVerifier",
    "TrustedKeys",
    "configure_logging",
    "current_principal",
    "ensure_dev_keys",
    "health_routes",
    "issue_token",
    "json_response",
    "metadata_from_request",
    "metrics_route",
    "middlewares",
    "problem_response",
    "purge_idempotency_keys",
    "schema_sql",
]
