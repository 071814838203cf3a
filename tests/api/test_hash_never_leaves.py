"""Password hashes never leave the store: a session that calls every route, and every public page,
is scanned for anything argon2-shaped. Only the authenticated /cluster/sync and /cluster/log
carry the users table, hashes included, to other nodes."""

from __future__ import annotations

import httpx

from talentnest.cluster.auth import HEADER, sign
from tests.api._helpers import Api, bearer

FORBIDDEN = ("$argon2", "argon2id", "pass123")  # a hash, or the password itself


def session_answers(api: Api, make_member) -> list[httpx.Response]:
    alice = make_member("alice", password="pass123")
    bob = make_member("bob", password="pass123")
    a, b = alice.headers, bob.headers
    c = api.client
    post = c.post("/api/posts", json={"content": "hello"}, headers=a)
    post_id = post.json()["id"]
    comment = c.post(f"/api/posts/{post_id}/comments", json={"content": "hi"}, headers=b)
    answers = [
        post,
        comment,
        c.post("/api/auth/signup", json={"name": "A", "username": "alice", "email": "x@example.com", "password": "pass123"}),
        c.post("/api/auth/signup", json={"name": "A", "username": "other", "email": "alice@example.com", "password": "pass123"}),
        c.post("/api/auth/login", json={"username": "alice", "password": "pass123"}),
        c.post("/api/auth/login", json={"email": "alice@example.com", "password": "wrong"}),
        c.post("/api/auth/login", json={"username": "alice", "password": "pass123", "extra": 1}),
        c.get("/api/auth/me", headers=a),
        c.get("/api/users/me", headers=a),
        c.patch("/api/users/me", json={"headline": "h", "skills": ["Python"]}, headers=a),
        c.patch("/api/users/me", json={"password_hash": "x"}, headers=a),
        c.get("/api/users/alice"),
        c.get("/api/users/search", params={"query": "alice"}),
        c.get("/api/users/search", params={"query": "python"}),
        c.post("/api/users/alice/follow", headers=b),
        c.get("/api/users/alice/followers"),
        c.get("/api/users/bob/following"),
        c.delete("/api/users/alice/follow", headers=b),
        c.get(f"/api/posts/{post_id}", headers=a),
        c.get("/api/posts", params={"author": "alice"}),
        c.get("/api/feed", headers=a),
        c.post(f"/api/posts/{post_id}/like", headers=b),
        c.delete(f"/api/posts/{post_id}/like", headers=b),
        c.get(f"/api/posts/{post_id}/comments"),
        c.patch(f"/api/posts/{post_id}", json={"content": "edited"}, headers=a),
        c.patch(f"/api/posts/{post_id}", json={"content": "not yours"}, headers=b),
        c.delete(f"/api/posts/{post_id}/comments/{comment.json()['id']}", headers=b),
        c.delete(f"/api/posts/{post_id}", headers=a),
        c.get("/api/users/nobody"),
    ]
    for page in ["/cluster/status", "/metrics", "/healthz", "/readyz", "/", "/openapi.json", "/docs"]:
        answers.append(c.get(page))
    return answers


def test_no_answer_of_a_whole_session_holds_a_password_hash(api: Api, make_member):
    answers = session_answers(api, make_member)

    assert {r.status_code for r in answers} >= {200, 201, 204, 401, 403, 404, 409, 422}
    for response in answers:
        text = response.text + str(response.headers)
        assert not any(word in text for word in FORBIDDEN), (response.request.method, response.request.url, text[:300])


def test_only_the_signed_cluster_routes_carry_the_hashes(api: Api, make_member):
    make_member("alice")
    key = api.app.state.node.key

    log = api.client.get("/cluster/log?after=0", headers={HEADER: sign(key, "GET", "/cluster/log?after=0")})

    assert log.status_code == 200 and "$argon2id$" in log.text  # the check above would see one
    assert api.client.get("/cluster/log?after=0").status_code == 401
    assert "$argon2" not in api.client.get("/api/auth/me", headers=bearer(api.signup(
        name="B", username="bee", email="bee@example.com", password="pass123").token)).text  # fmt: skip
