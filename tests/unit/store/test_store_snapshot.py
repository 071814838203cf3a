"""Snapshots: consistent while writes go on, installed atomically, refused when damaged."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import threading
import time

import pytest

from talentnest.errors import SnapshotError
from talentnest.store.schema import MIGRATIONS
from talentnest.store.snapshot import (
    SnapshotDownload,
    available_compressions,
    install,
    iter_file,
    prepare_snapshot,
    take_snapshot,
    write_chunks,
)

COMPRESSIONS = available_compressions()


def prepare(node, source, info, **overrides):
    kwargs = {"compression": info.compression, "expected_sha256": info.sha256, "max_schema_version": node.db.schema_version}
    kwargs.update(overrides)
    return prepare_snapshot(node.db.data_dir, source, **kwargs)


def seeded(nodes, name="leader", posts=30):
    node = nodes(name)
    node.db.term = 2
    ada, bob = node.signup("ada"), node.signup("bob")
    for n in range(posts):
        post = node.post(ada if n % 2 else bob, f"post {n} " + "y" * 300)
        if n % 3 == 0:
            node.post_service.like(ada, post)
    return node


def test_zstd_is_preferred_and_gzip_is_always_there():
    assert COMPRESSIONS[-1] == "gzip"
    assert COMPRESSIONS[0] == "zstd", "zstandard is a declared dependency"


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_snapshot_installs_on_an_empty_node_and_the_log_continues(nodes, tmp_path, compression):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap", compression=compression)
    assert (info.lsn, info.term, info.compression) == (leader.db.last_lsn, 2, compression)
    assert info.sha256 == hashlib.sha256((tmp_path / "snap").read_bytes()).hexdigest()
    assert info.compressed_bytes == (tmp_path / "snap").stat().st_size < info.raw_bytes
    for n in range(5):
        leader.post(1, f"after the snapshot {n}")

    empty = nodes("new")
    installed = install(empty.db, prepare(empty, tmp_path / "snap", info))
    assert installed == info
    assert (empty.db.last_lsn, empty.db.last_term) == (info.lsn, 2)
    result = empty.db.apply(leader.db.entries_after(empty.db.last_lsn))
    assert (result.applied, result.gap) == (5, False)
    assert empty.db.checksum() == leader.db.checksum()
    assert empty.db.term_history() == leader.db.term_history()
    assert sorted(p.name for p in empty.db.data_dir.iterdir()) == ["talentnest.db", "talentnest.db-shm", "talentnest.db-wal"]


def test_snapshot_taken_while_another_thread_writes_is_consistent(nodes, tmp_path):
    leader = seeded(nodes, posts=400)
    stop = threading.Event()
    lsn_when_started = threading.Event()
    failures: list[BaseException] = []

    def keep_writing() -> None:
        n = 0
        try:
            while not stop.is_set():
                leader.post(1, f"concurrent {n} " + "z" * 200)
                n += 1
                lsn_when_started.set()
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert lsn_when_started.wait(timeout=60)
        first = leader.db.last_lsn
        info = take_snapshot(leader.db.path, tmp_path / "snap")
        after = leader.db.last_lsn
        deadline = time.monotonic() + 60
        while leader.db.last_lsn <= info.lsn and time.monotonic() < deadline and not failures:
            lsn_when_started.clear()
            lsn_when_started.wait(timeout=1)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not failures
    assert first <= info.lsn <= after
    assert leader.db.last_lsn > info.lsn, "the writer went on past the snapshot's LSN"

    # The snapshot holds exactly the data of its LSN: equal to a replay of the log up to there.
    reference = nodes("reference")
    entries = leader.all_entries()
    reference.db.apply([e for e in entries if e.lsn <= info.lsn])
    fresh = nodes("fresh")
    install(fresh.db, prepare(fresh, tmp_path / "snap", info))
    assert fresh.db.checksum() == reference.db.checksum()
    fresh.catch_up_from(leader)
    assert fresh.db.checksum() == leader.db.checksum()


def test_installing_over_a_node_with_data_replaces_it_and_keeps_local_metadata(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    stale = nodes("stale")
    stale.signup("zed")
    stale.db.set_meta("voted_for", "513")
    stale.db.conn.execute("PRAGMA wal_autocheckpoint=0")
    stale.post(1, "only in the WAL")

    install(stale.db, prepare(stale, tmp_path / "snap", info))
    assert stale.db.checksum() == leader.db.checksum()
    assert stale.db.get_meta("voted_for") == "513"
    assert stale.db.get_meta("schema_version") == str(len(MIGRATIONS))
    stale.db.term = 3
    assert stale.post(1, "writes go on") > 0


def damage_truncate(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def damage_flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    return bytes(flipped)


def damage_append(data: bytes) -> bytes:
    return data + b"trailing"


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("damage", [damage_truncate, damage_flip, damage_append])
@pytest.mark.parametrize("with_sha", [True, False])
def test_a_damaged_snapshot_is_refused_and_the_old_database_is_intact(nodes, tmp_path, compression, damage, with_sha):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap", compression=compression)
    (tmp_path / "snap").write_bytes(damage((tmp_path / "snap").read_bytes()))
    node = seeded(nodes, "node", posts=3)
    before = node.db.checksum()

    with pytest.raises(SnapshotError):
        prepare(node, tmp_path / "snap", info, expected_sha256=info.sha256 if with_sha else None)

    assert node.db.checksum() == before
    assert sorted(p.name for p in node.db.data_dir.iterdir()) == ["talentnest.db", "talentnest.db-shm", "talentnest.db-wal"]
    assert node.post(1, "still usable") > 0


def test_wrong_sha_is_refused(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    node = nodes("node")
    with pytest.raises(SnapshotError, match="SHA-256"):
        prepare(node, tmp_path / "snap", info, expected_sha256="0" * 64)
    assert node.db.last_lsn == 0


def test_a_newer_schema_or_a_foreign_file_is_refused(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    node = nodes("node")
    with pytest.raises(SnapshotError, match="schema version"):
        prepare(node, tmp_path / "snap", info, max_schema_version=0)

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t(x)")
    conn.close()
    (tmp_path / "foreign.gz").write_bytes(gzip.compress(foreign.read_bytes()))
    with pytest.raises(SnapshotError, match="store's tables"):
        prepare(node, tmp_path / "foreign.gz", info, compression="gzip", expected_sha256=None)
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"not a database at all" * 100))
    with pytest.raises(SnapshotError, match="not an SQLite"):
        prepare(node, tmp_path / "text.gz", info, compression="gzip", expected_sha256=None)
    with pytest.raises(SnapshotError, match="not available"):
        prepare(node, tmp_path / "snap", info, compression="lz4")


def scribble_page_header(data: bytearray) -> None:
    for offset in range(4096 * 3, 4096 * 3 + 200):
        data[offset] = 0xFF


def edit_one_copy_of_an_indexed_value(data: bytearray) -> None:
    """The row and its index entry disagree: a file SQLite reads, but integrity_check refuses."""
    at = data.find(b"bob@example.org")
    data[at] = ord("c")


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [(scribble_page_header, "malformed|integrity_check"), (edit_one_copy_of_an_indexed_value, "integrity_check")],
)
def test_a_corrupt_database_inside_an_intact_stream_is_refused(nodes, tmp_path, corrupt, message):
    leader = seeded(nodes, posts=60)
    raw = tmp_path / "raw.db"
    with sqlite3.connect(raw) as target:
        leader.db.conn.backup(target)
    target.close()
    data = bytearray(raw.read_bytes())
    corrupt(data)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(bytes(data)))
    node = nodes("node")
    with pytest.raises(SnapshotError, match=message):
        prepare_snapshot(node.db.data_dir, tmp_path / "bad.gz", compression="gzip", expected_sha256=None, max_schema_version=1)
    assert sorted(p.name for p in node.db.data_dir.iterdir()) == ["talentnest.db", "talentnest.db-shm", "talentnest.db-wal"]


def test_install_refuses_while_another_connection_holds_the_file(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    node = seeded(nodes, "node", posts=2)
    before = node.db.checksum()
    prepared = prepare(node, tmp_path / "snap", info)
    reader = sqlite3.connect(node.db.path)
    reader.execute("SELECT COUNT(*) FROM users").fetchone()
    try:
        with pytest.raises(SnapshotError, match="another connection"):
            install(node.db, prepared)
    finally:
        reader.close()
    assert node.db.checksum() == before
    assert node.post(1, "still writable") > 0
    install(node.db, prepared)
    assert node.db.checksum() == leader.db.checksum()


def test_a_snapshot_travels_in_chunks(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    node = nodes("node")
    path, sha256, size = write_chunks(node.db.data_dir, iter_file(tmp_path / "snap", chunk_size=1000))
    assert (sha256, size) == (info.sha256, info.compressed_bytes)
    install(node.db, prepare(node, path, info))
    assert node.db.checksum() == leader.db.checksum()

    download = SnapshotDownload(node.db.data_dir)
    download.write(b"partial")
    download.discard()
    abandoned = SnapshotDownload(node.db.data_dir)
    abandoned.write(b"left by a crash")
    node.db.close()
    node.db.open()  # a node's start removes leftovers (remove_partial_files); a reopen keeps them
    assert abandoned.path.exists()
    fresh = nodes("node")
    assert not abandoned.path.exists()
    assert fresh.db.checksum() == leader.db.checksum()


def test_a_snapshot_of_an_older_schema_is_migrated_as_it_is_installed(nodes, tmp_path):
    leader = seeded(nodes)
    info = take_snapshot(leader.db.path, tmp_path / "snap")
    newer_schema = [*MIGRATIONS, (len(MIGRATIONS) + 1, "CREATE TABLE badges (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")]
    newer = nodes("newer", migrations=newer_schema)
    install(newer.db, prepare(newer, tmp_path / "snap", info))
    assert newer.db.get_meta("schema_version") == str(len(newer_schema))
    assert "badges" in newer.db.replicated_tables
    assert newer.db.last_lsn == info.lsn
