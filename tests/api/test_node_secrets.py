"""Secrets and password hashes on a real node: the short-secret warning, no secret in any log
line or public page, and argon2 hashes upgraded at login when the node's parameters change."""

from __future__ import annotations

import base64
import os
import re
import sqlite3

import httpx
import jwt

from talentnest.cluster.auth import HEADER, cluster_key, sign
from talentnest.store import DB_FILENAME
from tests._node import LocalNode, ready_node

SUBNET = os.environ.get("TN_TEST_SUBNET", "127.0.5")
SEED_SECRET = "secret_key"  # the seed's: ten bytes
LONG_SECRET = "b7c1f0e2d94a4e6fa1c35e0d2b8f7a6c-long-enough"
PUBLIC_PAGES = ["/cluster/status", "/metrics", "/healthz", "/readyz", "/", "/openapi.json"]
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


def exercise(node: LocalNode, key: bytes, jwt_secret: str) -> str:
    """A session that touches every path a secret could leak through; returns all it was answered
    (but for the answers to requests that sent the secret themselves: a 404 names what it looked for)."""
    answers = []
    with httpx.Client(base_url=node.url, timeout=10) as client:
        member = {"name": "Keeper", "username": "keeper", "email": "keeper@example.com", "password": "pass123"}
        token = client.post("/api/auth/signup", json=member).json()["token"]
        forged = jwt.encode({"sub": "1", "iss": "talentnest", "iat": 1, "exp": 2**40}, "x" * 32, algorithm="HS256")
        client.get("/api/auth/me", headers={"Authorization": f"Bearer {jwt_secret}"})
        client.get(f"/api/users/{jwt_secret}")
        for response in [
            client.post("/api/auth/login", json={"username": "keeper", "password": "wrong-password"}),
            client.post("/api/auth/login", json={"username": "keeper", "password": "pass123"}),
            client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"}),
            client.get("/api/auth/me", headers={"Authorization": f"Bearer {forged}"}),
            client.get("/cluster/sync"),
            client.get("/cluster/checksum", headers={HEADER: "t=1,s=" + "0" * 64}),
            client.get("/cluster/checksum", headers={HEADER: sign(key, "GET", "/cluster/checksum")}),
            *(client.get(page) for page in PUBLIC_PAGES),
        ]:
            answers.append(f"{response.status_code} {response.headers} {response.text}")
    return "\n".join(answers)


def secret_forms(jwt_secret: str, key: bytes) -> list[str]:
    return [jwt_secret, key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode().rstrip("=")]


def test_a_short_jwt_secret_is_warned_of_at_start_and_never_shown(tmp_path):
    node = ready_node(tmp_path, f"{SUBNET}.51", JWT_SECRET=SEED_SECRET)
    try:
        key = cluster_key(jwt_secret=SEED_SECRET, cluster_secret=None)
        answers = exercise(node, key, SEED_SECRET)
        public = "\n".join(httpx.get(node.url + page, timeout=10).text for page in PUBLIC_PAGES)
    finally:
        node.stop()
    log = node.log()

    assert "WARNING" in log and "config: JWT_SECRET is shorter than 32 bytes" in log
    assert "security: refused GET /cluster/sync" in log  # the exercise reached the node
    for form in secret_forms(SEED_SECRET, key):
        assert re.search(rf"(?<!\w){re.escape(form)}(?!\w)", log) is None, form
        assert form not in public, form
    # The node's status shows its own address and no other.
    assert set(_IPV4.findall(public)) <= {node.host}, _IPV4.findall(public)
    assert "$argon2" not in answers


def test_a_long_secret_gives_no_warning_and_the_cluster_secret_is_never_shown(tmp_path):
    cluster_secret = "cluster-secret-9f3a7c1e5b2d4f6a8c0e"
    node = ready_node(tmp_path, f"{SUBNET}.52", JWT_SECRET=LONG_SECRET, CLUSTER_SECRET=cluster_secret)
    try:
        key = cluster_key(jwt_secret=LONG_SECRET, cluster_secret=cluster_secret)
        answers = exercise(node, key, LONG_SECRET)
    finally:
        node.stop()
    log = node.log()

    assert "shorter than" not in log
    assert "200 " in answers  # the signed checksum call was let in with the CLUSTER_SECRET key
    for form in [*secret_forms(LONG_SECRET, key), cluster_secret]:
        assert form not in log and form not in answers, form


def stored_hash(data_dir, username: str) -> str:
    with sqlite3.connect(f"file:{data_dir / DB_FILENAME}?mode=ro", uri=True) as db:
        return db.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()[0]


def test_a_hash_made_with_old_argon2_parameters_is_upgraded_at_the_next_login(tmp_path):
    old = {"ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "1024", "ARGON2_PARALLELISM": "1"}
    new = {"ARGON2_TIME_COST": "2", "ARGON2_MEMORY_KIB": "2048", "ARGON2_PARALLELISM": "2"}
    member = {"name": "Old Timer", "username": "oldtimer", "email": "old@example.com", "password": "pass123"}
    node = ready_node(tmp_path, f"{SUBNET}.53", JWT_SECRET=LONG_SECRET, **old)
    try:
        assert httpx.post(f"{node.url}/api/auth/signup", json=member, timeout=10).status_code == 201
    finally:
        node.stop()
    before = stored_hash(tmp_path / "data", "oldtimer")

    node = ready_node(tmp_path, f"{SUBNET}.53", JWT_SECRET=LONG_SECRET, **new)
    try:
        login = httpx.post(f"{node.url}/api/auth/login", json={"username": "oldtimer", "password": "pass123"}, timeout=10)
        after = stored_hash(tmp_path / "data", "oldtimer")
        again = httpx.post(f"{node.url}/api/auth/login", json={"username": "oldtimer", "password": "pass123"}, timeout=10)
    finally:
        node.stop()

    assert before.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert login.status_code == 200, login.text
    assert after.startswith("$argon2id$v=19$m=2048,t=2,p=2$")
    assert again.status_code == 200 and stored_hash(tmp_path / "data", "oldtimer") == after  # upgraded once
    assert "$argon2" not in login.text + again.text
