"""ETag / If-Match on updates, ETag / If-None-Match on immutable renderings, and cursor
pagination on lists."""

from __future__ import annotations

import base64
import hashlib

import msgspec
from aiohttp import web

from immunreg.http.problems import FieldError, Problem
from immunreg.structs import Struct

MAX_PAGE_SIZE = 500


def etag(version: int) -> str:
    """The strong ETag of an aggregate at `version`."""
    return f'"{version}"'


def if_match_version(request: web.Request, *, required: bool = False) -> int | None:
    """The version named by `If-Match`, or None when absent (428 when required)."""
    value = request.headers.get("If-Match")
    if value is None:
        if required:
            raise Problem(428, "send If-Match with the ETag you read", code="if_match_required")
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise Problem.bad_request(
            "If-Match must be an ETag this API returned",
            errors=[FieldError("header.If-Match", "not an ETag of this API")],
        )
    return int(raw)


def content_etag(*parts: str | bytes) -> str:
    """A strong ETag for a response that is a pure function of `parts`."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return f'"{digest.hexdigest()[:32]}"'


def not_modified(request: web.Request, tag: str) -> bool:
    """Whether the client's `If-None-Match` already names `tag` (answer 304, skip the work)."""
    value = request.headers.get("If-None-Match")
    if value is None:
        return False
    sent = {t.strip().removeprefix("W/") for t in value.split(",")}
    return "*" in sent or tag in sent


class Page(Struct):
    """Query parameters of a paginated list."""

    limit: int = 50
    cursor: str | None = None


def page_limit(page: Page, *, code: str | None = None) -> int:
    """The page size, bounded (422 outside 1..MAX_PAGE_SIZE, with `code` if given: the
    services that always named the rule in that answer keep doing so)."""
    if not 1 <= page.limit <= MAX_PAGE_SIZE:
        raise Problem.unprocessable(
            errors=[FieldError("query.limit", f"must be between 1 and {MAX_PAGE_SIZE}")],
            code=code,
        )
    return page.limit


def cursor_key(page: Page) -> str:
    """The one sort key of a page's cursor ("" for the first page), for lists ordered by id."""
    values = decode_cursor(page.cursor) if page.cursor else []
    return str(values[0]) if values else ""


def encode_cursor(*values: object) -> str:
    """An opaque cursor from the sort key of the last item returned."""
    return base64.urlsafe_b64encode(msgspec.json.encode(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[object]:
    """The sort key a cursor carries (422 when it was not made here)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = msgspec.json.decode(base64.urlsafe_b64decode(padded))
    except (ValueError, msgspec.DecodeError) as exc:
        raise Problem.unprocessable(
            errors=[FieldError("query.cursor", "not a cursor this API returned")]
        ) from exc
    if not isinstance(values, list):
        raise Problem.unprocessable(errors=[FieldError("query.cursor", "malformed cursor")])
    return values
