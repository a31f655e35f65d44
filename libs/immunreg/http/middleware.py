"""The middleware stack every service runs, outermost first."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection, MutableMapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from immunreg.contracts import Metadata
from immunreg.eventstore.errors import database_unavailable
from immunreg.http.auth import TokenVerifier, auth_middleware
from immunreg.http.logs import CORRELATION_ID
from immunreg.http.problems import Problem, problem_response
from immunreg.observability.metrics import Metrics

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
CORRELATION_KEY = web.RequestKey("correlation_id", uuid.UUID)
UNMATCHED_ROUTE = "unmatched"


def middlewares(
    metrics: Metrics, verifier: TokenVerifier | None = None, origins: Collection[str] = ()
) -> list[Middleware]:
    """CORS, correlation, metrics, errors, database outages, auth: for
    `web.Application(middlewares=)`.

    CORS is outermost so every answer to an allowed origin, problems included, is
    readable by its page; correlation next so every response carries the id and an
    unexpected error is logged with it; metrics wrap the error middleware so they count
    the status the client really got (a 500 as 500). Without a verifier the service
    refuses every bearer token.
    """
    return [
        cors_middleware(origins),
        correlation_middleware,
        metrics_middleware(metrics),
        error_middleware,
        unavailable_middleware(metrics),
        auth_middleware(verifier),
    ]


# What a browser page may send and read across origins: the headers the API uses.
CORS_REQUEST_HEADERS = (
    "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, "
    f"Access-Reason, {CORRELATION_HEADER}"
)
CORS_EXPOSED_HEADERS = f"ETag, Location, Retry-After, {CORRELATION_HEADER}"
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
# Browsers cap it anyway (Chromium at 2 hours); a preflight per route and 10 minutes.
CORS_MAX_AGE = "600"


def cors_middleware(origins: Collection[str]) -> Middleware:
    """Let pages from `origins` (the citizens' portal) call the API with a bearer token.

    No cookies are used, so credentials are never allowed: a token travels only in the
    Authorization header the page sets itself. A preflight from any other origin gets no
    CORS headers, so the browser refuses the call; same-origin and non-browser clients
    are unaffected.
    """
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or origin not in allowed:
            response = await handler(request)
            if allowed and not response.prepared:
                # The answer depends on Origin: a shared cache must not hand this one,
                # without CORS headers, to the portal's page.
                _vary_on_origin(response.headers)
            return response
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": CORS_REQUEST_HEADERS,
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                    "Vary": "Origin",
                },
            )
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": CORS_EXPOSED_HEADERS,
        }
        try:
            response = await handler(request)
        except web.HTTPException as e:
            e.headers.update(headers)
            _vary_on_origin(e.headers)
            raise
        if not response.prepared:
            response.headers.update(headers)
            _vary_on_origin(response.headers)
        return response

    return cors


def _vary_on_origin(headers: MutableMapping[str, str]) -> None:
    vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
    if "origin" not in {v.lower() for v in vary}:
        headers["Vary"] = ", ".join([*vary, "Origin"])


def _incoming_correlation_id(request: web.Request) -> uuid.UUID:
    # Only a UUID is trusted from outside: anything else could smuggle text into logs.
    value = request.headers.get(CORRELATION_HEADER)
    if value:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    return uuid.uuid4()


@web.middleware
async def correlation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Adopt the caller's `X-Correlation-ID` (if a UUID) or mint one; echo it back."""
    correlation_id = _incoming_correlation_id(request)
    request[CORRELATION_KEY] = correlation_id
    token = CORRELATION_ID.set(str(correlation_id))
    try:
        response = await handler(request)
    except web.HTTPException as e:
        # Redirects and other non-error exceptions pass through the error middleware.
        e.headers[CORRELATION_HEADER] = str(correlation_id)
        raise
    finally:
        CORRELATION_ID.reset(token)
    if not response.prepared:
        response.headers[CORRELATION_HEADER] = str(correlation_id)
    return response


def metadata_from_request(request: web.Request) -> Metadata:
    """Event metadata for changes this request causes (its correlation id)."""
    return Metadata(correlation_id=request.get(CORRELATION_KEY))


def route_template(request: web.Request) -> str:
    """The matched route's path template (`/v1/citizens/{citizen_id}`), never the concrete path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def metrics_middleware(metrics: Metrics) -> Middleware:
    """RED metrics per route template and method."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            route = route_template(request)
            metrics.http_requests.labels(route, request.method, str(status)).inc()
            metrics.http_latency.labels(route, request.method).observe(
                time.perf_counter() - started
            )

    return measure


# Long enough for a restarted or failed-over PostgreSQL to come back, short enough
# that a client retrying (with its Idempotency-Key) is not left waiting long after.
RETRY_AFTER_SECONDS = 5


def unavailable_middleware(metrics: Metrics) -> Middleware:
    """PostgreSQL down, hung or refusing work: 503 with Retry-After, counted by reason.

    Nothing is half-written: the transaction the error interrupted is rolled back
    by PostgreSQL, and the request may be retried as it is.
    """

    @web.middleware
    async def unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as error:
            reason = database_unavailable(error)
            if reason is None:
                raise
            metrics.database_unavailable.labels(reason).inc()
            # No stack: during an outage every request fails the same way.
            log.warning(
                "database unavailable in %s %s: %s (%r)",
                request.method,
                route_template(request),
                reason,
                error,
            )
            raise Problem(
                503,
                "the service's database is unavailable; retry after the given delay",
                code="database_unavailable",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from error

    return unavailable


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes problem+json; unexpected ones are logged and told nothing."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        # Keep headers such as Allow (405); the body is replaced by the problem.
        kept = {k: v for k, v in e.headers.items() if k.lower() not in _BODY_HEADERS}
        default_text = f"{e.status}: {e.reason}"
        detail = e.text if e.text and e.text != default_text else None
        return problem_response(Problem(e.status, detail, title=e.reason, headers=kept))
    except Exception:
        correlation_id = request.get(CORRELATION_KEY)
        log.exception("unhandled error in %s %s", request.method, route_template(request))
        return problem_response(
            Problem(
                500,
                "an unexpected error occurred; quote the instance id when reporting it",
                instance=f"urn:uuid:{correlation_id}" if correlation_id else None,
            )
        )


_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})
