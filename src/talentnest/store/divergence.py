"""Where this node's log parts from the leader's, and the archive of the entries only it holds.

Each log is described by its term history, ``[(term, start_lsn, epoch), ...]`` oldest first, and
its last LSN: the position of an LSN is the (term, epoch) of the last history item starting at or
before it. As in Raft's log matching (Kafka's leader epochs), two entries with the same LSN and
position are the same entry, and so is everything before them; so the logs agree up to the end of
their last common stretch. The epoch is a random number each leader draws for its term, so even two
leaders of one term (a duplicated node ID) make different histories. What this node holds beyond
that point the leader never had: it is written to ``DATA_DIR/archive/`` before the node resyncs,
never dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from talentnest.store._db import Database, LogEntry, fsync_dir
from talentnest.store._time import iso_from_epoch

log = logging.getLogger("talentnest.store")

TermHistory = Sequence[tuple[int, ...]]  # (term, start_lsn) or (term, start_lsn, epoch)
ARCHIVE_DIR = "archive"


def position_at(history: TermHistory, lsn: int) -> tuple[int, int]:
    """The (term, epoch) of ``lsn`` in a log with this history ((0, 0) before its first term); an item
    without an epoch (from a release before epochs) has epoch 0."""
    best = (0, 0, 0)  # (start, term, epoch)
    for item in history:
        term, start, epoch = item[0], item[1], item[2] if len(item) > 2 else 0
        if start <= lsn and (start, term) >= best[:2]:
            best = (start, term, epoch)
    return (best[1], best[2])


def term_at(history: TermHistory, lsn: int) -> int:
    """The term of ``lsn`` in a log with this history (0 before its first term)."""
    return position_at(history, lsn)[0]


def common_lsn(local_history: TermHistory, local_last_lsn: int, leader_history: TermHistory, leader_last_lsn: int) -> int:
    """The highest LSN up to which this node's log and the leader's hold the same entries.

    Walks both logs from LSN 1 in stretches where neither history changes term, and stops at
    the first stretch whose terms differ. Never more than either last LSN.
    """
    limit = min(local_last_lsn, leader_last_lsn)
    if limit <= 0:
        return 0
    starts = sorted({1} | {h[1] for h in (*local_history, *leader_history) if 1 < h[1] <= limit})
    for start in starts:
        if position_at(local_history, start) != position_at(leader_history, start):
            return start - 1
    return limit


def archive_divergent(db: Database, after_lsn: int, reason: str) -> Path:
    """Write every entry of ``db`` after ``after_lsn`` to a new archive file, durably; its path.

    The file is JSON lines: a header (the LSN range, the terms it spans, the reason, and
    whether part of the range was already trimmed from the log, so is missing here), then
    one line per entry still in the log, in LSN order, in the wire form. Raises ValueError
    when the node holds nothing after ``after_lsn``.
    """
    last = db.last_lsn
    if after_lsn >= last:
        raise ValueError(f"nothing to archive: the log ends at LSN {last}, not after {after_lsn}")
    first_kept = db.first_lsn
    trimmed = after_lsn + 1 < first_kept
    history = db.term_history()
    terms = sorted({position_at(history, after_lsn + 1)[0]} | {h[0] for h in history if after_lsn < h[1] <= last})
    count = db.conn.execute("SELECT COUNT(*) FROM _tn_log WHERE lsn > ?", (after_lsn,)).fetchone()[0]
    now = db.clock()
    header = {
        "archive": "talentnest divergent entries",
        "from_lsn": after_lsn + 1,
        "to_lsn": last,
        "terms": terms,
        "term_history": [{"term": t, "start_lsn": s, "epoch": e} for t, s, e in history],
        "reason": reason,
        "trimmed": trimmed,
        "first_archived_lsn": max(after_lsn + 1, first_kept) if count else None,
        "entries": count,
        "archived_at": iso_from_epoch(now),
    }
    directory = db.data_dir / ARCHIVE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    path = _unused(directory / f"divergent-{stamp}-lsn{after_lsn + 1}-{last}.jsonl")
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header, ensure_ascii=False) + "\n")
        rows = db.conn.execute(
            "SELECT lsn, term, ts, schema_version, changes, epoch FROM _tn_log WHERE lsn > ? ORDER BY lsn", (after_lsn,)
        )
        for row in rows:
            out.write(LogEntry(*row).to_json() + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    fsync_dir(directory)
    log.warning(
        "store: archived %d entries (LSN %d-%d, terms %s%s) to %s: %s",
        count,
        after_lsn + 1,
        last,
        terms,
        ", part already trimmed" if trimmed else "",
        path,
        reason,
    )
    return path


def _unused(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate
