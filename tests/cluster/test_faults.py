"""Faults under load: a writer keeps sending numbered writes through every node while the leader is
killed, a follower is cut off and healed, and a node hangs and resumes.

Every write carries an Idempotency-Key and is retried (same key, any node) until it is acknowledged,
as a careful client would. Afterwards: no acknowledged write is missing, none is applied twice, and
every node holds the same content.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from tests.cluster.harness import wait_until
from tests.cluster.test_replication import assert_converged

FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.usefixtures("firewall_available"),
]


@dataclass
class Writer:
    """Sends write n = 1, 2, ... through the live nodes in turn, retrying each until acknowledged."""

    cluster: object
    token: str
    acknowledged: list[int] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        client = httpx.Client(timeout=8.0)
        turn = itertools.count()
        try:
            for n in itertools.count(1):
                deadline = time.monotonic() + 45
                while True:
                    if self.stop.is_set():
                        return  # the write in flight may or may not exist; it was never acknowledged
                    assert time.monotonic() < deadline, f"write {n} was not acknowledged within 45 s"
                    if self._attempt(client, n, next(turn)):
                        self.acknowledged.append(n)
                        break
                    time.sleep(0.05)
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            client.close()

    def _attempt(self, client: httpx.Client, n: int, turn: int) -> bool:
        live = [node for node in self.cluster.nodes if node.is_running and not node.is_paused]
        node = live[turn % len(live)]
        self.attempts[n] += 1
        try:
            reply = client.post(
                f"{node.url}/api/posts",
                json={"content": f"write-{n}"},
                headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": f"write-{n}"},
            )
        except httpx.HTTPError:
            return False
        if reply.status_code == 201:
            return True
        code = reply.json().get("error", {}).get("code")
        if code == "idempotency_key_used":
            return True  # applied by an earlier attempt whose answer was lost
        assert reply.status_code == 503, f"write {n}: unexpected {reply.status_code} {reply.text}"
        return False


def run_with_writer(cluster, faults) -> tuple[Writer, list[str]]:
    token = cluster.signup(username="loadwriter").body["token"]
    writer = Writer(cluster, token)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(writer.acknowledged) >= 20, timeout=20, what="the writer to get going")
        faults(writer)
        progress = len(writer.acknowledged)
        wait_until(
            lambda: len(writer.acknowledged) >= progress + 20,
            timeout=30,
            what="writes to go on after the faults",
            report=cluster.report,
        )
    finally:
        writer.stop.set()
        thread.join(timeout=60)
    assert writer.error is None, f"the writer failed: {writer.error!r}\n{cluster.report()}"
    leader = cluster.wait_for_leader(timeout=30)
    assert_converged(cluster, timeout=30)
    contents = []
    cursor = None
    while True:
        path = "/api/posts?author=loadwriter&limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = leader.request("GET", path).body
        contents += [p["content"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return writer, contents


def check(writer: Writer, contents: list[str]) -> None:
    counts = Counter(contents)
    twice = [c for c, k in counts.items() if k > 1]
    assert not twice, f"applied more than once: {twice[:10]}"
    missing = [n for n in writer.acknowledged if f"write-{n}" not in counts]
    assert not missing, f"acknowledged but missing: {missing[:20]} (of {len(writer.acknowledged)})"
    retried = sum(1 for k in writer.attempts.values() if k > 1)
    print(f"{len(writer.acknowledged)} writes acknowledged, {retried} needed retries, {len(contents)} stored")


def test_quorum_mode_loses_no_acknowledged_write_through_kill_partition_and_hang(make_cluster):
    cluster = make_cluster(3, env={**FAST, "REPLICATION_MODE": "quorum", "CLUSTER_SIZE": "3"})
    cluster.wait_for_leader()

    def faults(writer: Writer) -> None:
        leader = cluster.wait_for_leader()
        leader.stop(graceful=False)  # SIGKILL of the leader, mid-stream
        cluster.wait_for_leader(exclude=[leader], timeout=20)
        leader.start(wait=False)
        cluster.wait_for_leader(timeout=30)
        follower = next(n for n in cluster.nodes if n.status()["current_role"] != "leader")
        follower.partition()
        time.sleep(3)  # the cut lasts a while (6 heartbeats) while writes go on
        follower.heal()
        cluster.wait_for_leader(timeout=30)
        hung = cluster.wait_for_leader()
        hung.pause()  # the leader hangs, still in DNS
        cluster.wait_for_leader(exclude=[hung], timeout=20)
        hung.resume()

    writer, contents = run_with_writer(cluster, faults)
    check(writer, contents)


def test_async_mode_loses_nothing_through_a_graceful_stop_a_partition_and_a_hang(make_cluster):
    cluster = make_cluster(3, env=FAST)
    cluster.wait_for_leader()

    def faults(writer: Writer) -> None:
        leader = cluster.wait_for_leader()
        leader.stop()  # docker stop: drains its followers before it leaves
        cluster.wait_for_leader(exclude=[leader], timeout=20)
        leader.start(wait=False)
        cluster.wait_for_leader(timeout=30)
        follower = next(n for n in cluster.nodes if n.status()["current_role"] != "leader")
        follower.partition()
        time.sleep(3)
        follower.heal()
        cluster.wait_for_leader(timeout=30)
        hung = next(n for n in cluster.nodes if n.status()["current_role"] != "leader")
        hung.pause()  # a follower hangs; async writes go on without it
        time.sleep(2)
        hung.resume()

    writer, contents = run_with_writer(cluster, faults)
    check(writer, contents)
