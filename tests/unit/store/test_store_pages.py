"""Page images: read page by page while writes and checkpoints go on, each one exactly the data of its
LSN; reassembled into a file that installs; the cheap check refuses what is not a whole image."""

from __future__ import annotations

import random
import sqlite3
import threading

import pytest

from talentnest.errors import SnapshotError
from talentnest.store import pages
from talentnest.store.pages import PageFile, PageImage
from talentnest.store.snapshot import PreparedSnapshot, install

CHUNK_PAGES = 7  # small and odd, so chunks cut across every kind of page


def copy_out(image: PageImage, data_dir, *, pause=lambda: None) -> PageFile:
    received = PageFile(data_dir, image.info.page_size, image.info.page_count)
    for first in range(1, image.info.page_count + 1, CHUNK_PAGES):
        pause()
        received.write((first - 1) * image.info.page_size, image.read(first, CHUNK_PAGES))
    return received


def test_images_taken_while_another_thread_writes_hold_exactly_the_data_of_their_lsn(nodes):
    leader = nodes("leader")
    author = leader.signup("ada")
    # Checkpoints every few pages, so that they run (and the WAL restarts) while images are read.
    leader.db.conn.execute("PRAGMA wal_autocheckpoint=8")
    stop, failures = threading.Event(), []

    def keep_writing() -> None:
        n = 0
        try:
            while not stop.is_set():
                post = leader.post(author, f"concurrent {n} " + "z" * random.randint(10, 3000))
                if n % 5 == 0:
                    leader.post_service.delete(author, post)
                n += 1
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    rng = random.Random(7)
    writer = threading.Thread(target=keep_writing)
    writer.start()
    images = []
    try:
        while len(images) < 6 and not failures:
            image = PageImage.open(leader.db.path)
            try:
                received = copy_out(image, leader.db.data_dir, pause=lambda: rng.random() < 0.2 and stop.wait(0.002))
            finally:
                image.close()
            path, info = received.finish(leader.db.schema_version)
            assert info.lsn == image.info.lsn
            images.append((path.rename(leader.db.data_dir.parent / f"image-{len(images)}.db"), info))
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not failures
    assert images[-1][1].lsn > images[0][1].lsn > 0, "the writer went on between images"

    entries = leader.all_entries()
    for index, (path, info) in enumerate(images):
        with sqlite3.connect(path) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok", index
        reference = nodes(f"reference-{index}")
        reference.db.apply([e for e in entries if e.lsn <= info.lsn])
        fresh = nodes(f"fresh-{index}")
        install(fresh.db, PreparedSnapshot(path.rename(fresh.db.data_dir / f"{pages.PARTIAL_PREFIXES[0]}test"), info))
        assert fresh.db.last_lsn == info.lsn
        assert fresh.db.checksum() == reference.db.checksum(), f"image {index} at LSN {info.lsn}"
    assert not [p for p in leader.db.data_dir.iterdir() if p.name.startswith(pages.PARTIAL_PREFIXES)]
    assert not list((leader.db.data_dir / "snapshots").glob("*")), "no WAL copy left behind"


def test_an_image_is_one_file_in_rollback_mode_that_installs_and_the_log_continues(nodes):
    leader = nodes("leader")
    author = leader.signup("ada")
    leader.db.conn.execute("PRAGMA wal_autocheckpoint=0")  # everything still in the WAL
    for n in range(40):
        leader.post(author, f"post {n} " + "y" * 500)
    image = PageImage.open(leader.db.path)
    try:
        received = copy_out(image, leader.db.data_dir)
    finally:
        image.close()
    path, info = received.finish(leader.db.schema_version)
    with path.open("rb") as f:
        header = f.read(100)
    assert (header[18], header[19]) == (1, 1)
    assert int.from_bytes(header[28:32], "big") == info.raw_bytes // image.info.page_size
    for n in range(3):
        leader.post(author, f"after {n}")

    empty = nodes("empty")
    install(empty.db, PreparedSnapshot(path.rename(empty.db.data_dir / path.name), info))
    empty.catch_up_from(leader)
    assert empty.db.checksum() == leader.db.checksum()


@pytest.mark.parametrize(
    "damage",
    ["truncated", "a page too many", "not sqlite", "wal mode", "another page count", "no store tables"],
)
def test_the_cheap_check_refuses_what_is_not_a_whole_image(nodes, tmp_path, damage):
    leader = nodes("leader")
    leader.signup("ada")
    image = PageImage.open(leader.db.path)
    try:
        data = bytearray(image.read(1, image.info.page_count))
    finally:
        image.close()
    size, count = image.info.page_size, image.info.page_count
    if damage == "truncated":
        data = data[:-size]
    elif damage == "a page too many":
        data += bytes(size)
    elif damage == "not sqlite":
        data[:16] = b"Not SQLite here!"
    elif damage == "wal mode":
        data[18] = data[19] = 2
    elif damage == "another page count":
        data[28:32] = (count + 1).to_bytes(4, "big")
    path = tmp_path / "image.db"
    if damage == "no store tables":
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE t(x)")
        data = bytearray(path.read_bytes())
        size, count = 4096, len(data) // 4096
    path.write_bytes(bytes(data))

    with pytest.raises(SnapshotError):
        pages.check(path, leader.db.schema_version, page_size=size, page_count=count)


def test_an_image_of_a_database_not_in_wal_mode_is_refused(tmp_path):
    path = tmp_path / "rollback.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t(x)")
    with pytest.raises(SnapshotError, match="WAL"):
        PageImage.open(path)
