"""Replication end to end, as the seed's scenarios: real nodes, the launcher's DNS, signals, iptables.

After every scenario each node's content checksum must be equal.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.cluster.harness import wait_until

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
needs_firewall = pytest.mark.usefixtures("firewall_available")
pytestmark = pytest.mark.cluster


def assert_converged(cluster, nodes=None, timeout: float = 15.0) -> str:
    """Every node reaches the same LSN and holds the same content; the common checksum."""
    return cluster.wait_converged(nodes, timeout)


def search(node, query: str) -> list[str]:
    reply = node.request("GET", f"/api/users/search?query={query}")
    assert reply.status == 200
    return [u["username"] for u in reply.body["items"]]


def signup_body(username: str) -> dict:
    return {"name": username.title(), "username": username, "email": f"{username}@example.com", "password": "pass123"}


def test_section_8_writes_through_followers_reach_the_leader_and_every_node(make_cluster):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader()
    follower = cluster.node("backend-2")
    reply = cluster.signup(follower, username="testuser")
    assert reply.headers["x-node-id"] == str(follower.node_id)
    assert reply.headers["x-leader-id"] == str(leader.node_id)
    # Read-your-writes: the follower answered only once it held the write itself.
    assert follower.status()["applied_lsn"] >= reply.lsn
    for node in cluster.nodes:
        wait_until(lambda n=node: search(n, "testuser") == ["testuser"], timeout=10, what=f"testuser on {node.name}")

    token = reply.body["token"]
    first = cluster.node("backend-1")
    post = first.request("POST", "/api/posts", json={"content": "This should be redirected to the leader"}, token=token)
    assert post.status == 201 and post.headers["x-leader-id"] == str(leader.node_id)
    post_id = post.body["id"]
    for node in cluster.nodes:
        wait_until(
            lambda n=node: n.request("GET", f"/api/posts/{post_id}").status == 200,
            timeout=10,
            what=f"post {post_id} on {node.name}",
        )
    assert_converged(cluster)


def test_scenario_2_stop_the_leader_write_on_the_new_one_and_the_old_one_syncs_back(make_cluster):
    cluster = make_cluster(3, env=FAST)
    old = cluster.wait_for_leader()
    cluster.signup(username="before")
    old.stop()  # docker stop: SIGTERM, a graceful leave
    new = cluster.wait_for_leader(exclude=[old], timeout=15)
    assert new.name == "backend-2"
    first = cluster.node("backend-1")
    reply = first.request("POST", "/api/auth/signup", json=signup_body("test1"))
    assert reply.status == 201

    old.start()
    wait_until(
        lambda: "test1" in search(old, "test1"), timeout=15, what="the restarted node to hold test1", report=cluster.report
    )
    assert "sync" in old.logs()
    assert_converged(cluster)
    # Highest ID: it takes over again, by a planned handover that loses nothing.
    cluster.wait_for_leader(expect=old, timeout=20)
    assert cluster.signup(first, username="after_handover").status == 201
    assert_converged(cluster)


def test_scenario_3_a_fourth_node_joins_syncs_and_receives_new_writes(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    tokens = [cluster.signup(username=f"early{i}").body["token"] for i in range(5)]
    for i, token in enumerate(tokens):
        cluster.post(token, f"early post {i}")
    fourth = cluster.add_node()
    assert fourth.name == "backend-4"
    wait_until(lambda: "installed a snapshot" in fourth.logs(), timeout=15, what="backend-4 to sync", report=cluster.report)
    line = next(line for line in fourth.logs().splitlines() if "sync" in line and "installed a snapshot" in line)
    assert "LSN" in line and "B sent" in line and "B database" in line
    cluster.signup(username="late")
    wait_until(lambda: search(fourth, "late") == ["late"], timeout=10, what="backend-4 to receive a new write")
    assert_converged(cluster)
    # The new node has the highest ID: it becomes the leader by handover.
    cluster.wait_for_leader(expect=fourth, timeout=20)


def test_read_your_writes_through_a_follower_every_time(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    follower = cluster.node("backend-1")
    token = cluster.signup(follower, username="writer").body["token"]
    for i in range(20):
        post = follower.request("POST", "/api/posts", json={"content": f"post {i}"}, token=token)
        assert post.status == 201
        # No header, no retry: the same follower shows the post at once.
        assert follower.request("GET", f"/api/posts/{post.body['id']}").status == 200, f"post {i} not readable"


def test_x_min_lsn_waits_for_the_lsn_or_answers_503(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    follower = cluster.node("backend-1")
    lsn = cluster.signup(username="someone").lsn
    assert follower.request("GET", "/api/users/someone", headers={"X-Min-LSN": str(lsn)}).status == 200
    started = time.monotonic()
    ahead = follower.request("GET", "/api/users/someone", headers={"X-Min-LSN": str(lsn + 1000)})
    assert ahead.status == 503 and ahead.body["error"]["code"] == "lsn_not_reached"
    assert time.monotonic() - started < 5, "the wait is bounded"
    assert follower.request("GET", "/api/users/someone", headers={"X-Min-LSN": "soon"}).status == 400
    for node in cluster.nodes:
        headers = node.request("GET", "/healthz").headers
        assert headers["x-node-id"] == str(node.node_id) and headers["x-cluster-lsn"].isdigit()


def test_an_idempotency_key_gives_the_first_answer_again_on_any_node_across_a_failover(make_cluster):
    cluster = make_cluster(3, env=FAST)
    leader = cluster.wait_for_leader(expect=cluster.node("backend-3"))  # backend-2 takes over below
    follower = cluster.node("backend-1")
    token = cluster.signup(username="poster").body["token"]
    key = {"Idempotency-Key": "post-once-42"}
    first = follower.request("POST", "/api/posts", json={"content": "only once"}, token=token, headers=key)
    assert first.status == 201
    again = follower.request("POST", "/api/posts", json={"content": "only once"}, token=token, headers=key)
    assert again.status == 201 and again.body == first.body and again.headers.get("idempotent-replayed") == "true"
    assert_converged(cluster)

    leader.stop(graceful=False)
    cluster.wait_for_leader(exclude=[leader], timeout=15)
    other = cluster.node("backend-2")
    retried = other.request("POST", "/api/posts", json={"content": "only once"}, token=token, headers=key)
    assert retried.status == 201 and retried.body["id"] == first.body["id"]
    # The same key for another request, through a follower of the new leader: refused, nothing applied.
    reused = follower.request("POST", "/api/posts", json={"content": "another"}, token=token, headers=key)
    assert reused.status == 422 and reused.body["error"]["code"] == "idempotency_key_reused", reused.body
    posts = other.request("GET", "/api/posts?author=poster").body["items"]
    assert [p["content"] for p in posts] == ["only once"], "the retry was applied twice"
    # Another token with the same key is another request.
    token2 = cluster.signup(other, username="poster2").body["token"]
    second = other.request("POST", "/api/posts", json={"content": "mine"}, token=token2, headers=key)
    assert second.status == 201 and second.body["id"] != first.body["id"]


@needs_firewall
def test_no_leader_reachable_writes_get_503_with_retry_after_and_reads_go_on(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    lonely = cluster.node("backend-1")
    cluster.signup(username="visible")
    assert_converged(cluster)
    lonely.partition()
    wait_until(lambda: lonely.status()["leader_id"] is None, timeout=10, what="backend-1 to lose its leader")
    refused = lonely.request("POST", "/api/auth/signup", json=signup_body("nope"))
    assert refused.status == 503 and refused.headers["retry-after"] == "1"
    assert set(refused.body) == {"error"} and refused.body["error"]["code"] in ("no_leader", "leader_unreachable")
    assert search(lonely, "visible") == ["visible"]
    lonely.heal()
    cluster.wait_for_leader(timeout=15)
    assert_converged(cluster)
    assert search(lonely, "nope") == []


def test_quorum_mode_acknowledges_only_what_a_majority_holds(make_cluster):
    cluster = make_cluster(3, env={**FAST, "REPLICATION_MODE": "quorum", "CLUSTER_SIZE": "3"})
    leader = cluster.wait_for_leader()
    acknowledged = [cluster.signup(username=f"acked{i}").body["user"]["username"] for i in range(3)]
    followers = [n for n in cluster.nodes if n is not leader]
    for node in followers:
        node.pause()
    # Without a majority the leader cannot acknowledge: 503, never a 201 that a crash could undo.
    refused = leader.request("POST", "/api/auth/signup", json=signup_body("unacked"), timeout=15)
    assert refused.status == 503, refused.body
    for node in followers:
        node.resume()
    cluster.wait_for_leader(timeout=20)
    acknowledged.append(cluster.signup(username="acked_after").body["user"]["username"])
    leader = cluster.wait_for_leader()
    leader.stop(graceful=False)
    new = cluster.wait_for_leader(exclude=[leader], timeout=15)
    for username in acknowledged:
        assert search(new, username) == [username], f"acknowledged {username} is missing after the failover"


@needs_firewall
def test_a_deposed_leader_archives_what_the_new_leader_never_had_and_resyncs(make_cluster):
    cluster = make_cluster(3, env={**FAST, "HEARTBEAT_INTERVAL": "1"})
    old = cluster.wait_for_leader()
    token = cluster.signup(old, username="everyone").body["token"]
    assert_converged(cluster)
    old.partition()
    # Within its lease (async mode) it still takes a write that never reaches the others.
    orphan = old.request("POST", "/api/posts", json={"content": "orphan"}, token=token)
    assert orphan.status == 201, orphan.body
    new = cluster.wait_for_leader(exclude=[old], timeout=20)
    cluster.post(token, "the majority's post", node=new)
    old.heal()
    wait_until(
        lambda: "divergence" in old.logs(), timeout=20, what="the old leader to find its divergent entry", report=cluster.report
    )
    archives = list((old.data_dir / "archive").glob("divergent-*.jsonl"))
    assert len(archives) == 1
    lines = [json.loads(line) for line in archives[0].read_text().splitlines()]
    assert any("orphan" in json.dumps(entry) for entry in lines[1:]), "the orphan write is not in the archive"
    checksum = assert_converged(cluster, timeout=20)
    assert checksum
    contents = [p["content"] for p in new.request("GET", "/api/posts?author=everyone").body["items"]]
    assert contents == ["the majority's post"]


def test_a_follower_back_from_a_break_catches_up_on_more_than_a_request_body_of_entries(make_cluster):
    """Catch-up batches carry megabytes of entries: more than the 1 MiB a client may send."""
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()
    away = cluster.node("backend-1")
    token = cluster.signup(username="verbose").body["token"]
    assert_converged(cluster)
    away.stop()
    leader = cluster.wait_for_leader(exclude=[away])
    text = "x" * 4900
    for i in range(320):  # ~1.6 MB of changes while backend-1 is away
        assert leader.request("POST", "/api/posts", json={"content": f"{i} {text}"}, token=token).status == 201
    away.start()
    assert_converged(cluster, timeout=30)
    assert "caught up" in away.logs() and "through the log" in away.logs()


def test_a_follower_behind_the_retained_log_installs_a_snapshot_then_follows_the_log(make_cluster):
    cluster = make_cluster(3, env={**FAST, "LOG_RETENTION_ENTRIES": "10"})
    cluster.wait_for_leader()
    behind = cluster.node("backend-1")
    token = cluster.signup(username="prolific").body["token"]
    assert_converged(cluster)
    behind.stop()
    leader = cluster.wait_for_leader(exclude=[behind])
    for i in range(150):  # the leader keeps the last ~10 entries; backend-1's position is long gone
        cluster.post(token, f"while away {i}", node=leader)
    behind.start()
    wait_until(
        lambda: "installed a snapshot" in behind.logs(), timeout=20, what="backend-1 to install a snapshot", report=cluster.report
    )
    cluster.post(token, "after the snapshot", node=leader)
    assert_converged(cluster)
