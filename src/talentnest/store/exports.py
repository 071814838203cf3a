"""SQL that reads one member's own rows a page at a time, oldest first, for an export of their data."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from talentnest.store._db import Database


@dataclass(frozen=True)
class Section:
    """One list of an export: its query (``?1`` the member, then the cursor's values, then the limit)
    and the columns of its keyset cursor (the last row's values continue the list)."""

    name: str
    sql: str
    cursor: tuple[str, ...]


def _section(name: str, select: str, where: str, cursor: tuple[str, ...], keys: tuple[str, ...]) -> Section:
    after = ", ".join(f"?{i + 2}" for i in range(len(keys)))
    order = ", ".join(keys)
    sql = f"{select} WHERE {where} AND ({order}) > ({after}) ORDER BY {order} LIMIT ?{len(keys) + 2}"
    return Section(name, sql, cursor)


SECTIONS = (
    _section(
        "posts",
        "SELECT id, content, like_count, comment_count, created_at, updated_at FROM posts",
        "author_id = ?1",
        ("id",),
        ("id",),
    ),
    _section(
        "comments",
        "SELECT id, post_id, content, created_at FROM comments",
        "author_id = ?1",
        ("id",),
        ("id",),
    ),
    _section(
        "likes",
        "SELECT post_id, created_at FROM likes",
        "user_id = ?1",
        ("post_id",),
        ("post_id",),
    ),
    _section(
        "following",
        "SELECT u.id AS user_id, u.username, f.created_at AS followed_at FROM follows f JOIN users u ON u.id = f.followee_id",
        "f.follower_id = ?1",
        ("followed_at", "user_id"),
        ("f.created_at", "f.followee_id"),
    ),
    _section(
        "followers",
        "SELECT u.id AS user_id, u.username, f.created_at AS followed_at FROM follows f JOIN users u ON u.id = f.follower_id",
        "f.followee_id = ?1",
        ("followed_at", "user_id"),
        ("f.created_at", "f.follower_id"),
    ),
)
# Below every cursor value of its column: ids from 1, and any text.
FIRST = {"id": 0, "post_id": 0, "user_id": 0, "followed_at": ""}


class ExportRepo:
    """Reads go through ``db.reader`` (a reader thread's connection inside ``Database.read``)."""

    def __init__(self, db: Database):
        self.db = db

    def page(self, section: Section, user_id: int, after: tuple | None, limit: int) -> list[sqlite3.Row]:
        """Up to ``limit`` rows of ``section`` after the cursor ``after`` (None: from the first)."""
        start = after if after is not None else tuple(FIRST[column] for column in section.cursor)
        return self.db.reader.execute(section.sql, (user_id, *start, limit)).fetchall()
