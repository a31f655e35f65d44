"""ETags of immutable renderings, and If-None-Match."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request

from immunreg.http.versioning import content_etag, not_modified


def test_the_tag_depends_on_every_part_and_on_where_they_split() -> None:
    assert content_etag("image/png", "HC1:A") == content_etag("image/png", b"HC1:A")
    assert content_etag("image/png", "HC1:A") != content_etag("image/svg+xml", "HC1:A")
    assert content_etag("ab", "c") != content_etag("a", "bc")
    assert content_etag("x").startswith('"') and content_etag("x").endswith('"')


def test_if_none_match_names_the_tag_in_a_list_weak_or_star() -> None:
    tag = content_etag("image/png", "HC1:A")

    def request(value: str | None) -> bool:
        headers = {} if value is None else {"If-None-Match": value}
        return not_modified(make_mocked_request("GET", "/", headers=headers), tag)

    assert not request(None)
    assert request(tag)
    assert request(f'"other", {tag}')
    assert request(f"W/{tag}")
    assert request("*")
    assert not request('"other"')
