"""Posts, the feed, likes and comments, through the real ASGI app."""

from __future__ import annotations

import pytest

from tests.api._helpers import Api, Member

POST_KEYS = {"id", "author", "content", "like_count", "comment_count", "created_at", "updated_at"}
AUTHOR_KEYS = {"id", "username", "name", "headline"}
COMMENT_KEYS = {"id", "post_id", "author", "content", "created_at"}


def publish(api: Api, member: Member, content: str = "Hello, Talent Nest") -> dict:
    return api.ok("POST", "/api/posts", 201, json={"content": content}, headers=member.headers)


def ids(items: list[dict]) -> list[int]:
    return [item["id"] for item in items]


# --- create, read, edit, delete ----------------------------------------------------------------


def test_creating_a_post_answers_it_with_its_author_and_counts(api: Api, make_member):
    alice = make_member("alice", name="Alice")

    post = publish(api, alice, "This should be redirected to the leader")

    assert set(post) == POST_KEYS | {"liked_by_me"}
    assert post["content"] == "This should be redirected to the leader"
    assert post["author"] == {"id": alice.id, "username": "alice", "name": "Alice", "headline": ""}
    assert set(post["author"]) == AUTHOR_KEYS
    assert post["like_count"] == 0 and post["comment_count"] == 0 and post["liked_by_me"] is False
    assert post["created_at"] == post["updated_at"]


def test_post_content_is_trimmed_and_may_hold_newlines_tabs_and_any_script(api: Api, make_member):
    alice = make_member("alice")

    assert publish(api, alice, "  Línea uno\n\tdos 🚀 中文  ")["content"] == "Línea uno\n\tdos 🚀 中文"


def test_a_post_of_exactly_the_maximum_length_is_accepted(api: Api, make_member):
    alice = make_member("alice")

    assert len(publish(api, alice, "p" * 5000)["content"]) == 5000


INVALID_CONTENT = {
    "empty": {"content": ""},
    "blank": {"content": " \n\t "},
    "too long": {"content": "p" * 5001},
    "NUL": {"content": "a\x00b"},
    "escape": {"content": "\x1b[2J"},
    "form feed": {"content": "a\x0cb"},
    "a number": {"content": 5},
    "null": {"content": None},
    "missing": {},
    "an unknown field": {"content": "hi", "author_id": 1},
}


@pytest.mark.parametrize("body", INVALID_CONTENT.values(), ids=INVALID_CONTENT.keys())
def test_creating_a_post_with_invalid_content_is_422_and_changes_nothing(api: Api, make_member, body: dict):
    alice = make_member("alice")

    api.refused("POST", "/api/posts", 422, json=body, headers=alice.headers)


def test_creating_a_post_with_a_lone_surrogate_is_422(api: Api, make_member):
    alice = make_member("alice")

    headers = {**alice.headers, "Content-Type": "application/json"}

    api.refused("POST", "/api/posts", 422, content=b'{"content": "x\\udc00"}', headers=headers)


def test_creating_a_post_without_a_token_is_401(api: Api, make_member):
    make_member("alice")

    api.refused("POST", "/api/posts", 401, json={"content": "hello"})


def test_liked_by_me_is_present_only_when_a_token_is_sent(api: Api, make_member):
    alice = make_member("alice")
    post = publish(api, alice)

    anonymous = api.ok("GET", f"/api/posts/{post['id']}")
    with_token = api.ok("GET", f"/api/posts/{post['id']}", headers=alice.headers)

    assert set(anonymous) == POST_KEYS
    assert set(with_token) == POST_KEYS | {"liked_by_me"} and with_token["liked_by_me"] is False
    assert "liked_by_me" not in api.ok("GET", "/api/posts")["items"][0]
    assert api.ok("GET", "/api/posts", headers=alice.headers)["items"][0]["liked_by_me"] is False
    assert api.ok("GET", "/api/feed", headers=alice.headers)["items"][0]["liked_by_me"] is False


@pytest.mark.parametrize("method, body", [("GET", None), ("PATCH", {"content": "x"}), ("DELETE", None)])
def test_an_unknown_post_is_404(api: Api, make_member, method: str, body):
    alice = make_member("alice")
    publish(api, alice)

    api.refused(method, "/api/posts/999", 404, "post_not_found", json=body, headers=alice.headers)


@pytest.mark.parametrize("post_id", ["0", "-1", "abc", "1.5", str(2**63), "1e3"])
def test_a_post_id_that_is_not_a_positive_64_bit_integer_is_422(api: Api, make_member, post_id: str):
    alice = make_member("alice")
    publish(api, alice)

    api.refused("GET", f"/api/posts/{post_id}", 422)
    api.refused("DELETE", f"/api/posts/{post_id}", 422, headers=alice.headers)


def test_the_author_edits_a_post(api: Api, make_member):
    alice = make_member("alice")
    post = publish(api, alice, "first")

    edited = api.ok("PATCH", f"/api/posts/{post['id']}", json={"content": "second"}, headers=alice.headers)

    assert edited["content"] == "second" and edited["id"] == post["id"]
    assert edited["created_at"] == post["created_at"] and edited["updated_at"] >= post["updated_at"]
    assert api.ok("GET", f"/api/posts/{post['id']}")["content"] == "second"


@pytest.mark.parametrize("method, body", [("PATCH", {"content": "mine now"}), ("DELETE", None)])
def test_someone_elses_post_is_403_and_stays_as_it_was(api: Api, make_member, method: str, body):
    alice, mallory = make_member("alice"), make_member("mallory")
    post = publish(api, alice, "original")

    api.refused(method, f"/api/posts/{post['id']}", 403, "not_author", json=body, headers=mallory.headers)

    assert api.ok("GET", f"/api/posts/{post['id']}")["content"] == "original"


@pytest.mark.parametrize("body", INVALID_CONTENT.values(), ids=INVALID_CONTENT.keys())
def test_editing_a_post_with_invalid_content_is_422(api: Api, make_member, body: dict):
    alice = make_member("alice")
    post = publish(api, alice)

    api.refused("PATCH", f"/api/posts/{post['id']}", 422, json=body, headers=alice.headers)


def test_the_author_deletes_a_post_with_its_likes_and_comments(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")
    post = publish(api, alice)
    other = publish(api, bob)
    api.ok("POST", f"/api/posts/{post['id']}/like", headers=bob.headers)
    api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": "nice"}, headers=bob.headers)

    response = api.client.delete(f"/api/posts/{post['id']}", headers=alice.headers)

    assert response.status_code == 204 and response.content == b""
    api.refused("GET", f"/api/posts/{post['id']}", 404)
    api.refused("GET", f"/api/posts/{post['id']}/comments", 404)
    api.refused("DELETE", f"/api/posts/{post['id']}", 404, headers=alice.headers)
    assert ids(api.ok("GET", "/api/posts")["items"]) == [other["id"]]
    rows = api.sql("SELECT (SELECT COUNT(*) FROM likes), (SELECT COUNT(*) FROM comments)")
    assert tuple(rows[0]) == (0, 0)


@pytest.mark.parametrize("method, body", [("PATCH", {"content": "x"}), ("DELETE", None)])
def test_editing_or_deleting_without_a_token_is_401(api: Api, make_member, method: str, body):
    post = publish(api, make_member("alice"))

    api.refused(method, f"/api/posts/{post['id']}", 401, json=body)


# --- lists and the feed ------------------------------------------------------------------------


def test_posts_list_newest_first_and_by_author(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")
    a1, b1, a2 = publish(api, alice, "a1"), publish(api, bob, "b1"), publish(api, alice, "a2")

    assert ids(api.ok("GET", "/api/posts")["items"]) == [a2["id"], b1["id"], a1["id"]]
    assert ids(api.ok("GET", "/api/posts", params={"author": "alice"})["items"]) == [a2["id"], a1["id"]]
    assert ids(api.ok("GET", "/api/posts", params={"author": "BOB"})["items"]) == [b1["id"]]


def test_posts_of_an_unknown_author_are_404(api: Api, make_member):
    make_member("alice")

    api.refused("GET", "/api/posts", 404, "user_not_found", params={"author": "nobody"})


def test_posts_of_an_author_without_posts_are_an_empty_page(api: Api, make_member):
    make_member("alice")

    assert api.ok("GET", "/api/posts", params={"author": "alice"}) == {"items": [], "next_cursor": None}


def test_post_lists_page_without_gaps_or_repeats(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")
    posted = [publish(api, alice if i % 3 else bob, f"post {i}")["id"] for i in range(11)]

    assert ids(api.all_pages("/api/posts", limit=4)) == posted[::-1]
    alices = [p for i, p in enumerate(posted) if i % 3]
    assert ids(api.all_pages("/api/posts", limit=3, params={"author": "alice"})) == alices[::-1]


def test_the_feed_holds_the_posts_of_followed_users_and_your_own_newest_first(api: Api, make_member):
    alice, bob, carol = make_member("alice"), make_member("bob"), make_member("carol")
    own = publish(api, alice, "mine")
    from_bob = publish(api, bob, "from bob")
    publish(api, carol, "from carol, not followed")
    api.ok("POST", "/api/users/bob/follow", headers=alice.headers)
    later_from_bob = publish(api, bob, "later from bob")

    feed = api.ok("GET", "/api/feed", headers=alice.headers)

    assert ids(feed["items"]) == [later_from_bob["id"], from_bob["id"], own["id"]]
    assert ids(api.ok("GET", "/api/feed", headers=carol.headers)["items"]) == [3]
    api.ok("DELETE", "/api/users/bob/follow", headers=alice.headers)
    assert ids(api.ok("GET", "/api/feed", headers=alice.headers)["items"]) == [own["id"]]


def test_the_feed_is_empty_for_a_new_user(api: Api, make_member):
    publish(api, make_member("alice"))

    assert api.ok("GET", "/api/feed", headers=make_member("bob").headers) == {"items": [], "next_cursor": None}


def test_the_feed_pages_without_gaps_or_repeats(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")
    api.ok("POST", "/api/users/bob/follow", headers=alice.headers)
    posted = [publish(api, alice if i % 2 else bob, f"post {i}")["id"] for i in range(9)]

    assert ids(api.all_pages("/api/feed", limit=2, headers=alice.headers)) == posted[::-1]


def test_the_feed_needs_a_token(api: Api):
    api.refused("GET", "/api/feed", 401, "missing_token")


# --- likes -------------------------------------------------------------------------------------


def test_like_and_unlike_are_idempotent_and_counted(api: Api, make_member):
    alice, bob, carol = make_member("alice"), make_member("bob"), make_member("carol")
    post = publish(api, alice)
    url = f"/api/posts/{post['id']}/like"

    liked = api.ok("POST", url, headers=bob.headers)
    assert liked["like_count"] == 1 and liked["liked_by_me"] is True and liked["id"] == post["id"]
    with api.unchanged():
        assert api.ok("POST", url, headers=bob.headers)["like_count"] == 1
    assert api.ok("POST", url, headers=carol.headers)["like_count"] == 2
    assert api.ok("GET", f"/api/posts/{post['id']}", headers=alice.headers)["liked_by_me"] is False
    assert api.ok("GET", f"/api/posts/{post['id']}", headers=bob.headers)["liked_by_me"] is True

    unliked = api.ok("DELETE", url, headers=bob.headers)
    assert unliked["like_count"] == 1 and unliked["liked_by_me"] is False
    with api.unchanged():
        assert api.ok("DELETE", url, headers=bob.headers)["like_count"] == 1
    assert api.ok("GET", f"/api/posts/{post['id']}")["like_count"] == 1


def test_authors_may_like_their_own_posts(api: Api, make_member):
    alice = make_member("alice")
    post = publish(api, alice)

    assert api.ok("POST", f"/api/posts/{post['id']}/like", headers=alice.headers)["liked_by_me"] is True


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_liking_an_unknown_post_is_404(api: Api, make_member, method: str):
    alice = make_member("alice")

    api.refused(method, "/api/posts/42/like", 404, "post_not_found", headers=alice.headers)


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_liking_without_a_token_is_401(api: Api, make_member, method: str):
    post = publish(api, make_member("alice"))

    api.refused(method, f"/api/posts/{post['id']}/like", 401)


# --- comments ----------------------------------------------------------------------------------


def test_comments_are_created_counted_and_listed_oldest_first(api: Api, make_member):
    alice, bob = make_member("alice", name="Alice"), make_member("bob", name="Bob")
    post = publish(api, alice)
    url = f"/api/posts/{post['id']}/comments"

    first = api.ok("POST", url, 201, json={"content": "  first!  "}, headers=bob.headers)
    second = api.ok("POST", url, 201, json={"content": "thanks\nBob"}, headers=alice.headers)

    assert set(first) == COMMENT_KEYS
    assert first["content"] == "first!" and first["post_id"] == post["id"]
    assert first["author"] == {"id": bob.id, "username": "bob", "name": "Bob", "headline": ""}
    assert ids(api.ok("GET", url)["items"]) == [first["id"], second["id"]]
    assert api.ok("GET", f"/api/posts/{post['id']}")["comment_count"] == 2


def test_comments_page_without_gaps_or_repeats(api: Api, make_member):
    alice = make_member("alice")
    post = publish(api, alice)
    url = f"/api/posts/{post['id']}/comments"
    made = [api.ok("POST", url, 201, json={"content": f"c{i}"}, headers=alice.headers)["id"] for i in range(7)]

    assert ids(api.all_pages(url, limit=3)) == made


INVALID_COMMENTS = {
    "empty": {"content": ""},
    "blank": {"content": "   "},
    "too long": {"content": "c" * 2001},
    "NUL": {"content": "\x00"},
    "bell": {"content": "ding\x07"},
    "not a string": {"content": ["x"]},
    "an unknown field": {"content": "x", "post_id": 2},
}


@pytest.mark.parametrize("body", INVALID_COMMENTS.values(), ids=INVALID_COMMENTS.keys())
def test_an_invalid_comment_is_422_and_changes_nothing(api: Api, make_member, body: dict):
    alice = make_member("alice")
    post = publish(api, alice)

    api.refused("POST", f"/api/posts/{post['id']}/comments", 422, json=body, headers=alice.headers)


def test_a_comment_of_exactly_the_maximum_length_is_accepted(api: Api, make_member):
    alice = make_member("alice")
    post = publish(api, alice)

    comment = api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": "c" * 2000}, headers=alice.headers)

    assert len(comment["content"]) == 2000


def test_comments_of_an_unknown_post_are_404(api: Api, make_member):
    alice = make_member("alice")

    api.refused("POST", "/api/posts/7/comments", 404, "post_not_found", json={"content": "hi"}, headers=alice.headers)
    api.refused("GET", "/api/posts/7/comments", 404, "post_not_found")


def test_commenting_needs_a_token(api: Api, make_member):
    post = publish(api, make_member("alice"))

    api.refused("POST", f"/api/posts/{post['id']}/comments", 401, json={"content": "hi"})


def test_a_comment_is_deleted_by_its_author_or_the_posts_author_only(api: Api, make_member):
    alice, bob, mallory = make_member("alice"), make_member("bob"), make_member("mallory")
    post = publish(api, alice)
    url = f"/api/posts/{post['id']}/comments"
    by_bob = api.ok("POST", url, 201, json={"content": "by bob"}, headers=bob.headers)
    by_bob_too = api.ok("POST", url, 201, json={"content": "by bob again"}, headers=bob.headers)

    api.refused("DELETE", f"{url}/{by_bob['id']}", 403, "not_author", headers=mallory.headers)
    assert api.client.delete(f"{url}/{by_bob['id']}", headers=bob.headers).status_code == 204
    assert api.client.delete(f"{url}/{by_bob_too['id']}", headers=alice.headers).status_code == 204
    assert api.ok("GET", url)["items"] == []
    assert api.ok("GET", f"/api/posts/{post['id']}")["comment_count"] == 0
    api.refused("DELETE", f"{url}/{by_bob['id']}", 404, "comment_not_found", headers=bob.headers)


def test_a_comment_is_only_found_under_its_own_post(api: Api, make_member):
    alice = make_member("alice")
    post, other = publish(api, alice), publish(api, alice)
    comment = api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": "x"}, headers=alice.headers)

    api.refused("DELETE", f"/api/posts/{other['id']}/comments/{comment['id']}", 404, "comment_not_found", headers=alice.headers)
    api.refused("DELETE", f"/api/posts/999/comments/{comment['id']}", 404, "post_not_found", headers=alice.headers)
    api.refused("DELETE", f"/api/posts/{post['id']}/comments/999", 404, "comment_not_found", headers=alice.headers)
    api.refused("DELETE", f"/api/posts/{post['id']}/comments/{comment['id']}", 401)
