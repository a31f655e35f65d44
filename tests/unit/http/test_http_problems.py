from __future__ import annotations

import json
from datetime import date

import msgspec
import pytest

from immunreg.http.problems import FieldError, Problem, field_errors, problem_response


class Dose(msgspec.Struct):
    lot: str
    count: int


class Visit(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    birth_date: date
    doses: list[Dose] = []


def error_of(raw: bytes) -> msgspec.DecodeError:
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(raw, type=Visit)
    return info.value


def test_missing_top_level_field_names_the_field() -> None:
    errors = field_errors(error_of(b'{"birth_date": "2000-01-01"}'))
    assert errors == [FieldError("body.name", "missing required field")]


def test_wrong_type_keeps_msgspec_reason_and_path() -> None:
    errors = field_errors(error_of(b'{"name": 7, "birth_date": "2000-01-01"}'))
    assert errors == [FieldError("body.name", "Expected `str`, got `int`")]


def test_nested_path_with_index() -> None:
    raw = b'{"name": "a", "birth_date": "2000-01-01", "doses": [{"lot": "L", "count": "x"}]}'
    assert field_errors(error_of(raw)) == [
        FieldError("body.doses[0].count", "Expected `int`, got `str`")
    ]


def test_nested_missing_field_appends_name_to_path() -> None:
    raw = b'{"name": "a", "birth_date": "2000-01-01", "doses": [{"count": 1}]}'
    assert field_errors(error_of(raw)) == [
        FieldError("body.doses[0].lot", "missing required field")
    ]


def test_unknown_field_and_bad_date() -> None:
    unknown = b'{"name": "a", "birth_date": "2000-01-01", "shoe": 1}'
    assert field_errors(error_of(unknown)) == [FieldError("body.shoe", "unknown field")]
    bad_date = b'{"name": "a", "birth_date": "2000-13-01"}'
    [err] = field_errors(error_of(bad_date))
    assert err.field == "body.birth_date"
    assert "date" in err.reason


def test_query_location_and_malformed_input() -> None:
    class Window(msgspec.Struct):
        limit: int

    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert({"limit": "many"}, Window, strict=False)
    assert field_errors(info.value, "query") == [
        FieldError("query.limit", "Expected `int`, got `str`")
    ]
    [err] = field_errors(error_of(b'{"name": '))
    assert err.field == "body"
    assert "truncated" in err.reason


def test_problem_response_is_problem_json_without_defaults() -> None:
    response = problem_response(Problem.not_found("no such citizen"))
    assert response.status == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.body is not None
    body = json.loads(bytes(response.body))  # type: ignore[arg-type]
    assert body == {"title": "Not Found", "status": 404, "detail": "no such citizen"}


def test_problem_constructors_carry_status_code_and_errors() -> None:
    assert Problem.conflict("recalled", code="lot_recalled").body.code == "lot_recalled"
    assert Problem.precondition_failed("stale").status == 412
    assert Problem.precondition_required().status == 428
    unauthorized = Problem.unauthorized("no token")
    assert unauthorized.status == 401
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")
    problem = Problem.unprocessable(errors=[FieldError("body.x", "bad")])
    assert problem.status == 422
    assert problem.body.detail
    assert problem.body.errors == [FieldError("body.x", "bad")]
