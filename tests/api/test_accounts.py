"""Accounts their owners control (issue 16): a password change and a deletion end every token of the
account, a deletion takes the member's rows with it and keeps everyone else's counters right, an export
holds exactly the member's rows, and each refusal is a clear 4xx that changes nothing. Tokens carry
their account's key, so a token never acts as another account (issue 15, case 4)."""

from __future__ import annotations

import dataclasses
import json

import jwt
import pytest

from talentnest.cluster.auth import HEADER, sign
from talentnest.services.exports import ExportService
from talentnest.services.throttle import LoginThrottle, ThrottlePolicy, WriteLimiter, WritePolicy
from tests.api._helpers import JWT_SECRET, Api, assert_error, bearer

PASSWORD = "pass123"


def change_password(api: Api, token: str, old: str, new: str):
    return api.client.post("/api/auth/password", json={"old_password": old, "new_password": new}, headers=bearer(token))


def delete_account(api: Api, token: str, password: str = PASSWORD):
    return api.client.request("DELETE", "/api/users/me", json={"password": password}, headers=bearer(token))


def login(api: Api, username: str, password: str):
    return api.client.post("/api/auth/login", json={"username": username, "password": password})


def export(api: Api, token: str) -> dict:
    response = api.client.get("/api/users/me/export", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


# --- password change ---------------------------------------------------------------------------


def test_a_password_change_ends_every_token_of_the_account_and_answers_a_new_one(api: Api, make_member):
    alice, bob = make_member("alice"), make_member("bob")
    other_session = login(api, "alice", PASSWORD).json()["token"]
    response = change_password(api, alice.token, PASSWORD, "a new passphrase")
    assert response.status_code == 200, response.text
    fresh = response.json()
    assert fresh["user"]["username"] == "alice" and fresh["token"] not in (alice.token, other_session)
    for old in (alice.token, other_session):
        assert_error(api.client.get("/api/auth/me", headers=bearer(old)), 401, "token_revoked")
        assert_error(api.client.post("/api/posts", json={"content": "x"}, headers=bearer(old)), 401, "token_revoked")
    assert api.ok("GET", "/api/auth/me", headers=bearer(fresh["token"]))["username"] == "alice"
    assert_error(login(api, "alice", PASSWORD), 401, "invalid_credentials")
    assert login(api, "alice", "a new passphrase").status_code == 200
    assert api.ok("GET", "/api/auth/me", headers=bob.headers)["username"] == "bob", "another account's token ended too"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"old_password": "wrong-one", "new_password": "a new passphrase"}, 403, "wrong_password"),
        ({"old_password": PASSWORD, "new_password": "short"}, 422, None),
        ({"old_password": PASSWORD, "new_password": "x" * 257}, 422, None),
        ({"old_password": PASSWORD, "new_password": "with\x00nul"}, 422, "invalid_password"),
        ({"old_password": PASSWORD}, 422, None),
        ({"new_password": "a new passphrase"}, 422, None),
        ({"old_password": PASSWORD, "new_password": 12345678}, 422, None),
        ({"old_password": PASSWORD, "new_password": "a new passphrase", "token_key": "mine"}, 422, None),
    ],
)
def test_a_refused_password_change_changes_nothing_and_the_token_still_works(api: Api, make_member, body, status, code):
    alice = make_member("alice")
    api.refused("POST", "/api/auth/password", status, code, json=body, headers=alice.headers)
    assert api.ok("GET", "/api/auth/me", headers=alice.headers)["username"] == "alice"
    assert login(api, "alice", PASSWORD).status_code == 200


def test_a_password_change_needs_a_token_and_a_json_body(api: Api, make_member):
    alice = make_member("alice")
    body = {"old_password": PASSWORD, "new_password": "a new passphrase"}
    api.refused("POST", "/api/auth/password", 401, "missing_token", json=body)
    api.refused("POST", "/api/auth/password", 401, "invalid_token", json=body, headers=bearer("not.a.token"))
    api.refused("POST", "/api/auth/password", 400, content=b"{", headers={**alice.headers, "Content-Type": "application/json"})
    api.refused("POST", "/api/auth/password", 415, content=b"x", headers={**alice.headers, "Content-Type": "text/plain"})


def test_wrong_passwords_given_to_a_change_or_a_deletion_are_throttled_like_failed_logins(api: Api, make_member):
    api.app.state.product.auth.throttle = LoginThrottle(ThrottlePolicy(per_account=3, per_address=100, window=60))
    alice = make_member("alice")
    for _ in range(2):
        assert_error(change_password(api, alice.token, "guess", "a new passphrase"), 403, "wrong_password")
    assert_error(delete_account(api, alice.token, "guess"), 403, "wrong_password")
    with api.unchanged():
        refused = change_password(api, alice.token, PASSWORD, "a new passphrase")
        assert_error(refused, 429, "login_throttled")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert_error(delete_account(api, alice.token), 429, "login_throttled")


# --- deletion ----------------------------------------------------------------------------------


def test_deleting_an_account_removes_its_rows_keeps_the_others_counters_right_and_ends_its_tokens(api: Api, make_member):
    alice, bob, carol = make_member("alice"), make_member("bob"), make_member("carol")
    mine = api.ok("POST", "/api/posts", 201, json={"content": "alice's post"}, headers=alice.headers)
    theirs = api.ok("POST", "/api/posts", 201, json={"content": "bob's post"}, headers=bob.headers)
    for member in (alice, bob, carol):  # everyone likes and comments on both posts
        for post in (mine, theirs):
            api.ok("POST", f"/api/posts/{post['id']}/like", headers=member.headers)
            api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": "hi"}, headers=member.headers)
    for a, b in ((alice, bob), (bob, alice), (carol, alice), (alice, carol), (carol, bob)):
        api.ok("POST", f"/api/users/{b.username}/follow", headers=a.headers)
    second_session = login(api, "alice", PASSWORD).json()["token"]

    response = delete_account(api, alice.token)
    assert response.status_code == 204, response.text

    for token in (alice.token, second_session):
        assert_error(api.client.get("/api/auth/me", headers=bearer(token)), 401, "invalid_token")
    assert_error(login(api, "alice", PASSWORD), 401, "invalid_credentials")
    assert_error(api.client.get("/api/users/alice"), 404, "user_not_found")
    assert_error(api.client.get(f"/api/posts/{mine['id']}"), 404, "post_not_found")
    left = api.sql(
        "SELECT (SELECT COUNT(*) FROM posts WHERE author_id = ?1) + (SELECT COUNT(*) FROM comments WHERE author_id = ?1) "
        "+ (SELECT COUNT(*) FROM likes WHERE user_id = ?1) "
        "+ (SELECT COUNT(*) FROM follows WHERE follower_id = ?1 OR followee_id = ?1)",
        alice.id,
    )
    assert left[0][0] == 0, "rows of the deleted account remain"
    post = api.ok("GET", f"/api/posts/{theirs['id']}")
    assert (post["like_count"], post["comment_count"]) == (2, 2)
    assert [c["author"]["username"] for c in api.all_pages(f"/api/posts/{theirs['id']}/comments", limit=10)] == ["bob", "carol"]
    counts = {u: api.ok("GET", f"/api/users/{u}") for u in ("bob", "carol")}
    assert (counts["bob"]["follower_count"], counts["bob"]["following_count"]) == (1, 0)
    assert (counts["carol"]["follower_count"], counts["carol"]["following_count"]) == (0, 1)
    stored = api.sql(
        "SELECT SUM(follower_count != (SELECT COUNT(*) FROM follows WHERE followee_id = u.id)) "
        "+ SUM(following_count != (SELECT COUNT(*) FROM follows WHERE follower_id = u.id)) FROM users u"
    )
    assert stored[0][0] == 0, "a counter disagrees with the rows"
    assert api.signup(name="New Alice", username="alice", email="alice@example.com", password=PASSWORD).id != alice.id


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"password": "not-mine"}, 403, "wrong_password"),
        ({}, 422, None),
        ({"password": 123}, 422, None),
        ({"password": PASSWORD, "also": "this"}, 422, None),
        (None, 422, None),
    ],
)
def test_a_refused_deletion_changes_nothing(api: Api, make_member, body, status, code):
    alice = make_member("alice")
    api.ok("POST", "/api/posts", 201, json={"content": "still here"}, headers=alice.headers)
    kwargs = {} if body is None else {"json": body}
    api.refused("DELETE", "/api/users/me", status, code, headers=alice.headers, **kwargs)
    assert api.ok("GET", "/api/auth/me", headers=alice.headers)["username"] == "alice"


def test_a_deletion_needs_a_token_of_the_account(api: Api, make_member):
    make_member("alice")
    api.refused("DELETE", "/api/users/me", 401, "missing_token", json={"password": PASSWORD})


# --- export ------------------------------------------------------------------------------------


def test_an_export_holds_exactly_the_members_rows_across_pages(api: Api, make_member):
    product = api.app.state.product
    api.app.state.product = dataclasses.replace(
        product, exports=ExportService(product.exports.db, product.exports.users, product.exports.exports, page_rows=2)
    )
    alice, bob, carol = make_member("alice"), make_member("bob"), make_member("carol")
    posts = [api.ok("POST", "/api/posts", 201, json={"content": f"alice {i}"}, headers=alice.headers) for i in range(5)]
    bobs = api.ok("POST", "/api/posts", 201, json={"content": "bob's"}, headers=bob.headers)
    comments = [
        api.ok("POST", f"/api/posts/{p}/comments", 201, json={"content": f"on {p}"}, headers=alice.headers)
        for p in (bobs["id"], posts[0]["id"], bobs["id"])
    ]
    api.ok("POST", f"/api/posts/{posts[0]['id']}/comments", 201, json={"content": "bob here"}, headers=bob.headers)
    for p in (bobs, posts[1], posts[2]):
        api.ok("POST", f"/api/posts/{p['id']}/like", headers=alice.headers)
    api.ok("POST", f"/api/posts/{posts[3]['id']}/like", headers=carol.headers)
    for who in ("bob", "carol"):
        api.ok("POST", f"/api/users/{who}/follow", headers=alice.headers)
    api.ok("POST", "/api/users/alice/follow", headers=carol.headers)
    api.ok("POST", "/api/users/bob/follow", headers=carol.headers)

    data = export(api, alice.token)

    assert set(data) == {"exported_at", "profile", "posts", "comments", "likes", "following", "followers"}
    assert data["profile"] == api.ok("GET", "/api/users/me", headers=alice.headers)
    assert [p["id"] for p in data["posts"]] == [p["id"] for p in posts]
    assert [p["content"] for p in data["posts"]] == [f"alice {i}" for i in range(5)]
    assert [(c["id"], c["post_id"]) for c in data["comments"]] == [(c["id"], c["post_id"]) for c in comments]
    assert [like["post_id"] for like in data["likes"]] == sorted(p["id"] for p in (bobs, posts[1], posts[2]))
    assert [f["username"] for f in data["following"]] == ["bob", "carol"]
    assert [f["username"] for f in data["followers"]] == ["carol"]
    rows = api.sql(
        "SELECT (SELECT COUNT(*) FROM posts WHERE author_id = ?1), (SELECT COUNT(*) FROM comments WHERE author_id = ?1), "
        "(SELECT COUNT(*) FROM likes WHERE user_id = ?1), (SELECT COUNT(*) FROM follows WHERE follower_id = ?1), "
        "(SELECT COUNT(*) FROM follows WHERE followee_id = ?1)",
        alice.id,
    )
    sizes = tuple(len(data[k]) for k in ("posts", "comments", "likes", "following", "followers"))
    assert tuple(rows[0]) == sizes, "the export does not hold exactly the member's rows"
    assert "password" not in json.dumps(data) and "token_key" not in json.dumps(data)


def test_an_empty_account_exports_empty_lists_and_a_deleted_one_cannot_export(api: Api, make_member):
    alice = make_member("alice")
    data = export(api, alice.token)
    assert [data[k] for k in ("posts", "comments", "likes", "following", "followers")] == [[]] * 5
    assert_error(api.client.get("/api/users/me/export"), 401, "missing_token")
    assert delete_account(api, alice.token).status_code == 204
    assert_error(api.client.get("/api/users/me/export", headers=alice.headers), 401, "invalid_token")


# --- tokens bound to their account -------------------------------------------------------------


def test_a_token_naming_an_account_id_without_its_key_is_refused(api: Api, make_member):
    alice = make_member("alice")
    claims = jwt.decode(alice.token, options={"verify_signature": False})
    assert claims["key"], "a new account's token carries no key"
    tokens = api.app.state.product.auth.tokens
    for forged in (tokens.issue(alice.id, "alice"), tokens.issue(alice.id, "alice", "another-accounts-key")):
        assert_error(api.client.get("/api/auth/me", headers=bearer(forged)), 401, "token_revoked")
    unsigned = jwt.encode({**claims, "key": "x"}, "another secret that is at least 32 bytes", algorithm="HS256")
    assert_error(api.client.get("/api/auth/me", headers=bearer(unsigned)), 401, "invalid_token")


def test_an_account_made_before_token_keys_takes_keyless_tokens_of_its_own_username_only(api: Api, make_member):
    alice = make_member("alice")
    api.write_sql("UPDATE users SET token_key = '' WHERE id = ?", alice.id)  # as migration 3 leaves older accounts
    tokens = api.app.state.product.auth.tokens
    assert api.ok("GET", "/api/auth/me", headers=bearer(tokens.issue(alice.id, "alice")))["username"] == "alice"
    assert_error(api.client.get("/api/auth/me", headers=bearer(tokens.issue(alice.id, "ghost"))), 401, "invalid_token")
    assert_error(api.client.get("/api/auth/me", headers=alice.headers), 401, "token_revoked")
    fresh = login(api, "alice", PASSWORD).json()["token"]
    assert api.ok("GET", "/api/auth/me", headers=bearer(fresh))["username"] == "alice"
    changed = change_password(api, fresh, PASSWORD, "a new passphrase").json()["token"]
    assert jwt.decode(changed, JWT_SECRET, algorithms=["HS256"], options={"verify_iss": False})["key"]
    assert_error(api.client.get("/api/auth/me", headers=bearer(fresh)), 401, "token_revoked")


# --- write limits ------------------------------------------------------------------------------


def _limits(api: Api, **policy) -> None:
    api.app.state.product = dataclasses.replace(api.app.state.product, write_limits=WriteLimiter(WritePolicy(**policy)))


def test_writes_beyond_an_accounts_allowance_are_429_with_retry_after_and_change_nothing(api: Api, make_member):
    _limits(api, per_account=4, per_address=100, window=60)
    alice, bob = make_member("alice"), make_member("bob")
    post = api.ok("POST", "/api/posts", 201, json={"content": "one"}, headers=alice.headers)
    api.ok("POST", f"/api/posts/{post['id']}/comments", 201, json={"content": "two"}, headers=alice.headers)
    api.ok("POST", f"/api/posts/{post['id']}/like", headers=alice.headers)
    api.ok("POST", "/api/users/bob/follow", headers=alice.headers)
    for method, url, body in (
        ("POST", "/api/posts", {"content": "five"}),
        ("POST", f"/api/posts/{post['id']}/comments", {"content": "five"}),
        ("POST", f"/api/posts/{post['id']}/like", None),
        ("POST", "/api/users/bob/follow", None),
    ):
        with api.unchanged():
            response = api.client.request(method, url, json=body, headers=alice.headers)
        assert_error(response, 429, "write_rate_limited")
        assert 1 <= int(response.headers["retry-after"]) <= 60
    assert api.ok("POST", "/api/posts", 201, json={"content": "bob is not limited"}, headers=bob.headers)


def test_writes_beyond_an_addresss_allowance_are_429_whichever_account_makes_them(api: Api, make_member):
    _limits(api, per_account=100, per_address=3, window=60)
    members = [make_member(f"member{i}") for i in range(4)]

    def post_from(member, address: str):
        body = json.dumps({"content": f"from {address}"}).encode()
        headers = {**member.headers, "Content-Type": "application/json", "X-Forwarded-For": address}
        headers[HEADER] = sign(api.app.state.node.key, "POST", "/api/posts", body)  # as a peer forwards it
        return api.client.post("/api/posts", content=body, headers=headers)

    for member in members[:3]:
        assert post_from(member, "203.0.113.7").status_code == 201
    with api.unchanged():
        assert_error(post_from(members[3], "203.0.113.7"), 429, "write_rate_limited")
    assert post_from(members[3], "203.0.113.8").status_code == 201
