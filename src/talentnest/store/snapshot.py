"""Interim (replaced by the store's full version): consistent compressed snapshots."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import zstandard

from talentnest.errors import SnapshotError
from talentnest.store._db import DB_FILENAME


@dataclass(frozen=True)
class SnapshotInfo:
    lsn: int
    term: int
    raw_bytes: int
    compressed_bytes: int
    compression: str
    sha256: str


@dataclass(frozen=True)
class PreparedSnapshot:
    path: Path
    info: SnapshotInfo


def _position(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        lsn = conn.execute("SELECT COALESCE(MAX(lsn), 0) FROM _tn_log").fetchone()[0]
        row = conn.execute("SELECT term FROM _tn_log WHERE lsn = ?", (lsn,)).fetchone()
        return lsn, row[0] if row else 0
    finally:
        conn.close()


def take_snapshot(db_path: Path, dest: Path) -> SnapshotInfo:
    raw = dest.with_suffix(".raw")
    src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    out = sqlite3.connect(raw)
    try:
        src.backup(out)
    finally:
        out.close()
        src.close()
    lsn, term = _position(raw)
    digest = hashlib.sha256()
    with open(raw, "rb") as source, open(dest, "wb") as target:
        compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        with compressor.stream_writer(target, closefd=False) as writer:
            while chunk := source.read(1 << 20):
                writer.write(chunk)
    with open(dest, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    info = SnapshotInfo(lsn, term, raw.stat().st_size, dest.stat().st_size, "zstd", digest.hexdigest())
    raw.unlink()
    return info


def prepare_snapshot(
    data_dir: Path, source: Path, *, compression: str, expected_sha256: str | None, max_schema_version: int
) -> PreparedSnapshot:
    target = Path(data_dir) / (DB_FILENAME + ".incoming")
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if expected_sha256 and digest != expected_sha256:
            raise SnapshotError("snapshot checksum does not match")
        with open(source, "rb") as handle, open(target, "wb") as out:
            zstandard.ZstdDecompressor().copy_stream(handle, out)
            out.flush()
            os.fsync(out.fileno())
        conn = sqlite3.connect(target)
        try:
            if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise SnapshotError("snapshot database is damaged")
        finally:
            conn.close()
        lsn, term = _position(target)
    except (zstandard.ZstdError, sqlite3.DatabaseError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise SnapshotError(f"snapshot is not usable: {exc}") from None
    except SnapshotError:
        target.unlink(missing_ok=True)
        raise
    return PreparedSnapshot(target, SnapshotInfo(lsn, term, target.stat().st_size, source.stat().st_size, compression, digest))


def install_snapshot(db, prepared: PreparedSnapshot) -> SnapshotInfo:
    db.close()
    for suffix in ("-wal", "-shm"):
        Path(str(db.path) + suffix).unlink(missing_ok=True)
    os.replace(prepared.path, db.path)
    db.fsync_dir()
    db.open()
    return prepared.info
