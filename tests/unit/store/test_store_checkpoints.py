"""Checkpoints off the writer's loop: with reader threads the WAL is copied back by a thread, the writer only
finishes the few pages written meanwhile, and the WAL keeps restarting under writes that never pause."""

from __future__ import annotations

import time

from talentnest.store._db import CHECKPOINT_FRAMES
from talentnest.store.schema import product_database

WRITES_AT_MOST = 20_000
PATIENCE = 60.0  # seconds: the reader thread may be slow to get a core on a busy machine


def _write_until_restarted(node, times: int) -> tuple[int, int]:
    """Post (about a page each) until the WAL has restarted ``times`` times; (restarts, most pages seen)."""
    author = node.signup("writer")
    restarts, most, before = 0, 0, 0
    deadline = time.monotonic() + PATIENCE
    for n in range(WRITES_AT_MOST):
        node.post(author, f"post {n} " + "x" * 900)
        frames, _ = node.db.wal_frames()
        restarts += frames < before
        most, before = max(most, frames), frames
        if restarts >= times or time.monotonic() > deadline:
            break
    return restarts, most


def test_the_wal_keeps_restarting_under_writes_that_never_pause(nodes):
    node = nodes("leader")
    assert node.db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0

    restarts, most = _write_until_restarted(node, times=4)

    assert restarts >= 4, f"the WAL restarted {restarts} times (it reached {most} pages)"
    # The bulk of every checkpoint ran in a reader thread; the writer only finished each one.
    assert node.db._readers.checkpoints >= 4
    assert node.db.inline_checkpoints <= node.db._readers.checkpoints


def test_without_reader_threads_sqlite_checkpoints_by_itself_as_before(tmp_path):
    db = product_database(tmp_path / "inline", readers=0).open()
    try:
        assert db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == CHECKPOINT_FRAMES
        with db.write() as conn:
            for n in range(3 * CHECKPOINT_FRAMES):
                conn.execute("INSERT INTO _tn_meta(key, value) VALUES (?, ?)", (f"k{n}", "v" * 900))
        assert db._readers.checkpoints == 0 and db.inline_checkpoints == 0
    finally:
        db.close()
