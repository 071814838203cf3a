"""Continuous archiving: every committed log entry of this node, in segments, and periodic snapshots, into an archive.

The archiver is a commit listener of the store that only notes the newest LSN: a write never waits for it
and never fails because of it. A task beside the node wakes every ``interval`` seconds, reads the entries
committed since the last segment (``Database.entries_after``, bounded), and hands their compression and
upload to a worker thread. If the archive cannot be written it logs, counts the failure, and tries again
with backoff: the entries wait in the node's own log. If they leave the retained log first
(``LOG_RETENTION_ENTRIES``/``_BYTES``), the archive has a hole there; the archiver says so, counts it,
and starts a new chain from a fresh snapshot (store/archive.py), so it never pretends to be contiguous.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from talentnest.errors import LogTruncated
from talentnest.store import archive, snapshot
from talentnest.store._db import Database, LogEntry
from talentnest.store._time import iso_from_epoch

log = logging.getLogger("talentnest.store")

# One segment is one bounded read of the log: what a busy node commits in a few seconds at most.
SEGMENT_MAX_ENTRIES = 10_000
SEGMENT_MAX_BYTES = 4 * 1024 * 1024
MAX_BACKOFF = 60.0


@dataclass
class ArchiverStats:
    archived_lsn: int = 0
    segments: int = 0
    entries: int = 0
    bytes: int = 0
    snapshots: int = 0
    failures: int = 0
    gaps: int = 0
    last_success: float = 0.0  # wall time


@dataclass(frozen=True)
class ArchiveSettings:
    interval: float = 10.0  # seconds between segments (the most the archive trails the node by)
    snapshot_interval: float = 86400.0  # seconds between periodic snapshots
    retention: float = 7 * 86400.0  # seconds of history kept restorable


class Archiver:
    """Archives ``db``'s log into ``store`` under ``node-<node_id>``; ``start`` after the node knows its ID."""

    def __init__(
        self,
        db: Database,
        store: archive.ArchiveStore,
        settings: ArchiveSettings,
        *,
        wall: Callable[[], float] = time.time,
    ):
        self.db = db
        self.store = store
        self.settings = settings
        self.wall = wall
        self.stats = ArchiverStats()
        self.node_id: int | None = None
        self._chain: str | None = None  # node-<id>/chain-<n> being written
        self._chain_number = 0
        self._position: tuple[int, int] | None = None  # (lsn, term) of the last archived entry
        self._last_snapshot = 0.0  # wall time of this chain's newest snapshot
        self._newest = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._stopping = False
        db.add_commit_listener(self.committed)

    # --- the commit listener: nothing but a number ------------------------------------------------

    def committed(self, lsn: int) -> None:
        self._newest = lsn

    @property
    def lag(self) -> int:
        return max(0, self.db.last_lsn - self.stats.archived_lsn)

    # --- life cycle ------------------------------------------------------------------------------

    async def start(self, node_id: int) -> None:
        self.node_id = node_id
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="archiver")

    async def stop(self, timeout: float = 5.0) -> None:
        """A last segment of what is committed (bounded by ``timeout``), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
            except Exception:
                log.exception("archive: the archiver failed while stopping")
            self._task = None

    async def _run(self) -> None:
        backoff = self.settings.interval
        while True:
            try:
                await self.archive_once()
                backoff = self.settings.interval
            except Exception as exc:  # the archive is unreachable or full: retry later, the entries wait
                self.stats.failures += 1
                log.warning(
                    "archive: cannot write to %s (%s); %d entries wait in the log, retrying in %.0f s",
                    *(self.store.describe(), exc, self.lag, backoff),
                )
                backoff = min(MAX_BACKOFF, max(backoff * 2, self.settings.interval))
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)

    # --- one round -------------------------------------------------------------------------------

    async def archive_once(self) -> None:
        """Bring the archive up to the node's last committed entry (and take the snapshot that is due)."""
        if self._chain is None:
            await asyncio.to_thread(self._resume)
        if self._chain is None or not self._continues():
            await self._new_chain()
        while self._position[0] < self.db.last_lsn:
            entries = self._read_segment()
            if entries is None:  # fell behind the retained log, or the history changed under us
                await self._new_chain()
                continue
            if not entries:
                break
            await asyncio.to_thread(self._write_segment, entries)
        if self.wall() - self._last_snapshot >= self.settings.snapshot_interval and not self._stopping:
            await self._snapshot(self._chain)
            await asyncio.to_thread(self._apply_retention)
        self.stats.last_success = self.wall()

    def _continues(self) -> bool:
        """Whether the node's log still continues the archived chain from its last archived entry."""
        lsn, term = self._position
        db = self.db
        if lsn > db.last_lsn or (lsn > 0 and db.term_at(lsn) != term):
            log.warning(
                "archive: this node's log no longer continues %s at LSN %d term %d (it holds LSN %d term %d): "
                "its history was replaced; starting a new chain",
                *(self._chain, lsn, term, db.last_lsn, db.term_at(min(lsn, db.last_lsn))),
            )
            return False
        return True

    def _read_segment(self) -> list[LogEntry] | None:
        """The next segment's entries: one bounded read of the log (on the event loop's thread, which owns the
        connection; a few milliseconds), or None when the chain cannot go on."""
        after = self._position[0]
        if not self._continues():
            return None
        try:
            return self.db.entries_after(after, max_entries=SEGMENT_MAX_ENTRIES, max_bytes=SEGMENT_MAX_BYTES)
        except LogTruncated:
            self.stats.gaps += 1
            log.warning(
                "archive: fell behind the retained log: entries after LSN %d were trimmed before they were "
                "archived (the log starts at %d); a restore cannot reach a point between them. Starting a new "
                "chain from a snapshot; raise LOG_RETENTION_ENTRIES/_BYTES or fix the archive sooner",
                *(after, self.db.first_lsn),
            )
            return None

    def _write_segment(self, entries: list[LogEntry]) -> None:
        name = archive.segment_name(self._chain, entries[0].lsn, entries[-1].lsn)
        data = archive.encode_segment(entries)
        self.store.put_bytes(name, data)
        last = entries[-1]
        self._position = (last.lsn, last.term)
        self.stats.archived_lsn = last.lsn
        self.stats.segments += 1
        self.stats.entries += len(entries)
        self.stats.bytes += len(data)

    # --- chains and snapshots --------------------------------------------------------------------

    def _resume(self) -> None:
        """Continue the newest chain this node left in the archive, if its log still continues it."""
        chains = archive.read_chains(self.store, self.node_id)
        if not chains:
            return
        newest = chains[-1]
        self._chain_number = newest.number
        entry = archive.last_entry(self.store, newest)
        snap = newest.snapshots[-1]
        position = (entry.lsn, entry.term) if entry is not None and entry.lsn >= snap.lsn else (snap.lsn, snap.term)
        self._chain, self._position = newest.name, position
        self._last_snapshot = _epoch(snap.taken_at)
        self.stats.archived_lsn = position[0]
        log.info("archive: resuming %s in %s at LSN %d", newest.name, self.store.describe(), position[0])

    async def _new_chain(self) -> None:
        self._chain_number += 1
        chain = f"{archive.node_dir(self.node_id)}/{archive.chain_name(self._chain_number)}"
        record = await self._snapshot(chain)
        self._chain, self._position = chain, (record.lsn, record.term)
        self.stats.archived_lsn = record.lsn
        log.info("archive: started %s in %s from a snapshot at LSN %d", chain, self.store.describe(), record.lsn)

    async def _snapshot(self, chain: str) -> archive.SnapshotRecord:
        path, info = await asyncio.to_thread(snapshot.take_to_serve, self.db.path)
        try:
            last_time = self._entry_time(info.lsn)
            record = archive.SnapshotRecord(
                name=archive.snapshot_name(chain, info.lsn, info.compression),
                lsn=info.lsn,
                term=info.term,
                compression=info.compression,
                sha256=info.sha256,
                compressed_bytes=info.compressed_bytes,
                raw_bytes=info.raw_bytes,
                schema_version=info.schema_version,
                taken_at=iso_from_epoch(self.wall()),
                last_entry_time=last_time,
            )
            await asyncio.to_thread(self._put_snapshot, record, path)
        finally:
            Path(path).unlink(missing_ok=True)
        self._last_snapshot = self.wall()
        self.stats.snapshots += 1
        return record

    def _entry_time(self, lsn: int) -> str:
        if lsn <= 0:
            return ""
        try:
            found = self.db.entries_after(lsn - 1, max_entries=1)
        except LogTruncated:
            found = []
        return found[0].timestamp if found and found[0].lsn == lsn else iso_from_epoch(self.wall())

    def _put_snapshot(self, record: archive.SnapshotRecord, path: Path) -> None:
        self.store.put_file(record.name, path)
        self.store.put_bytes(record.name.rsplit(".", 1)[0] + ".json", archive.snapshot_meta(record))

    def _apply_retention(self) -> None:
        chains = archive.read_chains(self.store, self.node_id)
        last_times = {}
        for chain in chains:
            entry = archive.last_entry(self.store, chain)
            last_times[chain.name] = entry.timestamp if entry is not None else ""
        cutoff = iso_from_epoch(self.wall() - self.settings.retention)
        doomed = archive.expired(chains, cutoff, last_times)
        for name in doomed:
            self.store.delete(name)
        if doomed:
            log.info("archive: retention removed %d file(s) older than %s", len(doomed), cutoff)


def _epoch(iso: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


__all__ = ["ArchiveSettings", "Archiver", "ArchiverStats"]
