"""The streamed snapshot end to end in one process: a page image streamed as signed records (as they are,
or as zstd frames), cut into records again, checked and written in place, gives back the same database."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from talentnest.cluster import auth, snapshot_stream
from talentnest.cluster.snapshot_stream import DATA, END, HEADER, RecordReader, StreamHeader
from talentnest.errors import SnapshotError
from talentnest.store.pages import PageFile, PageImage

KEY, NONCE = b"cluster-key-cluster-key-cluster!", "ab" * 16


def database(path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(
            "CREATE TABLE _tn_log(lsn INTEGER PRIMARY KEY, term, ts, schema_version, changes);"
            "CREATE TABLE _tn_terms(term INTEGER PRIMARY KEY, start_lsn); CREATE TABLE _tn_meta(key PRIMARY KEY, value);"
            "INSERT INTO _tn_terms VALUES (1, 1); INSERT INTO _tn_meta VALUES ('schema_version', '1');"
            "CREATE TABLE t(n INTEGER PRIMARY KEY, pad);"
        )
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(n, f"row {n} " * 40) for n in range(3000)])
        conn.execute("INSERT INTO _tn_log VALUES (7, 1, '', 1, '')")


async def stream(image: PageImage, header: StreamHeader, *, threaded: bool = True) -> bytes:
    def sign(body_sha256: str) -> str:
        return auth.sign_answer(KEY, NONCE, 200, body_sha256)

    return b"".join([part async for part in snapshot_stream.stream_image(image, header, sign, threaded=threaded)])


@pytest.mark.parametrize("threaded", [True, False], ids=["read-ahead-thread", "no-thread"])
@pytest.mark.parametrize("compression", snapshot_stream.COMPRESSIONS)
def test_a_streamed_image_arrives_whole_and_equal(tmp_path, compression, threaded):
    source = tmp_path / "leader.db"
    database(source)
    image = PageImage.open(source)
    info = image.info
    header = StreamHeader("s1", info.lsn, info.term, info.schema_version, info.page_size, info.page_count, 16, 0, 1, compression)
    try:
        body = asyncio.run(stream(image, header, threaded=threaded))
    finally:
        image.close()
    assert header.chunks > 3

    reader = RecordReader(lambda signature, digest: auth.verify_answer(KEY, signature, NONCE, 200, digest))
    received = PageFile(tmp_path, info.page_size, info.page_count)
    kinds, chunk = [], 0
    for start in range(0, len(body), 5000):
        for kind, payload in reader.feed(body[start : start + 5000]):
            kinds.append(kind)
            if kind == HEADER:
                assert StreamHeader.parse(payload) == header
            elif kind == DATA:
                received.write(header.chunk_offset(chunk), snapshot_stream.unpack_chunk(header, chunk, payload))
                chunk += 1
            elif kind == END:
                snapshot_stream.end_matches(header, payload)
    assert kinds == [HEADER] + [DATA] * header.chunks + [END] and reader.finished_cleanly()
    path, got = received.finish(max_schema_version=1)
    assert got.lsn == 7
    with sqlite3.connect(path) as copy, sqlite3.connect(source) as original:
        assert (
            copy.execute("SELECT count(*), sum(length(pad)) FROM t").fetchone()
            == original.execute("SELECT count(*), sum(length(pad)) FROM t").fetchone()
        )
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_chunk_of_the_wrong_size_is_refused(tmp_path):
    header = StreamHeader("s1", 1, 1, 1, 4096, 10, 4, 0, 1, "none")
    with pytest.raises(SnapshotError, match="not 16384"):
        snapshot_stream.unpack_chunk(header, 0, b"x" * 100)
