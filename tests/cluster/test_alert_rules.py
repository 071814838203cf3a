"""Every shipped alert fires from real metrics: a real cluster is driven into the state each alert is
about, its nodes are scraped, and `promtool test rules` evaluates deploy/prometheus/talentnest-rules.yaml
over the scraped samples (tests/_prometheus.py; only the time between scrapes is compressed).

States, all real: healthy (nothing fires); a follower hung with SIGSTOP while the leader writes (its lag
grows past 10 s, it stops answering); two of three hung (the survivor cannot lead); the leader cut off
with iptables (not ready) and back (it archives the write the others never had: a divergence); a
follower behind the retained log whose leader cannot make a snapshot (a file stands where its
snapshots directory should be), so its sync fails again and again; leadership moved three times
over the walk. Two leaders cannot be produced inside one cluster (a leader without a majority steps
down); they are produced as Prometheus would see a split: a second, independent one-node cluster
scraped under the same job. The archive's alerts: one node whose ARCHIVE_DIR is a tmpfs, filled up (every
round fails, the archive stops while writes go on), then freed after its log moved past what it had archived.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import httpx
import pytest

from tests import _prometheus as prom
from tests._node import ready_node
from tests._tools import missing, require
from tests.cluster.harness import TEST_SUBNET, firewall_unavailable, wait_until
from tests.cluster.hazards import Tmpfs, tmpfs_unavailable

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ENV = {"HEARTBEAT_INTERVAL": "0.5", "ELECTION_INTERVAL": "2", "LOG_RETENTION_ENTRIES": "10"}


def _expect(alert: str, **labels: str) -> dict[str, str]:
    return {**prom.alert_labels(alert), "job": prom.JOB, **labels}


def _target(node) -> str:
    return f"{node.address}:3000"


def _block_snapshots(node) -> None:
    """A file where the node's snapshots directory goes: GET /cluster/sync fails (500) until it is removed."""
    directory = node.data_dir / "snapshots"
    if directory.is_dir():
        for leftover in directory.iterdir():
            leftover.unlink()
        directory.rmdir()
    directory.write_text("not a directory\n")


def _unblock_snapshots(node) -> None:
    path = node.data_dir / "snapshots"
    if path.is_file():
        path.unlink()


def test_each_alert_fires_on_real_metrics_of_the_state_it_is_about(make_cluster, tmp_path):
    promtool = require("promtool", "prometheus")
    reason = firewall_unavailable()
    if reason:
        missing(reason)
    cluster = make_cluster(3, env=ENV)
    first, second, third = cluster.nodes
    targets = [_target(node) for node in cluster.nodes]

    def frame(label: str) -> prom.Frame:
        return prom.scrape(targets, label=label)

    token = cluster.signup(username="watcher").body["token"]
    cluster.wait_for_applied(cluster.post(token, "before anything happens").lsn)
    healthy = frame("healthy")

    # A follower hangs while writes go on: the leader's view of its lag grows past the rule's 10 s.
    first.pause()
    cluster.post(token, "while backend-1 hangs", node=third)

    def lag_of_first() -> float:
        scraped = prom.scrape([_target(third)], label="probe")
        return scraped.values("talentnest_follower_lag_seconds", follower_id=str(first.node_id)).get(_target(third), 0.0)

    wait_until(
        lambda: lag_of_first() > 10,
        timeout=30,
        interval=0.5,
        what="the leader to report backend-1 more than 10 s behind",
        report=cluster.report,
    )
    lagging = frame("a follower hung")
    assert lagging.values("up")[_target(first)] == 0

    # A second one hangs: the leader keeps seeing three members listed, reaches one, steps down.
    second.pause()
    wait_until(
        lambda: (third.try_status() or {}).get("current_role") != "leader",
        timeout=20,
        what="backend-3 to step down without a majority",
        report=cluster.report,
    )
    no_leader = frame("two of three hung")
    first.resume()
    second.resume()
    cluster.wait_for_leader(timeout=30)
    for node in cluster.nodes:
        node.wait_ready()
    recovered = frame("recovered")

    # The leader is cut off: within its lease it takes one more write that reaches nobody.
    leader = cluster.wait_for_leader()
    leader.partition()
    orphan = leader.request("POST", "/api/posts", json={"content": "orphan"}, token=token)
    assert orphan.status == 201, orphan.body
    majority = cluster.wait_for_leader(exclude=[leader], timeout=20)
    wait_until(lambda: not leader.is_ready(), timeout=20, what=f"{leader.name} to be not ready", report=cluster.report)
    cut_off = frame("the leader cut off")
    cluster.post(token, "the majority's post", node=majority)
    leader.heal()
    wait_until(lambda: "divergence" in leader.logs(), timeout=30, what="the divergence archive", report=cluster.report)
    # Once it has resynced, the highest ID takes leadership back (a planned handover): a third change.
    cluster.wait_for_leader(expect=leader, timeout=30)
    for node in cluster.nodes:
        node.wait_ready()
    diverged = frame("back, divergence archived")

    # A follower behind the retained log, whose leader cannot make a snapshot: every sync fails.
    first.stop()
    current = cluster.wait_for_leader(exclude=[first])
    for i in range(150):  # the log is trimmed to LOG_RETENTION_ENTRIES every 64 writes
        cluster.post(token, f"while backend-1 is away {i}", node=current)
    for node in (second, third):
        _block_snapshots(node)
    try:
        first.start(wait=False)
        wait_until(
            lambda: first.logs().count("sync: from node") >= 2,
            timeout=30,
            what="backend-1's sync to fail twice",
            report=cluster.report,
        )
        sync_failing = frame("a follower whose sync fails")
    finally:
        for node in (second, third):
            _unblock_snapshots(node)
    first.wait_ready(timeout=30)

    # Another cluster under the same job: two nodes say they lead.
    (tmp_path / "lone").mkdir()
    lone = ready_node(tmp_path / "lone", f"{TEST_SUBNET}.201", JWT_SECRET="another-cluster-with-its-own-secret-0123")
    try:
        two_leaders = prom.scrape([*targets, f"{lone.host}:{lone.port}"], label="two clusters, one job")
    finally:
        lone.stop()

    walk = (healthy, lagging, no_leader, recovered, cut_off, diverged)
    terms = {target: [t for f in walk if (t := f.values("talentnest_term").get(target)) is not None] for target in targets}
    changes = max(sum(1 for a, b in itertools.pairwise(seen) if a != b) for seen in terms.values())
    assert changes >= 3, f"the walk was meant to move leadership three times; terms seen: {terms}"
    assert sync_failing.values("talentnest_ready")[_target(first)] == 0

    cases = [
        prom.promtool_case([(healthy, 15)], {alert: [] for alert in prom.alert_names()}, "healthy: nothing fires"),
        prom.promtool_case(
            [(healthy, 2), (lagging, 5)],
            {
                "TalentNestFollowerLagging": [_expect("TalentNestFollowerLagging", follower_id=str(first.node_id))],
                "TalentNestNodeDown": [_expect("TalentNestNodeDown", instance=_target(first))],
                "TalentNestNoLeader": [],
            },
            "a hung follower lags and is down",
        ),
        prom.promtool_case(
            [(healthy, 2), (no_leader, 3)],
            {"TalentNestNoLeader": [_expect("TalentNestNoLeader")], "TalentNestMoreThanOneLeader": []},
            "no leader after losing the majority",
        ),
        prom.promtool_case(
            [(healthy, 2), (cut_off, 4)],
            {"TalentNestNodeNotReady": [_expect("TalentNestNodeNotReady", instance=_target(leader))], "TalentNestNoLeader": []},
            "the cut-off node is not ready",
        ),
        prom.promtool_case(
            [(recovered, 2), (cut_off, 1), (diverged, 3)],
            {"TalentNestDivergenceArchived": [_expect("TalentNestDivergenceArchived", instance=_target(leader))]},
            "the deposed leader archived a divergence",
        ),
        prom.promtool_case(
            [(healthy, 2), (sync_failing, 13)],
            {"TalentNestSyncFailing": [_expect("TalentNestSyncFailing", instance=_target(first))]},
            "a follower whose sync keeps failing",
        ),
        prom.promtool_case(
            [(frame_, 1) for frame_ in walk],
            {"TalentNestTermChangingTooOften": [_expect("TalentNestTermChangingTooOften")]},
            "leadership moved three times in a few minutes",
        ),
        prom.promtool_case(
            [(healthy, 2), (two_leaders, 3)],
            {"TalentNestMoreThanOneLeader": [_expect("TalentNestMoreThanOneLeader")], "TalentNestNoLeader": []},
            "two clusters scraped as one job: two leaders",
        ),
    ]
    result = prom.run_promtool_tests(promtool, tmp_path, cases)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_the_archive_alerts_fire_on_real_metrics_of_a_node_whose_archive_disk_fills_up(tmp_path):
    """One node archiving into a tmpfs (ARCHIVE_DIR): archiving, then the tmpfs filled (every round fails,
    the archive stops while writes go on), then freed after its log moved past what was archived (a hole)."""
    promtool = require("promtool", "prometheus")
    reason = tmpfs_unavailable()
    if reason:
        missing(reason)
    disk = Tmpfs(tmp_path / "archive", 8 << 20).mount()
    (tmp_path / "node").mkdir()
    node = None
    try:
        node = ready_node(
            tmp_path / "node",
            f"{TEST_SUBNET}.202",
            ARCHIVE_DIR=str(disk.path),
            ARCHIVE_INTERVAL="0.5",
            LOG_RETENTION_ENTRIES="10",
            JWT_SECRET="a-node-that-archives-with-its-own-secret",
        )
        target = f"{node.host}:{node.port}"

        def frame_when(what: str, holds: Callable[[Callable[[str], float]], bool]) -> prom.Frame:
            def scraped() -> prom.Frame | None:
                frame = prom.scrape([target], label=what)
                return frame if holds(lambda name: frame.values(f"talentnest_archive_{name}").get(target, -1.0)) else None

            return wait_until(scraped, timeout=60, interval=0.2, what=what, report=node.log)

        with httpx.Client(base_url=node.url, trust_env=False, timeout=10) as http:
            signup = {"name": "Archie", "username": "archie", "email": "archie@example.com", "password": "pass123"}
            token = http.post("/api/auth/signup", json=signup).json()["token"]

            def write(n: int) -> None:
                for i in range(n):
                    reply = http.post("/api/posts", json={"content": f"post {i}"}, headers={"Authorization": f"Bearer {token}"})
                    assert reply.status_code == 201, reply.text

            write(3)
            archiving = frame_when("the archive up to date", lambda m: m("lsn") > 0 and m("lag_entries") == 0)
            disk.fill()
            write(3)
            failing = [archiving]
            for _ in range(4):  # rounds fail with backoff (0.5 s, 1 s, 2 s, ...): one frame per failure
                seen = failing[-1].values("talentnest_archive_failures_total")[target]
                failing.append(frame_when("one more failed round", lambda m, seen=seen: m("failures_total") > seen))
            stalled = failing[-1]
            assert stalled.values("talentnest_archive_lsn") == archiving.values("talentnest_archive_lsn")
            write(150)  # the log is trimmed to LOG_RETENTION_ENTRIES every 64 writes: past what was archived
            disk.free()
            hole = frame_when("a hole in the archive, and a new chain", lambda m: m("gaps_total") >= 1 and m("lag_entries") == 0)
    finally:
        if node is not None:
            node.stop()
        disk.unmount()

    expect = {"instance": target}
    cases = [
        prom.promtool_case(
            [(archiving, 20)],
            {"TalentNestArchiveFailing": [], "TalentNestArchiveLagging": [], "TalentNestArchiveGap": []},
            "archiving: nothing fires",
        ),
        prom.promtool_case(
            [(frame, 1) for frame in failing],
            {"TalentNestArchiveFailing": [_expect("TalentNestArchiveFailing", **expect)], "TalentNestArchiveLagging": []},
            "every round fails",
        ),
        prom.promtool_case(
            [(archiving, 2), (stalled, 14)],
            {"TalentNestArchiveLagging": [_expect("TalentNestArchiveLagging", **expect)]},
            "entries wait and the archive does not move",
        ),
        prom.promtool_case(
            [(archiving, 2), (hole, 3)],
            {"TalentNestArchiveGap": [_expect("TalentNestArchiveGap", **expect)], "TalentNestArchiveLagging": []},
            "entries left the log before they were archived",
        ),
    ]
    result = prom.run_promtool_tests(promtool, tmp_path, cases)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout
