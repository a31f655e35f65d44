"""ETags and cursors."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from immunreg.http.problems import Problem
from immunreg.http.versioning import (
    Page,
    decode_cursor,
    encode_cursor,
    etag,
    if_match_version,
    page_limit,
)


def test_if_match_reads_back_the_etag() -> None:
    request = make_mocked_request("PATCH", "/x", headers={"If-Match": etag(7)})
    assert if_match_version(request) == 7
    weak = make_mocked_request("PATCH", "/x", headers={"If-Match": 'W/"3"'})
    assert if_match_version(weak) == 3


def test_missing_if_match_is_428_only_when_required() -> None:
    request = make_mocked_request("PATCH", "/x")
    assert if_match_version(request) is None
    with pytest.raises(Problem) as caught:
        if_match_version(request, required=True)
    assert caught.value.status == 428


def test_garbage_if_match_is_a_field_error() -> None:
    request = make_mocked_request("PATCH", "/x", headers={"If-Match": '"abc"'})
    with pytest.raises(Problem) as caught:
        if_match_version(request)
    assert caught.value.body.errors[0].field == "header.If-Match"


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor("2021-03-01", 42)) == ["2021-03-01", 42]
    with pytest.raises(Problem):
        decode_cursor("!!not-a-cursor")
    with pytest.raises(Problem):
        page_limit(Page(limit=0))
    assert page_limit(Page(limit=20)) == 20
