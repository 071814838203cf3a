"""A node's data directory, guarded: one process at a time (an exclusive lock held for the node's
life), and a database checked when the node starts, set aside (kept, never deleted) when damaged."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from talentnest.store._db import DB_FILENAME

log = logging.getLogger("talentnest.store")

LOCK_FILENAME = "talentnest.lock"
DAMAGED_DIR = "damaged"
# Present while this node's data was set aside and it has not yet installed a peer's snapshot: it
# must not lead (it would lead a cluster from an empty database). Removed by the next sync.
NEEDS_SYNC_FILENAME = "needs-sync"
QUICK_CHECK_MAX_BYTES = 2 * 1024**3  # above this a start-up check reads the header and schema only
SQLITE_MAGIC = b"SQLite format 3\x00"


class DataDirInUse(RuntimeError):
    """Another process holds this data directory."""


class DataDirLock:
    """``flock`` on ``DATA_DIR/talentnest.lock``; the file says which process holds it."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self, *, owner: str = "") -> None:
        """Hold the lock, or raise DataDirInUse naming the directory and its holder."""
        if self._fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise DataDirInUse(
                f"DATA_DIR {self.data_dir} is in use by {holder}; one node process per data directory "
                "(stop it first, or give this node its own DATA_DIR)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}{f' ({owner})' if owner else ''}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def check_at_start(data_dir: Path, *, full: bool = False) -> str | None:
    """Check the database in ``data_dir`` before it opens; when damaged, set it aside and say why.

    ``quick`` (the default) reads the header and the schema, and runs ``PRAGMA quick_check`` on files
    up to 2 GiB; ``full`` runs ``PRAGMA integrity_check``. Returns the reason it was set aside, or None.
    """
    path = Path(data_dir) / DB_FILENAME
    if not path.exists():
        return None
    problem = _problem(path, full=full)
    if problem is None:
        return None
    set_aside(Path(data_dir), problem)
    return problem


def _problem(path: Path, *, full: bool) -> str | None:
    try:
        with path.open("rb") as f:
            if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                return "its header is not an SQLite database's"
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as conn:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            if not full and path.stat().st_size > QUICK_CHECK_MAX_BYTES:
                return None
            pragma = "integrity_check" if full else "quick_check"
            problems = [r[0] for r in conn.execute(f"PRAGMA {pragma}(5)")]
    except sqlite3.DatabaseError as exc:
        return f"it cannot be read ({exc})"
    return None if problems == ["ok"] else f"{pragma} found: {'; '.join(problems[:3])}"


def set_aside(data_dir: Path, why: str) -> Path:
    """Move the database and its WAL out of the way into ``DATA_DIR/damaged/`` (kept for whoever
    wants to look), and mark the node as needing a sync before it may lead. The new place."""
    data_dir = Path(data_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = data_dir / DAMAGED_DIR / f"{DB_FILENAME}-{stamp}"
    target.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        source = data_dir / f"{DB_FILENAME}{suffix}"
        if source.exists():
            os.replace(source, target / source.name)
    (data_dir / NEEDS_SYNC_FILENAME).write_text(f"{why}\nset aside to {target}\n")
    log.error("store: the database in %s is damaged (%s); moved it to %s and will resync from a peer", data_dir, why, target)
    return target


def needs_sync(data_dir: Path) -> str | None:
    """Why this node's data was set aside, while it has not synced from a peer since; else None."""
    marker = Path(data_dir) / NEEDS_SYNC_FILENAME
    try:
        return marker.read_text().splitlines()[0] or "its data was set aside"
    except (FileNotFoundError, IndexError):
        return None


def synced(data_dir: Path) -> None:
    """A peer's snapshot is installed: the node may lead again."""
    (Path(data_dir) / NEEDS_SYNC_FILENAME).unlink(missing_ok=True)
