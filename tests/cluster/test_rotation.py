"""Both keys rotated on a running 3-node cluster, one node at a time, while clients write and read: not one
request fails. Clients retry only what the README says to retry (503 with Retry-After, with the same
Idempotency-Key); a node being restarted is taken out of the clients' rotation first, as a load
balancer drains it. Tokens issued during the rollout work on every node; once every node has the new key,
new tokens are signed with it."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import jwt
import pytest

from talentnest.services.auth import token_key_id
from tests.cluster.harness import Cluster, Node, wait_until

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
OLD = {"JWT_SECRET": "old-jwt-secret-" + "a" * 32, "CLUSTER_SECRET": "old-cluster-secret-" + "b" * 32}
NEW = {"JWT_SECRET": "new-jwt-secret-" + "c" * 32, "CLUSTER_SECRET": "new-cluster-secret-" + "d" * 32}
pytestmark = pytest.mark.cluster


@dataclass
class Clients:
    """Writers and readers over the nodes in ``targets``; every answer that is not what it should be is a failure."""

    cluster: Cluster
    targets: list[Node]
    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: Counter = field(default_factory=Counter)
    done: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    kids: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def pick(self, n: int) -> Node:
        with self.lock:
            node = self.targets[n % len(self.targets)]
            self.busy[node.name] += 1
            return node

    def drain(self, node: Node) -> None:
        """Take ``node`` out of the rotation and wait for its requests in flight."""
        with self.lock:
            self.targets.remove(node)
        wait_until(lambda: self.busy[node.name] == 0, timeout=10, what=f"requests to {node.name} to end")

    def restore(self, node: Node) -> None:
        with self.lock:
            self.targets.append(node)

    def request(self, http: httpx.Client, n: int, method: str, path: str, **options) -> httpx.Response | None:
        """One request, retried on 503 + Retry-After with the same Idempotency-Key, on any node."""
        deadline = time.monotonic() + 20
        for attempt in itertools.count():
            node = self.pick(n + attempt)
            try:
                response = http.request(method, f"{node.url}{path}", **options)
            except httpx.HTTPError as exc:
                self.failures.append(f"{method} {path} to {node.name}: {exc!r}")
                return None
            finally:
                with self.lock:
                    self.busy[node.name] -= 1
            if response.status_code == 503 and "retry-after" in response.headers and time.monotonic() < deadline:
                self.done["retried"] += 1
                self.stop.wait(float(response.headers["retry-after"]) / 4)  # a client's backoff, shortened
                continue
            return response
        return None

    def run(self, worker: int) -> None:
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False, timeout=10) as http:
            name = f"rot{worker}"
            body = {"name": name, "username": name, "email": f"{name}@example.com", "password": "password123"}
            signup = self.request(http, worker, "POST", "/api/auth/signup", json=body, headers={"Idempotency-Key": f"s{worker}"})
            if signup is None or signup.status_code != 201:
                self.failures.append(f"signup: {signup and signup.text}")
                return
            token = signup.json()["token"]
            for n in itertools.count():
                if self.stop.is_set():
                    return
                if n % 10 == 9:  # a fresh token from whichever node: signed with the key it chooses
                    login = self.request(http, n, "POST", "/api/auth/login", json={"username": name, "password": "password123"})
                    if login is None or login.status_code != 200:
                        self.failures.append(f"login: {login and login.status_code} {login and login.text}")
                        continue
                    token = login.json()["token"]
                    self.kids[jwt.get_unverified_header(token)["kid"]] += 1
                auth = {"Authorization": f"Bearer {token}"}
                key = {"Idempotency-Key": uuid.uuid4().hex}
                post = self.request(http, n, "POST", "/api/posts", json={"content": f"{name} {n}"}, headers={**auth, **key})
                if post is None or post.status_code != 201:
                    self.failures.append(f"post {n}: {post and post.status_code} {post and post.text}")
                    continue
                self.done["posts"] += 1
                me = self.request(http, n + 1, "GET", "/api/auth/me", headers=auth)  # the token, on another node
                if me is None or me.status_code != 200:
                    self.failures.append(f"me: {me and me.status_code} {me and me.text}")
                    continue
                self.done["reads"] += 1


def test_both_keys_rotate_one_node_at_a_time_while_requests_go_on_and_none_fails(make_cluster):
    cluster = make_cluster(3, env={**FAST, **OLD})
    leader = cluster.wait_for_leader()
    clients = Clients(cluster, list(cluster.nodes))
    threads = [threading.Thread(target=clients.run, args=(w,)) for w in range(2)]
    for thread in threads:
        thread.start()
    rotated = {**NEW, "JWT_SECRET_PREVIOUS": OLD["JWT_SECRET"], "CLUSTER_SECRET_PREVIOUS": OLD["CLUSTER_SECRET"]}
    rotated["PREVIOUS_SECRETS_UNTIL"] = str(int(time.time()) + 3600)
    try:
        wait_until(lambda: clients.done["posts"] >= 20, timeout=20, what="writes under way", report=cluster.report)
        for node in [n for n in cluster.nodes if n is not leader] + [leader]:  # followers first, the leader last
            before = clients.done["posts"]
            clients.drain(node)
            node.stop()
            node.start(env=rotated)
            clients.restore(node)
            wait_until(
                lambda before=before: clients.done["posts"] >= before + 20,
                timeout=30,
                what=f"writes after {node.name}",
                report=cluster.report,
            )
        # Every node holds the new key: new tokens are signed with it (once heartbeats have said so).
        new_kid = token_key_id(NEW["JWT_SECRET"])
        wait_until(lambda: clients.kids[new_kid] >= 4, timeout=20, what="tokens signed with the new key", report=cluster.report)
    finally:
        clients.stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert not clients.failures, "\n".join(clients.failures[:20]) + "\n" + cluster.report()
    assert clients.done["posts"] >= 80 and clients.done["reads"] >= 80, clients.done
    assert clients.kids[token_key_id(OLD["JWT_SECRET"])] > 0, "tokens signed during the rollout used the old key"
    new_leader = cluster.wait_for_leader()
    assert any("accepts only a previous cluster key" in node.logs() for node in cluster.nodes), "the key fallback was used"
    lsn = new_leader.status()["applied_lsn"]
    cluster.wait_for_applied(lsn)
    assert len(set(cluster.checksums().values())) == 1
    print(f"rotation: {dict(clients.done)}, tokens by key: {dict(clients.kids)}")
