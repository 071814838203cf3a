"""SQL for posts, likes and comments. Writes take the connection of an open ``Database.write()``;
reads go through ``db.reader`` (a reader thread's connection inside ``Database.read``)."""

from __future__ import annotations

import sqlite3

from talentnest.store._db import Database

POST_SELECT = (
    "SELECT p.id, p.content, p.created_at, p.updated_at, "
    "u.id AS author_id, u.username AS author_username, u.name AS author_name, u.headline AS author_headline, "
    "p.like_count, p.comment_count, "
    "EXISTS(SELECT 1 FROM likes l WHERE l.post_id = p.id AND l.user_id = ?) AS liked_by_me "
    "FROM posts p JOIN users u ON u.id = p.author_id"
)
COMMENT_SELECT = (
    "SELECT c.id, c.post_id, c.content, c.created_at, "
    "u.id AS author_id, u.username AS author_username, u.name AS author_name, u.headline AS author_headline "
    "FROM comments c JOIN users u ON u.id = c.author_id"
)
# The newest post of each author the member follows (and of the member), below the cursor: one
# seek of posts_by_author per author, whatever their history. Only the ``?3`` newest of these heads
# come back: SQLite keeps the top rows of its sort in C, where every row handed to Python costs a
# trip through the GIL (a reader thread releases and retakes it per row). With the merge below, this
# took a feed of 490 followees under 8 clients from 6.2 to 2.2 ms of CPU (benchmarks/README.md, issue 12).
FEED_HEADS = (
    "SELECT author, head FROM ("
    "SELECT f.followee_id AS author, "
    "(SELECT MAX(p.id) FROM posts p WHERE p.author_id = f.followee_id AND p.id < ?1) AS head "
    "FROM follows f WHERE f.follower_id = ?2 "
    "UNION ALL SELECT ?2, (SELECT MAX(p.id) FROM posts p WHERE p.author_id = ?2 AND p.id < ?1)"
    ") WHERE head IS NOT NULL ORDER BY head DESC LIMIT ?3"
)
FEED_AUTHOR_PAGE = "SELECT id FROM (SELECT id FROM posts WHERE author_id = ? AND id < ? AND id >= ? ORDER BY id DESC LIMIT ?)"
_NO_CURSOR = 2**63 - 1


class PostRepo:
    def __init__(self, db: Database):
        self.db = db

    # --- reads -----------------------------------------------------------------------------

    def by_id(self, post_id: int, viewer_id: int | None) -> sqlite3.Row | None:
        return self.db.reader.execute(f"{POST_SELECT} WHERE p.id = ?", (viewer_id or 0, post_id)).fetchone()

    def author_of(self, post_id: int) -> int | None:
        row = self.db.reader.execute("SELECT author_id FROM posts WHERE id = ?", (post_id,)).fetchone()
        return None if row is None else row[0]

    def list(self, *, author_id: int | None, viewer_id: int | None, limit: int, before_id: int | None) -> list[sqlite3.Row]:
        sql, params = f"{POST_SELECT} WHERE 1 = 1", [viewer_id or 0]
        if author_id is not None:
            sql += " AND p.author_id = ?"
            params.append(author_id)
        if before_id is not None:
            sql += " AND p.id < ?"
            params.append(before_id)
        sql += " ORDER BY p.id DESC LIMIT ?"
        params.append(limit)
        return self.db.reader.execute(sql, params).fetchall()

    def feed(self, user_id: int, *, limit: int, before_id: int | None) -> list[sqlite3.Row]:
        """The newest ``limit`` posts below ``before_id`` by the member and the people they follow.

        A bounded merge of per-author ranges of ``posts_by_author``: take each author's newest post
        below the cursor (its head); only the authors of the ``limit`` newest heads can hold one of
        the ``limit`` newest posts, and none of those is older than the ``limit``-th head. So at most
        ``limit`` posts of at most ``limit`` authors are read, whatever they wrote before.
        """
        conn = self.db.reader
        before = _NO_CURSOR if before_id is None else before_id
        newest = conn.execute(FEED_HEADS, (before, user_id, limit)).fetchall()
        if not newest:
            return []
        # With fewer authors than ``limit``, every post of theirs may be on the page.
        floor = newest[-1][1] if len(newest) == limit else 0
        # The authors' ranges merged in SQL too: SQLite walks the ids of the ``IN`` list in order,
        # newest first, and stops at ``limit``, so only the page's rows reach Python.
        pages = " UNION ALL ".join([FEED_AUTHOR_PAGE] * len(newest))
        params = [value for author, _ in newest for value in (author, before, floor, limit)]
        sql = f"{POST_SELECT} WHERE p.id IN ({pages}) ORDER BY p.id DESC LIMIT ?"
        return conn.execute(sql, (user_id, *params, limit)).fetchall()

    def comment(self, comment_id: int) -> sqlite3.Row | None:
        return self.db.reader.execute(f"{COMMENT_SELECT} WHERE c.id = ?", (comment_id,)).fetchone()

    def comments(self, post_id: int, *, limit: int, after_id: int | None) -> list[sqlite3.Row]:
        sql, params = f"{COMMENT_SELECT} WHERE c.post_id = ?", [post_id]
        if after_id is not None:
            sql += " AND c.id > ?"
            params.append(after_id)
        sql += " ORDER BY c.id ASC LIMIT ?"
        params.append(limit)
        return self.db.reader.execute(sql, params).fetchall()

    # --- writes ----------------------------------------------------------------------------
    # Likes and comments are counted on their post in the same transaction.

    def insert(self, conn: sqlite3.Connection, author_id: int, content: str, now: str) -> int:
        cursor = conn.execute(
            "INSERT INTO posts(author_id, content, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (author_id, content, now, now),
        )
        return int(cursor.lastrowid)

    def update(self, conn: sqlite3.Connection, post_id: int, content: str, now: str) -> None:
        conn.execute("UPDATE posts SET content = ?, updated_at = ? WHERE id = ?", (content, now, post_id))

    def delete(self, conn: sqlite3.Connection, post_id: int) -> None:
        conn.execute("DELETE FROM posts WHERE id = ?", (post_id,))

    def like(self, conn: sqlite3.Connection, post_id: int, user_id: int, now: str) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO likes(post_id, user_id, created_at) VALUES (?, ?, ?)", (post_id, user_id, now)
        )
        if cursor.rowcount <= 0:
            return False
        conn.execute("UPDATE posts SET like_count = like_count + 1 WHERE id = ?", (post_id,))
        return True

    def unlike(self, conn: sqlite3.Connection, post_id: int, user_id: int) -> bool:
        if conn.execute("DELETE FROM likes WHERE post_id = ? AND user_id = ?", (post_id, user_id)).rowcount <= 0:
            return False
        conn.execute("UPDATE posts SET like_count = like_count - 1 WHERE id = ?", (post_id,))
        return True

    def insert_comment(self, conn: sqlite3.Connection, post_id: int, author_id: int, content: str, now: str) -> int:
        cursor = conn.execute(
            "INSERT INTO comments(post_id, author_id, content, created_at) VALUES (?, ?, ?, ?)",
            (post_id, author_id, content, now),
        )
        conn.execute("UPDATE posts SET comment_count = comment_count + 1 WHERE id = ?", (post_id,))
        return int(cursor.lastrowid)

    def delete_comment(self, conn: sqlite3.Connection, comment_id: int) -> None:
        row = conn.execute("SELECT post_id FROM comments WHERE id = ?", (comment_id,)).fetchone()
        if row is not None and conn.execute("DELETE FROM comments WHERE id = ?", (comment_id,)).rowcount > 0:
            conn.execute("UPDATE posts SET comment_count = comment_count - 1 WHERE id = ?", (row[0],))
