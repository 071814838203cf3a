"""Idempotency-Key: a write retried with the same key, on any node and after any failover, gets the
first answer again and changes nothing.

The key is scoped to its caller and route (the same key from another token is another request) and
kept, with the answer, in the replicated table ``_tn_requests`` (created with the store's own tables),
written in the same transaction as the write itself: one transaction, one log entry, so a retry sees
either the write and its answer or neither. Keys are forgotten after ``TTL`` (a replicated delete the
leader runs at its periodic election).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from talentnest.store import Database

log = logging.getLogger("talentnest.forward")

TTL = 24 * 3600  # seconds an answer is kept for a retry
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class Answer:
    """A kept answer: its status, its content type, its body, and the LSN of the write."""

    status: int
    headers: dict[str, str]
    body: bytes
    lsn: int


def scoped_key(key: str, method: str, path: str, authorization: str) -> str:
    material = "\n".join((key, method, path, authorization))
    return hashlib.sha256(material.encode("utf-8", "replace")).hexdigest()


def find(db: Database, scoped: str) -> Answer | None:
    row = db.conn.execute("SELECT lsn, status, headers, body FROM _tn_requests WHERE key = ?", (scoped,)).fetchone()
    if row is None:
        return None
    return Answer(row["status"], json.loads(row["headers"] or "{}"), (row["body"] or "").encode(), row["lsn"])


def keep(
    scoped: str, answer_status: int, headers: dict[str, str], body: bytes, now: float
) -> Callable[[sqlite3.Connection, int], None]:
    """The statement that records the answer inside the write's own transaction (at its LSN)."""

    def record(conn: sqlite3.Connection, lsn: int) -> None:
        conn.execute(
            "INSERT INTO _tn_requests(key, lsn, created, status, headers, body) VALUES (?, ?, ?, ?, ?, ?)",
            (scoped, lsn, now, answer_status, json.dumps(headers), body.decode("utf-8", "replace")),
        )

    return record


def expire(db: Database, older_than: float) -> int:
    """Forget the answers recorded before ``older_than`` (a replicated delete, written only if any)."""
    if db.conn.execute("SELECT 1 FROM _tn_requests WHERE created < ? LIMIT 1", (older_than,)).fetchone() is None:
        return 0
    with db.write() as conn:
        removed = conn.execute("DELETE FROM _tn_requests WHERE created < ?", (older_than,)).rowcount
    log.info("maintenance: forgot %d idempotency keys older than %d h", removed, TTL // 3600)
    return removed
