"""Opaque keyset cursors: what goes in comes out, and nothing forged gets through to SQL."""

from __future__ import annotations

import base64
import json

import pytest

from talentnest.errors import InvalidInput
from talentnest.services import _paging


def _forge(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "kind, key, types",
    [
        ("feed", [41], (int,)),
        ("search:abc", [10_050, 7], (int, int)),
        ("followers", ["2026-11-27T15:27:09.199Z", 3], (str, int)),
        ("posts:", [2**63 - 1], (int,)),
        ("posts:", [-(2**63)], (int,)),
    ],
)
def test_a_cursor_gives_back_its_key(kind: str, key: list, types: tuple):
    cursor = _paging.encode(kind, key)

    assert _paging.decode(kind, cursor, types) == key
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_no_cursor_means_the_first_page():
    assert _paging.decode("feed", None, (int,)) is None


FORGED = {
    "another kind": _forge(["posts:", 5]),
    "a key missing": _forge(["feed"]),
    "a key too many": _forge(["feed", 5, 6]),
    "a string for an int": _forge(["feed", "5"]),
    "a bool for an int": _forge(["feed", True]),
    "a float": _forge(["feed", 5.0]),
    "null": _forge(["feed", None]),
    "beyond 64 bits": _forge(["feed", 2**63]),
    "below 64 bits": _forge(["feed", -(2**63) - 1]),
    "an object": _forge({"feed": 5}),
    "not JSON": base64.urlsafe_b64encode(b"\xff\x00").decode(),
    "not base64": "%%%",
    "empty": "",
    "too long": "A" * 513,
}


@pytest.mark.parametrize("cursor", FORGED.values(), ids=FORGED.keys())
def test_a_forged_cursor_is_refused(cursor: str):
    with pytest.raises(InvalidInput) as caught:
        _paging.decode("feed", cursor, (int,))

    assert caught.value.code == "invalid_cursor"


@pytest.mark.parametrize("text", ["\ud800", "x" * 65, 5], ids=["lone surrogate", "too long", "not text"])
def test_a_forged_text_key_is_refused(text):
    with pytest.raises(InvalidInput):
        _paging.decode("followers", _forge(["followers", text, 1]), (str, int))


def test_a_page_with_an_extra_row_has_a_cursor_at_its_last_item():
    rows = [{"id": i} for i in (9, 8, 7, 6)]

    page = _paging.page(rows, 3, "feed", lambda r: [r["id"]], dict)

    assert page.items == rows[:3]
    assert _paging.decode("feed", page.next_cursor, (int,)) == [7]
    assert page.as_dict() == {"items": rows[:3], "next_cursor": page.next_cursor}


@pytest.mark.parametrize("count", [0, 2, 3])
def test_a_page_without_an_extra_row_is_the_last(count: int):
    page = _paging.page([{"id": i} for i in range(count)], 3, "feed", lambda r: [r["id"]], dict)

    assert len(page.items) == count and page.next_cursor is None


def test_a_query_digest_is_short_stable_and_distinct():
    assert _paging.digest("rust go") == _paging.digest("rust go")
    assert _paging.digest("rust go") != _paging.digest("go rust")
    assert len(_paging.digest("中" * 100)) == 18
