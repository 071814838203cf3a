"""Cursor pagination on every list: limits, and cursors that were tampered with."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import pytest

from tests.api._helpers import Api


@dataclass(frozen=True)
class ListCase:
    name: str
    url: str
    params: dict
    needs_token: bool = False


LISTS = [
    ListCase("search", "/api/users/search", {"query": "member"}),
    ListCase("followers", "/api/users/member1/followers", {}),
    ListCase("following", "/api/users/member1/following", {}),
    ListCase("posts", "/api/posts", {}),
    ListCase("posts by author", "/api/posts", {"author": "member1"}),
    ListCase("feed", "/api/feed", {}, needs_token=True),
    ListCase("comments", "/api/posts/1/comments", {}),
]


@pytest.fixture
def populated(api: Api, make_member):
    """Three members who follow each other, with posts and comments: every list has 3+ items."""
    members = [make_member() for _ in range(4)]  # member1 .. member4
    first = members[0]
    for other in members[1:]:
        api.ok("POST", f"/api/users/{other.username}/follow", headers=first.headers)
        api.ok("POST", f"/api/users/{first.username}/follow", headers=other.headers)
    for member in members:
        api.ok("POST", "/api/posts", 201, json={"content": f"by {member.username}"}, headers=member.headers)
    for _ in range(2):
        api.ok("POST", "/api/posts", 201, json={"content": "more"}, headers=first.headers)
    for member in members:
        api.ok("POST", "/api/posts/1/comments", 201, json={"content": "hi"}, headers=member.headers)
    return first


def _get(api: Api, case: ListCase, token_owner, **params):
    headers = token_owner.headers if case.needs_token else {}
    return api.client.get(case.url, params={**case.params, **params}, headers=headers)


@pytest.mark.parametrize("case", LISTS, ids=[c.name for c in LISTS])
def test_every_list_pages_through_all_its_items_once(api: Api, populated, case: ListCase):
    headers = populated.headers if case.needs_token else {}
    everything = api.ok("GET", case.url, params={**case.params, "limit": 100}, headers=headers)

    paged = api.all_pages(case.url, limit=1, params=case.params, headers=headers)

    assert len(everything["items"]) >= 3 and everything["next_cursor"] is None
    assert paged == everything["items"]


@pytest.mark.parametrize("case", LISTS, ids=[c.name for c in LISTS])
def test_a_limit_out_of_range_is_422(api: Api, populated, case: ListCase):
    headers = populated.headers if case.needs_token else {}

    for limit in ["0", "-1", "101", "abc", "1.5", "1e1", "", "99999999999999999999999"]:
        api.refused("GET", case.url, 422, params={**case.params, "limit": limit}, headers=headers)
    assert len(api.ok("GET", case.url, params={**case.params, "limit": "100"}, headers=headers)["items"]) >= 3


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tampered(real_cursor: str) -> dict[str, str]:
    """Cursors a client could forge from a real one: every way its content can be wrong."""
    kind, *key = json.loads(base64.urlsafe_b64decode(real_cursor + "=" * (-len(real_cursor) % 4)))
    forged = {
        "not base64": "!!!not-base64!!!",
        "empty": "",
        "base64 of not JSON": _b64(b"\xff\xfe not json"),
        "base64 of a JSON object": _b64(json.dumps({"kind": kind}).encode()),
        "another kind": _b64(json.dumps(["elsewhere", *key]).encode()),
        "a key too few": _b64(json.dumps([kind, *key[:-1]]).encode()),
        "a key too many": _b64(json.dumps([kind, *key, 1]).encode()),
        "too long": "A" * 513,
    }
    for i, _ in enumerate(key):
        for label, bad in {
            "a huge integer": 10**30,
            "a float": 1.5,
            "a boolean": True,
            "null": None,
            "a list": [1],
            "a lone surrogate": "\ud800",
            "a long text": "x" * 400,
        }.items():
            forged[f"key {i} {label}"] = _b64(json.dumps([kind, *key[:i], bad, *key[i + 1 :]]).encode())
    return forged


@pytest.mark.parametrize("case", LISTS, ids=[c.name for c in LISTS])
def test_a_tampered_cursor_is_422_on_every_list(api: Api, populated, case: ListCase):
    first_page = _get(api, case, populated, limit=1).json()
    assert first_page["next_cursor"], first_page

    for label, cursor in _tampered(first_page["next_cursor"]).items():
        headers = populated.headers if case.needs_token else {}
        error = api.refused("GET", case.url, 422, params={**case.params, "limit": 1, "cursor": cursor}, headers=headers)
        assert error["code"] in ("invalid_cursor", "invalid_input"), (label, error)


def test_a_cursor_from_one_list_is_refused_by_another(api: Api, populated):
    posts_cursor = api.ok("GET", "/api/posts", params={"limit": 1})["next_cursor"]
    by_author_cursor = api.ok("GET", "/api/posts", params={"limit": 1, "author": "member1"})["next_cursor"]
    search_cursor = api.ok("GET", "/api/users/search", params={"limit": 1, "query": "member"})["next_cursor"]

    api.refused("GET", "/api/feed", 422, "invalid_cursor", params={"cursor": posts_cursor}, headers=populated.headers)
    api.refused("GET", "/api/posts", 422, "invalid_cursor", params={"cursor": by_author_cursor})
    api.refused("GET", "/api/posts", 422, "invalid_cursor", params={"cursor": by_author_cursor, "author": "member2"})
    api.refused("GET", "/api/posts/1/comments", 422, "invalid_cursor", params={"cursor": posts_cursor})
    api.refused("GET", "/api/users/search", 422, "invalid_cursor", params={"cursor": search_cursor, "query": "other"})


def test_a_search_with_a_long_non_ascii_query_still_pages(api: Api, make_member):
    # 100 characters that JSON escapes to 6 or 12 bytes each: the cursor must stay sendable.
    name = "中" * 50
    query = " ".join(["中" * 40, "🚀" * 30])
    for _ in range(3):
        member = make_member(name=name)
        api.ok("PATCH", "/api/users/me", json={"headline": "🚀" * 30}, headers=member.headers)

    items = api.all_pages("/api/users/search", limit=1, params={"query": query})

    assert len(items) == 3
