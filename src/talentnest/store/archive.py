"""The archive's layout: where snapshots and log segments go, how they are read back, and what retention removes.

An archive holds, for every node that archives into it, *chains*: a chain is one base snapshot and every
log entry the node committed after it, in segments, plus later periodic snapshots. Within a chain the log
is contiguous and one history, so the data as of any LSN (or time) in it is a snapshot at or before it plus
the entries after. A node starts a new chain whenever its own log stops continuing the last one (it
installed a snapshot, its entries after a point were archived as divergent, or its archiving fell behind
the retained log), so two histories are never mixed::

    ROOT/node-<id>/chain-<000001>/snapshot-<lsn:020>.<zst|gz>   a compressed snapshot (store/snapshot.py)
    ROOT/node-<id>/chain-<000001>/snapshot-<lsn:020>.json       its position, size, SHA-256 and times
    ROOT/node-<id>/chain-<000001>/entries-<first:020>-<last:020>.jsonl.zst   log entries, one JSON line each

The storage is behind ``ArchiveStore``: a directory (a mounted volume) or an S3-compatible bucket
(``store/_s3.py``). Everything in this module is synchronous and meant for a worker thread.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import zstandard

from talentnest.store._db import LogEntry, fsync_dir

NODE_PREFIX = "node-"
CHAIN_PREFIX = "chain-"
_SNAPSHOT = re.compile(r"^snapshot-(\d{20})\.(zst|gz)$")
_SEGMENT = re.compile(r"^entries-(\d{20})-(\d{20})\.jsonl\.zst$")
_CHAIN = re.compile(r"^chain-(\d{6})$")
_TMP = ".tmp-"
SNAPSHOT_EXTENSIONS = {"zstd": "zst", "gzip": "gz"}


class ArchiveError(Exception):
    """The archive cannot be read or written as asked; the message names the file and what is wrong."""


class ArchiveStore(Protocol):
    """Where an archive lives. Names are ``/``-separated paths under the archive's root. ``put_*`` makes a
    file appear whole or not at all (never half written); every method raises OSError when the storage fails."""

    def put_file(self, name: str, source: Path) -> None: ...
    def put_bytes(self, name: str, data: bytes) -> None: ...
    def get_file(self, name: str, dest: Path) -> None: ...
    def get_bytes(self, name: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, name: str) -> None: ...
    def describe(self) -> str: ...


class DirectoryStore:
    """An archive in a directory (a mounted volume): each file written beside its place, fsynced, renamed."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def _path(self, name: str) -> Path:
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"archive names are relative paths, got {name!r}")
        return self.root / name

    def _put(self, name: str, write) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex}-{path.name}")
        try:
            with tmp.open("wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def put_file(self, name: str, source: Path) -> None:
        def copy(out) -> None:
            with Path(source).open("rb") as data:
                while chunk := data.read(1 << 20):
                    out.write(chunk)

        self._put(name, copy)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._put(name, lambda out: out.write(data))

    def get_file(self, name: str, dest: Path) -> None:
        with self._path(name).open("rb") as data, Path(dest).open("wb") as out:
            while chunk := data.read(1 << 20):
                out.write(chunk)

    def get_bytes(self, name: str) -> bytes:
        return self._path(name).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(path.relative_to(self.root)) for path in base.rglob("*") if path.is_file() and not path.name.startswith(_TMP)
        )

    def delete(self, name: str) -> None:
        path = self._path(name)
        path.unlink(missing_ok=True)
        # Remove the directories emptied (a chain whose every file went).
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break


def is_bucket(location: str | Path) -> bool:
    return str(location).startswith("s3://")


def open_store(location: str | Path, environ: Mapping[str, str] | None = None) -> ArchiveStore:
    """The store an ``ARCHIVE_DIR`` or a ``talentnest restore`` argument names: a directory, or ``s3://BUCKET/PREFIX``
    (with ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``ARCHIVE_S3_ENDPOINT``, ``ARCHIVE_S3_REGION`` from
    ``environ``). Raises ValueError naming what is missing."""
    if is_bucket(location):
        from talentnest.store._s3 import S3Store

        return S3Store.from_url(str(location), os.environ if environ is None else environ)
    return DirectoryStore(Path(location))


# --- names --------------------------------------------------------------------------------------


def node_dir(node_id: int) -> str:
    return f"{NODE_PREFIX}{node_id}"


def chain_name(number: int) -> str:
    return f"{CHAIN_PREFIX}{number:06d}"


def snapshot_name(chain: str, lsn: int, compression: str) -> str:
    return f"{chain}/snapshot-{lsn:020d}.{SNAPSHOT_EXTENSIONS[compression]}"


def segment_name(chain: str, first: int, last: int) -> str:
    return f"{chain}/entries-{first:020d}-{last:020d}.jsonl.zst"


# --- segments -----------------------------------------------------------------------------------


def encode_segment(entries: Sequence[LogEntry]) -> bytes:
    """Entries as zstd-compressed JSON lines (a frame checksum catches a damaged file)."""
    text = "".join(entry.to_json() + "\n" for entry in entries).encode()
    return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(text)


def decode_segment(data: bytes, name: str) -> list[LogEntry]:
    from talentnest.errors import InvalidInput

    try:
        text = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return [LogEntry.from_dict(json.loads(line)) for line in io.BytesIO(text) if line.strip()]
    except (zstandard.ZstdError, ValueError, InvalidInput) as exc:
        raise ArchiveError(f"archive segment {name} is damaged: {exc}") from None


# --- reading an archive back ----------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotRecord:
    name: str  # the snapshot file, relative to the archive's root
    lsn: int
    term: int
    compression: str
    sha256: str
    compressed_bytes: int
    raw_bytes: int
    schema_version: int
    taken_at: str
    last_entry_time: str  # the timestamp of the entry at ``lsn`` ("" for an empty database)


@dataclass(frozen=True)
class SegmentRecord:
    name: str
    first: int
    last: int


@dataclass
class Chain:
    """One chain of one node: its snapshots and segments, oldest first."""

    node_id: int
    name: str  # node-<id>/chain-<n>
    number: int
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    segments: list[SegmentRecord] = field(default_factory=list)

    @property
    def first_lsn(self) -> int:
        """The oldest LSN a restore can reach in this chain (its oldest snapshot's)."""
        return self.snapshots[0].lsn

    @property
    def last_lsn(self) -> int:
        candidates = [s.lsn for s in self.snapshots] + [s.last for s in self.segments]
        return max(candidates, default=0)


def read_chains(store: ArchiveStore, node_id: int | None = None) -> list[Chain]:
    """Every chain in the archive (of one node, if given) that has a snapshot, oldest first per node."""
    prefix = node_dir(node_id) if node_id is not None else ""
    chains: dict[str, Chain] = {}
    for name in store.list(prefix):
        parts = name.split("/")
        if len(parts) != 3 or not parts[0].startswith(NODE_PREFIX) or not parts[0][len(NODE_PREFIX) :].isdigit():
            continue
        match = _CHAIN.match(parts[1])
        if match is None:
            continue
        key = f"{parts[0]}/{parts[1]}"
        chain = chains.setdefault(key, Chain(int(parts[0][len(NODE_PREFIX) :]), key, int(match.group(1))))
        if (found := _SEGMENT.match(parts[2])) is not None:
            chain.segments.append(SegmentRecord(name, int(found.group(1)), int(found.group(2))))
        elif _SNAPSHOT.match(parts[2]) is not None:
            chain.snapshots.append(_snapshot_record(store, name))
    result = []
    for chain in chains.values():
        chain.snapshots.sort(key=lambda s: s.lsn)
        chain.segments.sort(key=lambda s: (s.first, s.last))
        if chain.snapshots:
            result.append(chain)
    return sorted(result, key=lambda c: (c.node_id, c.number))


def _snapshot_record(store: ArchiveStore, name: str) -> SnapshotRecord:
    meta_name = name.rsplit(".", 1)[0] + ".json"
    try:
        meta = json.loads(store.get_bytes(meta_name))
        return SnapshotRecord(
            name=name,
            lsn=int(meta["lsn"]),
            term=int(meta["term"]),
            compression=str(meta["compression"]),
            sha256=str(meta["sha256"]),
            compressed_bytes=int(meta["compressed_bytes"]),
            raw_bytes=int(meta["raw_bytes"]),
            schema_version=int(meta["schema_version"]),
            taken_at=str(meta["taken_at"]),
            last_entry_time=str(meta.get("last_entry_time") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"archive snapshot {name} has no readable {meta_name}: {exc}") from None


def snapshot_meta(record: SnapshotRecord) -> bytes:
    payload = {k: v for k, v in record.__dict__.items() if k != "name"}
    return (json.dumps(payload, indent=2) + "\n").encode()


def entries_from(store: ArchiveStore, chain: Chain, after: int) -> Iterator[LogEntry]:
    """The chain's entries after LSN ``after``, in order, each once; ArchiveError at a missing LSN."""
    expected = after + 1
    for segment in chain.segments:
        if segment.last < expected:
            continue
        if segment.first > expected:
            raise ArchiveError(f"the archive lacks LSN {expected}-{segment.first - 1} in {chain.name}")
        for entry in decode_segment(store.get_bytes(segment.name), segment.name):
            if entry.lsn < expected:
                continue
            if entry.lsn != expected:
                raise ArchiveError(f"archive segment {segment.name} skips from LSN {expected - 1} to {entry.lsn}")
            yield entry
            expected += 1


def last_entry(store: ArchiveStore, chain: Chain) -> LogEntry | None:
    """The newest archived entry of a chain (None when it has only its snapshots)."""
    if not chain.segments:
        return None
    newest = max(chain.segments, key=lambda s: s.last)
    entries = decode_segment(store.get_bytes(newest.name), newest.name)
    return entries[-1] if entries else None


# --- retention ------------------------------------------------------------------------------------


def expired(chains: Sequence[Chain], cutoff: str, last_times: dict[str, str]) -> list[str]:
    """The files retention removes at ``cutoff`` (an ISO time): whole chains of one node that ended before it
    (not its newest), and within a chain what only serves points before the newest snapshot taken before it
    (that snapshot stays: it is where the window starts). ``last_times``: chain name -> its last entry's time."""
    doomed: list[str] = []
    newest_by_node: dict[int, int] = {}
    for chain in chains:
        newest_by_node[chain.node_id] = max(newest_by_node.get(chain.node_id, 0), chain.number)
    for chain in chains:
        ended = last_times.get(chain.name) or chain.snapshots[-1].taken_at
        if chain.number != newest_by_node[chain.node_id] and ended < cutoff:
            doomed += [s.name for s in chain.snapshots]
            doomed += [s.name.rsplit(".", 1)[0] + ".json" for s in chain.snapshots]
            doomed += [s.name for s in chain.segments]
            continue
        base = [s for s in chain.snapshots if (s.last_entry_time or s.taken_at) < cutoff]
        if len(base) < 1:
            continue
        keep = base[-1]
        for old in chain.snapshots:
            if old.lsn < keep.lsn:
                doomed += [old.name, old.name.rsplit(".", 1)[0] + ".json"]
        doomed += [s.name for s in chain.segments if s.last <= keep.lsn]
    return doomed
