"""Logs of real nodes (LOG_FORMAT=json, LOG_LEVEL=debug): one JSON object a line, each with the node ID
and term; elections, role changes and syncs are each a line of their own; and nothing secret ever
appears: not JWT_SECRET, not the cluster key, not a token, a password or a password hash, even after
signups, logins, failed logins and a failover.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from talentnest.store import DB_FILENAME
from tests.cluster.harness import Cluster, Node

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
pytestmark = pytest.mark.cluster


def json_lines(node: Node) -> list[dict]:
    """Every line the node logged, parsed; fails on a line that is not one JSON object."""
    lines = []
    for number, line in enumerate(node.logs().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{node.name}'s log line {number} is not JSON: {line!r}")
        assert isinstance(record, dict) and {"ts", "level", "node_id", "term", "msg"} <= record.keys(), line
        lines.append(record)
    return lines


def password_hashes(node: Node) -> list[str]:
    with sqlite3.connect(f"file:{node.data_dir / DB_FILENAME}?mode=ro", uri=True) as db:
        return [row[0] for row in db.execute("SELECT password_hash FROM users")]


def exercise_auth(cluster: Cluster, node: Node, username: str, password: str) -> list[str]:
    """Signup, logins (right and wrong), a profile read and edit, a bad token; the tokens handed out."""
    body = {"name": "Secret Keeper", "username": username, "email": f"{username}@example.com", "password": password}
    signup = node.request("POST", "/api/auth/signup", json=body)
    assert signup.status == 201, signup.body
    tokens = [signup.body["token"]]
    for login in ({"username": username}, {"email": f"{username}@example.com"}, {"username": f"{username}@example.com"}):
        reply = node.request("POST", "/api/auth/login", json={**login, "password": password})
        assert reply.status == 200, reply.body
        tokens.append(reply.body["token"])
    assert node.request("POST", "/api/auth/login", json={"username": username, "password": password + "-wrong"}).status == 401
    assert node.request("GET", "/api/auth/me", token=tokens[-1]).status == 200
    assert node.request("PATCH", "/api/users/me", json={"bio": "keeps secrets"}, token=tokens[0]).status == 200
    assert node.request("GET", "/api/auth/me", token=tokens[0][:-3] + "xyz").status == 401
    return tokens


def test_json_logs_name_node_and_term_record_each_event_and_never_hold_a_secret(make_cluster):
    cluster = make_cluster(3, env={**FAST, "LOG_FORMAT": "json", "LOG_LEVEL": "debug"})
    leader = cluster.wait_for_leader()
    follower = cluster.node("backend-1")
    passwords = ["correct horse battery", "s3cr3t-Passw0rd!"]
    tokens = exercise_auth(cluster, follower, "keeper", passwords[0])  # forwarded to the leader
    tokens += exercise_auth(cluster, leader, "warden", passwords[1])
    hashes = password_hashes(leader)
    assert len(hashes) == 2 and all(h.startswith("$argon2") for h in hashes)

    leader.stop(graceful=False)
    new_leader = cluster.wait_for_leader(exclude=[leader], timeout=20)
    tokens += exercise_auth(cluster, new_leader, "sentry", "another password")
    cluster.wait_for_applied(new_leader.status()["applied_lsn"])
    hashes = password_hashes(new_leader)

    secrets = {
        "JWT_SECRET": cluster.jwt_secret,
        "the cluster key": cluster.cluster_key.hex(),
        **{f"password {n}": p for n, p in enumerate([*passwords, "another password"])},
        **{f"token {n}": t for n, t in enumerate(tokens)},
        **{f"token {n}'s signature": t.rsplit(".", 1)[1] for n, t in enumerate(tokens)},
        **{f"password hash {n}": h for n, h in enumerate(hashes)},
        **{f"password hash {n}'s digest": h.rsplit("$", 1)[1] for n, h in enumerate(hashes)},
    }
    for node in cluster.nodes:
        text = node.logs()
        assert text, f"{node.name} logged nothing"
        for what, secret in secrets.items():
            assert secret not in text, f"{what} appears in {node.name}'s log"
        assert "$argon2" not in text and "eyJ" not in text, f"something shaped like a hash or a token in {node.name}'s log"
        # Not even masked: no code path tried to log a secret (the masking is a last line of defence).
        assert "[redacted]" not in text, f"{node.name} tried to log something secret"
        records = json_lines(node)
        assert any(r["level"] == "debug" for r in records)  # the most talkative level really ran
        known = [r for r in records if r["node_id"] is not None]
        assert known and all(r["node_id"] == node.node_id and isinstance(r["term"], int) for r in known)

    # Each event is one line of its own, naming the node and its term.
    survivor = new_leader
    events = json_lines(survivor)
    elected = [r for r in events if r["msg"].startswith("election:") and f"leader is {survivor.node_id}" in r["msg"]]
    assert elected and elected[-1]["term"] == survivor.status()["term"] and str(survivor.node_id) in elected[-1]["msg"]
    roles = [r for r in events if r["msg"].startswith(f"role: node {survivor.node_id} is now leader")]
    assert roles and roles[-1]["term"] == survivor.status()["term"]
    synced = [r for r in json_lines(follower) if r["msg"].startswith("sync: installed a snapshot")]
    assert synced and synced[0]["node_id"] == follower.node_id and synced[0]["term"] >= 1
    lost = [r for r in json_lines(follower) if "election:" in r["msg"] and f"leader {leader.node_id}" in r["msg"]]
    assert lost, "the follower logged no line about losing its leader"
