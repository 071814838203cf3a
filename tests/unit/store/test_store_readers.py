"""Reads off the event loop: each in a reader thread on its own connection, in one transaction, never
blocking the loop, never writing, and waiting (not failing) while a snapshot is swapped in."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from store_factories import Node

from talentnest.store._readers import ReadersClosed
from talentnest.store.snapshot import install, prepare_snapshot, take_snapshot

WAIT = 10.0


def count_posts(node: Node) -> int:
    return node.db.reader.execute("SELECT COUNT(*) FROM posts").fetchone()[0]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class LoopThread:
    """An event loop in its own thread, as the node's is while a test thread plays its owner."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def node(nodes) -> Node:
    node = nodes("leader")
    ada = node.signup("ada")
    for n in range(5):
        node.post(ada, f"post {n}")
    return node


async def test_a_read_runs_in_another_thread_on_its_own_connection_and_sees_committed_writes(node):
    def where() -> tuple[int, int, int]:
        return threading.get_ident(), id(node.db.reader), count_posts(node)

    thread, connection, posts = await node.db.read(where)

    assert thread != threading.get_ident()
    assert connection != id(node.db.conn)
    assert posts == 5
    node.post(1, "one more")
    assert (await node.db.read(where))[2] == 6


def held_read(node: Node, release: threading.Event, what: str):
    """A read that waits in its reader thread until ``release`` is set, then counts the posts."""

    def read() -> int:
        assert release.wait(WAIT), what
        return count_posts(node)

    return read


async def test_a_blocked_read_does_not_block_the_event_loop(node):
    release = threading.Event()
    read = asyncio.ensure_future(node.db.read(held_read(node, release, "the event loop never released the read")))
    # While the read waits in its thread, the loop runs other work: here, the very thing it waits for.
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_soon(release.set)
    assert await read == 5


async def test_a_slow_read_does_not_hold_up_the_next_read(node):
    release = threading.Event()
    first = asyncio.ensure_future(node.db.read(held_read(node, release, "the second read never finished beside the slow one")))
    try:
        # Another reader thread answers while the first one is busy (a search beside a feed).
        assert await asyncio.wait_for(node.db.read(count_posts, node), WAIT) == 5
        assert not first.done()
    finally:
        release.set()
    assert await first == 5


async def test_all_statements_of_one_read_see_the_same_state(node):
    first_done, written = threading.Event(), threading.Event()

    def two_counts() -> tuple[int, int]:
        first = count_posts(node)
        first_done.set()
        assert written.wait(WAIT)
        return first, count_posts(node)

    read = asyncio.ensure_future(node.db.read(two_counts))
    await asyncio.to_thread(first_done.wait, WAIT)
    node.post(1, "committed between the two statements")
    written.set()
    assert await read == (5, 5)
    assert await node.db.read(count_posts, node) == 6


async def test_a_read_cannot_write(node):
    def sneaky() -> None:
        with node.db.write() as conn:
            conn.execute("DELETE FROM posts")

    with pytest.raises(RuntimeError, match="inside read"):
        await node.db.read(sneaky)
    assert count_posts(node) == 5


async def test_a_read_after_close_fails_clearly(node):
    node.db.close()
    with pytest.raises(ReadersClosed, match="closed"):
        await node.db.read(count_posts, node)
    node.db.open()
    assert await node.db.read(count_posts, node) == 5


def test_a_snapshot_install_waits_for_reads_in_progress_and_holds_new_ones_until_the_new_file_is_in(
    nodes, node, loop_thread, tmp_path
):
    bigger = nodes("bigger")
    author = bigger.signup("bob")
    for n in range(9):
        bigger.post(author, f"bigger {n}")
    info = take_snapshot(bigger.db.path, tmp_path / "snap")
    options = {"compression": info.compression, "expected_sha256": info.sha256}
    prepared = prepare_snapshot(node.db.data_dir, tmp_path / "snap", max_schema_version=node.db.schema_version, **options)
    started, release = threading.Event(), threading.Event()

    def in_progress() -> tuple[int, int]:
        first = count_posts(node)
        started.set()
        assert release.wait(WAIT)
        return first, count_posts(node)

    early = loop_thread.submit(node.db.read(in_progress))
    assert started.wait(WAIT)
    held_back = []

    def meanwhile() -> None:
        # Once the install waits for the read in progress, a new read arrives, then the first one ends.
        wait_for(lambda: node.db.reads_paused, "the install to hold reads back")
        held_back.append(loop_thread.submit(node.db.read(count_posts, node)))
        release.set()

    helper = threading.Thread(target=meanwhile)
    helper.start()
    install(node.db, prepared)  # this thread owns the database, as the event loop does in a node
    helper.join(WAIT)

    assert early.result(WAIT) == (5, 5), "the read in progress finished on the old file, whole"
    assert held_back[0].result(WAIT) == 9, "the read that arrived during the swap waited for the new file"
    assert loop_thread.submit(node.db.read(count_posts, node)).result(WAIT) == 9
    assert not node.db.reads_paused


async def test_the_checksum_can_be_computed_in_a_reader_thread(node):
    assert await node.db.read(node.db.checksum) == node.db.checksum()


def test_a_snapshot_install_first_lets_go_of_what_pins_the_file(nodes, node, tmp_path):
    # A deposed leader that served its image to others still kept them for resumes: a release
    # listener closes them, or its own install found the file held (simulator seed 1430).
    from talentnest.store.pages import PageImage

    bigger = nodes("bigger")
    bigger.post(bigger.signup("bob"), "bigger")
    info = take_snapshot(bigger.db.path, tmp_path / "snap")
    options = {"compression": info.compression, "expected_sha256": info.sha256}
    prepared = prepare_snapshot(node.db.data_dir, tmp_path / "snap", max_schema_version=node.db.schema_version, **options)
    kept = PageImage.open(node.db.path)
    released: list[bool] = []

    def release() -> None:
        kept.close()
        released.append(True)

    node.db.add_release_listener(release)
    install(node.db, prepared)

    assert released == [True]
    assert count_posts(node) == 1, "the peer's file is in"


def test_a_wal_grown_behind_a_long_read_is_cut_back_once_the_read_ends(node):
    # A reader's open transaction keeps the checkpoint from reaching the WAL's end, so the WAL grows
    # past its usual size; once the read is over the WAL restarts and its file shrinks to the limit.
    import sqlite3

    from talentnest.store._db import WAL_SIZE_LIMIT

    wal = node.db.path.with_name(node.db.path.name + "-wal")
    ada = node.db.conn.execute("SELECT id FROM users").fetchone()[0]
    reader = sqlite3.connect(node.db.path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM posts").fetchone()
    n = 0
    while wal.stat().st_size <= WAL_SIZE_LIMIT + (2 << 20):
        node.post(ada, f"{n} " + "x" * 1900)
        n += 1
    reader.execute("COMMIT")
    reader.close()
    # The next commits have the whole WAL checkpointed (by a reader thread, then finished by the writer:
    # store/_db.py, _checkpoint_if_due), and the one after restarts it.
    deadline = time.monotonic() + WAIT
    m = 0
    while wal.stat().st_size > WAL_SIZE_LIMIT and m < 2000 and time.monotonic() < deadline:
        node.post(ada, f"after {m}")
        m += 1
    assert wal.stat().st_size <= WAL_SIZE_LIMIT, f"{wal.stat().st_size} bytes after {n} big posts and {m} small ones"
