"""Idempotency-Key: a write retried with the same key, on any node and after any failover, gets the
first answer again and changes nothing; the key reused for another request is refused (422).

The key is scoped to its caller (the same key from another token is another request) and kept, with
the answer, in the replicated table ``_tn_requests`` (created with the store's own tables), written
in the same transaction as the write itself: one transaction, one log entry, so a retry sees either
the write and its answer or neither. Keys are forgotten after ``TTL`` (a replicated delete the leader
runs at its periodic election).

Each use writes two rows there. The *answer* row, keyed by key, caller, method and path, is the one
earlier releases write and read, unchanged. The *claim* row, keyed by key and caller alone, says
which request the key was first used for (method, target, sha256 of method, target and body): no
earlier release computes its key, so it never reads it, and it applies it like any row of the table
(same columns). A key whose claim names another request is refused; an answer row with no claim
(written by an earlier release) is replayed as before (docs/cluster.md, "What a client can rely on").
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


@dataclass(frozen=True)
class Use:
    """One request's use of a key: where its answer and its claim are kept, and what it asks."""

    scoped: str  # the answer row's key
    claim: str  # the claim row's key
    method: str
    target: str  # path and query string, as sent
    fingerprint: str  # sha256 of method, target and body

    @classmethod
    def of(cls, key: str, method: str, path: str, target: str, body: bytes, authorization: str) -> Use:
        material = "\n".join((method, target, hashlib.sha256(body).hexdigest()))
        return cls(
            scoped_key(key, method, path, authorization),
            _digest("\n".join(("claim", key, authorization))),
            method,
            target,
            _digest(material),
        )


def scoped_key(key: str, method: str, path: str, authorization: str) -> str:
    return _digest("\n".join((key, method, path, authorization)))


def _digest(material: str) -> str:
    return hashlib.sha256(material.encode("utf-8", "replace")).hexdigest()


def reuse(db: Database, use: Use) -> str | None:
    """Why the key of ``use`` may not be used for it (it was first used for another request), or None."""
    row = db.conn.execute("SELECT body FROM _tn_requests WHERE key = ?", (use.claim,)).fetchone()
    if row is None:
        return None
    try:
        first = json.loads(row["body"])
        method, target, fingerprint = first["method"], first["target"], first["sha256"]
    except (TypeError, ValueError, KeyError):
        return "this Idempotency-Key was already used for another request; send a new request with a new key"
    if fingerprint == use.fingerprint:
        return None
    what = "with another body" if (method, target) == (use.method, use.target) else f"for {method} {target}"
    return f"this Idempotency-Key was already used {what}; send a new request with a new key"


def taken(db: Database, use: Use) -> bool:
    """Whether the key of ``use`` has an answer or a claim now (a concurrent request may have written it)."""
    return db.conn.execute("SELECT 1 FROM _tn_requests WHERE key IN (?, ?)", (use.scoped, use.claim)).fetchone() is not None


def find(db: Database, scoped: str) -> Answer | None:
    row = db.conn.execute("SELECT lsn, status, headers, body FROM _tn_requests WHERE key = ?", (scoped,)).fetchone()
    if row is None:
        return None
    return Answer(row["status"], json.loads(row["headers"] or "{}"), (row["body"] or "").encode(), row["lsn"])


def keep(
    use: Use, answer_status: int, headers: dict[str, str], body: bytes, now: float
) -> Callable[[sqlite3.Connection, int], None]:
    """The statements that record the answer and the claim inside the write's own transaction (at its LSN)."""
    claim = json.dumps({"method": use.method, "target": use.target, "sha256": use.fingerprint})

    def record(conn: sqlite3.Connection, lsn: int) -> None:
        conn.executemany(
            "INSERT INTO _tn_requests(key, lsn, created, status, headers, body) VALUES (?, ?, ?, ?, ?, ?)",
            (
                (use.scoped, lsn, now, answer_status, json.dumps(headers), body.decode("utf-8", "replace")),
                (use.claim, lsn, now, None, None, claim),
            ),
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
