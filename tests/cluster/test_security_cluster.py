"""Security on a real 3-node cluster: nothing secret in /cluster/status, signature attacks over the
wire change nothing on any node, failed logins spread over the nodes stop near the cluster-wide
allowance, a peer's signed X-Forwarded-For names the client, and hundreds of slow clients at the
leader cause no failover.

One cluster serves the whole module (starting one costs more than most of these checks).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from talentnest.cluster.auth import HEADER, sign
from tests._slow import SlowClients
from tests.cluster.harness import Cluster, wait_until

pytestmark = pytest.mark.cluster
FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
PER_ACCOUNT, PER_ADDRESS = 6, 30
LIMITS = {"LOGIN_MAX_FAILURES": str(PER_ACCOUNT), "LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS)}
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("security-cluster"), env={**FAST, **LIMITS})
    try:
        started.start(3)
        yield started
    finally:
        started.close()


def fingerprint(cluster: Cluster) -> dict:
    """Per node: content checksum, applied LSN, term, and the leader it names."""
    result = {}
    for node in cluster.nodes:
        checksum, status = node.checksum(), node.status()
        result[node.name] = (checksum["checksum"], checksum["applied_lsn"], status["term"], status["leader_id"])
    return result


def settled(cluster: Cluster) -> dict:
    """The fingerprint once every node holds the same data (replication of earlier writes is done)."""
    seen: dict = {}

    def same() -> bool:
        seen.clear()
        seen.update(fingerprint(cluster))
        return len(set(seen.values())) == 1

    wait_until(same, timeout=15, what="every node to hold the same data", report=lambda: f"{seen}\n{cluster.report()}")
    return dict(seen)


def login(node, username: str, password: str, **headers: str):
    return node.request("POST", "/api/auth/login", json={"username": username, "password": password}, headers=headers)


def test_status_shows_no_secret_and_no_address_but_the_nodes(cluster: Cluster):
    key = cluster.cluster_key
    secrets = [cluster.jwt_secret, key.hex(), base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()]
    addresses = {node.address for node in cluster.nodes}

    for node in cluster.nodes:
        text = json.dumps(node.status())
        assert not [s for s in secrets if s in text], node.name
        assert set(_IPV4.findall(text)) <= addresses, (node.name, set(_IPV4.findall(text)) - addresses)
        assert cluster.dns_address[0] not in text


def test_forged_cluster_calls_over_the_wire_change_nothing_on_any_node(cluster: Cluster):
    leader = cluster.wait_for_leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    before = settled(cluster)
    term = follower.status()["term"]
    row = {"id": 4242, "username": "intruder", "email": "intruder@example.com", "name": "Intruder", "password_hash": "x"}
    replicate = {
        "term": term + 5, "leader_id": 99999, "leader_url": "http://203.0.113.9:3000", "prev_lsn": before[follower.name][1],
        "prev_term": term, "leader_last_lsn": before[follower.name][1] + 1, "leader_first_lsn": 1, "history": [[term + 5, 0]],
        "entries": [{"lsn": before[follower.name][1] + 1, "term": term + 5, "timestamp": "2026-01-01T00:00:00.000Z",
                     "changes": [{"operation": "INSERT", "table": "users", "data": row}]}],
    }  # fmt: skip
    heartbeat = {"id": 99999, "url": "http://203.0.113.9:3000", "term": term + 100, "role": "leader", "leader_id": 99999}
    vote = {"term": term + 100, "candidate_id": 99999, "last_term": term + 100, "last_lsn": 10**9, "pre_vote": False}
    stale = time.time() - 120

    for node in (follower, leader):
        for path, payload in [("/cluster/replicate", replicate), ("/cluster/heartbeat", heartbeat), ("/cluster/vote", vote)]:
            body = json.dumps(payload).encode()
            for header in [
                None,
                sign(b"wrong-key", "POST", path, body),
                sign(cluster.cluster_key, "POST", path, body, now=stale),
            ]:
                headers = {"Content-Type": "application/json", **({HEADER: header} if header else {})}
                reply = cluster.http.post(f"{node.url}{path}", content=body, headers=headers, timeout=5)
                assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_signature", reply.text
        sync = cluster.http.get(f"{node.url}/cluster/sync", timeout=5)
        assert sync.status_code == 401 and "database" not in sync.text

    assert fingerprint(cluster) == before
    assert all(node.request("GET", "/api/users/intruder").status == 404 for node in cluster.nodes)


def test_failed_logins_spread_over_the_nodes_stop_near_the_cluster_wide_allowance(cluster: Cluster):
    reply = cluster.signup(username="victim", password="right-password")
    cluster.wait_for_applied(reply.lsn)
    failures, throttled = 0, set()
    for node in itertools.cycle(cluster.nodes):
        if len(throttled) == len(cluster.nodes):
            break
        if node.name in throttled:
            continue
        answer = login(node, "victim", "wrong-password")
        if answer.status == 401:
            failures += 1
        else:
            assert answer.status == 429 and answer.body["error"]["code"] == "login_throttled", answer.body
            assert 1 <= int(answer.headers["retry-after"]) <= 900
            throttled.add(node.name)
        assert failures <= 3 * PER_ACCOUNT, "the nodes do not share the allowance"

    # Each of the 3 live nodes allows ceil(6 / 3) = 2: the whole cluster about the allowance, not 3 times it.
    assert PER_ACCOUNT <= failures < PER_ACCOUNT + len(cluster.nodes)
    assert all(login(node, "victim", "right-password").status == 429 for node in cluster.nodes)


def test_a_peers_signed_x_forwarded_for_names_the_client_and_a_clients_own_does_not(cluster: Cluster):
    node = cluster.nodes[0]
    share = -(-PER_ADDRESS // len(cluster.nodes))

    def as_peer_for(client: str, username: str):
        body = json.dumps({"username": username, "password": "wrong-password"}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Forwarded-For": client,
            HEADER: sign(cluster.cluster_key, "POST", "/api/auth/login", body),
        }
        return cluster.http.post(f"{node.url}/api/auth/login", content=body, headers=headers, timeout=5)

    statuses = [as_peer_for("198.51.100.20", f"guess{i}").status_code for i in range(share + 1)]

    assert statuses == [401] * share + [429]
    assert as_peer_for("198.51.100.21", "guess-other").status_code == 401  # another client, its own count
    # The same address claimed by a client itself is ignored: the client is counted as itself.
    assert login(node, "guess-own", "wrong-password", **{"X-Forwarded-For": "198.51.100.20"}).status == 401


def test_hundreds_of_slow_clients_at_the_leader_cause_no_failover(cluster: Cluster):
    leader = cluster.wait_for_leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    before = {node.name: (node.status()["term"], node.status()["leader_id"]) for node in cluster.nodes}
    address = urlsplit(leader.url)
    watched = 0.0
    with SlowClients(address.hostname, address.port, heads=150, bodies=150) as slow:
        started = time.monotonic()
        # Watch for 12 heartbeat intervals (4 times what makes a peer suspect): the leader must hold.
        while (watched := time.monotonic() - started) < 6.0:
            for node in cluster.nodes:
                status = node.status(timeout=2.0)
                assert (status["term"], status["leader_id"]) == before[node.name], (node.name, status, cluster.report())
            assert cluster.signup(follower).status == 201  # writes, forwarded to the busy leader, go on
        still_holding = slow.open

    assert still_holding == 300, "the slow clients were cut off before the watch ended; nothing was shown"
    assert watched >= 6.0


def test_a_client_posing_as_a_forwarding_node_is_refused_or_forwarded_like_any_client(cluster: Cluster):
    leader = cluster.wait_for_leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    body = {"name": "Poser", "username": "poser", "email": "poser@example.com", "password": "pass123"}
    # A follower that believed these would answer "not the leader" (one hop only) instead of forwarding.
    pose = {"X-TalentNest-Forwarded-By": str(leader.node_id), "X-Forwarded-For": "10.9.9.9"}
    forged = f"t={int(time.time())},n={'0' * 32},s={'0' * 64}"

    # With a signature that fails: refused before anything runs (a node's claim is checked, never believed).
    refused = follower.request("POST", "/api/auth/signup", json=body, headers={**pose, HEADER: forged})
    assert (refused.status, refused.body["error"]["code"]) == (401, "invalid_signature"), refused.body
    # Without one: the forwarding headers are dropped and the write is forwarded like any client's.
    reply = follower.request("POST", "/api/auth/signup", json=body, headers=pose)

    assert reply.status == 201, reply.body
    assert reply.headers["x-leader-id"] == str(leader.node_id)
