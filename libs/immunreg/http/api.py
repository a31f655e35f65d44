"""Typed routes: declare body, query, responses and roles once; get decoding,
role checks, idempotency and the OpenAPI document from the same declaration."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from immunreg.http.auth import Role, current_principal
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
    roles: frozenset[Role] | None = None
    summary: str | None = None
    description: str | None = None
    idempotent: bool = False
    rate_limited: bool = False
    tags: tuple[str, ...] = ()


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
        roles: Collection[Role] | None = None,
        summary: str | None = None,
        idempotent: bool = False,
        rate_limited: bool = False,
        tags: Collection[str] = (),
        operation_id: str | None = None,
    ) -> Callable[[H], H]:
        """Declare an operation; the handler gets `body=` / `query=` when declared.

        `responses` maps status to a msgspec-encodable type, or None for no
        body (an error status with None documents a problem+json body).
        `roles=None` makes the route public; `rate_limited` holds its anonymous
        callers to the service's per-address limit (`immunreg.http.ratelimit`).
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
                    roles=frozenset(roles) if roles is not None else None,
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
        if route.rate_limited:
            limit_anonymous(request, route.operation_id, current_principal(request) is None)
        _check_roles(request, route)
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

        if route.idempotent:
            return await run_idempotent(request, raw, call)
        return await call()

    return endpoint


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
