"""The streamed snapshot (``GET /cluster/sync?format=stream``): records signed as they go, so that a
database is sent while it is read, and checked while it arrives (docs/cluster.md, "The streamed snapshot").

The body is a sequence of records, each ``kind`` (one ASCII byte), ``length`` (4 bytes, big-endian) and
``length`` bytes of payload: ``H`` (the header, JSON), ``D`` (one chunk: a zstd frame of whole pages),
``E`` (the end, JSON), each followed by an ``S`` record whose payload is
``t=<unix seconds>,n=<the request's nonce>,s=<hex HMAC-SHA256(key, "<t>\\n<n>\\nANSWER\\n200\\n<hex SHA-256 of
every body byte before this S record>")>``: the answer signature of DESIGN.md applied to the body so far.
A receiver uses a record only once the ``S`` after it verifies, so nothing altered is ever written.

The leader keeps a broken stream's page image (``Images``) for ``RESUME_SECONDS``: the receiver asks again
with ``snapshot=<id>&from=<chunk>`` and gets the same image from that chunk, in a new, newly signed stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import zstandard

from talentnest.errors import InvalidInput, PeerUnreachable, SnapshotError
from talentnest.store.pages import PageImage

RECORD = struct.Struct(">cI")
HEADER, DATA, END, SIGNATURE = b"H", b"D", b"E", b"S"
CHUNK_BYTES = 4 * 1024 * 1024  # raw bytes of pages per chunk
MAX_RECORD = 2 * CHUNK_BYTES + 65536  # a zstd frame of incompressible pages stays far below this
ZSTD_LEVEL = -1  # the stream is bound by CPU on both sides: a fast level keeps nearly all of level 3's ratio
RESUME_SECONDS = 60.0
# A stream the leader sent whole may still break before its receiver has read the end: its image is kept
# this long too (briefly: a kept image pins the database, whose WAL cannot restart meanwhile).
SENT_RESUME_SECONDS = 5.0
MAX_PARKED = 2
READ_AHEAD = 3  # chunks a stream's thread keeps ready ahead of the one being sent (12 MiB at most)
SNAPSHOT_NICE = 5  # below the event loop's, so that under load the leader's answers come first
MEDIA_TYPE = "application/vnd.talentnest.snapshot"
# How chunks travel: as they are (the default: the stream is bound by CPU on a LAN or loopback, and
# zstd costs the leader about four times the CPU per gigabyte, benchmarks/README.md), or zstd frames
# for slower links (SNAPSHOT_COMPRESSION on the receiving node).
COMPRESSIONS = ("none", "zstd")


def record(kind: bytes, payload: bytes) -> bytes:
    return RECORD.pack(kind, len(payload)) + payload


@dataclass(frozen=True)
class StreamHeader:
    """The ``H`` record: which image, its position in the log, its shape, and where this stream starts."""

    snapshot: str
    lsn: int
    term: int
    schema_version: int
    page_size: int
    page_count: int
    chunk_pages: int
    first_chunk: int
    leader_id: int | None
    compression: str = "none"

    @property
    def chunks(self) -> int:
        return -(-self.page_count // self.chunk_pages)

    @property
    def raw_bytes(self) -> int:
        return self.page_size * self.page_count

    def chunk_offset(self, index: int) -> int:
        return index * self.chunk_pages * self.page_size

    def chunk_size(self, index: int) -> int:
        return (min(self.page_count, (index + 1) * self.chunk_pages) - index * self.chunk_pages) * self.page_size

    def to_bytes(self) -> bytes:
        return json.dumps({**self.__dict__, "chunks": self.chunks}, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, payload: bytes) -> StreamHeader:
        try:
            data = json.loads(payload)
            header = cls(
                snapshot=str(data["snapshot"]),
                lsn=int(data["lsn"]),
                term=int(data["term"]),
                schema_version=int(data["schema_version"]),
                page_size=int(data["page_size"]),
                page_count=int(data["page_count"]),
                chunk_pages=int(data["chunk_pages"]),
                first_chunk=int(data["first_chunk"]),
                leader_id=data.get("leader_id"),
                compression=str(data.get("compression")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"the snapshot stream's header is malformed: {exc}") from None
        if header.compression not in COMPRESSIONS:
            raise InvalidInput(f"the snapshot stream's compression {header.compression[:20]!r} is not one of {COMPRESSIONS}")
        if not (512 <= header.page_size <= 65536 and 0 < header.page_count < 2**31 and 0 < header.chunk_pages <= 1 << 16):
            raise InvalidInput("the snapshot stream's header is out of bounds")
        if not 0 <= header.first_chunk <= header.chunks or len(header.snapshot) > 64:
            raise InvalidInput("the snapshot stream's header is out of bounds")
        return header


# --- the leader's side ---------------------------------------------------------------------------


class Images:
    """The page images being streamed, and those of broken streams, kept for a while so that their
    receivers can resume. ``clock`` is monotonic seconds; ``sleep`` the runtime's."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]):
        self.clock = clock
        self.sleep = sleep
        self._active: dict[str, PageImage] = {}
        self._parked: dict[str, tuple[PageImage, float]] = {}

    def begin(self, snapshot: str, image: PageImage) -> None:
        self._active[snapshot] = image

    def end(self, snapshot: str, *, complete: bool) -> None:
        """A stream is over: its image is kept for ``RESUME_SECONDS`` if the stream broke, else for
        ``SENT_RESUME_SECONDS``, then closed (``sweep``)."""
        image = self._active.pop(snapshot, None)
        if image is None:
            return
        self.sweep()
        while len(self._parked) >= MAX_PARKED:
            oldest = min(self._parked, key=lambda k: self._parked[k][1])
            self._parked.pop(oldest)[0].close()
        self._parked[snapshot] = (image, self.clock() + (SENT_RESUME_SECONDS if complete else RESUME_SECONDS))

    async def take(self, snapshot: str) -> PageImage | None:
        """The kept image ``snapshot``, once its broken stream has noticed it broke (a resume can arrive
        first); None when it is not kept (expired, or never here)."""
        deadline = self.clock() + 5.0
        while snapshot in self._active and self.clock() < deadline:
            await self.sleep(0.05)
        self.sweep()
        found = self._parked.pop(snapshot, None)
        return found[0] if found else None

    def sweep(self) -> None:
        now = self.clock()
        for snapshot in [k for k, (_, until) in self._parked.items() if until < now]:
            self._parked.pop(snapshot)[0].close()

    def close(self) -> None:
        for image, _ in self._parked.values():
            image.close()
        self._parked.clear()


def _lower_priority() -> None:
    # The leader keeps answering first: its event loop wins the CPU over the snapshot's reading and
    # compressing (niceness is per thread on Linux; raising it needs no privilege).
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SNAPSHOT_NICE)


class _Signer:
    """The running SHA-256 of a stream's body and its signature records (one stream, used in order)."""

    def __init__(self, sign: Callable[[str], str]):
        self.sign = sign
        self.digest = hashlib.sha256()

    def signed(self, kind: bytes, payload: bytes | bytearray) -> bytes:
        return b"".join(self.parts(kind, payload))

    def parts(self, kind: bytes, payload: bytes | bytearray) -> list:
        """The record and its signature record as pieces to send one after the other (the payload is not
        copied again)."""
        head = RECORD.pack(kind, len(payload))
        self.digest.update(head)
        self.digest.update(payload)
        signature = record(SIGNATURE, self.sign(self.digest.hexdigest()).encode())
        self.digest.update(signature)
        return [head, memoryview(payload), signature]


def _chunk_records(image: PageImage, header: StreamHeader, index: int, signer: _Signer) -> tuple[list, int]:
    """Chunk ``index`` as the pieces of its two records (read, packed, hashed and signed), and its size."""
    raw = image.read(index * header.chunk_pages + 1, header.chunk_pages)
    if header.compression == "zstd":
        raw = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True).compress(raw)
    return signer.parts(DATA, raw), len(raw)


class _Producer:
    """One stream's chunks, made in a thread of their own, at most ``READ_AHEAD`` ahead of the sending, in
    order (as the running hash needs). The thread never waits for the event loop, which may be busy
    answering writes: it keeps the next chunks ready, and the loop only sends them."""

    def __init__(self, image: PageImage, header: StreamHeader, signer: _Signer, loop: asyncio.AbstractEventLoop):
        self._image, self._header, self._signer, self._loop = image, header, signer, loop
        self.ready: asyncio.Queue = asyncio.Queue()
        self._slots = threading.Semaphore(READ_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"snapshot-{header.snapshot}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sent(self) -> None:
        """A chunk left: room for the next one."""
        self._slots.release()

    def stop(self) -> None:
        """Ask the thread to end (it does within half a second; it only ever reads the image)."""
        self._stop.set()
        self._slots.release()

    def _hand(self, item) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self.ready.put_nowait, item)

    def _run(self) -> None:
        _lower_priority()
        try:
            for index in range(self._header.first_chunk, self._header.chunks):
                while not self._slots.acquire(timeout=0.5):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._hand((index, *_chunk_records(self._image, self._header, index, self._signer)))
            self._hand(None)
        except BaseException as exc:  # handed to the stream, which raises it
            self._hand(exc)


async def stream_image(
    image: PageImage,
    header: StreamHeader,
    sign: Callable[[str], str],
    *,
    on_chunk: Callable[[int, int], None] = lambda raw, sent: None,
    threaded: bool = True,
) -> AsyncIterator[bytes | memoryview]:
    """The records of ``image`` from ``header.first_chunk``, each followed by its signature record
    (``sign(hex SHA-256 of the body so far)``). Chunks are read, packed, hashed and signed in a thread of
    lower priority, ``READ_AHEAD`` ahead of the one being sent, so memory stays a few chunks whatever the
    size and the event loop (which answers the leader's writes) does none of it. Without ``threaded``
    (``Runtime.threads`` off: the simulation), each chunk is made when it is sent, in the loop's executor."""
    signer = _Signer(sign)
    yield signer.signed(HEADER, header.to_bytes())
    if not threaded:
        for index in range(header.first_chunk, header.chunks):
            pieces, size = await asyncio.to_thread(_chunk_records, image, header, index, signer)
            on_chunk(header.chunk_size(index), size)
            for piece in pieces:
                yield piece
        yield signer.signed(END, _end_payload(header))
        return
    producer = _Producer(image, header, signer, asyncio.get_running_loop())
    producer.start()
    try:
        while (item := await producer.ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            index, pieces, size = item
            on_chunk(header.chunk_size(index), size)
            for piece in pieces:
                yield piece
            producer.sent()
        yield signer.signed(END, _end_payload(header))
    finally:
        producer.stop()


def _end_payload(header: StreamHeader) -> bytes:
    end = {"chunks": header.chunks, "pages": header.page_count, "raw_bytes": header.raw_bytes}
    return json.dumps(end, separators=(",", ":")).encode()


# --- the receiver's side -------------------------------------------------------------------------


class RecordReader:
    """Checks a streamed body record by record and hands out each one only once the signature record after
    it verifies (``authenticate(signature, hex SHA-256 of the body before it)``, which raises on failure).
    ``take`` one record at a time (``receive`` pulls them from a stream), or ``feed`` it bytes as they come."""

    def __init__(self, authenticate: Callable[[str, str], None]):
        self._authenticate = authenticate
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._pending: tuple[bytes, bytes] | None = None
        self.received = 0  # body bytes so far

    def take(self, kind: bytes, payload: bytes) -> tuple[bytes, bytes] | None:
        """One whole record; the record it verifies, if it is a signature (else None: held until then)."""
        if len(payload) > MAX_RECORD:
            raise SnapshotError(f"a snapshot record of {len(payload)} bytes is more than {MAX_RECORD}")
        self.received += RECORD.size + len(payload)
        verified = None
        if kind == SIGNATURE:
            if self._pending is None:
                raise SnapshotError("a snapshot stream has a signature record with nothing to sign")
            self._authenticate(payload.decode("ascii", "replace"), self._digest.hexdigest())
            verified, self._pending = self._pending, None
        elif self._pending is not None:
            raise SnapshotError(f"a snapshot stream's {self._pending[0].decode()} record is not followed by its signature")
        elif kind in (HEADER, DATA, END):
            self._pending = (kind, payload)
        else:
            raise SnapshotError(f"a snapshot stream has a record of unknown kind {kind!r}")
        self._digest.update(RECORD.pack(kind, len(payload)))
        self._digest.update(payload)
        return verified

    async def receive(self, read_exactly: Callable[[int], Awaitable[bytes]]) -> tuple[bytes, bytes] | None:
        """Pull records with ``read_exactly(n)`` until one is verified; it, or None at a clean end of the body."""
        while True:
            head = await read_exactly(RECORD.size)
            if not head and self._pending is None:
                return None
            if len(head) < RECORD.size:
                raise PeerUnreachable("the snapshot stream broke off inside a record")
            kind, length = RECORD.unpack(head)
            if length > MAX_RECORD:
                raise SnapshotError(f"a snapshot record announces {length} bytes, more than {MAX_RECORD}")
            payload = await read_exactly(length) if length else b""
            if len(payload) < length:
                raise PeerUnreachable("the snapshot stream broke off inside a record")
            verified = self.take(kind, payload)
            if verified is not None:
                return verified

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The verified records ``data`` completes, as (kind, payload)."""
        self._buffer += data
        verified = []
        at = 0
        while len(self._buffer) - at >= RECORD.size:
            kind, length = RECORD.unpack_from(self._buffer, at)
            if length > MAX_RECORD:
                raise SnapshotError(f"a snapshot record announces {length} bytes, more than {MAX_RECORD}")
            end = at + RECORD.size + length
            if len(self._buffer) < end:
                break
            try:
                found = self.take(kind, bytes(self._buffer[at + RECORD.size : end]))
            finally:
                at = end
            if found is not None:
                verified.append(found)
        del self._buffer[:at]
        return verified

    def finished_cleanly(self) -> bool:
        return not self._buffer and self._pending is None


def unpack_chunk(header: StreamHeader, index: int, frame: bytes) -> bytes:
    """The raw pages of chunk ``index``; SnapshotError if the frame is damaged or the wrong size."""
    expected = header.chunk_size(index)
    if header.compression == "none":
        if len(frame) != expected:
            raise SnapshotError(f"chunk {index} of the snapshot is {len(frame)} bytes, not {expected}")
        return frame
    try:
        raw = zstandard.ZstdDecompressor().decompress(frame, max_output_size=expected)
    except zstandard.ZstdError as exc:
        raise SnapshotError(f"chunk {index} of the snapshot does not unpack: {exc}") from None
    if len(raw) != expected:
        raise SnapshotError(f"chunk {index} of the snapshot unpacked to {len(raw)} bytes, not {expected}")
    return raw


def end_matches(header: StreamHeader, payload: bytes) -> dict[str, Any]:
    try:
        end = json.loads(payload)
    except ValueError:
        raise SnapshotError("the snapshot stream's end record is not JSON") from None
    if end != {"chunks": header.chunks, "pages": header.page_count, "raw_bytes": header.raw_bytes}:
        raise SnapshotError(f"the snapshot stream's end record {end} does not match its header")
    return end
