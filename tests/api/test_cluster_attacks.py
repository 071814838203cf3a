"""Attacks on the cluster's own endpoints: every /cluster/* route but status refuses a request
whose X-Cluster-Signature is missing, wrong, stale, from the future, malformed, or made for
another body, path, query or method, with 401 in the one error shape, and changes nothing: the
content checksum, the applied LSN, the term and the leader are the same before and after.

A node of its own (module-scoped) holds a member, a post and its log, so that a leak would show.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from talentnest.app import create_app
from talentnest.cluster.auth import HEADER, SignatureError, cluster_key, nonce_of, sign, sign_legacy, verify_answer
from talentnest.limits import MAX_CLUSTER_BODY_BYTES
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
    "sync stream": ("GET", "/cluster/sync?format=stream", lambda node: b""),
    "log": ("GET", "/cluster/log?after=0", lambda node: b""),
    "heartbeat": ("POST", "/cluster/heartbeat", heartbeat_of_a_higher_term),
    "vote": ("POST", "/cluster/vote", vote_request),
    "handover": ("POST", "/cluster/handover", handover_request),
    "leave": ("POST", "/cluster/leave", leave_request),
    "checksum": ("GET", "/cluster/checksum", lambda node: b""),
    "drain": ("POST", "/cluster/drain", lambda node: b'{"drained": true}'),
}


# --- how the signature is wrong ------------------------------------------------------------------

Forgery = Callable[[str, str, bytes], tuple[str, str, bytes, str | None]]  # -> method, target, body, header


def _tampered_target(target: str) -> str:
    path, _, query = target.partition("?")
    return f"{path}?{query}&x=1" if query else f"{path}?x=1"


def _other_query(target: str) -> str:
    path, _, query = target.partition("?")
    return f"{path}?after=999999" if query.startswith("after") else f"{path}?format=json&{query}" if query else path + "?a=b"


def _fields(method: str, target: str, body: bytes) -> dict[str, str]:
    """t, n and s of a good signature, to rebuild it wrongly."""
    return dict(part.split("=", 1) for part in sign(KEY, method, target, body).split(","))


def _rebuilt(method: str, target: str, body: bytes, **changed: str) -> str:
    fields = {**_fields(method, target, body), **changed}
    return ",".join(f"{k}={v}" for k, v in fields.items() if v is not None)


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
    "digest in upper case": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, s=_fields(m, t, b)["s"].upper())),
    "digest cut short": lambda m, t, b: (m, t, b, sign(KEY, m, t, b)[:-1]),
    "fields swapped": lambda m, t, b: (m, t, b, ",".join(reversed(sign(KEY, m, t, b).split(",")))),
    "spaces inside": lambda m, t, b: (m, t, b, sign(KEY, m, t, b).replace(",", ", ")),
    "an extra field": lambda m, t, b: (m, t, b, sign(KEY, m, t, b) + ",k=1"),
    "two signatures": lambda m, t, b: (m, t, b, sign(b"wrong", m, t, b) + ";" + sign(KEY, m, t, b)),
    "negative time": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, t=f"-{int(time.time())}")),
    "huge time": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, t="9" * 40)),
    "no digest": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, s=None)),
    "the older form, without a nonce": lambda m, t, b: (m, t, b, sign_legacy(KEY, m, t, b)),
    "no nonce": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, n=None)),
    "nonce changed after signing": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, n="0" * 32)),
    "nonce too short": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, nonce="a" * 15)),
    "nonce too long": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, nonce="a" * 65)),
    "nonce not hex": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, nonce="g" * 32)),
    "nonce in upper case": lambda m, t, b: (m, t, b, sign(KEY, m, t, b, nonce="A" * 32)),
    "garbage": lambda m, t, b: (m, t, b, "Bearer " + "A" * 4000),
    "non-ASCII": lambda m, t, b: (m, t, b, _rebuilt(m, t, b, s="é" * 64)),
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


def signed_and_checked(node: Node, method: str, target: str, body: bytes = b""):
    """A signed call whose answer must carry a good answer signature for its nonce."""
    header = sign(KEY, method, target, body)
    response = node.client.request(method, target, content=body, headers={HEADER: header, "Content-Type": "application/json"})
    verify_answer(
        KEY, response.headers.get(HEADER), nonce_of(header), response.status_code, hashlib.sha256(response.content).hexdigest()
    )
    return response


def test_a_good_signature_opens_every_read_and_every_answer_is_signed_for_its_request(node: Node):
    assert signed_and_checked(node, "GET", "/cluster/checksum").status_code == 200
    log = signed_and_checked(node, "GET", "/cluster/log?after=0")
    assert log.status_code == 200 and len(log.json()["entries"]) >= 2
    sync = signed_and_checked(node, "GET", "/cluster/sync")
    assert sync.status_code == 200 and sync.json()["database"]
    gone = signed_and_checked(node, "GET", "/cluster/log?after=-5")  # a refusal is signed too
    assert 400 <= gone.status_code < 500


def test_an_answer_signature_fails_for_another_nonce_another_status_or_another_body(node: Node):
    header = sign(KEY, "GET", "/cluster/checksum")
    response = node.client.get("/cluster/checksum", headers={HEADER: header})
    answer, digest = response.headers[HEADER], hashlib.sha256(response.content).hexdigest()
    verify_answer(KEY, answer, nonce_of(header), 200, digest)

    for nonce, status, body_hash, key in [
        ("0" * 32, 200, digest, KEY),
        (nonce_of(header), 500, digest, KEY),
        (nonce_of(header), 200, hashlib.sha256(response.content + b" ").hexdigest(), KEY),
        (nonce_of(header), 200, digest, b"not-the-cluster-key"),
    ]:
        with pytest.raises(SignatureError):
            verify_answer(key, answer, nonce, status, body_hash)
    with pytest.raises(SignatureError):
        verify_answer(KEY, None, nonce_of(header), 200, digest)


def test_a_captured_signed_call_replayed_within_the_window_is_refused_and_changes_nothing(tmp_path):
    for fresh in start_node(tmp_path):
        body = heartbeat_of_a_higher_term(fresh)
        captured = {HEADER: sign(KEY, "POST", "/cluster/heartbeat", body), "Content-Type": "application/json"}
        assert fresh.client.post("/cluster/heartbeat", content=body, headers=captured).status_code == 200
        before = fresh.state()

        for _ in range(3):
            replayed = fresh.client.post("/cluster/heartbeat", content=body, headers=captured)
            error = assert_error(replayed, 401, "invalid_signature")
            assert "already used" in error["message"]
        read = {HEADER: sign(KEY, "GET", "/cluster/checksum")}
        assert fresh.client.get("/cluster/checksum", headers=read).status_code == 200
        assert_error(fresh.client.get("/cluster/checksum", headers=read), 401, "invalid_signature")

        assert fresh.state() == before


def test_a_signed_heartbeat_from_a_node_that_is_not_a_member_moves_no_term(tmp_path):
    """The signature shows the sender has the key; discovery says who the members are. A heartbeat from
    anyone else (a stray process, a misconfigured node) is answered but fences nobody."""
    for fresh in start_node(tmp_path):
        before = fresh.state()

        assert fresh.signed("POST", "/cluster/heartbeat", heartbeat_of_a_higher_term(fresh)).status_code == 200

        after = fresh.state()
        assert after["term"] == before["term"] and after["role"] == before["role"] == "leader"


def test_a_cluster_call_served_ahead_of_the_stack_keeps_its_body_limit_its_headers_and_its_metric(node: Node):
    """/cluster/* skips the product's layers (cluster/front.py) but not what they gave it: the 16 MiB body limit,
    checked before the signature; the node's headers on every answer; a count in /metrics by route."""
    before = node.state()
    huge = b"x" * (MAX_CLUSTER_BODY_BYTES + 1)
    assert_error(node.signed("POST", "/cluster/replicate", huge), 413, "payload_too_large")

    answer = node.signed("POST", "/cluster/heartbeat", heartbeat_of_a_higher_term(node))
    assert answer.status_code == 200, answer.text
    assert {"x-node-id", "x-node-role", "x-cluster-lsn"} <= set(answer.headers)
    metrics = node.client.get("/metrics").text
    assert 'talentnest_http_requests_total{method="POST",route="/cluster/replicate",status="413"} 1.0' in metrics
    assert 'talentnest_http_requests_total{method="POST",route="/cluster/heartbeat",status="200"}' in metrics
    assert node.state() == before
