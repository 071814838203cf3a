"""Fetching a peer's snapshot in its streamed form and installing it: each chunk checked against its
signature as it arrives and written in place, progress reported, a broken transfer resumed.

Memory stays a few chunks whatever the size (docs/cluster.md, "The streamed snapshot"); the file is
written beside the database and only swapped in once every chunk and the end record verified and the
cheap structural check passed (``store.pages.check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from talentnest.cluster import snapshot_stream
from talentnest.cluster.protocols import Node
from talentnest.cluster.snapshot_stream import DATA, END, HEADER, RecordReader, StreamHeader
from talentnest.cluster.stats import Stats, SyncProgress
from talentnest.cluster.transport import ForgedAnswer
from talentnest.errors import InvalidInput, PeerUnreachable, SnapshotError
from talentnest.store import Database, snapshot
from talentnest.store.pages import PageFile
from talentnest.units import human_bytes

log = logging.getLogger("talentnest.replication")

SYNC_PATH = "/cluster/sync?format=stream"
# Deadlines: the leader sends its header record within milliseconds of the request (it pins the
# database, it does not copy it first), and then a chunk every few milliseconds. A request lost on
# the way (a one-way cut) is given up after the start timeout, as a replicate call is, not after the
# read timeout: a syncing node applies nothing else meanwhile (simulator finding F10, docs/simulation.md).
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 30.0


def start_timeout(heartbeat: float) -> float:
    return max(CONNECT_TIMEOUT, 5 * heartbeat)


MAX_RESUMES = 5
PROGRESS_LOG_SECONDS = 5.0
WRITE_QUEUE = 4  # chunks received but not yet written


class SnapshotGone(SnapshotError):
    """The peer no longer keeps the image a transfer was resuming: start again."""


@dataclass
class _Transfer:
    """One image on its way: its header, the file it is written to, and where to resume."""

    header: StreamHeader | None = None
    file: PageFile | None = None
    next_chunk: int = 0
    ended: bool = False
    sent_bytes: int = 0
    resumes: int = 0
    writes: list[asyncio.Task] = field(default_factory=list)

    def discard(self) -> None:
        if self.file is not None:
            self.file.discard()
        self.header, self.file, self.next_chunk, self.ended = None, None, 0, False


async def sync_from(node: Node, db: Database, stats: Stats, url: str, source_id: int, why: str) -> bool:
    """Install a snapshot of the node at ``url``; True when installed. Failures (the peer gone, a forged,
    damaged or refused snapshot, a full disk) are logged and leave the database as it was; a transfer
    that breaks resumes where it stopped (or starts again when the peer no longer has the image)."""
    started = node.clock.monotonic()
    log.info("sync: requesting a snapshot from node %d (%s): %s", source_id, url, why)
    transfer = _Transfer()
    progress = stats.sync_progress = SyncProgress(source_id=source_id, started=started, clock=node.clock.monotonic)
    installed = False
    try:
        while True:
            try:
                await _receive(node, db, url, transfer, progress)
                break
            except SnapshotGone as exc:
                log.warning("sync: %s; starting again from the beginning", exc)
                transfer.discard()
                progress.restart()
            except ForgedAnswer:
                raise
            except PeerUnreachable as exc:
                if transfer.header is None or transfer.resumes >= MAX_RESUMES:
                    raise
                transfer.resumes += 1
                log.warning(
                    "sync: the transfer from node %d broke at %s of %s (%s); resuming from chunk %d (attempt %d of %d)",
                    *(source_id, human_bytes(progress.bytes), human_bytes(progress.total), exc),
                    *(transfer.next_chunk, transfer.resumes, MAX_RESUMES),
                )
                await node.clock.sleep(min(1.0, node.heartbeat))
        assert transfer.file is not None
        path, info = await asyncio.to_thread(transfer.file.finish, db.schema_version)
        prepared = snapshot.PreparedSnapshot(path, info)
        snapshot.install(db, prepared)
        installed = True
    except (PeerUnreachable, SnapshotError, InvalidInput, OSError) as exc:
        stats.sync_failures += 1
        log.warning("sync: from node %d failed: %s; will retry", source_id, exc)
        return False
    finally:
        if not installed:
            transfer.discard()
        stats.sync_progress = None
    seconds = node.clock.monotonic() - started
    stats.syncs += 1
    stats.sync_bytes += transfer.sent_bytes
    stats.sync_seconds += seconds
    stats.snapshot_bytes, stats.snapshot_raw_bytes = transfer.sent_bytes, info.raw_bytes
    resumed = f", resumed {transfer.resumes} time(s)" if transfer.resumes else ""
    text = (
        f"installed a snapshot from node {source_id} at LSN {info.lsn} (term {info.term}): "
        f"{human_bytes(transfer.sent_bytes)} sent, {human_bytes(info.raw_bytes)} database, in {seconds:.2f} s{resumed}"
    )
    log.info("sync: %s", text)
    node.record_event("sync", text)
    node.snapshot_installed()
    return True


async def _receive(node: Node, db: Database, url: str, transfer: _Transfer, progress: SyncProgress) -> None:
    """One request: the whole image, or the rest of it from ``transfer.next_chunk``. Returns once the end
    record verified and every chunk is written; raises PeerUnreachable when the stream breaks."""
    target = f"{SYNC_PATH}&compression={node.settings.snapshot_compression}"
    if transfer.header is not None:
        target += f"&snapshot={transfer.header.snapshot}&from={transfer.next_chunk}"
    queue: asyncio.Queue = asyncio.Queue(WRITE_QUEUE)
    writer = asyncio.ensure_future(_write_chunks(queue, transfer, progress))
    try:
        stream = node.transport.stream(
            url, target, connect_timeout=CONNECT_TIMEOUT, start_timeout=start_timeout(node.heartbeat), read_timeout=READ_TIMEOUT
        )
        async with stream as response:
            if response.status == 410 and transfer.header is not None:
                raise SnapshotGone(f"node at {url} no longer keeps snapshot {transfer.header.snapshot}")
            if response.status != 200:
                raise SnapshotError(f"{url} answered HTTP {response.status} to /cluster/sync")
            reader = RecordReader(response.authenticate)
            chunk = transfer.next_chunk
            try:
                while (found := await reader.receive(response.read_exactly)) is not None:
                    kind, payload = found
                    if kind == HEADER:
                        chunk = await _start(db, transfer, StreamHeader.parse(payload), progress)
                    elif kind == DATA:
                        if transfer.header is None or chunk >= transfer.header.chunks:
                            raise SnapshotError("the snapshot stream sent a chunk beyond its header")
                        await _put(queue, (chunk, payload), writer)
                        chunk += 1
                    elif kind == END:
                        if transfer.header is None or chunk != transfer.header.chunks:
                            raise SnapshotError(f"the snapshot stream ended after chunk {chunk}, before its last")
                        snapshot_stream.end_matches(transfer.header, payload)
                        transfer.ended = True
            finally:
                transfer.sent_bytes += reader.received
            if not transfer.ended:
                raise PeerUnreachable(f"{url} closed the snapshot stream before its end (at chunk {chunk})")
        await _put(queue, None, writer)
        await writer
    except PeerUnreachable as exc:
        if not isinstance(exc, ForgedAnswer):
            # The stream broke: the chunks already verified are still written, so a resume starts after them.
            with contextlib.suppress(Exception):
                await _put(queue, None, writer)
                await writer
        raise
    finally:
        if not writer.done():
            writer.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer


async def _put(queue: asyncio.Queue, item, writer: asyncio.Future) -> None:
    """Queue ``item`` for the writer, or raise what stopped the writer (a damaged chunk, a full disk)."""
    put = asyncio.ensure_future(queue.put(item))
    done, _ = await asyncio.wait({put, writer}, return_when=asyncio.FIRST_COMPLETED)
    if put not in done:
        put.cancel()
        writer.result()
        raise SnapshotError("the snapshot writer stopped")


async def _start(db: Database, transfer: _Transfer, header: StreamHeader, progress: SyncProgress) -> int:
    """Take a stream's header: a new image, or the one being resumed; the chunk it starts at."""
    known = transfer.header
    if known is not None:
        same = (known.snapshot, known.page_size, known.page_count, known.chunk_pages, known.lsn)
        if same != (header.snapshot, header.page_size, header.page_count, header.chunk_pages, header.lsn):
            raise SnapshotError("the resumed snapshot stream is not the image it resumes")
        if header.first_chunk != transfer.next_chunk:
            raise SnapshotError(f"the resumed stream starts at chunk {header.first_chunk}, not {transfer.next_chunk}")
        return header.first_chunk
    if header.first_chunk != 0:
        raise SnapshotError("a new snapshot stream must start at chunk 0")
    transfer.header = header
    transfer.file = await asyncio.to_thread(PageFile, db.data_dir, header.page_size, header.page_count)
    progress.total = header.raw_bytes
    log.info(
        "sync: receiving snapshot %s at LSN %d (term %d): %s in %d chunks",
        *(header.snapshot, header.lsn, header.term, human_bytes(header.raw_bytes), header.chunks),
    )
    return 0


async def _write_chunks(queue: asyncio.Queue, transfer: _Transfer, progress: SyncProgress) -> None:
    """Unpack and write each verified chunk at its offset, in a worker thread, in order."""
    while True:
        item = await queue.get()
        if item is None:
            return
        index, frame = item
        header, file = transfer.header, transfer.file
        assert header is not None and file is not None

        progress.add(await asyncio.to_thread(_write_chunk, header, file, index, frame))
        transfer.next_chunk = index + 1
        if progress.should_log(PROGRESS_LOG_SECONDS):
            log.info("sync: %s", progress.describe())


def _write_chunk(header: StreamHeader, file: PageFile, index: int, frame: bytes) -> int:
    raw = snapshot_stream.unpack_chunk(header, index, frame)
    file.write(header.chunk_offset(index), raw)
    return len(raw)
