"""RFC 9457 problem details: the one shape every error response takes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus

import msgspec
from aiohttp import web

from immunreg.domain import PersonalDataErased

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    """One invalid input: where (`body.birth_date`, `query.date`) and why."""

    field: str
    reason: str


class ProblemDetail(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The problem+json document (RFC 9457) with field errors and a rule code."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str | None = None
    errors: list[FieldError] = []


class Problem(Exception):
    """An error the client should see as problem+json; raise it from any handler."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        errors: Iterable[FieldError] = (),
        code: str | None = None,
        type: str = "about:blank",
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.body = ProblemDetail(
            type=type,
            # RFC 9457: with type about:blank the title should be the status phrase.
            title=title or _phrase(status),
            status=status,
            detail=detail,
            instance=instance,
            code=code,
            errors=list(errors),
        )
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{status} {self.body.title}: {detail or ''}".rstrip(": "))

    @property
    def status(self) -> int:
        """The HTTP status."""
        return self.body.status

    @classmethod
    def bad_request(
        cls,
        detail: str,
        *,
        errors: Iterable[FieldError] = (),
        code: str | None = None,
    ) -> Problem:
        """400: the request cannot be parsed at all."""
        return cls(400, detail, errors=errors, code=code)

    @classmethod
    def unauthorized(cls, detail: str, *, invalid_token: bool = False) -> Problem:
        """401 with the `WWW-Authenticate` challenge RFC 6750 asks for."""
        challenge = 'Bearer realm="immunreg"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        return cls(401, detail, headers={"WWW-Authenticate": challenge})

    @classmethod
    def forbidden(cls, detail: str, *, code: str | None = None) -> Problem:
        """403: authenticated, but not allowed to do this."""
        return cls(403, detail, code=code)

    @classmethod
    def not_found(cls, detail: str) -> Problem:
        """404."""
        return cls(404, detail)

    @classmethod
    def conflict(cls, detail: str, *, code: str | None = None) -> Problem:
        """409: the current state forbids it (e.g. `lot_recalled`, `slot_full`)."""
        return cls(409, detail, code=code)

    @classmethod
    def citizen_erased(cls) -> Problem:
        """410 `citizen_erased`: the citizen's personal data was erased. Every service answers
        a read of an erased citizen's resource with this one document (the domain's
        `PersonalDataErased`, as the domain middleware shapes it too)."""
        erased = PersonalDataErased()
        return cls(erased.status, erased.message, code=erased.code)

    @classmethod
    def precondition_failed(cls, detail: str) -> Problem:
        """412: `If-Match` names a version that is no longer current."""
        return cls(412, detail, code="stale_etag")

    @classmethod
    def unsupported_media_type(cls, detail: str) -> Problem:
        """415."""
        return cls(415, detail)

    @classmethod
    def unprocessable(
        cls,
        detail: str | None = None,
        *,
        errors: Iterable[FieldError] = (),
        code: str | None = None,
    ) -> Problem:
        """422: well-formed, but fields or business rules reject it."""
        errors = list(errors)
        if detail is None and errors:
            detail = "the request has invalid fields"
        return cls(422, detail, errors=errors, code=code)

    @classmethod
    def precondition_required(cls, detail: str = "this update needs an If-Match header") -> Problem:
        """428: an update without `If-Match`, refused to prevent lost updates."""
        return cls(428, detail, code="if_match_required")


_encoder = msgspec.json.Encoder()


def problem_response(problem: Problem) -> web.Response:
    """The problem as an `application/problem+json` response."""
    response = web.Response(
        status=problem.status,
        body=_encoder.encode(problem.body),
        headers=problem.headers,
    )
    # Set after construction: `content_type=` would add a charset parameter.
    response.headers["Content-Type"] = PROBLEM_CONTENT_TYPE
    return response


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# msgspec appends the location as " - at `$.a.b[0]`"; the location is optional.
_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_NAMED = re.compile(
    r"^Object (?P<what>missing required|contains unknown) field `(?P<name>.*)`$"
)


def field_errors(exc: msgspec.DecodeError, location: str = "body") -> list[FieldError]:
    """Turn a msgspec decode/validation error into field errors under `location`.

    `Expected \\`int\\`, got \\`str\\` - at \\`$.items[0].count\\`` becomes
    `body.items[0].count: Expected ...`; a missing or unknown field names the field itself.
    """
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    reason = match["reason"]
    field = location + (match["path"] or "")
    named = _FIELD_NAMED.match(reason)
    if named:
        field = f"{field}.{named['name']}"
        reason = (
            "missing required field" if named["what"] == "missing required" else "unknown field"
        )
    return [FieldError(field=field, reason=reason)]
