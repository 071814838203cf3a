"""SQL for users and follows. Writes take the connection of an open ``Database.write()``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from talentnest.store import search
from talentnest.store._db import Database

USER_COLUMNS = (
    "u.id, u.username, u.email, u.name, u.headline, u.bio, u.location, u.skills, u.created_at, u.updated_at, "
    "u.follower_count, u.following_count"
)
PROFILE_FIELDS = ("name", "headline", "bio", "location", "skills")
_SEARCH_TIER = (
    f"SELECT {USER_COLUMNS}, ? AS tier FROM {search.TABLE} JOIN users u ON u.id = {search.TABLE}.rowid "
    f"WHERE {search.TABLE} MATCH ? AND {search.TABLE}.rowid > ? ORDER BY {search.TABLE}.rowid LIMIT ?"
)


class UserRepo:
    """Reads go through ``db.reader`` (a reader thread's connection inside ``Database.read``)."""

    def __init__(self, db: Database):
        self.db = db

    # --- reads -----------------------------------------------------------------------------

    def by_id(self, user_id: int) -> sqlite3.Row | None:
        return self.db.reader.execute(f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,)).fetchone()

    def by_username(self, username: str) -> sqlite3.Row | None:
        return self.db.reader.execute(f"SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?", (username,)).fetchone()

    def credentials(self, *, username: str | None = None, email: str | None = None) -> sqlite3.Row | None:
        column, value = ("username", username) if username is not None else ("email", email)
        return self.db.reader.execute(f"SELECT id, username, password_hash FROM users WHERE {column} = ?", (value,)).fetchone()

    def exists(self, user_id: int) -> bool:
        return self.db.reader.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is not None

    def token_identity(self, user_id: int) -> sqlite3.Row | None:
        """The account's ``username`` and ``token_key`` (what its tokens must carry), or None."""
        return self.db.reader.execute("SELECT username, token_key FROM users WHERE id = ?", (user_id,)).fetchone()

    def credentials_of(self, user_id: int) -> sqlite3.Row | None:
        return self.db.reader.execute("SELECT id, username, password_hash FROM users WHERE id = ?", (user_id,)).fetchone()

    def taken(self, username: str, email: str) -> tuple[bool, bool]:
        row = self.db.reader.execute(
            "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?), EXISTS(SELECT 1 FROM users WHERE email = ?)",
            (username, email),
        ).fetchone()
        return bool(row[0]), bool(row[1])

    def search(self, words: Sequence[str], *, limit: int, after: tuple[int, int] | None) -> list[sqlite3.Row]:
        """Up to ``limit`` users matching every word, best tier first, by id within a tier (see
        ``store.search``); each row has its ``tier``. ``after`` is the (tier, id) of the last row
        of the previous page."""
        first_tier, after_id = after or (0, 0)
        rows: list[sqlite3.Row] = []
        conn = self.db.reader
        try:
            query = search.SearchQuery.of(words, lambda prefix: search.terms_in(conn, prefix))
        except ValueError:  # nothing left of the words once folded (U+FFFE alone): nothing matches
            return []
        for tier in range(first_tier, search.TIERS):
            if len(rows) >= limit:
                break
            start = after_id if tier == first_tier else 0
            rows += conn.execute(_SEARCH_TIER, (tier, query.tiers[tier], start, limit - len(rows))).fetchall()
        return rows

    def followers(self, user_id: int, *, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        return self._follow_list("followee_id", "follower_id", user_id, limit, after)

    def following(self, user_id: int, *, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        return self._follow_list("follower_id", "followee_id", user_id, limit, after)

    def _follow_list(self, by: str, other: str, user_id: int, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        """Newest follow first, on the index ``follows(<by>, created_at, <other>)``: the row-value
        cursor seeks it, so page 10,000 costs what page 1 does."""
        sql = (
            f"SELECT {USER_COLUMNS}, fl.created_at AS followed_at FROM follows fl JOIN users u ON u.id = fl.{other} "
            f"WHERE fl.{by} = ?"
        )
        params: list = [user_id]
        if after is not None:
            sql += f" AND (fl.created_at, fl.{other}) < (?, ?)"
            params += [after[0], after[1]]
        sql += f" ORDER BY fl.created_at DESC, fl.{other} DESC LIMIT ?"
        params.append(limit)
        return self.db.reader.execute(sql, params).fetchall()

    def is_following(self, follower_id: int, followee_id: int) -> bool:
        return (
            self.db.reader.execute(
                "SELECT 1 FROM follows WHERE follower_id = ? AND followee_id = ?", (follower_id, followee_id)
            ).fetchone()
            is not None
        )

    # --- writes ----------------------------------------------------------------------------

    def insert(
        self, conn: sqlite3.Connection, *, username: str, email: str, name: str, password_hash: str, token_key: str, now: str
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO users(username, email, name, password_hash, token_key, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (username, email, name, password_hash, token_key, now, now),
        )
        return int(cursor.lastrowid)

    def update_profile(self, conn: sqlite3.Connection, user_id: int, fields: dict[str, str], now: str) -> None:
        unknown = set(fields) - set(PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"not profile fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        conn.execute(f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?", (*fields.values(), now, user_id))

    def set_password_hash(self, conn: sqlite3.Connection, user_id: int, password_hash: str) -> None:
        conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))

    def change_password(self, conn: sqlite3.Connection, user_id: int, password_hash: str, token_key: str, now: str) -> bool:
        """A new password and a new token key (every older token ends); False if the account is gone."""
        cursor = conn.execute(
            "UPDATE users SET password_hash = ?, token_key = ?, updated_at = ? WHERE id = ?",
            (password_hash, token_key, now, user_id),
        )
        return cursor.rowcount > 0

    def delete(self, conn: sqlite3.Connection, user_id: int) -> bool:
        """Remove the account and, by the schema's cascades, its posts (with their likes and comments),
        its likes, comments and follows; first take what goes away off the counters of the users and
        posts that stay. False if there was no such account."""
        conn.execute(
            "UPDATE users SET following_count = following_count - 1 "
            "WHERE id IN (SELECT follower_id FROM follows WHERE followee_id = ?1)",
            (user_id,),
        )
        conn.execute(
            "UPDATE users SET follower_count = follower_count - 1 "
            "WHERE id IN (SELECT followee_id FROM follows WHERE follower_id = ?1)",
            (user_id,),
        )
        conn.execute(
            "UPDATE posts SET like_count = like_count - 1 "
            "WHERE id IN (SELECT post_id FROM likes WHERE user_id = ?1) AND author_id != ?1",
            (user_id,),
        )
        conn.execute(
            "UPDATE posts SET comment_count = comment_count - "
            "(SELECT COUNT(*) FROM comments c WHERE c.post_id = posts.id AND c.author_id = ?1) "
            "WHERE id IN (SELECT post_id FROM comments WHERE author_id = ?1) AND author_id != ?1",
            (user_id,),
        )
        return conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount > 0

    def follow(self, conn: sqlite3.Connection, follower_id: int, followee_id: int, now: str) -> bool:
        """Follow, and count it on both users in the same transaction; False if already following."""
        cursor = conn.execute(
            "INSERT OR IGNORE INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, ?)",
            (follower_id, followee_id, now),
        )
        if cursor.rowcount <= 0:
            return False
        self._count_follow(conn, follower_id, followee_id, 1)
        return True

    def unfollow(self, conn: sqlite3.Connection, follower_id: int, followee_id: int) -> bool:
        cursor = conn.execute("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?", (follower_id, followee_id))
        if cursor.rowcount <= 0:
            return False
        self._count_follow(conn, follower_id, followee_id, -1)
        return True

    @staticmethod
    def _count_follow(conn: sqlite3.Connection, follower_id: int, followee_id: int, delta: int) -> None:
        conn.execute("UPDATE users SET following_count = following_count + ? WHERE id = ?", (delta, follower_id))
        conn.execute("UPDATE users SET follower_count = follower_count + ? WHERE id = ?", (delta, followee_id))
