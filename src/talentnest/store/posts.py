"""SQL for posts, likes and comments. Writes take the connection of an open ``Database.write()``."""

from __future__ import annotations

import sqlite3

from talentnest.store._db import Database

POST_SELECT = (
    "SELECT p.id, p.content, p.created_at, p.updated_at, "
    "u.id AS author_id, u.username AS author_username, u.name AS author_name, u.headline AS author_headline, "
    "(SELECT COUNT(*) FROM likes l WHERE l.post_id = p.id) AS like_count, "
    "(SELECT COUNT(*) FROM comments c WHERE c.post_id = p.id) AS comment_count, "
    "EXISTS(SELECT 1 FROM likes l WHERE l.post_id = p.id AND l.user_id = ?) AS liked_by_me "
    "FROM posts p JOIN users u ON u.id = p.author_id"
)
COMMENT_SELECT = (
    "SELECT c.id, c.post_id, c.content, c.created_at, "
    "u.id AS author_id, u.username AS author_username, u.name AS author_name, u.headline AS author_headline "
    "FROM comments c JOIN users u ON u.id = c.author_id"
)


class PostRepo:
    def __init__(self, db: Database):
        self.db = db

    # --- reads -----------------------------------------------------------------------------

    def by_id(self, post_id: int, viewer_id: int | None) -> sqlite3.Row | None:
        return self.db.conn.execute(f"{POST_SELECT} WHERE p.id = ?", (viewer_id or 0, post_id)).fetchone()

    def author_of(self, post_id: int) -> int | None:
        row = self.db.conn.execute("SELECT author_id FROM posts WHERE id = ?", (post_id,)).fetchone()
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
        return self.db.conn.execute(sql, params).fetchall()

    def feed(self, user_id: int, *, limit: int, before_id: int | None) -> list[sqlite3.Row]:
        sql = f"{POST_SELECT} WHERE (p.author_id = ? OR p.author_id IN (SELECT followee_id FROM follows WHERE follower_id = ?))"
        params: list = [user_id, user_id, user_id]
        if before_id is not None:
            sql += " AND p.id < ?"
            params.append(before_id)
        sql += " ORDER BY p.id DESC LIMIT ?"
        params.append(limit)
        return self.db.conn.execute(sql, params).fetchall()

    def comment(self, comment_id: int) -> sqlite3.Row | None:
        return self.db.conn.execute(f"{COMMENT_SELECT} WHERE c.id = ?", (comment_id,)).fetchone()

    def comments(self, post_id: int, *, limit: int, after_id: int | None) -> list[sqlite3.Row]:
        sql, params = f"{COMMENT_SELECT} WHERE c.post_id = ?", [post_id]
        if after_id is not None:
            sql += " AND c.id > ?"
            params.append(after_id)
        sql += " ORDER BY c.id ASC LIMIT ?"
        params.append(limit)
        return self.db.conn.execute(sql, params).fetchall()

    # --- writes ----------------------------------------------------------------------------

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
        return cursor.rowcount > 0

    def unlike(self, conn: sqlite3.Connection, post_id: int, user_id: int) -> bool:
        return conn.execute("DELETE FROM likes WHERE post_id = ? AND user_id = ?", (post_id, user_id)).rowcount > 0

    def insert_comment(self, conn: sqlite3.Connection, post_id: int, author_id: int, content: str, now: str) -> int:
        cursor = conn.execute(
            "INSERT INTO comments(post_id, author_id, content, created_at) VALUES (?, ?, ?, ?)",
            (post_id, author_id, content, now),
        )
        return int(cursor.lastrowid)

    def delete_comment(self, conn: sqlite3.Connection, comment_id: int) -> None:
        conn.execute("DELETE FROM comments WHERE id = ?", (comment_id,))
