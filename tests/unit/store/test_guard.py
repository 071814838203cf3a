"""The data directory guarded: one process at a time; a damaged file set aside at start, never deleted;
storage failures told apart from bad statements."""

from __future__ import annotations

import sqlite3

import pytest

from talentnest.errors import StorageFailure
from talentnest.store import guard, storage_failure
from talentnest.store.schema import product_database


def test_a_second_holder_of_a_data_directory_is_refused_naming_it(tmp_path):
    first = guard.DataDirLock(tmp_path)
    first.acquire(owner="node at 10.0.2.1:3000")
    with pytest.raises(guard.DataDirInUse, match=rf"DATA_DIR {tmp_path} is in use by pid \d+ \(node at 10.0.2.1:3000\)"):
        guard.DataDirLock(tmp_path).acquire()
    first.release()
    again = guard.DataDirLock(tmp_path)
    again.acquire()
    again.release()


def make_db(path):
    db = product_database(path)
    db.open()
    with db.write() as conn:
        for n in range(300):
            conn.execute(
                "INSERT INTO users(username, email, name, bio, password_hash, created_at, updated_at) "
                "VALUES (?, ?, 'n', ?, 'x', 't', 't')",
                (f"u{n}", f"u{n}@x", "b" * 500),
            )
    db.close()


def test_a_sound_database_passes_the_start_up_check(tmp_path):
    make_db(tmp_path)
    assert guard.check_at_start(tmp_path) is None
    assert guard.check_at_start(tmp_path, full=True) is None
    assert guard.needs_sync(tmp_path) is None


@pytest.mark.parametrize(("offset", "what"), [(0, "header"), (40_000, "middle")])
def test_a_damaged_database_is_set_aside_kept_and_marked_for_a_resync(tmp_path, offset, what):
    make_db(tmp_path)
    path = tmp_path / "talentnest.db"
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[offset : offset + 4096] = b"\xde\xad" * 2048
    path.write_bytes(bytes(damaged))
    reason = guard.check_at_start(tmp_path)
    assert reason, f"damage in the {what} not found"
    assert not path.exists()
    kept = list((tmp_path / "damaged").glob("*/talentnest.db"))
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(damaged), "the damaged file is kept as it was"
    assert guard.needs_sync(tmp_path)
    guard.synced(tmp_path)
    assert guard.needs_sync(tmp_path) is None


def test_a_full_database_is_a_storage_failure_and_a_bad_statement_is_not(tmp_path):
    db = product_database(tmp_path)
    db.open()
    seen: list[StorageFailure] = []
    db.add_failure_listener(seen.append)
    try:
        pages = db.conn.execute("PRAGMA page_count").fetchone()[0]
        db.conn.execute(f"PRAGMA max_page_count={pages + 1}")  # SQLite's own "database or disk is full"
        with pytest.raises(StorageFailure, match="the disk is full"), db.write() as conn:
            for n in range(200):
                conn.execute(
                    "INSERT INTO users(username, email, name, bio, password_hash, created_at, updated_at) "
                    "VALUES (?, ?, 'n', ?, 'x', 't', 't')",
                    (f"u{n}", f"u{n}@x", "b" * 2000),
                )
        assert len(seen) == 1 and not seen[0].damaged
        assert db.last_lsn == 0, "nothing was committed"
        with pytest.raises(StorageFailure):
            db.check_writable()
        db.conn.execute("PRAGMA max_page_count=1073741823")
        db.check_writable()
        with pytest.raises(sqlite3.IntegrityError), db.write() as conn:
            conn.execute("INSERT INTO users(username) VALUES (NULL)")
        assert storage_failure(sqlite3.IntegrityError("NOT NULL")) is None
        assert len(seen) == 2, "only the failed writability check was reported since"
    finally:
        db.close()
