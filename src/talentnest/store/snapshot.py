"""Snapshots of a node's database: take one while writes go on, check one, and ship it in chunks.

``take_snapshot`` copies the live file with SQLite's online backup API on its own connection
(WAL lets the owner's writes go on meanwhile), then compresses the copy with zstandard (frame
content checksum on) or, when zstandard is not importable, gzip. Its LSN and term are read from
the copy's own ``_tn_log`` and ``_tn_terms``, so they match its data exactly.

``SnapshotDownload`` receives one in chunks beside the database; ``prepare_snapshot`` unpacks it
there and verifies it; ``install`` swaps it in (the quick, atomic part, on the owner's thread). The
slow functions here are synchronous and thread-safe: the caller runs them in a worker thread.
Snapshots being made for another node and being received go in ``DATA_DIR/snapshots/``; the one
being unpacked goes beside the database (it is renamed over it) with the ``incoming`` prefix. What an
interrupted transfer leaves in either place is removed at the node's next start (``remove_partial_files``).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import sqlite3
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import closing, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from talentnest.errors import SnapshotError
from talentnest.store._db import DB_FILENAME, SHARED_META, Database

try:
    import zstandard
except ImportError:  # pragma: no cover - zstandard is a declared dependency
    zstandard = None

log = logging.getLogger("talentnest.store")

# Beside the database: a snapshot being unpacked (renamed over the database once verified).
PARTIAL_PREFIXES = (f"{DB_FILENAME}.incoming-",)
# Snapshots being made for another node, or received from one.
TRANSFER_DIR = "snapshots"
CHUNK = 1024 * 1024
SQLITE_MAGIC = b"SQLite format 3\x00"
REQUIRED_TABLES = ("_tn_log", "_tn_terms", "_tn_meta")
ZSTD_LEVEL = 3
# What a damaged or truncated snapshot raises while it is unpacked and opened.
_DAMAGE = (OSError, EOFError, zlib.error, gzip.BadGzipFile, sqlite3.Error, ValueError) + (
    (zstandard.ZstdError,) if zstandard is not None else ()
)


def available_compressions() -> tuple[str, ...]:
    """What this node can read and write, preferred first."""
    return ("zstd", "gzip") if zstandard is not None else ("gzip",)


@dataclass(frozen=True)
class SnapshotInfo:
    """A compressed snapshot: the LSN and term of its last entry, its schema version, the sizes
    of the SQLite file and of the compressed file, how it is compressed, and the SHA-256 of the
    compressed file (what travels)."""

    lsn: int
    term: int
    schema_version: int
    raw_bytes: int
    compressed_bytes: int
    compression: str
    sha256: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PreparedSnapshot:
    """A verified, unpacked SQLite file beside the database, ready for ``install``."""

    path: Path
    info: SnapshotInfo

    def discard(self) -> None:
        """Remove the file when it will not be installed after all."""
        _remove_with_sidecars(self.path)


def remove_partial_files(data_dir: Path) -> list[Path]:
    """Remove what interrupted transfers left beside the database (at a node's start, before it
    opens its database); the paths removed."""
    removed = []
    data_dir = Path(data_dir)
    transfers = data_dir / TRANSFER_DIR
    leftovers = [p for p in data_dir.iterdir() if p.name.startswith(PARTIAL_PREFIXES)] if data_dir.is_dir() else []
    if transfers.is_dir():
        leftovers += [p for p in transfers.iterdir() if p.is_file()]
    for path in leftovers:
        log.warning("store: removing %s, left by an interrupted snapshot transfer", path)
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def transfer_file(data_dir: Path, kind: str) -> Path:
    """A new file in ``DATA_DIR/snapshots/`` for a snapshot being made (``serving``) or received."""
    directory = Path(data_dir) / TRANSFER_DIR
    directory.mkdir(exist_ok=True)
    return directory / f"{kind}-{uuid.uuid4().hex}"


def install(db: Database, prepared: PreparedSnapshot) -> SnapshotInfo:
    """Replace ``db`` by a prepared (verified) snapshot and continue from its LSN; the snapshot keeps
    this node's own metadata. Raises SnapshotError, with the old database left open and unchanged,
    when it cannot be swapped in (the prepared file stays: retry, or ``discard`` it)."""
    _replace_local_meta(prepared.path, db.local_meta())
    db.replace_file(prepared.path)
    log.info("store: installed snapshot at LSN %d term %d", db.last_lsn, db.last_term)
    return prepared.info


def _replace_local_meta(path: Path, local: list[tuple[str, str]]) -> None:
    """Give the snapshot file at ``path`` this node's own metadata instead of its sender's."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        marks = ", ".join("?" for _ in SHARED_META)
        conn.execute(f"DELETE FROM _tn_meta WHERE key NOT IN ({marks})", SHARED_META)
        conn.executemany("INSERT INTO _tn_meta(key, value) VALUES (?, ?)", local)
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot prepare {path} for installation: {exc}") from exc
    finally:
        conn.close()


# --- taking ------------------------------------------------------------------------------------


def take_snapshot(db_path: Path, dest: Path, *, compression: str | None = None) -> SnapshotInfo:
    """Copy the database at ``db_path`` consistently and write it compressed to ``dest``.

    Safe to run in another thread while the owner writes through its own connection. The copy
    is one read transaction of the backup API, so it holds exactly the data of one moment, and
    its log says which LSN that is. ``dest`` is written and fsynced; an uncompressed copy is
    made beside it and removed. Raises SnapshotError (and leaves no ``dest``) on failure.
    """
    compression = compression or available_compressions()[0]
    _check_compression(compression)
    dest = Path(dest)
    raw = dest.with_name(f"{dest.name}.raw-{uuid.uuid4().hex}")
    try:
        _backup(Path(db_path), raw)
        lsn, term, schema_version = _log_position(raw)
        raw_bytes = raw.stat().st_size
        with raw.open("rb") as source, dest.open("wb") as target:
            writer = _HashingWriter(target)
            _compress(source, writer, compression, raw_bytes)
            target.flush()
            os.fsync(target.fileno())
    except (OSError, sqlite3.Error) as exc:
        dest.unlink(missing_ok=True)
        raise SnapshotError(f"cannot take a snapshot of {db_path}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        _remove_with_sidecars(raw)
    return SnapshotInfo(lsn, term, schema_version, raw_bytes, writer.size, compression, writer.digest.hexdigest())


def take_to_serve(db_path: Path) -> tuple[Path, SnapshotInfo]:
    """A snapshot of the database at ``db_path`` in a new file beside it, for another node to fetch
    (the caller removes the file once sent; a crash leaves it to ``remove_partial_files``)."""
    db_path = Path(db_path)
    try:
        dest = transfer_file(db_path.parent, "serving")
    except OSError as exc:
        raise SnapshotError(f"cannot make a snapshot in {db_path.parent / TRANSFER_DIR}: {exc}") from exc
    return dest, take_snapshot(db_path, dest)


def _backup(db_path: Path, raw: Path) -> None:
    if not db_path.exists():
        raise SnapshotError(f"no database at {db_path}")
    with closing(sqlite3.connect(_read_only_uri(db_path), uri=True)) as source:
        source.execute("PRAGMA busy_timeout=5000")
        with closing(sqlite3.connect(raw)) as target:
            # pages=-1: the whole file in one step, i.e. in one read transaction of the
            # source (a multi-step copy would restart whenever the owner writes).
            source.backup(target, pages=-1)
            # The copy must be one self-contained file: no WAL to ship or to forget.
            target.execute("PRAGMA journal_mode=DELETE")


def _log_position(path: Path) -> tuple[int, int, int]:
    """(last LSN, its term, schema version) as the file itself records them."""
    with closing(sqlite3.connect(_read_only_uri(path), uri=True)) as conn:
        return log_position_of(conn)


def log_position_of(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(last LSN, its term, schema version) as the database of ``conn`` records them (in its transaction)."""
    lsn = conn.execute("SELECT COALESCE(MAX(lsn), 0) FROM _tn_log").fetchone()[0]
    row = conn.execute(
        "SELECT term FROM _tn_terms WHERE start_lsn <= ? ORDER BY start_lsn DESC, term DESC LIMIT 1", (lsn,)
    ).fetchone()
    version = conn.execute("SELECT value FROM _tn_meta WHERE key = 'schema_version'").fetchone()
    term = row[0] if row is not None and lsn > 0 else 0
    return lsn, term, int(version[0]) if version is not None else 0


def _compress(source: BinaryIO, target: _HashingWriter, compression: str, size: int) -> None:
    if compression == "zstd":
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)
        cctx.copy_stream(source, target, size=size, read_size=CHUNK, write_size=CHUNK)
    else:
        with gzip.GzipFile(fileobj=target, mode="wb", compresslevel=6, mtime=0) as packed:
            shutil.copyfileobj(source, packed, CHUNK)


# --- receiving ---------------------------------------------------------------------------------


def prepare_snapshot(
    data_dir: Path, source: Path, *, compression: str, expected_sha256: str | None, max_schema_version: int
) -> PreparedSnapshot:
    """Unpack the compressed snapshot ``source`` beside the database in ``data_dir`` and verify it.

    Checks, in order: the SHA-256 of ``source`` when ``expected_sha256`` is given, that the
    stream is complete and intact (zstd frame checksum and size, or gzip CRC and length), that
    the result is an SQLite file that passes ``PRAGMA integrity_check``, that it has the store's
    tables, and that its schema version is not newer than ``max_schema_version``. The file is
    fsynced. On any failure raises SnapshotError and removes what it wrote; the live database is
    never touched. Thread-safe.
    """
    data_dir = Path(data_dir)
    _check_compression(compression)
    target = data_dir / f"{PARTIAL_PREFIXES[0]}{uuid.uuid4().hex}"
    try:
        with Path(source).open("rb") as packed:
            reader = _HashingReader(packed)
            with target.open("wb") as out:
                raw_bytes = _decompress(reader, out, compression)
                out.flush()
                os.fsync(out.fileno())
        digest = reader.digest.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            raise SnapshotError(f"snapshot SHA-256 is {digest}, expected {expected_sha256}")
        lsn, term, schema_version = _verify_database(target, max_schema_version)
    except SnapshotError:
        _remove_with_sidecars(target)
        raise
    except _DAMAGE as exc:
        _remove_with_sidecars(target)
        raise SnapshotError(f"snapshot {source} is damaged: {exc}") from exc
    except BaseException:
        _remove_with_sidecars(target)
        raise
    info = SnapshotInfo(lsn, term, schema_version, raw_bytes, reader.size, compression, digest)
    return PreparedSnapshot(target, info)


def _decompress(source: _HashingReader, out: BinaryIO, compression: str) -> int:
    """Unpack all of ``source`` into ``out``; raise on a truncated, corrupt or padded stream."""
    written = 0
    if compression == "zstd":
        header = source.read(18)  # the longest zstd frame header
        try:
            expected = zstandard.get_frame_parameters(header).content_size
        except zstandard.ZstdError as exc:
            raise SnapshotError(f"not a zstd frame: {exc}") from exc
        # A stream reader stops quietly at a truncated frame; a decompressobj says whether the
        # frame ended (and the frame checksum is verified when it does).
        unpacker = zstandard.ZstdDecompressor().decompressobj()
        chunk = header
        while chunk:
            data = unpacker.decompress(chunk)
            out.write(data)
            written += len(data)
            if unpacker.eof:
                break
            chunk = source.read(CHUNK)
        if not unpacker.eof:
            raise SnapshotError("snapshot is truncated: the zstd frame does not end")
        if unpacker.unused_data or source.read(1):
            raise SnapshotError("snapshot has data after its zstd frame")
        if expected not in (zstandard.CONTENTSIZE_UNKNOWN, written):
            raise SnapshotError(f"snapshot unpacked to {written} bytes, its frame says {expected}")
    else:
        with gzip.GzipFile(fileobj=source, mode="rb") as unpacker:
            while chunk := unpacker.read(CHUNK):
                out.write(chunk)
                written += len(chunk)
    return written


def _verify_database(path: Path, max_schema_version: int) -> tuple[int, int, int]:
    with path.open("rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise SnapshotError("snapshot is not an SQLite database")
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        # A file sent in WAL mode would grow a -wal beside it; it must stay one file.
        conn.execute("PRAGMA journal_mode=DELETE")
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise SnapshotError(f"snapshot fails integrity_check: {'; '.join(problems[:5])}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            raise SnapshotError(f"snapshot lacks the store's tables {missing}")
    lsn, term, schema_version = _log_position(path)
    if schema_version > max_schema_version:
        raise SnapshotError(
            f"snapshot has schema version {schema_version}, newer than this node's {max_schema_version}: upgrade this node"
        )
    return lsn, term, schema_version


# --- streaming ---------------------------------------------------------------------------------


def iter_file(path: Path, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The bytes of ``path`` in chunks (for a streamed HTTP body)."""
    with Path(path).open("rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk


class SnapshotDownload:
    """A compressed snapshot arriving in chunks, written to a file in ``DATA_DIR/snapshots/``.

    ``write`` each chunk, then ``finish()`` (fsync, and the SHA-256 and size of what arrived)
    or ``discard()``. A file left by a crash is removed when the node next starts.
    """

    def __init__(self, data_dir: Path):
        self.path = transfer_file(data_dir, "download")
        self._file = self.path.open("wb")
        self._writer = _HashingWriter(self._file)

    def write(self, chunk: bytes) -> None:
        self._writer.write(chunk)

    def finish(self) -> tuple[Path, str, int]:
        """(path, hex SHA-256, size) of the complete file, made durable."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        return self.path, self._writer.digest.hexdigest(), self._writer.size

    def discard(self) -> None:
        with suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


def write_chunks(data_dir: Path, chunks: Iterable[bytes]) -> tuple[Path, str, int]:
    """Write a streamed snapshot beside the database: (path, hex SHA-256, size)."""
    download = SnapshotDownload(data_dir)
    try:
        for chunk in chunks:
            download.write(chunk)
        return download.finish()
    except BaseException:
        download.discard()
        raise


# --- helpers -----------------------------------------------------------------------------------


def _read_only_uri(path: Path) -> str:
    return Path(path).resolve().as_uri() + "?mode=ro"


def _check_compression(compression: str) -> None:
    if compression not in available_compressions():
        raise SnapshotError(f"compression {compression!r} is not available here; this node reads {available_compressions()}")


def _remove_with_sidecars(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class _HashingWriter:
    """A file-like sink that hashes and counts what passes through it."""

    def __init__(self, target: BinaryIO):
        self._target = target
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()


class _HashingReader:
    """A file-like source that hashes and counts what is read from it."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True


__all__ = [
    "DB_FILENAME",
    "PARTIAL_PREFIXES",
    "PreparedSnapshot",
    "SnapshotDownload",
    "SnapshotInfo",
    "available_compressions",
    "install",
    "iter_file",
    "prepare_snapshot",
    "remove_partial_files",
    "take_snapshot",
    "take_to_serve",
    "write_chunks",
]
