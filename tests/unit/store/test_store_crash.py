"""A node killed (SIGKILL) in the middle of applying a batch, or of swapping in a snapshot, comes
back with a whole database whose applied LSN says exactly what data it holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from talentnest.store.snapshot import take_snapshot

CHILD = Path(__file__).with_name("store_crash_child.py")
SRC = Path(__file__).resolve().parents[3] / "src"


class Child:
    """The child process, read one JSON line at a time."""

    def __init__(self, *args: str):
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{CHILD.parent}"}
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    def next_event(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            raise AssertionError(f"child ended (rc {self.proc.returncode}) before its next event: {self.proc.stderr.read()}")
        return json.loads(line)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=60) == -signal.SIGKILL
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def leader_log(nodes, tmp_path):
    """A leader whose log holds 1,200 sizeable posts and some likes/deletes, written to a file."""
    leader = nodes("leader")
    author, reader = leader.signup("ada"), leader.signup("bob")
    for n in range(1200):
        with leader.db.write() as conn:
            post = leader.posts.insert(conn, author, f"post {n} " + "x" * 800, "t")
            if n % 3 == 0:
                leader.posts.like(conn, post, reader, "t")
            if n % 7 == 0:
                leader.posts.delete(conn, post - 1)
    path = tmp_path / "entries.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in leader.all_entries()))
    return leader, path


def test_sigkill_in_the_middle_of_an_apply_loses_the_whole_batch_and_nothing_else(nodes, tmp_path, leader_log):
    leader, entries_file = leader_log
    follower_dir = tmp_path / "follower"
    first_batch = 300

    child = Child("apply", str(follower_dir), str(entries_file), str(first_batch), "600")
    committed = child.next_event()
    assert committed == {"event": "committed", "lsn": first_batch, "wal_bytes": committed["wal_bytes"]}
    stopped = child.next_event()
    assert stopped["point"] == "mid-batch"
    assert stopped["wal_bytes"] > committed["wal_bytes"], "the half-applied batch had reached the WAL file"
    child.kill()

    follower = nodes("follower")  # reopens the killed child's files
    reference = nodes("reference")
    reference.db.apply(leader.all_entries()[:first_batch])
    assert follower.db.last_lsn == first_batch
    assert follower.db.checksum() == reference.db.checksum()
    assert follower.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    follower.catch_up_from(leader)
    assert follower.db.checksum() == leader.db.checksum()


@pytest.mark.parametrize("point", ["before-rename", "after-rename"])
def test_sigkill_while_installing_a_snapshot_leaves_one_whole_database(nodes, tmp_path, point):
    source = nodes("source")
    for name in ("ada", "bob", "cyd"):
        source.signup(name)
    source.post(1, "in the snapshot")
    snapshot = tmp_path / "snap.zst"
    info = take_snapshot(source.db.path, snapshot)

    node_dir = tmp_path / "node"
    child = Child("install", str(node_dir), str(snapshot), point)
    ready = child.next_event()
    assert ready["wal_bytes"] > 0, "the old database's last writes were only in its WAL"
    assert child.next_event() == {"event": "stopped", "point": point, "wal_bytes": 0}
    child.kill()

    node = nodes("node")
    if point == "before-rename":
        assert (node.db.last_lsn, node.db.checksum()) == (ready["lsn"], ready["checksum"])
    else:
        assert (node.db.last_lsn, node.db.checksum()) == (info.lsn, source.db.checksum())
    assert node.db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sorted(p.name for p in node_dir.iterdir() if "incoming" in p.name) == [], "the unpacked file was cleaned up"
