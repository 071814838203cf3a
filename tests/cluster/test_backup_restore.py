"""Backups and point-in-time restore with real nodes: a backup taken during writes seeds a new, consistent cluster;
an archive undoes a bad delete in place, and the node of the old history that starts with the restored ones has
its entries after the restore point archived, never merged."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from talentnest.store import iso_from_epoch
from tests.cluster.harness import Cluster, Node, operator_command, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

GENERATION = 2**32


def post_contents(node: Node) -> set[str]:
    """Every post's content as ``node`` serves it (all pages)."""
    found: set[str] = set()
    cursor = None
    while True:
        reply = node.request("GET", "/api/posts?limit=100" + (f"&cursor={cursor}" if cursor else ""))
        assert reply.status == 200, reply.body
        found.update(item["content"] for item in reply.body["items"])
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return found


def restored_dirs(tmp_path: Path) -> list[str]:
    """``--data-dir`` arguments for backend-1 and backend-2 of the next test cluster (a majority of three)."""
    return [part for name in ("backend-1", "backend-2") for part in ("--data-dir", str(tmp_path / "cluster-2" / name / "data"))]


def seed_from_restore(make_cluster) -> Cluster:
    """A new 3-node cluster: backend-1 and backend-2 start on the restored data and elect a leader of the new
    generation; backend-3 starts empty and syncs from them."""
    cluster = make_cluster(2)
    assert cluster.wait_for_leader().status()["term"] > GENERATION, "the leader should lead a term of the new generation"
    cluster.add_node()
    return cluster


def checksums_agree(cluster: Cluster) -> dict[str, str]:
    seen: dict[str, str] = {}

    def agree():
        seen.clear()
        seen.update(cluster.checksums())
        return len(set(seen.values())) == 1 and len(seen) == len(cluster.nodes)

    wait_until(agree, timeout=30, what="equal checksums on every node", report=lambda: f"{seen}\n{cluster.report()}")
    return seen


def test_a_backup_taken_during_writes_restores_a_consistent_cluster(make_cluster, tmp_path):
    cluster = make_cluster(3)
    leader = cluster.wait_for_leader()
    follower = next(node for node in cluster.nodes if node is not leader)
    token = cluster.signup(leader).body["token"]
    acked: list[tuple[int, str]] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            reply = cluster.post(token, f"numbered {i}", node=leader)
            acked.append((reply.lsn, f"numbered {i}"))
            i += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    wait_until(lambda: len(acked) >= 20, timeout=20, what="writes under way", report=cluster.report)
    # The follower applies them a little later (seconds on a loaded machine): the backup must hold some.
    cluster.wait_for_applied(acked[19][0], nodes=[follower])
    file = tmp_path / "during.backup"
    env = {"JWT_SECRET": cluster.jwt_secret}
    done = operator_command("backup", "--url", follower.url, str(file), env=env)
    from_leader = operator_command("backup", "--url", follower.url, "--from-leader", str(tmp_path / "leader.backup"), env=env)
    written_during = len(acked)
    stop.set()
    writer.join(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(100%)" in done.stderr and "verifying" in done.stderr  # plain progress lines when not on a terminal
    manifest = json.loads(Path(f"{file}.manifest.json").read_text())
    assert manifest["node_id"] == follower.node_id and manifest["compressed_bytes"] == file.stat().st_size
    assert from_leader.returncode == 0, from_leader.stdout + from_leader.stderr
    assert json.loads(Path(f"{tmp_path}/leader.backup.manifest.json").read_text())["node_id"] == leader.node_id
    wrong = operator_command("backup", "--url", follower.url, str(tmp_path / "x"), env={"JWT_SECRET": "not the key"})
    assert wrong.returncode == 2 and "401" in wrong.stderr and not (tmp_path / "x").exists()
    cluster.close()

    restore = operator_command("restore", str(file), *restored_dirs(tmp_path))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    new = seed_from_restore(make_cluster)
    checksums_agree(new)
    contents = post_contents(new.nodes[2])
    expected = {content for lsn, content in acked if lsn <= manifest["lsn"]}
    assert written_during > len(expected) > 0, "the backup should fall in the middle of the writes"
    assert contents == expected, "exactly the writes up to the backup's LSN, as one consistent moment"


def test_undo_a_bad_delete_in_place_and_the_old_history_is_archived_never_merged(make_cluster, tmp_path):
    archive_dir = tmp_path / "archive"
    old = make_cluster(3, env={"ARCHIVE_DIR": str(archive_dir), "ARCHIVE_INTERVAL": "0.2"})
    leader = old.wait_for_leader()
    token = old.signup(leader).body["token"]
    for i in range(6):
        old.post(token, f"kept {i}", node=leader)
    doomed = [old.post(token, f"doomed {i}", node=leader).body["id"] for i in range(4)]
    before = time.time()
    # Entries are stamped to the millisecond: let the clock move past the moment before the delete.
    wait_until(lambda: time.time() > before + 0.005, timeout=1, what="the clock to move on")
    for post_id in doomed:
        assert leader.request("DELETE", f"/api/posts/{post_id}", token=token).status == 204
    # A failover after the delete: the old history's terms go past the restore point's.
    leader.stop()
    successor = old.wait_for_leader(exclude=[leader])
    last = old.post(token, "written after the delete", node=successor).lsn
    leader.start()
    old.wait_for_applied(last)

    def archived() -> bool:
        return all(f"talentnest_archive_lsn {last}.0" in old.http.get(f"{node.url}/metrics").text for node in old.nodes)

    wait_until(archived, timeout=20, what=f"every node's archive at LSN {last}", report=old.report)
    old.close()

    # The same three machines (their data directories as the old cluster left them): two are restored in
    # place (--replace), the third keeps its old history and starts with them.
    for node in old.nodes:
        shutil.copytree(node.data_dir, tmp_path / "cluster-2" / node.name / "data", ignore=shutil.ignore_patterns("*.lock"))
    moment = iso_from_epoch(before)
    restore = operator_command("restore", str(archive_dir), "--to-time", moment, "--replace", *restored_dirs(tmp_path))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "generation 1" in restore.stdout
    new = make_cluster(3)
    assert new.wait_for_leader().status()["term"] > GENERATION
    checksums_agree(new)
    every_row = {f"kept {i}" for i in range(6)} | {f"doomed {i}" for i in range(4)}
    for node in new.nodes:
        assert post_contents(node) == every_row, f"{node.name} should hold the moment before the delete, and nothing after"
    stale = new.nodes[2]
    archived_files = list((stale.data_dir / "archive").glob("divergent-*.jsonl"))
    assert archived_files, f"the old history should be archived in {stale.data_dir / 'archive'}\n{stale.logs(tail=40)}"
    assert "written after the delete" in "".join(path.read_text() for path in archived_files)
    assert list((new.nodes[0].data_dir).glob("replaced-*/talentnest.db")), "--replace keeps the old database aside"
