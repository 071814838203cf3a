"""Continuous archiving and point-in-time restore on real files: chains, gaps, retention, failures, generations."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from store_factories import make_node

from talentnest.cluster.state import DurableState
from talentnest.launcher import restore as restoring
from talentnest.store import Retention, archive, snapshot
from talentnest.store.archiver import Archiver, ArchiveSettings
from talentnest.store.schema import product_database

EVERY_ROUND = ArchiveSettings(interval=0.05, snapshot_interval=3600, retention=86400)


def leader(path: Path, **kwargs):
    node = make_node(path, **kwargs)
    node.db.term, node.db.epoch = 1, 11
    return node


def restored_checksum(data_dir: Path) -> tuple[str, int, int]:
    db = product_database(data_dir).open()
    try:
        return db.checksum(), db.last_lsn, db.last_term
    finally:
        db.close()


def replay_checksum(path: Path, source, upto: int) -> str:
    """The checksum of a follower that applied ``source``'s log up to ``upto`` (what the restore must equal)."""
    follower = make_node(path)
    try:
        entries = [e for e in source.all_entries() if e.lsn <= upto]
        follower.db.apply(entries)
        assert follower.db.last_lsn == upto
        return follower.db.checksum()
    finally:
        follower.db.close()


def test_restore_to_any_lsn_of_the_archive_and_start_a_new_generation(tmp_path):
    node = leader(tmp_path / "leader")
    store = archive.DirectoryStore(tmp_path / "archive")
    archiver = Archiver(node.db, store, EVERY_ROUND)
    archiver.node_id = 515
    user = node.signup("ada")
    asyncio.run(archiver.archive_once())  # the base snapshot, at the signup
    posts = [node.post(user, f"post {i}") for i in range(5)]
    asyncio.run(archiver.archive_once())
    node.post_service.delete(user, posts[0])  # the bad delete
    asyncio.run(archiver.archive_once())
    assert archiver.stats.archived_lsn == node.db.last_lsn and archiver.stats.segments == 2
    before_delete = node.db.last_lsn - 1

    plan = restoring.plan_archive(store.root, to_lsn=before_delete, to_time=None, node_id=None)
    done = restoring.restore(plan, tmp_path / "restored")
    checksum, last_lsn, last_term = restored_checksum(tmp_path / "restored")
    assert checksum == replay_checksum(tmp_path / "replay", node, before_delete)
    assert (done.lsn, last_lsn) == (before_delete, before_delete + 1)
    assert last_term == done.term == 2**32  # the first term of generation 1
    assert DurableState(tmp_path / "restored").current.term == 2**32
    node.db.close()


def test_restore_to_a_time_stops_at_the_last_entry_written_by_then(tmp_path):
    clock = [1_800_000_000.0]
    node = make_node(tmp_path / "leader")
    node.db.clock = lambda: clock[0]
    node.db.term, node.db.epoch = 3, 5
    store = archive.DirectoryStore(tmp_path / "archive")
    archiver = Archiver(node.db, store, EVERY_ROUND, wall=lambda: clock[0])
    archiver.node_id = 1
    user = node.signup("bob")
    asyncio.run(archiver.archive_once())
    for i in range(4):
        clock[0] += 60
        node.post(user, f"minute {i}")
    asyncio.run(archiver.archive_once())
    moment = clock[0] - 90  # between the 2nd and 3rd post
    plan = restoring.plan_archive(store.root, to_lsn=None, to_time=moment, node_id=None)
    done = restoring.restore(plan, tmp_path / "restored")
    assert done.lsn == 3  # the signup and the first two posts
    assert restored_checksum(tmp_path / "restored")[0] == replay_checksum(tmp_path / "replay", node, 3)
    with pytest.raises(restoring.RestoreError, match="before the archive's window"):
        restoring.plan_archive(store.root, to_lsn=None, to_time=moment - 3600, node_id=None)
    node.db.close()


def test_a_replaced_history_starts_a_new_chain_and_restores_follow_the_newest(tmp_path):
    node = leader(tmp_path / "leader")
    other = leader(tmp_path / "other")
    other.db.term, other.db.epoch = 2, 22
    store = archive.DirectoryStore(tmp_path / "archive")
    archiver = Archiver(node.db, store, EVERY_ROUND)
    archiver.node_id = 7
    user = node.signup("carol")
    node.post(user, "only on the old history")
    asyncio.run(archiver.archive_once())
    # The node installs another history (as after a divergence): its log no longer continues the chain.
    other.signup("dave")
    path, _ = snapshot.take_to_serve(other.db.path)
    prepared = snapshot.prepare_snapshot(node.db.data_dir, path, compression="zstd", expected_sha256=None, max_schema_version=99)
    path.unlink()
    snapshot.install(node.db, prepared)
    asyncio.run(archiver.archive_once())
    chains = archive.read_chains(store, 7)
    assert [c.number for c in chains] == [1, 2]
    plan = restoring.plan_archive(store.root, to_lsn=None, to_time=None, node_id=7)
    restoring.restore(plan, tmp_path / "restored")
    assert restored_checksum(tmp_path / "restored")[0] == other.db.checksum()
    node.db.close()
    other.db.close()


def test_falling_behind_the_retained_log_is_a_counted_gap_and_a_new_chain(tmp_path):
    node = leader(tmp_path / "leader", retention=Retention(max_entries=10, max_bytes=1 << 30))
    store = archive.DirectoryStore(tmp_path / "archive")
    archiver = Archiver(node.db, store, EVERY_ROUND)
    archiver.node_id = 3
    user = node.signup("erin")
    asyncio.run(archiver.archive_once())
    for i in range(200):  # the log keeps 10 entries (trimmed every 64 writes)
        node.post(user, f"post {i}")
    asyncio.run(archiver.archive_once())
    assert archiver.stats.gaps == 1
    assert [c.number for c in archive.read_chains(store, 3)] == [1, 2]
    assert archiver.stats.archived_lsn == node.db.last_lsn
    node.db.close()


class FlakyStore(archive.DirectoryStore):
    """A directory archive that fails every write while ``down``."""

    down = True

    def _put(self, name, write):
        if self.down:
            raise OSError(f"archive unreachable (writing {name})")
        super()._put(name, write)


async def test_an_unreachable_archive_never_fails_a_write_and_is_caught_up_later(tmp_path):
    node = leader(tmp_path / "leader")
    store = FlakyStore(tmp_path / "archive")
    archiver = Archiver(node.db, store, EVERY_ROUND)
    await archiver.start(9)
    user = node.signup("frank")
    for i in range(20):
        node.post(user, f"post {i}")  # every write commits while the archive is down
    deadline = time.monotonic() + 10
    while archiver.stats.failures < 2:
        assert time.monotonic() < deadline, "the archiver never tried"
        await asyncio.sleep(0.02)
    assert archiver.lag == node.db.last_lsn
    store.down = False
    while archiver.stats.archived_lsn < node.db.last_lsn:
        assert time.monotonic() < deadline, f"not caught up: {archiver.stats}"
        await asyncio.sleep(0.02)
    await archiver.stop()
    node.db.close()


def test_retention_keeps_the_window_and_the_snapshot_it_starts_from():
    def snap(chain, lsn, when):
        return archive.SnapshotRecord(f"{chain}/snapshot-{lsn:020d}.zst", lsn, 1, "zstd", "", 1, 1, 1, when, when)

    old = archive.Chain(1, "node-1/chain-000001", 1, [snap("node-1/chain-000001", 1, "2026-01-01T00:00:00.000Z")])
    old.segments = [archive.SegmentRecord("node-1/chain-000001/entries-1-9", 2, 9)]
    new = archive.Chain(1, "node-1/chain-000002", 2)
    new.snapshots = [snap(new.name, 10, "2026-01-02T00:00:00.000Z"), snap(new.name, 50, "2026-01-05T00:00:00.000Z")]
    new.snapshots.append(snap(new.name, 90, "2026-01-09T00:00:00.000Z"))
    new.segments = [archive.SegmentRecord(f"{new.name}/e{a}", a, b) for a, b in ((11, 50), (51, 60), (61, 95))]
    last = {old.name: "2026-01-01T10:00:00.000Z", new.name: "2026-01-09T10:00:00.000Z"}
    doomed = set(archive.expired([old, new], "2026-01-06T00:00:00.000Z", last))
    assert {s.name for s in old.snapshots} <= doomed and "node-1/chain-000001/entries-1-9" in doomed
    assert new.snapshots[0].name in doomed and f"{new.name}/e11" in doomed  # before the window's base snapshot (LSN 50)
    assert new.snapshots[1].name not in doomed and f"{new.name}/e51" not in doomed and new.snapshots[2].name not in doomed


def test_the_next_generation_outranks_every_term_of_the_last():
    assert restoring.next_generation_term(0) == 2**32
    assert restoring.next_generation_term(2**32 - 1) == 2**32
    assert restoring.next_generation_term(2**32 + 7) == 2 * 2**32
    with pytest.raises(restoring.RestoreError):
        restoring.next_generation_term(2**62)
