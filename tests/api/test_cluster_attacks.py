"""Attacks on the cluster's own endpoints: every /cluster/* route but status refuses a request
whose X-Cluster-Signature is missing, wrong, stale, from the future, malformed, or made for
another body, path, query or method, with 401 in the one error shape, and changes nothing: the
content checksum, the applied LSN, the term and the leader are the same before and after.

A node of its own (module-scoped) holds a member, a post and its log, so that a leak would show.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from talentnest.app import create_app
from talentnest.cluster.auth import HEADER, cluster_key, sign
from tests.api._helpers import JWT_SECRET, assert_error, fast_settings

KEY = cluster_key(jwt_secret=JWT_SECRET, cluster_secret=None)
INTRUDER_URL = "http://203.0.113.9:3000"


@dataclass
class Node:
    app: FastAPI
    client: TestClient

    def signed(self, method: str, target: str, body: bytes = b"", key: bytes = KEY, **headers: str):
        headers = {HEADER: sign(key, method, target, body), "Content-Type": "application/json", **headers}
        return self.client.request(method, target, content=body, headers=headers)

    def state(self) -> dict:
        """What no refused request may change: content, log position, term, leader."""
        checksum = self.signed("GET", "/cluster/checksum")
        status = self.client.get("/cluster/status").json()
        assert checksum.status_code == 200, checksum.text
        return {
            "checksum": checksum.json()["checksum"],
            "applied_lsn": status["applied_lsn"],
            "term": status["term"],
            "role": status["current_role"],
            "leader_id": status["leader_id"],
        }


def start_node(directory: Path) -> Iterator[Node]:
    app = create_app(fast_settings(directory / "data"))
    with TestClient(app) as client:
        yield Node(app, client)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    for started in start_node(tmp_path_factory.mktemp("attacked")):
        member = {"name": "Owner", "username": "owner", "email": "owner@example.com", "password": "pass123"}
        token = started.client.post("/api/auth/signup", json=member).json()["token"]
        posted = started.client.post("/api/posts", json={"content": "hello"}, headers={"Authorization": f"Bearer {token}"})
        assert posted.status_code == 201
        yield started


# --- what each endpoint is sent ----------------------------------------------------------------


def replicate_injecting_a_user(node: Node) -> bytes:
    """A well-formed replicate call that, if accepted, would add the account 'intruder'."""
    status = node.client.get("/cluster/status").json()
    term, lsn = status["term"] + 5, status["applied_lsn"] + 1
    row = {
        "id": 4242, "username": "intruder", "email": "intruder@example.com", "name": "Intruder", "headline": "",
        "bio": "", "location": "", "skills": "[]", "password_hash": "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA",
        "created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
    }  # fmt: skip
    payload = {
        "term": term, "leader_id": 99999, "leader_url": INTRUDER_URL, "prev_lsn": lsn - 1, "prev_term": status["term"],
        "leader_last_lsn": lsn, "leader_first_lsn": 1, "history": [[term, 0]],
        "entries": [{"lsn": lsn, "term": term, "timestamp": row["created_at"],
                     "changes": [{"operation": "INSERT", "table": "users", "data": row}]}],
    }  # fmt: skip
    return json.dumps(payload).encode()


def heartbeat_of_a_higher_term(node: Node) -> bytes:
    term = node.client.get("/cluster/status").json()["term"] + 100
    info = {"id": 99999, "url": INTRUDER_URL, "term": term, "role": "leader", "leader_id": 99999,
            "last_lsn": 10**6, "last_term": term, "ready": True, "leaving": False}  # fmt: skip
    return json.dumps(info).encode()


def vote_request(node: Node) -> bytes:
    term = node.client.get("/cluster/status").json()["term"] + 100
    return json.dumps({"term": term, "candidate_id": 99999, "last_term": term, "last_lsn": 10**9, "pre_vote": False}).encode()


def handover_request(node: Node) -> bytes:
    status = node.client.get("/cluster/status").json()
    return json.dumps(
        {"term": status["term"], "leader_id": status["current_node_id"], "last_lsn": status["applied_lsn"]}
    ).encode()


def leave_request(node: Node) -> bytes:
    return json.dumps({"id": 99999, "url": INTRUDER_URL, "term": 1, "leaving": True}).encode()


ENDPOINTS: dict[str, tuple[str, str, Callable[[Node], bytes]]] = {
    "replicate": ("POST", "/cluster/replicate", replicate_injecting_a_user),
    "sync": ("GET", "/cluster/sync", lambda node: b""),
    "sync binary": ("GET", "/cluster/sync?format=binary", lambda node: b""),
    "log": ("GET", "/cluster/log?after=0", lambda node: b""),
    "heartbeat": ("POST", "/cluster/heartbeat", heartbeat_of_a_higher_term),
    "vote": ("POST", "/cluster/vote", vote_request),
    "handover": ("POST", "/cluster/handover", handover_request),
    "leave": ("POST", "/cluster/leave", leave_request),
    "checksum": ("GET", "/cluster/checksum", lambda node: b""),
}


# --- how the signature is wrong ------------------------------------------------------------------

Forgery = Callable[[str, str, bytes], tuple[str, str, bytes, str | None]]  # -> method, target, body, header


def _tampered_target(target: str) -> str:
    path, _, query = target.partition("?")
    return f"{path}?{query}&x=1" if query else f"{path}?x=1"


def _other_query(target: str) -> str:
    path, _, query = target.partition("?")
    return f"{path}?after=999999" if query.startswith("after") else f"{path}?format=json&{query}" if query else path + "?a=b"


def _digest(method: str, target: str, body: bytes) -> str:
    return sign(KEY, method, target, body).split(",s=")[1]


FORGERIES: dict[str, Forgery] = {
    "unsigned": lambda m, t, b: (m, t, b, None),
    "empty header": lambda m, t, b: (m, t, b, ""),
    "wrong key": lambda m, t, b: (m, t, b, sign(b"not-the-cluster-key", m, t, b)),
    "the JWT secret itself as key": lambda m, t, b: (m, t, b, sign(JWT_SECRET.encode(), m, t, b)),
    "stale, 31 s old": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, now=time.time() - 31.5)),
    "stale, a day old": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, now=time.time() - 86400)),
    "from the future": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, now=time.time() + 31.5)),
    "body tampered": lambda m, t, b: (m, t, b + b" ", sign(KEY, m, t, b)) if b else (m, t, b, sign(KEY, m, t, b"{}")),
    "signed for another path": lambda m, t, b: (m, t, b, sign(KEY, m, "/cluster/status", b)),
    "query added": lambda m, t, b: (m, _tampered_target(t), b, sign(KEY, m, t, b)),
    "query changed": lambda m, t, b: (m, _other_query(t), b, sign(KEY, m, t, b)),
    "path spelled differently": lambda m, t, b: (m, t.replace("/cluster/", "/clu%73ter/", 1), b, sign(KEY, m, t, b)),
    "signed for another method": lambda m, t, b: (m, t, b, sign(KEY, "PUT", t, b)),
    "digest in upper case": lambda m, t, b: (m, t, b, f"t={int(time.time())},s={_digest(m, t, b).upper()}"),
    "digest cut short": lambda m, t, b: (m, t, b, sign(KEY, m, t, b)[:-1]),
    "fields swapped": lambda m, t, b: (m, t, b, "s={1},t={0}".format(*sign(KEY, m, t, b)[2:].split(",s="))),
    "spaces inside": lambda m, t, b: (m, t, b, sign(KEY, m, t, b).replace(",", ", ")),
    "an extra field": lambda m, t, b: (m, t, b, sign(KEY, m, t, b) + ",k=1"),
    "two signatures": lambda m, t, b: (m, t, b, sign(b"wrong", m, t, b) + ";" + sign(KEY, m, t, b)),
    "negative time": lambda m, t, b: (m, t, b, f"t=-{int(time.time())},s={_digest(m, t, b)}"),
    "huge time": lambda m, t, b: (m, t, b, f"t={'9' * 40},s={_digest(m, t, b)}"),
    "no digest": lambda m, t, b: (m, t, b, f"t={int(time.time())}"),
    "garbage": lambda m, t, b: (m, t, b, "Bearer " + "A" * 4000),
    "non-ASCII": lambda m, t, b: (m, t, b, f"t={int(time.time())},s=" + "é" * 64),
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_a_cluster_call_without_a_good_signature_is_401_and_changes_nothing(node: Node, endpoint, forgery: Forgery):
    method, target, payload = endpoint
    method, target, body, header = forgery(method, target, payload(node))
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[HEADER] = header
    before = node.state()

    response = node.client.request(method, target, content=body, headers={k: v.encode() for k, v in headers.items()})

    error = assert_error(response, 401, "invalid_signature")
    assert response.headers["www-authenticate"] == HEADER
    assert node.state() == before
    for leaked in ("database", "entries", "checksum", "password_hash", "argon2", before["checksum"]):
        assert leaked not in response.text
    assert "not-the-cluster-key" not in error["message"] and JWT_SECRET not in error["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_an_unsigned_cluster_call_with_forwarding_headers_is_still_401(node: Node, endpoint):
    method, target, payload = endpoint
    headers = {"X-TalentNest-Forwarded-By": "99999", "X-Forwarded-For": "10.0.0.1", "Content-Type": "application/json"}
    before = node.state()

    response = node.client.request(method, target, content=payload(node), headers=headers)

    assert_error(response, 401, "invalid_signature")
    assert node.state() == before


# --- the signature is good but the call is not ---------------------------------------------------

BAD_SIGNED_CALLS = {
    "replicate, not JSON": ("POST", "/cluster/replicate", b"{not json"),
    "replicate, a list": ("POST", "/cluster/replicate", b"[]"),
    "replicate, fields missing": ("POST", "/cluster/replicate", b'{"term": 1}'),
    "replicate, term not a number": (
        "POST",
        "/cluster/replicate",
        b'{"term": "x", "leader_id": 1, "leader_url": "u", "prev_lsn": 0, "prev_term": 0,'
        b' "leader_last_lsn": 0, "leader_first_lsn": 0, "entries": []}',
    ),
    "replicate, nested 10000 deep": ("POST", "/cluster/replicate", b'{"entries": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    "heartbeat, not an object": ("POST", "/cluster/heartbeat", b'"hello"'),
    "vote, fields missing": ("POST", "/cluster/vote", b'{"term": 1}'),
    "vote, fields of the wrong type": (
        "POST",
        "/cluster/vote",
        b'{"term": [], "candidate_id": {}, "last_term": null, "last_lsn": "x"}',
    ),
    "handover, empty": ("POST", "/cluster/handover", b"{}"),
    "log, after not a number": ("GET", "/cluster/log?after=abc", b""),
    "log, after negative": ("GET", "/cluster/log?after=-5", b""),
    "log, limit huge": ("GET", "/cluster/log?after=0&limit=99999999999999999999", b""),
}


@pytest.mark.parametrize("method, target, body", BAD_SIGNED_CALLS.values(), ids=BAD_SIGNED_CALLS.keys())
def test_a_signed_but_malformed_cluster_call_is_4xx_and_changes_nothing(node: Node, method: str, target: str, body: bytes):
    before = node.state()

    response = node.signed(method, target, body)

    if response.status_code != 200:  # "limit huge" is clamped, not refused
        error = assert_error(response, response.status_code)
        assert 400 <= response.status_code < 500, error
    assert node.state() == before


# --- the checks above can fail: a good signature is obeyed -------------------------------------


def test_a_good_signature_opens_every_read(node: Node):
    assert node.signed("GET", "/cluster/checksum").status_code == 200
    log = node.signed("GET", "/cluster/log?after=0")
    assert log.status_code == 200 and len(log.json()["entries"]) >= 2
    sync = node.signed("GET", "/cluster/sync")
    assert sync.status_code == 200 and sync.json()["database"]


def test_a_signed_heartbeat_from_a_node_that_is_not_a_member_moves_no_term(tmp_path):
    """The signature shows the sender has the key; discovery says who the members are. A heartbeat from
    anyone else (a stray process, a misconfigured node) is answered but fences nobody."""
    for fresh in start_node(tmp_path):
        before = fresh.state()

        assert fresh.signed("POST", "/cluster/heartbeat", heartbeat_of_a_higher_term(fresh)).status_code == 200

        after = fresh.state()
        assert after["term"] == before["term"] and after["role"] == before["role"] == "leader"
