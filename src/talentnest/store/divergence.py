"""Interim (replaced by the store's full version): where two histories part, and archiving."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from talentnest.store._time import iso_from_epoch


def _term_at(history: list[tuple[int, int]], lsn: int) -> int:
    term = 0
    for t, start in history:
        if start <= lsn:
            term = t
    return term


def divergence_point(ours: list[tuple[int, int]], our_last: int, theirs: list[tuple[int, int]], their_last: int) -> int:
    """The highest LSN up to which both logs hold the same terms."""
    limit = min(our_last, their_last)
    points = sorted({s for _, s in ours} | {s for _, s in theirs} | {limit})
    agreed = 0
    for lsn in points:
        if lsn > limit:
            break
        if _term_at(ours, lsn) != _term_at(theirs, lsn):
            return max(0, lsn - 1)
        agreed = lsn
    return limit if agreed <= limit else agreed


def archive_divergent(db, after_lsn: int, reason: str) -> Path:
    directory = db.data_dir / "archive"
    directory.mkdir(exist_ok=True)
    path = directory / f"divergent-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-lsn{after_lsn + 1}-{db.last_lsn}.jsonl"
    with open(path, "w") as handle:
        handle.write(
            json.dumps({"reason": reason, "from_lsn": after_lsn + 1, "to_lsn": db.last_lsn, "at": iso_from_epoch(time.time())})
            + "\n"
        )
        for entry in db.entries_after(max(after_lsn, db.first_lsn - 1), max_entries=10**9, max_bytes=2**62):
            handle.write(entry.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path
