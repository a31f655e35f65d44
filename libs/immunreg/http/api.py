"""Typed routes: declare body, query, responses and roles once; get decoding,
role checks, idempotency and the OpenAPI document from the same declaration."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from immunreg.http.auth import (
    ACCESS_REASON_HEADER,
    MAX_REASON_LENGTH,
    AccessRule,
    Reach,
    Role,
    access_rule,
    current_principal,
    recording_checks,
)
from immunreg.http.idempotency import run_idempotent
from immunreg.http.openapi import build_openapi
from immunreg.http.problems import FieldError, Problem, field_errors
from immunreg.http.ratelimit import limit_anonymous
from immunreg.http.text import text_errors

JSON_CONTENT_TYPE = "application/json"
OPENAPI_PATH = "/openapi.json"

RouteHandler = Callable[..., Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=RouteHandler)

_encoder = msgspec.json.Encoder()


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`obj` (a Struct, dict, list...) as an application/json response."""
    return web.Response(
        body=_encoder.encode(obj), status=status, headers=headers, content_type=JSON_CONTENT_TYPE
    )


@dataclass(frozen=True)
class Route:
    """One declared operation: what it accepts, answers, and who may call it."""

    method: str
    path: str
    handler: RouteHandler
    operation_id: str
    responses: Mapping[int, Any]
    body: Any = None
    query: type[msgspec.Struct] | None = None
    access: Mapping[Role, Reach] | None = None
    summary: str | None = None
    description: str | None = None
    idempotent: bool = False
    rate_limited: bool = False
    tags: tuple[str, ...] = ()

    @property
    def roles(self) -> frozenset[Role] | None:
        """The roles that may call the route at all (None: anyone, anonymous too)."""
        return frozenset(self.access) if self.access is not None else None

    def reach(self, role: Role) -> Reach | None:
        """How far `role` reaches on this route (None: not at all)."""
        return self.access.get(role) if self.access is not None else None


ROUTE_KEY = web.RequestKey("route", Route)
"""The declaration of the route serving a request (its rule: `Route.access`)."""

ACCESS_REASON_KEY = web.RequestKey("access_reason", str)
"""The reason the caller stated (`Access-Reason`), checked; absent when none was."""


def reach_of(request: web.Request) -> Reach | None:
    """How far the caller's role reaches on the route serving `request`."""
    principal = current_principal(request)
    route: Route | None = request.get(ROUTE_KEY)
    if principal is None or route is None:
        return None
    return route.reach(principal.role)


def access_reason(request: web.Request) -> str | None:
    """The reason the caller stated for this read (`Access-Reason`), or None."""
    return request.get(ACCESS_REASON_KEY)


class Api:
    """A service's HTTP operations, collected by decorators."""

    def __init__(self, title: str, version: str, description: str = "") -> None:
        self.title = title
        self.version = version
        self.description = description
        self._routes: list[Route] = []

    @property
    def routes(self) -> tuple[Route, ...]:
        """The operations declared so far, in declaration order."""
        return tuple(self._routes)

    def route(
        self,
        method: str,
        path: str,
        *,
        responses: Mapping[int, Any],
        body: Any = None,
        query: type[msgspec.Struct] | None = None,
        roles: Collection[Role] | AccessRule | None = None,
        summary: str | None = None,
        idempotent: bool = False,
        rate_limited: bool = False,
        tags: Collection[str] = (),
        operation_id: str | None = None,
    ) -> Callable[[H], H]:
        """Declare an operation; the handler gets `body=` / `query=` when declared.

        `responses` maps status to a msgspec-encodable type, or None for no
        body (an error status with None documents a problem+json body).
        `roles` is the route's rule: who may call it and how far each role reaches,
        `{Role.CITIZEN: Reach.OWN, Role.SITE_STAFF: Reach.LINKED, Role.ADMIN: Reach.ANY}`;
        a plain set of roles gives each its default reach (`auth.DEFAULT_REACH`). A
        handler must make the check a citizen's or linked reach needs (`require_own`,
        `audit.citizen_read`): an answer without it is a 500, never sent.
        `roles=None` makes the route public; `rate_limited` holds its anonymous callers
        to the service's per-address limit (`immunreg.http.ratelimit`).
        """
        method = method.upper()
        if idempotent and method != "POST":
            raise ValueError("Idempotency-Key is supported on POST routes only")

        def decorate(handler: H) -> H:
            op_id = operation_id or handler.__name__
            for r in self._routes:
                if (r.method, r.path) == (method, path):
                    raise ValueError(f"{method} {path} is declared twice")
                if r.operation_id == op_id:
                    raise ValueError(f"operation id {op_id!r} is used twice")
            self._routes.append(
                Route(
                    method=method,
                    path=path,
                    handler=handler,
                    operation_id=op_id,
                    responses=dict(responses),
                    body=body,
                    query=query,
                    access=access_rule(roles) if roles is not None else None,
                    summary=summary,
                    description=inspect.getdoc(handler),
                    idempotent=idempotent,
                    rate_limited=rate_limited,
                    tags=tuple(tags),
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kwargs: Any) -> Callable[[H], H]:
        """Declare a GET operation (see `route`)."""
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[H], H]:
        """Declare a POST operation (see `route`)."""
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[H], H]:
        """Declare a PUT operation (see `route`)."""
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[H], H]:
        """Declare a PATCH operation (see `route`)."""
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[H], H]:
        """Declare a DELETE operation (see `route`)."""
        return self.route("DELETE", path, **kwargs)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every declared operation."""
        return build_openapi(
            title=self.title,
            version=self.version,
            description=self.description,
            routes=self._routes,
        )

    def register(self, app: web.Application) -> None:
        """Add every operation, and `GET /openapi.json`, to `app`."""
        for route in self._routes:
            app.router.add_route(
                route.method, route.path, _endpoint(route), name=route.operation_id
            )
        document = _encoder.encode(self.openapi())

        async def openapi_json(request: web.Request) -> web.StreamResponse:
            return web.Response(body=document, content_type=JSON_CONTENT_TYPE)

        app.router.add_get(OPENAPI_PATH, openapi_json, name="openapi")


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap the handler: rate limit, roles, then query, then body, then idempotency."""
    decoder = msgspec.json.Decoder(route.body) if route.body is not None else None

    async def endpoint(request: web.Request) -> web.StreamResponse:
        request[ROUTE_KEY] = route
        if route.rate_limited:
            limit_anonymous(request, route.operation_id, current_principal(request) is None)
        _check_roles(request, route)
        _read_access_reason(request, route)
        errors = text_errors(dict(request.match_info), "path")
        if errors:
            raise Problem.unprocessable(errors=errors)
        kwargs: dict[str, Any] = {}
        if route.query is not None:
            kwargs["query"] = _decode_query(request, route.query)
        raw = b""
        if decoder is not None:
            if request.content_type != JSON_CONTENT_TYPE:
                raise Problem.unsupported_media_type(
                    f"send the body as {JSON_CONTENT_TYPE}, not {request.content_type}"
                )
            raw = await request.read()
            kwargs["body"] = _decode_body(decoder, raw)
        elif route.idempotent:
            raw = await request.read()

        async def call() -> web.StreamResponse:
            return await route.handler(request, **kwargs)

        with recording_checks() as checks:
            if route.idempotent:
                response = await run_idempotent(request, raw, call)
            else:
                response = await call()
        if response.status < 400:
            _require_reach_checked(request, route, {check.kind for check in checks})
        return response

    return endpoint


# The check a handler records for each reach into citizens' records
# (auth.AuthorisationCheck.kind). Site-scoped reaches are held by their handlers'
# own checks and walked by the role x route matrix test (docs/security.md).
_CHECK_OF_REACH = {Reach.OWN: "own", Reach.LINKED: "own"}


def _require_reach_checked(request: web.Request, route: Route, kinds: set[str]) -> None:
    """Fail closed when a handler answered without the check its caller's reach needs:
    the declared rule would otherwise be a claim the code does not keep."""
    reach = reach_of(request)
    needed = _CHECK_OF_REACH.get(reach) if reach is not None else None
    if needed is not None and needed not in kinds:
        raise RuntimeError(
            f"{route.method} {route.path} declares reach {reach} but its handler "
            f"made no {needed!r} check"
        )


def _read_access_reason(request: web.Request, route: Route) -> None:
    """Keep a stated `Access-Reason` (routes whose rule has a linked reach), or 422."""
    if route.access is None or Reach.LINKED not in route.access.values():
        return
    raw = request.headers.get(ACCESS_REASON_HEADER)
    if raw is None:
        return
    reason = raw.strip()
    problem = None
    if not reason:
        problem = "must say why (not blank)"
    elif len(reason) > MAX_REASON_LENGTH:
        problem = f"must be at most {MAX_REASON_LENGTH} characters"
    elif not reason.isprintable():
        problem = "must be printable text"
    if problem:
        raise Problem.unprocessable(
            errors=[FieldError(f"header.{ACCESS_REASON_HEADER}", problem)],
            code="invalid_access_reason",
        )
    request[ACCESS_REASON_KEY] = reason


def _check_roles(request: web.Request, route: Route) -> None:
    if route.roles is None:
        return
    principal = current_principal(request)
    if principal is None:
        raise Problem.unauthorized("this operation needs a bearer token")
    if principal.role not in route.roles:
        allowed = ", ".join(sorted(route.roles))
        raise Problem.forbidden(f"role {principal.role} may not do this (allowed: {allowed})")


def _decode_query(request: web.Request, query: type[msgspec.Struct]) -> msgspec.Struct:
    try:
        decoded = msgspec.convert(dict(request.query), query, strict=False)
    except msgspec.ValidationError as e:
        raise Problem.unprocessable(errors=field_errors(e, "query")) from None
    errors = text_errors(decoded, "query")
    if errors:
        raise Problem.unprocessable(errors=errors)
    return decoded


def _decode_body(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    try:
        decoded = decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise Problem.unprocessable(errors=field_errors(e, "body")) from None
    except msgspec.DecodeError as e:
        raise Problem.bad_request(
            "the body is not valid JSON", errors=[FieldError("body", str(e))]
        ) from None
    errors = text_errors(decoded, "body")
    if errors:
        raise Problem.unprocessable(errors=errors)
    return decoded
