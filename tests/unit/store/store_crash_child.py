"""Child process for the crash tests: does one store operation and stops itself at a chosen point,
so the test can SIGKILL it there. Prints one JSON line per milestone."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import talentnest.store._db as store_db
from talentnest.store import Database, LogEntry
from talentnest.store.schema import product_database
from talentnest.store.snapshot import install, prepare_snapshot


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def stop(point: str, db_path: Path) -> None:
    wal = Path(f"{db_path}-wal")
    say(event="stopped", point=point, wal_bytes=wal.stat().st_size if wal.exists() else 0)
    os.kill(os.getpid(), signal.SIGSTOP)


def apply_and_stop(data_dir: Path, entries_file: Path, first_batch: int, stop_after_changes: int) -> None:
    entries = [LogEntry.from_dict(json.loads(line)) for line in entries_file.read_text().splitlines()]
    db = product_database(data_dir).open()
    db.conn.execute("PRAGMA cache_size=16")  # small: the open transaction spills pages into the WAL
    db.apply(entries[:first_batch])
    wal = Path(f"{db.path}-wal")
    say(event="committed", lsn=db.last_lsn, wal_bytes=wal.stat().st_size)

    real_apply_change = Database._apply_change
    count = 0

    def counting(self, conn, change, **options):
        nonlocal count
        count += 1
        if count == stop_after_changes:
            stop("mid-batch", self.path)
        real_apply_change(self, conn, change, **options)

    Database._apply_change = counting
    db.apply(entries[first_batch:])
    say(event="finished")


def install_and_stop(data_dir: Path, snapshot: Path, point: str) -> None:
    db = product_database(data_dir).open()
    db.conn.execute("PRAGMA wal_autocheckpoint=0")  # keep the recent writes in the WAL only
    with db.write() as conn:
        conn.execute(
            "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) "
            "VALUES ('old', 'o@x', 'O', 'x', 't', 't')"
        )
        for n in range(200):
            conn.execute("INSERT INTO posts(author_id, content, created_at, updated_at) VALUES (1, ?, 't', 't')", (f"old {n}",))
    prepared = prepare_snapshot(
        data_dir, snapshot, compression="zstd", expected_sha256=None, max_schema_version=db.schema_version
    )
    say(event="ready", checksum=db.checksum(), lsn=db.last_lsn, wal_bytes=Path(f"{db.path}-wal").stat().st_size)

    if point == "before-rename":
        real_replace = os.replace

        def replace(source, target):
            stop(point, db.path)
            real_replace(source, target)

        os.replace = replace
    else:
        real_fsync_dir = store_db.fsync_dir

        def fsync_dir(path):
            stop(point, db.path)
            real_fsync_dir(path)

        store_db.fsync_dir = fsync_dir
    install(db, prepared)
    say(event="finished")


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "apply":
        apply_and_stop(Path(args[0]), Path(args[1]), int(args[2]), int(args[3]))
    else:
        install_and_stop(Path(args[0]), Path(args[1]), args[2])
