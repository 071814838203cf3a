"""SQL metacharacters and Unicode edge cases in every text field and every query parameter: each
is stored and read back exactly (after the documented NFC normalisation and trimming), or refused
cleanly with a 4xx in the error shape, and never changes anything it should not: the schema and
the other rows stay as they were."""

from __future__ import annotations

import json
import unicodedata

import pytest

from tests.api._helpers import Api, assert_error

SQL = [
    "'; DROP TABLE users; --",
    '" OR "1"="1',
    "' OR '1'='1' --",
    "Robert'); DROP TABLE students;--",
    "1; DELETE FROM posts WHERE 1=1",
    "' UNION SELECT password_hash FROM users --",
    "%' OR 1=1 --",
    "_%_ \\% \\_",
    "\\'; SELECT sqlite_version(); --",
    "$1 ?1 :name @p ?",
    "/* comment */ -- tail",
    "`backticks` [brackets] {braces}",
    "0x27 CHAR(39) || 'x'",
]
UNICODE = [
    "Zoë Ñandú Łukasiewicz",
    "😀👍🏽👨‍👩‍👧‍👦",
    "مرحبا بالعالم",
    "עברית \u202eevil\u202c",
    "zero\u200bwidth\u200djoiner",
    "\ufeffbyte order mark",
    "𝕬𝖑𝖕𝖍𝖆 𝟙𝟚𝟛",
    "last code point \U0010ffff and \ufffd",
    "Ǆǅǆ ß ẞ ﬁ ﬃ",
    "e\u0301 decomposed, A\u030a too",
    "Z̷̡͉a̸̢l̶̨g̷o̵",
    "한국어 日本語テキスト",
    "\u00a0non-breaking spaces\u00a0",
    "…—–“”‘’«»",
]
HOSTILE = SQL + UNICODE
IDS = [f"sql{i}" for i in range(len(SQL))] + [f"unicode{i}" for i in range(len(UNICODE))]


def stored(value: str) -> str:
    """What the product stores for a text it accepts: NFC, trimmed."""
    return unicodedata.normalize("NFC", value).strip()


@pytest.fixture
def alice(make_member):
    return make_member("alice")


def schema(api: Api) -> list:
    return api.sql("SELECT type, name, sql FROM sqlite_master ORDER BY name")


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_every_profile_field_keeps_hostile_text_exactly(api: Api, alice, make_member, value: str):
    bob = make_member("bob")
    tables = schema(api)
    profile = {"name": value, "headline": value, "bio": value, "location": value, "skills": [value[:50]]}

    answer = api.ok("PATCH", "/api/users/me", json=profile, headers=alice.headers)

    read = api.ok("GET", "/api/users/alice")
    for field in ("name", "headline", "bio", "location"):
        assert answer[field] == read[field] == stored(value), field
    assert answer["skills"] == read["skills"] == [stored(value[:50])]
    assert api.ok("GET", "/api/users/bob") == api.ok("GET", "/api/users/bob") and api.ok("GET", "/api/users/bob")["id"] == bob.id
    assert schema(api) == tables


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_posts_and_comments_keep_hostile_text_exactly(api: Api, alice, value: str):
    post = api.ok("POST", "/api/posts", 201, json={"content": value}, headers=alice.headers)
    comment = api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": value}, headers=alice.headers)
    edited = api.ok("PATCH", f"/api/posts/{post['id']}", json={"content": value + " (edited)"}, headers=alice.headers)

    assert post["content"] == comment["content"] == stored(value)
    assert edited["content"] == api.ok("GET", f"/api/posts/{post['id']}")["content"] == stored(value + " (edited)")
    assert api.ok("GET", f"/api/posts/{post['id']}/comments")["items"][0]["content"] == stored(value)


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_a_signup_name_and_a_password_keep_hostile_text_exactly(api: Api, value: str):
    password = value if len(value) >= 6 else value + "-padding"
    member = api.signup(name=value, username="hostile", email="hostile@example.com", password=password)

    assert member.user["name"] == stored(value)
    assert api.ok("POST", "/api/auth/login", json={"username": "hostile", "password": password})["user"]["id"] == member.id
    assert_error(api.client.post("/api/auth/login", json={"username": "hostile", "password": password + "x"}), 401)


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_hostile_usernames_and_emails_are_refused_cleanly(api: Api, value: str):
    api.refused(
        "POST", "/api/auth/signup", 422, json={"name": "N", "username": value, "email": "a@example.com", "password": "p" * 8}
    )
    api.refused("POST", "/api/auth/signup", 422, json={"name": "N", "username": "fine", "email": value, "password": "p" * 8})


def test_an_email_with_an_apostrophe_is_a_valid_address_and_kept(api: Api):
    member = api.signup(name="O'Brien", username="obrien", email="o'brien@example.com", password="pass123")

    assert member.user["email"] == "o'brien@example.com"
    assert (
        api.ok("POST", "/api/auth/login", json={"email": "o'brien@example.com", "password": "pass123"})["user"]["id"] == member.id
    )


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_a_search_for_hostile_text_finds_exactly_who_holds_it(api: Api, alice, make_member, value: str):
    make_member("bystander")
    api.ok("PATCH", "/api/users/me", json={"headline": value}, headers=alice.headers)

    with api.unchanged():
        response = api.client.get("/api/users/search", params={"query": value})

    if len(stored(value).split()) > 8:
        assert_error(response, 422)
        return
    assert response.status_code == 200, response.text
    assert [u["username"] for u in response.json()["items"]] == ["alice"]


QUERY_PARAMETERS = [
    ("/api/users/search", "limit"),
    ("/api/users/search", "cursor"),
    ("/api/posts", "author"),
    ("/api/posts", "limit"),
    ("/api/posts", "cursor"),
    ("/api/feed", "cursor"),
    ("/api/users/alice/followers", "cursor"),
    ("/api/posts/1/comments", "limit"),
]


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_hostile_query_parameters_are_refused_cleanly_or_find_nothing(api: Api, alice, value: str):
    api.ok("POST", "/api/posts", 201, json={"content": "first"}, headers=alice.headers)
    for url, param in QUERY_PARAMETERS:
        params = {"query": "alice"} if url == "/api/users/search" else {}
        params[param] = value

        with api.unchanged():
            response = api.client.get(url, params=params, headers=alice.headers)

        if response.status_code == 200:
            assert param == "author" and response.json() == {"items": [], "next_cursor": None}, (url, param)
        else:
            assert response.status_code in (404, 422), (url, param, response.text)
            assert_error(response, response.status_code)


@pytest.mark.parametrize("value", HOSTILE, ids=IDS)
def test_hostile_path_parameters_are_refused_cleanly(api: Api, alice, value: str):
    for url in (f"/api/users/{value}", f"/api/users/{value}/followers", f"/api/posts/{value}"):
        with api.unchanged():
            response = api.client.get(url.replace("?", "%3F").replace("#", "%23"))
        assert response.status_code in (404, 422), (url, response.text)
        assert_error(response, response.status_code)
    api.refused("POST", f"/api/users/{value.replace('?', '%3F').replace('#', '%23')}/follow", 404, headers=alice.headers)


@pytest.mark.parametrize(
    "content",
    ["x" * 5000 + "😀", "😀" * 5001, "e\u0301" * 2501],
    # The schema counts the code points sent: 5002 of them, though 2501 once composed.
    ids=["ascii over by one", "emoji over by one", "decomposed, over as sent"],
)
def test_a_post_over_5000_code_points_is_refused_cleanly(api: Api, alice, content: str):
    api.refused("POST", "/api/posts", 422, json={"content": content}, headers=alice.headers)


def test_a_post_of_5000_emoji_is_kept_whole(api: Api, alice):
    post = api.ok("POST", "/api/posts", 201, json={"content": "👨‍👩‍👧"[0] * 5000}, headers=alice.headers)

    assert api.ok("GET", f"/api/posts/{post['id']}")["content"] == "👨" * 5000


@pytest.mark.parametrize("field", ["name", "headline", "bio", "location"])
def test_a_raw_json_escape_of_a_nul_is_refused_in_every_profile_field(api: Api, alice, field: str):
    api.refused("PATCH", "/api/users/me", 422, content=f'{{"{field}": "a\\u0000b"}}'.encode(),
                headers={**alice.headers, "Content-Type": "application/json"})  # fmt: skip


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
@pytest.mark.parametrize(
    "url, field",
    [("/api/posts", "content"), ("/api/users/me", "skills"), ("/api/auth/signup", "name"), ("/api/auth/login", "username")],
)
def test_deeply_nested_bodies_are_400_before_any_work(api: Api, alice, url: str, field: str, depth: int):
    body = f'{{"{field}": {"[" * depth}1{"]" * depth}}}'
    method = "PATCH" if url == "/api/users/me" else "POST"

    error = api.refused(method, url, 400, "json_too_deep", content=body.encode(),
                        headers={**alice.headers, "Content-Type": "application/json"})  # fmt: skip

    assert "32" in error["message"]


def test_nesting_within_the_limit_reaches_the_field_rules(api: Api, alice):
    body = json.dumps({"skills": [[["deep"]]]})

    api.refused(
        "PATCH", "/api/users/me", 422, content=body.encode(), headers={**alice.headers, "Content-Type": "application/json"}
    )
