"""Trust between nodes over a hostile path, on real processes: a proxy put between two nodes (DNAT on
loopback) alters the answers one of them gets: a snapshot's bytes, a log page, a vote. Each is refused,
with a ``security:`` line naming the peer and what was wrong, and nothing of it is applied; a request the
proxy captured, replayed within the window, is refused; a snapshot transfer the proxy cuts resumes where
it stopped. With the proxy honest again, the same nodes converge: the checks can pass as well as fail.
"""

from __future__ import annotations

import re

import httpx
import pytest

from talentnest.store.snapshot import PARTIAL_PREFIXES
from tests.cluster.harness import Cluster, Node, firewall_unavailable, wait_until
from tests.cluster.tamper import Rule, Tamper, flip_byte

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
pytestmark = [pytest.mark.cluster, pytest.mark.skipif(firewall_unavailable() is not None, reason=str(firewall_unavailable()))]
PROXY_OCTET = 250


def address_of(cluster: Cluster, octet: int) -> str:
    return f"{cluster.nodes[0].address.rsplit('.', 1)[0]}.{octet}"


def in_the_middle(cluster: Cluster, source: str, target: Node, port_offset: int = 0) -> Tamper:
    """A proxy on the path from ``source`` (an address) to ``target``: new connections go through it."""
    port = 3000 + port_offset
    tamper = Tamper((address_of(cluster, PROXY_OCTET), port), target.url).start()
    cluster.firewall.redirect(source, target.address, int(target.url.rsplit(":", 1)[1]), (tamper.listen[0], port))
    return tamper


def logged(node: Node, pattern: str) -> re.Match | None:
    return re.search(pattern, node.logs())


def wait_logged(cluster: Cluster, node: Node, pattern: str, timeout: float = 20.0) -> re.Match:
    return wait_until(
        lambda: logged(node, pattern), timeout=timeout, what=f"{node.name} to log /{pattern}/", report=cluster.report
    )


def seed(cluster: Cluster, node: Node, posts: int, size: int = 100) -> int:
    """A member and ``posts`` posts of ``size`` characters, over one kept-alive connection; the last LSN."""
    token = cluster.signup(node).body["token"]
    lsn = 0
    with httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {token}"}, trust_env=False) as client:
        for n in range(posts):
            reply = client.post("/api/posts", json={"content": (f"post {n} " * size)[:size]})
            assert reply.status_code == 201, reply.text
            lsn = int(reply.headers["x-cluster-lsn"])
    return lsn


def test_a_joining_node_refuses_an_altered_snapshot_a_replayed_request_is_refused_a_cut_transfer_resumes(make_cluster):
    # Two nodes, so that the leader keeps its lease (2 of 3) while the third is listed but not yet reached
    # (a new node neither votes nor stands until a leader has reached it: docs/cluster.md, "Who is a voter").
    cluster = make_cluster(2, env={**FAST, "LOG_RETENTION_ENTRIES": "10"})  # the joiner gets a snapshot, not the log
    leader = cluster.wait_for_leader()
    lsn = seed(cluster, leader, posts=1000, size=4800)  # a database of two chunks (4 MiB of pages each)
    joiner_address = address_of(cluster, 3)
    tamper = in_the_middle(cluster, joiner_address, leader)
    try:
        tamper.rules = [Rule("/cluster/sync", alter=flip_byte(0.6))]
        joiner = cluster.add_node(wait=False)
        assert joiner.address == joiner_address
        refusal = wait_logged(cluster, joiner, r"security: refused the answer of (\S+) to /cluster/sync \(HTTP 200\): (.*)")
        assert refusal.group(1) == leader.url and "signature is wrong" in refusal.group(2)
        status = joiner.status()
        assert status["applied_lsn"] == 0 and not joiner.is_ready(), "nothing of the altered snapshot is installed"

        # A heartbeat the joiner sent through the proxy, played again to the leader within its 30 s.
        captured = next(c for c in reversed(tamper.seen) if c.target == "/cluster/heartbeat")
        headers = {name: captured.headers[name] for name in ("X-Cluster-Signature", "Content-Type")}
        replayed = cluster.http.post(f"{leader.url}{captured.target}", content=captured.body, headers=headers)
        assert replayed.status_code == 401 and replayed.json()["error"]["code"] == "invalid_signature"
        assert "already used" in replayed.json()["error"]["message"]
        wait_logged(
            cluster, leader, r"security: refused POST /cluster/heartbeat from \S+: X-Cluster-Signature nonce was already used"
        )

        # Honest again, but the first transfer is cut after its first chunk: it resumes from the second.
        tamper.rules = [Rule("/cluster/sync", cut_after_records=4, times=1)]  # header, signature, chunk, signature
        joiner.wait_ready(timeout=30)
        resumed = wait_logged(cluster, joiner, r"sync: the transfer from node \d+ broke at .*; resuming from chunk (\d+)")
        assert int(resumed.group(1)) >= 1
        wait_logged(cluster, joiner, r"sync: installed a snapshot from node \d+ at LSN \d+ .* resumed 1 time")
        assert re.search(r"sync: streaming snapshot (\w+) at LSN .* from chunk [1-9]", leader.logs()), (
            "the leader resumed its image"
        )
        assert joiner.status()["applied_lsn"] >= lsn
        cluster.wait_converged([leader, joiner], timeout=20)
        assert not [p.name for p in joiner.data_dir.iterdir() if p.name.startswith(PARTIAL_PREFIXES)], "nothing left behind"
    finally:
        tamper.close()


def test_altered_log_pages_and_votes_are_refused_and_nothing_of_them_is_applied(make_cluster):
    quorum = {**FAST, "REPLICATION_MODE": "quorum", "CLUSTER_SIZE": "3"}
    cluster = make_cluster(3, env=quorum)
    n1, n2, n3 = cluster.nodes
    cluster.wait_for_leader(expect=n3)
    n3.stop()
    cluster.wait_for_leader(exclude=[n3], expect=n2)
    lsn = seed(cluster, n2, posts=5)
    cluster.wait_for_applied(lsn, nodes=[n1, n2])
    n1.stop()
    n2.stop()
    behind = n3.data_dir  # n3 holds less than n1: as the highest ID it must catch up from n1 first
    assert behind.exists()

    tamper = in_the_middle(cluster, n3.address, n1)
    try:
        tamper.rules = [Rule("/cluster/log", alter=flip_byte(0.7))]
        n1.start(wait=False)
        n3.start(wait=False)
        refusal = wait_logged(cluster, n3, r"security: refused the answer of (\S+) to /cluster/log \(HTTP 200\): (.*)")
        assert refusal.group(1) == n1.url
        status = n3.status()
        assert status["applied_lsn"] < lsn and status["current_role"] != "leader", status

        # The log pages pass now, but every answer to a vote is forged to a grant in a far later term.
        def forge_vote(body: bytes) -> bytes:
            return re.sub(rb'"term":\d+', b'"term":999', body.replace(b'"granted":false', b'"granted":true '))

        tamper.rules = [Rule("/cluster/vote", alter=forge_vote)]
        wait_until(
            lambda: (n3.try_status() or {}).get("applied_lsn", 0) >= lsn, timeout=20, what="n3 caught up", report=cluster.report
        )
        wait_logged(
            cluster, n3, r"security: refused the answer of \S+ to /cluster/vote \(HTTP 200\): the answer's signature is wrong"
        )
        for node in (n1, n3):
            status = node.status()
            assert status["term"] < 999 and status["current_role"] != "leader", (node.name, status)

        tamper.rules = []
        cluster.wait_for_leader(exclude=[n2], expect=n3, timeout=20)
        cluster.wait_converged([n1, n3], timeout=20)
    finally:
        tamper.close()
