"""`talentnest cluster drain/undrain --url` on a real cluster while writes go on: the drained leader hands over
without losing an acknowledged write, shows as drained, and never leads again until it is undrained."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.cluster.harness import operator_command, wait_until
from tests.cluster.test_backup_restore import post_contents

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_drain_the_leader_under_writes_hands_over_loses_nothing_and_it_never_leads_until_undrained(make_cluster):
    cluster = make_cluster(3, env={"ELECTION_INTERVAL": "1"})
    low, middle, high = sorted(cluster.nodes, key=lambda n: n.node_id)
    assert cluster.wait_for_leader() is high
    token = cluster.signup(low).body["token"]
    env = {"JWT_SECRET": cluster.jwt_secret}
    acked: list[str] = []
    leaders_seen: list[tuple[str, int | None]] = []
    phase = ["before"]
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            content = f"write {i}"
            while not stop.is_set():  # a careful client: retry a 503 with the same key until it is answered
                try:
                    reply = low.request("POST", "/api/posts", json={"content": content}, token=token,
                                        headers={"Idempotency-Key": f"k{i}"})  # fmt: skip
                except httpx.HTTPError:
                    continue
                if reply.status == 201:
                    acked.append(content)
                    break
                assert reply.status == 503, reply.body
            i += 1

    def watch() -> None:
        while not stop.is_set():
            status = low.try_status()
            if status is not None:
                leaders_seen.append((phase[0], status.get("leader_id")))
            stop.wait(0.05)

    threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=watch, daemon=True)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acked) >= 20, timeout=20, what="writes under way", report=cluster.report)

    drained = operator_command("cluster", "drain", "--url", high.url, env=env)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert f"node-{high.node_id} drained" in drained.stdout and f"node-{middle.node_id} leads now" in drained.stdout
    assert cluster.wait_for_leader(expect=middle) is middle
    phase[0] = "drained"  # from here on, every node has seen the handover
    shown = operator_command("cluster", "status", "--url", high.url)
    assert shown.returncode == 0 and "yes, drained" in shown.stdout and "is drained" in shown.stdout, shown.stdout
    counted = len(acked)
    wait_until(lambda: len(acked) >= counted + 20, timeout=20, what="writes under the new leader", report=cluster.report)

    # The drained node has the highest ID of the two left: still it does not stand; the lowest leads.
    middle.stop()
    assert cluster.wait_for_leader(exclude=[middle]) is low
    counted = len(acked)
    wait_until(lambda: len(acked) >= counted + 20, timeout=20, what="writes under the lowest ID", report=cluster.report)

    phase[0] = "undrained"
    undrained = operator_command("cluster", "undrain", "--url", high.url, env=env)
    assert undrained.returncode == 0 and "undrained" in undrained.stdout, undrained.stdout + undrained.stderr
    assert cluster.wait_for_leader(exclude=[middle], expect=high) is high  # the next periodic election hands back
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    middle.start()
    cluster.wait_for_applied(high.status()["applied_lsn"])
    assert ("drained", high.node_id) not in leaders_seen, "the drained node led again before it was undrained"
    assert ("drained", middle.node_id) in leaders_seen and ("drained", low.node_id) in leaders_seen
    for node in cluster.nodes:
        missing = set(acked) - post_contents(node)
        assert not missing, f"{node.name} lacks {len(missing)} acknowledged write(s), e.g. {sorted(missing)[:3]}"
    assert len(set(cluster.checksums().values())) == 1
