"""A consistent image of the live database read page by page while writes go on, and its reassembly on
another node: the streamed snapshot's store side (docs/cluster.md, "The streamed snapshot").

``PageImage.open`` holds SQLite's write lock for a few milliseconds: long enough to start a read
transaction (whose snapshot then pins the database as it was at that moment) and to copy the WAL frames
that snapshot needs (the latest committed version of each page they hold, normally a few megabytes) to
a file beside the database. After that, writers go on. Every page of the image is then either one of
those copies or the page as it is in the main file: while the read transaction is open, SQLite never
checkpoints a frame newer than it into the main file, so those pages do not change underneath. The image
is a whole SQLite file in rollback-journal mode, with nothing to replay.

``PageFile`` writes the pages of a received image at their offsets beside the database, and ``check``
gives it the cheap structural check a file whose every byte was authenticated needs (no second full
``integrity_check``: the leader vouches for what it serves, and each chunk's signature for the transfer).
The functions here are synchronous and thread-safe: the caller runs them in a worker thread.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import struct
import uuid
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from talentnest.errors import SnapshotError
from talentnest.store._db import DB_FILENAME
from talentnest.store.snapshot import (
    PARTIAL_PREFIXES,
    REQUIRED_TABLES,
    SQLITE_MAGIC,
    SnapshotInfo,
    _log_position,
    log_position_of,
    transfer_file,
)

WAL_MAGIC = (0x377F0682, 0x377F0683)
WAL_HEADER = struct.Struct(">IIIIIIII")  # magic, version, page size, checkpoint seq, salt-1, salt-2, checksums
FRAME_HEADER = struct.Struct(">IIIIII")  # page number, database size after a commit (0 otherwise), salts, checksums
WAL_MODE, ROLLBACK_MODE = 2, 1  # header bytes 18 and 19 of an SQLite file
LOCK_BUSY_MS = 5000


@dataclass(frozen=True)
class ImageInfo:
    """What a page image holds: the LSN and term of its last entry, its schema version, its page size and
    page count."""

    lsn: int
    term: int
    schema_version: int
    page_size: int
    page_count: int

    @property
    def raw_bytes(self) -> int:
        return self.page_size * self.page_count


def _page_size(header: bytes) -> int:
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


class PageImage:
    """The database at ``db_path`` as it was when ``open`` returned, readable page by page until ``close``."""

    def __init__(self, db_path: Path, reader: sqlite3.Connection, info: ImageInfo, frames: dict[int, int], copy: Path | None):
        self.db_path = Path(db_path)
        self.info = info
        self._reader = reader
        self._frames = frames  # page number -> its index in the copy of the WAL frames
        self._numbers = sorted(frames)
        self._copy_path = copy
        self._db_fd = os.open(self.db_path, os.O_RDONLY)
        self._copy_fd = os.open(copy, os.O_RDONLY) if copy is not None else None
        self._closed = False

    @classmethod
    def open(cls, db_path: Path) -> PageImage:
        """Pin the database as it is now (briefly taking SQLite's write lock, waiting up to 5 s for a writer
        in progress). Raises SnapshotError when it cannot (not in WAL mode, no database, locked too long)."""
        db_path = Path(db_path)
        if not db_path.exists():
            raise SnapshotError(f"no database at {db_path}")
        uri = db_path.resolve().as_uri()
        copy: Path | None = None
        lock = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        reader = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        try:
            lock.execute(f"PRAGMA busy_timeout={LOCK_BUSY_MS}")
            reader.execute(f"PRAGMA busy_timeout={LOCK_BUSY_MS}")
            if lock.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                raise SnapshotError(f"{db_path} is not in WAL mode; a page image needs it")
            lock.execute("BEGIN IMMEDIATE")
            try:
                reader.execute("BEGIN")
                lsn, term, schema_version = log_position_of(reader)
                with db_path.open("rb") as main:
                    header = main.read(100)
                copy, frames, wal_pages, wal_page_size = _copy_wal(db_path)
            finally:
                lock.execute("ROLLBACK")
            page_size = wal_page_size or _page_size(header)
            page_count = wal_pages or int.from_bytes(header[28:32], "big") or os.path.getsize(db_path) // page_size
            info = ImageInfo(lsn, term, schema_version, page_size, page_count)
            return cls(db_path, reader, info, frames, copy)
        except (sqlite3.Error, OSError) as exc:
            reader.close()
            if copy is not None:
                copy.unlink(missing_ok=True)
            raise SnapshotError(f"cannot pin {db_path} for a snapshot: {exc}") from exc
        except BaseException:
            reader.close()
            if copy is not None:
                copy.unlink(missing_ok=True)
            raise
        finally:
            lock.close()

    def read(self, first: int, count: int) -> bytearray:
        """Pages ``first`` to ``first + count - 1`` (numbered from 1), as one bytes; page 1's header says
        rollback-journal mode and the image's size, so the result of all pages is a file of its own."""
        if self._closed:
            raise SnapshotError("the page image is closed")
        size, last = self.info.page_size, min(self.info.page_count, first + count - 1)
        if last < first:
            return bytearray()
        # One read of the main file for the whole range, then the pages the WAL copy holds on top.
        wanted = (last - first + 1) * size
        out = bytearray(wanted)
        got = _read_into(self._db_fd, out, (first - 1) * size)
        in_file = got // size  # pages past the main file's end must all be in the WAL copy
        if got % size:
            out[in_file * size : got] = bytes(got - in_file * size)
        start = bisect.bisect_left(self._numbers, first)
        overlaid = self._numbers[start : bisect.bisect_right(self._numbers, last)]
        for number in overlaid:
            page = os.pread(self._copy_fd, size, self._frames[number] * size)
            if len(page) != size:
                raise SnapshotError(f"the WAL copy of page {number} is short")
            out[(number - first) * size : (number - first + 1) * size] = page
        missing = (last - first + 1 - in_file) - sum(1 for n in overlaid if n - first >= in_file)
        if missing:
            raise SnapshotError(f"{missing} of pages {first}-{last} are neither in {self.db_path} nor in its WAL")
        if first == 1:
            out[:size] = _as_rollback_header(bytes(out[:size]), self.info.page_count)
        return out

    def close(self) -> None:
        """End the read transaction (writers' checkpoints may go on) and remove the copy. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with suppress(sqlite3.Error):
            self._reader.close()
        os.close(self._db_fd)
        if self._copy_fd is not None:
            os.close(self._copy_fd)
        if self._copy_path is not None:
            self._copy_path.unlink(missing_ok=True)


def _read_into(fd: int, buffer: bytearray, offset: int) -> int:
    """Fill ``buffer`` from ``fd`` at ``offset`` (straight into it: one copy) until it is full or the file
    ends; the bytes read."""
    view, got = memoryview(buffer), 0
    while got < len(buffer):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def _copy_wal(db_path: Path) -> tuple[Path | None, dict[int, int], int, int]:
    """Under the write lock: copy the latest committed version of every page the WAL holds to a file beside
    the database. Returns (the copy, page number -> index in it, the database's page count after the last
    commit, the WAL's page size); zeros when the WAL holds no committed frame.

    The valid frames are those after the header whose salts match the header's (a frame left from before
    the WAL last restarted has the old salts); the last of them that ends a commit is where the database
    is. Frames after it belong to no committed transaction (nobody writes: we hold the lock)."""
    wal = Path(f"{db_path}-wal")
    try:
        handle = wal.open("rb")
    except FileNotFoundError:
        return None, {}, 0, 0
    with handle:
        head = handle.read(WAL_HEADER.size)
        if len(head) < WAL_HEADER.size:
            return None, {}, 0, 0
        magic, _version, page_size, _seq, salt1, salt2, _c1, _c2 = WAL_HEADER.unpack(head)
        if magic not in WAL_MAGIC or page_size < 512 or page_size & (page_size - 1):
            return None, {}, 0, 0
        frames: list[tuple[int, int, int]] = []  # (page number, offset of its data, database size if a commit)
        offset = WAL_HEADER.size
        while True:
            frame = handle.read(FRAME_HEADER.size)
            if len(frame) < FRAME_HEADER.size:
                break
            number, size_after, frame_salt1, frame_salt2, _c1, _c2 = FRAME_HEADER.unpack(frame)
            if (frame_salt1, frame_salt2) != (salt1, salt2):
                break
            frames.append((number, offset + FRAME_HEADER.size, size_after))
            offset += FRAME_HEADER.size + page_size
            handle.seek(offset)
        last_commit = max((i for i, (_, _, size_after) in enumerate(frames) if size_after), default=None)
        if last_commit is None:
            return None, {}, 0, 0
        pages = frames[last_commit][2]
        committed = {number: data for number, data, _ in frames[: last_commit + 1]}  # the newest version wins
        copy = transfer_file(db_path.parent, "serving-wal-pages")
        index: dict[int, int] = {}
        with copy.open("wb") as out:
            for position, (number, data_offset) in enumerate(sorted(committed.items())):
                handle.seek(data_offset)
                out.write(handle.read(page_size))
                index[number] = position
        return copy, {n: i for n, i in index.items() if n <= pages}, pages, page_size


def _as_rollback_header(page: bytes, page_count: int) -> bytes:
    """Page 1 of an image: rollback-journal mode (no WAL to look for), and a valid in-header size."""
    header = bytearray(page)
    if header[:16] != SQLITE_MAGIC:
        raise SnapshotError("page 1 is not an SQLite header")
    header[18] = header[19] = ROLLBACK_MODE
    header[28:32] = page_count.to_bytes(4, "big")
    header[92:96] = header[24:28]  # version-valid-for = change counter: the in-header size is valid
    return bytes(header)


# --- receiving -----------------------------------------------------------------------------------


class PageFile:
    """A received image being written beside the database, chunk by chunk at its offset; removed by
    ``discard``, or at the node's next start if the node dies first."""

    def __init__(self, data_dir: Path, page_size: int, page_count: int):
        self.path = Path(data_dir) / f"{PARTIAL_PREFIXES[0]}{uuid.uuid4().hex}"
        self.page_size = page_size
        self.page_count = page_count
        self.written = 0  # raw bytes written so far
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, offset: int, data: bytes) -> None:
        """Write ``data`` (whole pages) at byte ``offset``; chunks arrive in order."""
        if offset % self.page_size or len(data) % self.page_size or offset + len(data) > self.page_size * self.page_count:
            raise SnapshotError(f"a chunk of {len(data)} bytes at {offset} does not fit the image's pages")
        os.pwrite(self._fd, data, offset)
        # max: a chunk written again after a resume (its first write was cut off) must not move it back.
        self.written = max(self.written, offset + len(data))

    def finish(self, max_schema_version: int) -> tuple[Path, SnapshotInfo]:
        """Make the file durable and give it the cheap check (``check``); SnapshotError if it fails."""
        if self.written != self.page_size * self.page_count:
            raise SnapshotError(f"the image ended at byte {self.written} of {self.page_size * self.page_count}")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        lsn, term, version = check(self.path, max_schema_version, page_size=self.page_size, page_count=self.page_count)
        raw = self.page_size * self.page_count
        return self.path, SnapshotInfo(lsn, term, version, raw, raw, "pages", "")

    def discard(self) -> None:
        if self._fd >= 0:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def check(path: Path, max_schema_version: int, *, page_size: int, page_count: int) -> tuple[int, int, int]:
    """The structural check of a received image whose bytes are authenticated: an SQLite header in
    rollback mode with the page size and count it was announced with, a file of exactly that size, a
    schema SQLite reads, the store's tables, and a schema version this node knows. Reads a few pages,
    whatever the size. (LSN, term, schema version) of the file; SnapshotError otherwise."""
    with Path(path).open("rb") as f:
        header = f.read(100)
    if header[:16] != SQLITE_MAGIC:
        raise SnapshotError("snapshot is not an SQLite database")
    if _page_size(header) != page_size or int.from_bytes(header[28:32], "big") != page_count:
        raise SnapshotError("snapshot's header does not match the page size and count it was announced with")
    if header[18] != ROLLBACK_MODE or header[19] != ROLLBACK_MODE:
        raise SnapshotError("snapshot is not in rollback-journal mode")
    if os.path.getsize(path) != page_size * page_count:
        raise SnapshotError(f"snapshot is {os.path.getsize(path)} bytes, not {page_size * page_count}")
    try:
        with closing(sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise SnapshotError(f"snapshot lacks the store's tables {missing}")
        lsn, term, version = _log_position(Path(path))
    except sqlite3.Error as exc:
        raise SnapshotError(f"snapshot does not open: {exc}") from exc
    if version > max_schema_version:
        raise SnapshotError(
            f"snapshot has schema version {version}, newer than this node's {max_schema_version}: upgrade this node"
        )
    return lsn, term, version


__all__ = ["DB_FILENAME", "ImageInfo", "PageFile", "PageImage", "check"]
