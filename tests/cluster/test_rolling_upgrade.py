"""A rolling upgrade from the previous release (schema 1: no counters, no search index, no token keys) to
this one (schema 4), one node at a time while writes go on: nothing acknowledged is lost, the cluster serves
throughout, and at the end every node holds the same rows, right counters and a right index.

The order (README, "Upgrading"): followers first, lowest ID first, the leader last. An upgraded
follower applies the old leader's entries (older schema: no counter columns, no token keys: those
accounts keep the empty key, and their tokens, which carry none, keep working) and counts itself; when
the old leader stops, an upgraded node leads, so no old node is ever sent an entry of a newer schema.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from talentnest.store import DB_FILENAME
from tests.cluster.harness import ROOT, Cluster, Node

# The last commit of the previous release: the commit this work started from (before migration 2).
PREVIOUS_RELEASE = "c9f9ec9a8c6dbcc854e020eff6711201843d7b26"
VERSIONED_NODE = (sys.executable, str(ROOT / "tests" / "cluster" / "versioned_node.py"))
FAST = {"HEARTBEAT_INTERVAL": "0.5", "FAILURE_TIMEOUT": "5", "ELECTION_INTERVAL": "2"}
# The previous release signs without a nonce (docs/cluster.md, "The older form"): the new nodes accept
# that form for the length of the upgrade, as the README's "Upgrading" says; the old one ignores it.
UPGRADE = {"CLUSTER_ACCEPT_LEGACY_SIGNATURES": "true"}
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def previous_release(into: Path) -> Path:
    """The previous release's ``src/``, taken from git; fails (never skips) if git cannot give it."""
    if shutil.which("git") is None:
        pytest.fail("the rolling-upgrade test takes the previous release from git, which is not installed", pytrace=False)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "src"], capture_output=True)
    if archive.returncode != 0:
        pytest.fail(
            f"git cannot give the previous release {PREVIOUS_RELEASE[:12]} ({archive.stderr.decode().strip()}); "
            "the checkout needs its history (a shallow clone lacks it)",
            pytrace=False,
        )
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


class Traffic:
    """Writes and reads sent to whichever node answers, for as long as the upgrade lasts.

    Each acknowledged post (201) is kept with its content; every read is answered by some node or
    counted as a moment without service.
    """

    def __init__(self, cluster: Cluster, tokens: list[str]):
        self.cluster = cluster
        self.tokens = tokens
        self.acknowledged: dict[int, str] = {}
        self.follows: list[tuple[int, str]] = []
        self.last_write = time.monotonic()
        self.longest_write_gap = 0.0
        self.failed_reads = 0
        self.reads = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write), threading.Thread(target=self._read)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _nodes(self) -> list[Node]:
        return [node for node in self.cluster.nodes if node.is_running]

    def _write(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as http:
            for n in itertools.count():
                if self._stop.is_set():
                    return
                token = self.tokens[n % len(self.tokens)]
                content = f"written during the upgrade {n}"
                for node in self._nodes():
                    try:
                        reply = http.post(
                            f"{node.url}/api/posts", json={"content": content}, headers={"Authorization": f"Bearer {token}"}
                        )
                    except httpx.HTTPError:
                        continue
                    if reply.status_code == 201:
                        self.acknowledged[reply.json()["id"]] = content
                        now = time.monotonic()
                        self.longest_write_gap = max(self.longest_write_gap, now - self.last_write)
                        self.last_write = now
                        break
                time.sleep(0.02)  # a steady trickle of writes, not a load test

    def _read(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as http:
            while not self._stop.is_set():
                self.reads += 1
                answered = False
                for node in self._nodes():
                    try:
                        answered = http.get(f"{node.url}/api/posts?limit=5").status_code == 200
                    except httpx.HTTPError:
                        continue
                    if answered:
                        break
                self.failed_reads += not answered
                time.sleep(0.05)


def upgrade(cluster: Cluster, node: Node, new_src: Path) -> None:
    node.stop()
    (node.data_dir.parent / "code").write_text(str(new_src))
    node.start(wait=True, timeout=60)


def counters_and_index(node: Node) -> tuple[list, list, int]:
    """Wrong counters (users, posts) and the size of the search index, read from the node's file."""
    with sqlite3.connect(f"file:{node.data_dir / DB_FILENAME}?mode=ro", uri=True) as conn:
        users = conn.execute(
            "SELECT id FROM users u WHERE follower_count != (SELECT COUNT(*) FROM follows WHERE followee_id = u.id) "
            "OR following_count != (SELECT COUNT(*) FROM follows WHERE follower_id = u.id)"
        ).fetchall()
        posts = conn.execute(
            "SELECT id FROM posts p WHERE like_count != (SELECT COUNT(*) FROM likes WHERE post_id = p.id) "
            "OR comment_count != (SELECT COUNT(*) FROM comments WHERE post_id = p.id)"
        ).fetchall()
        indexed = conn.execute("SELECT COUNT(*) FROM users_fts_docsize").fetchone()[0]
    return users, posts, indexed


def test_a_rolling_upgrade_from_the_previous_release_loses_nothing_and_serves_throughout(tmp_path):
    old_src = previous_release(tmp_path / "previous")
    new_src = ROOT / "src"
    cluster = Cluster(tmp_path / "cluster", env={**FAST, **UPGRADE, "TN_DEFAULT_SRC": str(old_src)}, node_command=VERSIONED_NODE)
    try:
        cluster.start(3)
        # The highest ID leads; on a busy machine a lower one may lead first, until backend-3 takes over.
        leader = cluster.wait_for_leader(expect=cluster.node("backend-3"), timeout=60)
        # The old release's network: members who follow, like and comment (no counters stored).
        members = [cluster.signup(username=f"old{n}").body for n in range(6)]
        tokens = [m["token"] for m in members]
        first = cluster.post(tokens[0], "before the upgrade").body["id"]
        for n, token in enumerate(tokens[1:], start=1):
            assert leader.request("POST", f"/api/users/old{n - 1}/follow", token=token).status == 200
            assert leader.request("POST", f"/api/posts/{first}/like", token=token).status == 200
            assert leader.request("POST", f"/api/posts/{first}/comments", json={"content": "hi"}, token=token).status == 201
        # An accented name the old release stores: every upgraded node's index folds its accents away.
        assert leader.request("PATCH", "/api/users/me", json={"name": "Élodie Ünal"}, token=tokens[5]).status == 200

        with Traffic(cluster, tokens) as traffic:
            for step, name in enumerate(("backend-1", "backend-2")):  # followers first, lowest ID first
                upgraded = cluster.node(name)
                upgrade(cluster, upgraded, new_src)
                # The old leader's follow, like and comment (entries of schema 1, no counters in them)...
                follower_token, target = tokens[step + 2], f"old{step + 4}"
                assert leader.request("POST", f"/api/users/{target}/follow", token=follower_token).status == 200
                assert (
                    leader.request("POST", f"/api/posts/{first}/comments", json={"content": "new"}, token=tokens[0]).status == 201
                )
                mark = leader.request("DELETE", f"/api/posts/{first}/like", token=tokens[step + 1]).lsn
                cluster.wait_for_applied(mark, timeout=30)
                # ...are counted by the upgraded follower as it applies them.
                profile = upgraded.request("GET", f"/api/users/{target}").body
                assert profile["follower_count"] == 1 + (target == "old4"), profile
                post = upgraded.request("GET", f"/api/posts/{first}").body
                assert (post["like_count"], post["comment_count"]) == (4 - step, 6 + step), post
            upgrade(cluster, leader, new_src)  # the leader last: backend-2 (upgraded) led meanwhile
            cluster.wait_for_leader(expect=leader, timeout=60)
            mark = cluster.post(tokens[2], "after the whole upgrade").lsn
            cluster.wait_for_applied(mark, timeout=30)

        assert traffic.failed_reads == 0, f"{traffic.failed_reads} of {traffic.reads} reads found no node to answer"
        assert len(traffic.acknowledged) > 50, "writes went on through the upgrade"
        assert traffic.longest_write_gap < 10, f"no write was acknowledged for {traffic.longest_write_gap:.1f} s"
        final = max(node.status()["applied_lsn"] for node in cluster.nodes)
        cluster.wait_for_applied(final, timeout=30)
        checksums = cluster.checksums()
        assert len(set(checksums.values())) == 1, checksums
        for node in cluster.nodes:
            reply = node.request("GET", f"/api/posts/{first}")
            assert reply.status == 200 and (reply.body["like_count"], reply.body["comment_count"]) == (3, 7)
            assert node.request("GET", "/api/users/old0").body["follower_count"] == 1
            found = node.request("GET", "/api/users/search?query=old3").body["items"]
            assert [u["username"] for u in found][:1] == ["old3"], f"{node.name}'s search index misses a member"
            found = node.request("GET", "/api/users/search?query=elodie unal").body["items"]
            assert [u["username"] for u in found] == ["old5"], f"{node.name}'s search index keeps accents"
            wrong_users, wrong_posts, indexed = counters_and_index(node)
            assert (wrong_users, wrong_posts) == ([], []), f"{node.name}: counters that are not recounts"
            assert indexed == 6
        sample = list(traffic.acknowledged.items())
        for node in cluster.nodes:
            for post_id, content in sample[:: max(1, len(sample) // 40)]:
                reply = node.request("GET", f"/api/posts/{post_id}")
                assert reply.status == 200 and reply.body["content"] == content, f"post {post_id} lost on {node.name}"
            newest = node.request("GET", "/api/posts?limit=100").body["items"]
            assert max(traffic.acknowledged) <= newest[0]["id"]
    finally:
        cluster.close()
