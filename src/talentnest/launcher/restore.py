"""``talentnest restore``: a data directory a node starts from, as of a backup, or of any LSN or time an archive holds.

The restore starts a new *generation* of the cluster, so that it never mixes with the history it replaces:
a generation is a block of 2**32 terms, and the restored log ends with one entry without changes at the
next LSN whose term is the first of the next generation, with a random epoch; ``cluster-state.json``
starts at that term. The restored node's log position (last term, LSN) then outranks that of any node of
the old history: old nodes catch up from it, find their entries after the restore point divergent (they
are archived in their ``DATA_DIR/archive/``, never merged) and install its snapshot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from talentnest.cluster.state import STATE_FILENAME, DurableState
from talentnest.cluster.wire import MAX_TERM, MAX_TERM_STEP
from talentnest.errors import InvalidInput, SnapshotError
from talentnest.store import DB_FILENAME, Database, LogEntry, archive, guard, iso_from_epoch, snapshot
from talentnest.store._db import SHARED_META, fsync_dir
from talentnest.store.schema import MIGRATIONS, product_database

GENERATION_TERMS = 2**32
APPLY_BATCH = 500
_ZSTD_MAGIC, _GZIP_MAGIC = b"\x28\xb5\x2f\xfd", b"\x1f\x8b"


class RestoreError(Exception):
    """The restore cannot be done as asked; nothing in the data directory was changed (or it was put back)."""


def next_generation_term(term: int) -> int:
    """The first term of the generation after ``term``'s."""
    value = (term // GENERATION_TERMS + 1) * GENERATION_TERMS
    if value >= MAX_TERM:  # a cluster at the top term could never elect again
        raise RestoreError(f"no generation is left after term {term} (terms stop at {MAX_TERM})")
    return value


def parse_time(text: str) -> float:
    """``2026-12-02T14:02``, ``2026-12-02 14:02:30.5``, with ``Z`` or ``+01:00``; without a zone, this
    machine's local time. Unix seconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RestoreError(f"--to-time must be an ISO 8601 time such as 2026-12-02T14:02:00Z, got '{text}'") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


@dataclass(frozen=True)
class Plan:
    """Where a restore starts (a compressed snapshot) and the entries it applies after it, up to ``target``."""

    description: str
    snapshot_lsn: int
    compression: str
    sha256: str | None
    fetch: object  # callable(dest: Path) -> Path of the compressed snapshot file
    entries: Iterable[LogEntry]
    target: int | None  # the LSN to end at (None: wherever the entries end)
    highest_term: int  # the highest term the source knows of (the next generation must be above it)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Restored:
    data_dir: Path
    lsn: int  # the last restored entry of the old history
    last_entry_time: str
    generation_lsn: int
    term: int
    generation: int
    description: str
    notes: tuple[str, ...]


# --- what to restore from -------------------------------------------------------------------------------


def _compression_of(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    raise RestoreError(f"{path} is not a Talent Nest backup (neither zstd nor gzip)")


def plan_backup(file: Path, *, to_lsn: int | None, to_time: float | None) -> Plan:
    from talentnest.launcher.backup import read_manifest
    from talentnest.launcher.remote import RemoteError

    try:
        manifest = read_manifest(file)
    except RemoteError as exc:
        raise RestoreError(str(exc)) from None
    if to_time is not None:
        raise RestoreError(f"{file} is one backup, of one moment: --to-time needs an archive (ARCHIVE_DIR)")
    compression = manifest.compression if manifest else _compression_of(file)
    if manifest is not None and to_lsn is not None and to_lsn != manifest.lsn:
        raise RestoreError(f"{file} holds LSN {manifest.lsn}; it cannot be restored to LSN {to_lsn} (use an archive)")
    taken = f" (LSN {manifest.lsn}, taken {manifest.taken_at} on node-{manifest.node_id})" if manifest else ""
    return Plan(
        description=f"backup {file}{taken}",
        snapshot_lsn=manifest.lsn if manifest else 0,
        compression=compression,
        sha256=manifest.sha256 if manifest else None,
        fetch=lambda dest: file,
        entries=(),
        target=to_lsn,
        highest_term=manifest.term if manifest else 0,
        notes=() if manifest else (f"no {file}.manifest.json beside it: the file is checked by its own checksums only",),
    )


def _freshest_node(store: archive.ArchiveStore, chains: list[archive.Chain]) -> int:
    best: tuple[tuple[int, int], int] | None = None
    for node_id in sorted({c.node_id for c in chains}):
        newest = [c for c in chains if c.node_id == node_id][-1]
        entry = archive.last_entry(store, newest)
        position = (entry.term, entry.lsn) if entry is not None else (newest.snapshots[-1].term, newest.snapshots[-1].lsn)
        if best is None or position > best[0]:
            best = (position, node_id)
    return best[1]


def plan_archive(location: str | Path, *, to_lsn: int | None, to_time: float | None, node_id: int | None) -> Plan:
    try:
        store = archive.open_store(location)
        every = archive.read_chains(store)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    except OSError as exc:
        raise RestoreError(f"cannot read the archive {location}: {exc}") from None
    if not every:
        raise RestoreError(f"{location} holds no archive (no node-<id>/chain-<n>/ with a snapshot)")
    highest = max(
        [s.term for c in every for s in c.snapshots] + [e.term for c in every if (e := archive.last_entry(store, c)) is not None]
    )
    if node_id is None:
        node_id = _freshest_node(store, every)
    chains = [c for c in every if c.node_id == node_id]
    if not chains:
        nodes = ", ".join(sorted({str(c.node_id) for c in every}))
        raise RestoreError(f"{location} has no archive of node {node_id} (it has nodes {nodes})")
    notes: list[str] = []
    chain, base, target = _choose(store, chains, to_lsn=to_lsn, to_time=to_time, notes=notes)
    entries = archive.entries_from(store, chain, base.lsn)
    if to_time is not None:
        limit = iso_from_epoch(to_time)
        entries = _until_time(entries, limit)
    elif target is not None:
        entries = _until_lsn(entries, target)

    def fetch(dest_dir: Path) -> Path:
        dest = snapshot.transfer_file(dest_dir, "restore")  # removed at a node's start if left behind
        store.get_file(base.name, dest)
        return dest

    return Plan(
        description=f"archive {location}, {chain.name}, from its snapshot at LSN {base.lsn}",
        snapshot_lsn=base.lsn,
        compression=base.compression,
        sha256=base.sha256,
        fetch=fetch,
        entries=entries,
        target=target if to_time is None else None,
        highest_term=highest,
        notes=tuple(notes),
    )


def _choose(store, chains, *, to_lsn, to_time, notes) -> tuple[archive.Chain, archive.SnapshotRecord, int | None]:
    newest_first = list(reversed(chains))
    if to_lsn is not None:
        for chain in newest_first:
            if chain.first_lsn <= to_lsn <= chain.last_lsn:
                base = [s for s in chain.snapshots if s.lsn <= to_lsn][-1]
                return chain, base, to_lsn
        reach = "; ".join(f"{c.name}: LSN {c.first_lsn}-{c.last_lsn}" for c in chains)
        raise RestoreError(f"LSN {to_lsn} is not in the archive's window ({reach})")
    if to_time is not None:
        limit = iso_from_epoch(to_time)
        for chain in newest_first:
            usable = [s for s in chain.snapshots if s.last_entry_time <= limit]
            if usable:
                last = archive.last_entry(store, chain)
                if last is not None and last.timestamp < limit:
                    notes.append(
                        f"the archive's newest entry (LSN {last.lsn}) is from {last.timestamp}, before {limit}: "
                        "restoring to it (anything later was not archived)"
                    )
                return chain, usable[-1], None
        oldest = min((s.last_entry_time for c in chains for s in c.snapshots), default="")
        raise RestoreError(f"{limit} is before the archive's window, which starts at {oldest or 'its first snapshot'}")
    chain = newest_first[0]
    return chain, chain.snapshots[-1], None


def _until_time(entries: Iterator[LogEntry], limit: str) -> Iterator[LogEntry]:
    for entry in entries:
        if entry.timestamp > limit:
            return
        yield entry


def _until_lsn(entries: Iterator[LogEntry], target: int) -> Iterator[LogEntry]:
    for entry in entries:
        if entry.lsn > target:
            return
        yield entry


# --- doing it -----------------------------------------------------------------------------------------------


def _prepare_dir(data_dir: Path, *, replace: bool, now: float) -> list[str]:
    """Make ``data_dir`` ready for a restored database; with ``replace``, move what it holds aside."""
    present = [p for p in data_dir.iterdir() if p.name != guard.LOCK_FILENAME and not p.name.startswith("replaced-")]
    if not present:
        return []
    holds_data = any(p.name in (DB_FILENAME, STATE_FILENAME) for p in present)
    if not holds_data:
        names = ", ".join(sorted(p.name for p in present)[:5])
        raise RestoreError(f"{data_dir} is not empty ({names}) and holds no node's data; restore into an empty directory")
    if not replace:
        raise RestoreError(
            f"{data_dir} holds a node's data; pass --replace to move it aside (into {data_dir}/replaced-<time>/) "
            "and restore in its place"
        )
    aside = data_dir / f"replaced-{datetime.fromtimestamp(now).strftime('%Y%m%dT%H%M%S')}"
    aside.mkdir()
    for path in present:
        shutil.move(str(path), aside / path.name)
    return [f"moved what {data_dir} held into {aside}"]


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = guard.DataDirLock(data_dir)
    try:
        lock.acquire(owner="talentnest restore")
    except guard.DataDirInUse as exc:
        raise RestoreError(f"{exc}: stop the node first") from None
    try:
        yield
    finally:
        lock.release()


def restore(
    plan: Plan,
    data_dir: Path,
    *,
    replace: bool = False,
    generation: int | None = None,
    now: float | None = None,
    copies: Sequence[Path] = (),
) -> Restored:
    """Carry out ``plan`` into ``data_dir`` (see the module): the data directory a node starts from; then the
    same restored files (the same generation entry) into each of ``copies``, for the other nodes."""
    import time

    now = time.time() if now is None else now
    data_dir = Path(data_dir)
    with _locked(data_dir):
        done = _restore_into(plan, data_dir, replace=replace, generation=generation, now=now)
    notes = list(done.notes)
    for other in copies:
        other = Path(other)
        with _locked(other):
            notes += _prepare_dir(other, replace=replace, now=now)
            for name in (DB_FILENAME, STATE_FILENAME):
                _copy_durably(data_dir / name, other / name)
            notes.append(f"copied the restored data into {other}")
    return dataclasses.replace(done, notes=tuple(notes))


def _copy_durably(source: Path, dest: Path) -> None:
    tmp = dest.with_name(f"{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def _restore_into(plan: Plan, data_dir: Path, *, replace: bool, generation: int | None, now: float) -> Restored:
    # Refused before anything was written (a node's data there and no --replace): nothing to undo.
    moved = _prepare_dir(data_dir, replace=replace, now=now)
    notes = list(plan.notes) + moved
    try:
        source = plan.fetch(data_dir)
        newest = max(v for v, _ in MIGRATIONS)
        try:
            prepared = snapshot.prepare_snapshot(
                data_dir, source, compression=plan.compression, expected_sha256=plan.sha256, max_schema_version=newest
            )
        except SnapshotError as exc:
            raise RestoreError(f"the snapshot does not verify: {exc}") from None
        finally:
            if Path(source).parent == data_dir / snapshot.TRANSFER_DIR:
                Path(source).unlink(missing_ok=True)
        os.replace(prepared.path, data_dir / DB_FILENAME)
        return _finish(plan, data_dir, notes, generation=generation, now=now)
    except BaseException:
        for name in (DB_FILENAME, f"{DB_FILENAME}-wal", f"{DB_FILENAME}-shm", f"{DB_FILENAME}-journal", STATE_FILENAME):
            (data_dir / name).unlink(missing_ok=True)
        if moved:  # put back what --replace moved aside
            aside = sorted(p for p in data_dir.iterdir() if p.name.startswith("replaced-"))[-1]
            for path in aside.iterdir():
                shutil.move(str(path), data_dir / path.name)
            aside.rmdir()
        raise


def _finish(plan: Plan, data_dir: Path, notes: list[str], *, generation: int | None, now: float) -> Restored:
    db = product_database(data_dir).open()
    try:
        # The source node's own metadata is not this node's.
        marks = ", ".join("?" for _ in SHARED_META)
        db.conn.execute(f"DELETE FROM _tn_meta WHERE key NOT IN ({marks})", SHARED_META)
        batch: list[LogEntry] = []
        try:
            for entry in plan.entries:
                batch.append(entry)
                if len(batch) >= APPLY_BATCH:
                    _apply(db, batch)
                    batch = []
            if batch:
                _apply(db, batch)
        except archive.ArchiveError as exc:
            raise RestoreError(str(exc)) from None
        if plan.target is not None and db.last_lsn != plan.target:
            raise RestoreError(f"the archive reaches LSN {db.last_lsn}, not {plan.target}")
        lsn, last_term = db.last_lsn, db.last_term
        last_time = _entry_time(db, lsn)
        term = next_generation_term(max(last_term, plan.highest_term))
        if generation is not None:
            wanted = generation * GENERATION_TERMS
            if wanted < term:
                raise RestoreError(
                    f"--generation {generation} is not above the source's terms (the next one is {term // GENERATION_TERMS})"
                )
            if wanted >= MAX_TERM:
                raise RestoreError(f"--generation must be at most {MAX_TERM // GENERATION_TERMS - 1}, got {generation}")
            if wanted - term > MAX_TERM_STEP:
                # The old history's nodes would refuse a term this far above theirs (docs/cluster.md).
                most = (term + MAX_TERM_STEP) // GENERATION_TERMS
                raise RestoreError(
                    f"--generation must be at most {most} (the source's next one is {term // GENERATION_TERMS}, and a node "
                    f"takes a term at most {MAX_TERM_STEP // GENERATION_TERMS} generations above its own), got {generation}"
                )
            term = wanted
        marker = LogEntry(lsn + 1, term, iso_from_epoch(now), db.schema_version, "[]", secrets.randbits(63) or 1)
        _apply(db, [marker])
    finally:
        db.close()
    DurableState(data_dir).save(term, None)
    return Restored(
        data_dir=data_dir,
        lsn=lsn,
        last_entry_time=last_time,
        generation_lsn=lsn + 1,
        term=term,
        generation=term // GENERATION_TERMS,
        description=plan.description,
        notes=tuple(notes),
    )


def _apply(db: Database, entries: list[LogEntry]) -> None:
    try:
        result = db.apply(entries)
    except (InvalidInput, sqlite3.Error) as exc:
        raise RestoreError(f"cannot apply the archived entries {entries[0].lsn}-{entries[-1].lsn}: {exc}") from None
    except Exception as exc:  # StaleTerm, LogDiverged: the archive is not one history
        raise RestoreError(f"the archived entries {entries[0].lsn}-{entries[-1].lsn} do not follow the snapshot: {exc}") from None
    if result.gap:
        raise RestoreError(f"the archive lacks LSN {result.applied_lsn + 1}")


def _entry_time(db: Database, lsn: int) -> str:
    if lsn <= 0:
        return ""
    row = db.conn.execute("SELECT ts FROM _tn_log WHERE lsn = ?", (lsn,)).fetchone()
    return row[0] if row is not None else ""


def run_restore(args, stream: TextIO | None = None) -> int:
    """The ``restore`` command."""
    out = stream or sys.stdout
    to_time = parse_time(args.to_time) if args.to_time is not None else None
    data_dir, *copies = [Path(d) for d in args.data_dir]
    if archive.is_bucket(args.source):
        plan = plan_archive(args.source, to_lsn=args.to_lsn, to_time=to_time, node_id=args.node)
    else:
        source = Path(args.source)
        if not source.exists():
            raise RestoreError(f"{source} does not exist (give a backup file, an archive directory or s3://BUCKET/PREFIX)")
        if source.is_dir():
            plan = plan_archive(source, to_lsn=args.to_lsn, to_time=to_time, node_id=args.node)
        else:
            plan = plan_backup(source, to_lsn=args.to_lsn, to_time=to_time)
    print(f"restore: from {plan.description}", file=out, flush=True)
    done = restore(plan, data_dir, replace=args.replace, generation=args.generation, copies=copies)
    for note in done.notes:
        print(f"restore: note: {note}", file=out)
    when = f" ({done.last_entry_time})" if done.last_entry_time else ""
    print(
        f"restore: {data_dir} holds the data as of LSN {done.lsn}{when}, then the generation entry at LSN "
        f"{done.generation_lsn}: generation {done.generation}, term {done.term}",
        file=out,
    )
    print(
        "restore: start the nodes on these data directories (a majority of the cluster's, at least); nodes started "
        "empty sync from them, and an old node's entries after the restore point are archived, never merged",
        file=out,
    )
    return 0
