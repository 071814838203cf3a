"""The operator's CLI against real nodes over HTTP only: `cluster status --url` and its exit codes in each
state (healthy, a node hung, a node just stopped, no leader), and `cluster verify --url` at one LSN."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from talentnest.launcher.supervisor import node_id_of
from tests._node import ready_node
from tests.cluster.harness import TEST_SUBNET, operator_command, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HEALTHY, DEGRADED, NO_LEADER = 0, 1, 2


def talentnest(*arguments: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``talentnest cluster ARGUMENTS`` as an operator runs it."""
    return operator_command("cluster", *arguments, env=env, timeout=timeout)


def status(*urls: str) -> subprocess.CompletedProcess:
    return talentnest("status", *(part for url in urls for part in ("--url", url)))


def wait_for_exit_code(code: int, *urls: str, cluster, says: str = "") -> subprocess.CompletedProcess:
    last: list[subprocess.CompletedProcess] = []

    def reached():
        last[:] = [status(*urls)]
        return last[0].returncode == code and says in last[0].stdout

    wait_until(
        reached,
        timeout=45,
        interval=0.5,
        what=f"`cluster status --url {' '.join(urls)}` to exit {code}" + (f" saying '{says}'" if says else ""),
        report=lambda: f"last exit {last[0].returncode}:\n{last[0].stdout}{last[0].stderr}\n{cluster.report()}" if last else "",
    )
    return last[0]


def test_status_exit_codes_follow_the_cluster_through_a_hang_a_stop_and_a_majority_loss(make_cluster):
    cluster = make_cluster(3)
    first, second, third = cluster.nodes
    # Any one node's URL is enough: the others' internal addresses answer from here.
    healthy = status(first.url)
    assert healthy.returncode == HEALTHY, healthy.stdout + healthy.stderr
    report = json.loads(talentnest("status", "--url", first.url, "--json").stdout)
    assert report["verdict"] == "healthy" and report["leader_id"] == third.node_id
    assert sorted(node["id"] for node in report["nodes"] if node["status"]) == [n.node_id for n in cluster.nodes]
    assert f"node-{third.node_id}" in healthy.stdout and "leader" in healthy.stdout

    # Hung (SIGSTOP): it stays in DNS, its peers stop hearing from it.
    first.pause()
    hung = wait_for_exit_code(DEGRADED, second.url, cluster=cluster, says=f"node-{first.node_id} does not answer")
    assert "hung or stopped" in hung.stdout
    first.resume()
    wait_for_exit_code(HEALTHY, second.url, cluster=cluster)

    # Just stopped (SIGTERM): it leaves /cluster/status at once, but not the nodes' memory before FAILURE_TIMEOUT.
    first.stop()
    just_stopped = status(second.url)
    assert just_stopped.returncode == DEGRADED, just_stopped.stdout  # refused, then dropped by DNS: degraded either way
    gone = wait_for_exit_code(DEGRADED, second.url, cluster=cluster, says=f"node-{first.node_id} left")
    assert "within FAILURE_TIMEOUT" in gone.stdout
    silent = status(first.url, second.url)
    assert silent.returncode == DEGRADED and f"{first.url} does not answer" in silent.stdout
    first.start()
    wait_for_exit_code(HEALTHY, first.url, cluster=cluster)

    # Majority loss: two nodes hang, the survivor still lists them and so has no majority, hence no leader.
    second.pause()
    third.pause()
    lost = wait_for_exit_code(NO_LEADER, first.url, cluster=cluster, says="no leader")
    assert "no node that answered leads or knows a leader" in lost.stdout
    second.resume()
    third.resume()
    wait_for_exit_code(HEALTHY, first.url, cluster=cluster)

    # Nothing answers at all.
    nothing = status(f"http://{TEST_SUBNET}.250:3000")
    assert nothing.returncode == NO_LEADER and "nothing answered" in nothing.stdout


def test_verify_agrees_at_one_lsn_and_names_a_node_that_differs(make_cluster, tmp_path):
    cluster = make_cluster(3)
    token = cluster.signup().body["token"]
    lsn = cluster.post(token, "checked everywhere").lsn
    cluster.wait_for_applied(lsn)
    secret = {"JWT_SECRET": cluster.jwt_secret}

    agreed = talentnest("verify", "--url", cluster.nodes[0].url, env=secret)
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert f"3 node(s) agree at LSN {lsn}" in agreed.stdout

    # The local cluster's own command: its nodes from the control socket, the key from its state directory.
    local = talentnest("verify", "--dir", str(cluster.config.state_dir))
    assert local.returncode == 0 and f"3 node(s) agree at LSN {lsn}" in local.stdout, local.stdout + local.stderr
    local_status = talentnest("status", "--dir", str(cluster.config.state_dir))
    assert local_status.returncode == 0 and "backend-3" in local_status.stdout, local_status.stdout + local_status.stderr

    keyless = talentnest("verify", "--url", cluster.nodes[0].url)
    assert keyless.returncode == 2 and "CLUSTER_SECRET" in keyless.stderr
    wrong = talentnest("verify", "--url", cluster.nodes[0].url, env={"JWT_SECRET": "not-the-cluster-secret-at-all-0123456789"})
    assert wrong.returncode == 2 and "refused the signature (401)" in wrong.stdout
    cluster.close()

    # Two one-node clusters that share the secret hold different data at the same LSN: one is named.
    addresses = [f"{TEST_SUBNET}.201", f"{TEST_SUBNET}.202"]
    nodes = []
    for address in addresses:
        (tmp_path / address).mkdir()
        nodes.append(ready_node(tmp_path / address, address, JWT_SECRET=cluster.jwt_secret))
    try:
        for node, username in zip(nodes, ("alice", "bruno"), strict=True):
            body = {"name": username, "username": username, "email": f"{username}@example.com", "password": "password123"}
            assert httpx.post(f"{node.url}/api/auth/signup", json=body, timeout=10).status_code == 201
        differs = talentnest("verify", "--url", nodes[0].url, "--url", nodes[1].url, env=secret)
    finally:
        for node in nodes:
            node.stop()
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert "the nodes differ at LSN 1" in differs.stdout and "<- differs" in differs.stdout
    for address in addresses:
        assert f"node-{node_id_of(address)}" in differs.stdout
