"""SQL for users and follows. Writes take the connection of an open ``Database.write()``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from talentnest.store._db import Database

USER_COLUMNS = (
    "u.id, u.username, u.email, u.name, u.headline, u.bio, u.location, u.skills, u.created_at, u.updated_at, "
    "(SELECT COUNT(*) FROM follows f WHERE f.followee_id = u.id) AS follower_count, "
    "(SELECT COUNT(*) FROM follows f WHERE f.follower_id = u.id) AS following_count"
)
PROFILE_FIELDS = ("name", "headline", "bio", "location", "skills")
# An exact username outranks any mix of other matches: each term adds at most 165 otherwise
# (username prefix 50 + exact name 60 + exact skill 45 + headline 10), and a query has few terms.
EXACT_USERNAME_SCORE = 10_000


def fold(text: str | None) -> str:
    """Case-insensitive form for search, Unicode-aware (SQLite's lower() is ASCII only)."""
    return "" if text is None else text.casefold()


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserRepo:
    def __init__(self, db: Database):
        self.db = db
        db.register_function("tn_fold", 1, fold)

    # --- reads -----------------------------------------------------------------------------

    def by_id(self, user_id: int) -> sqlite3.Row | None:
        return self.db.conn.execute(f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?", (user_id,)).fetchone()

    def by_username(self, username: str) -> sqlite3.Row | None:
        return self.db.conn.execute(f"SELECT {USER_COLUMNS} FROM users u WHERE u.username = ?", (username,)).fetchone()

    def credentials(self, *, username: str | None = None, email: str | None = None) -> sqlite3.Row | None:
        column, value = ("username", username) if username is not None else ("email", email)
        return self.db.conn.execute(f"SELECT id, username, password_hash FROM users WHERE {column} = ?", (value,)).fetchone()

    def exists(self, user_id: int) -> bool:
        return self.db.conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is not None

    def taken(self, username: str, email: str) -> tuple[bool, bool]:
        row = self.db.conn.execute(
            "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?), EXISTS(SELECT 1 FROM users WHERE email = ?)",
            (username, email),
        ).fetchone()
        return bool(row[0]), bool(row[1])

    def search(self, terms: Sequence[str], *, limit: int, after: tuple[int, int] | None) -> list[sqlite3.Row]:
        """Users matching every term in username, name, headline or skills, best first.

        Each term scores by where it matches; an exact username always comes first; ties go by id. ``after``
        is the (score, id) of the last row of the previous page.
        """
        score_parts, match_parts, params_score, params_match = [], [], [], []
        for term in terms:
            folded = fold(term)
            like = _like_pattern(folded)
            prefix = like[1:]
            score_parts.append(
                f"(CASE WHEN u.username = ? THEN {EXACT_USERNAME_SCORE} WHEN u.username LIKE ? ESCAPE '\\' THEN 50 "
                "WHEN u.username LIKE ? ESCAPE '\\' THEN 20 ELSE 0 END"
                " + CASE WHEN tn_fold(u.name) = ? THEN 60 WHEN tn_fold(u.name) LIKE ? ESCAPE '\\' "
                "OR tn_fold(u.name) LIKE ? ESCAPE '\\' THEN 40 WHEN tn_fold(u.name) LIKE ? ESCAPE '\\' THEN 15 ELSE 0 END"
                " + CASE WHEN tn_fold(u.skills) LIKE ? ESCAPE '\\' THEN 45 "
                "WHEN tn_fold(u.skills) LIKE ? ESCAPE '\\' THEN 15 ELSE 0 END"
                " + CASE WHEN tn_fold(u.headline) LIKE ? ESCAPE '\\' THEN 10 ELSE 0 END)"
            )
            skill_exact = '%"' + like[1:-1] + '"%'
            params_score += [folded, prefix, like, folded, prefix, "% " + prefix, like, skill_exact, like, like]
            match_parts.append(
                "(u.username LIKE ? ESCAPE '\\' OR tn_fold(u.name) LIKE ? ESCAPE '\\' "
                "OR tn_fold(u.skills) LIKE ? ESCAPE '\\' OR tn_fold(u.headline) LIKE ? ESCAPE '\\')"
            )
            params_match += [like, like, like, like]
        sql = (
            f"SELECT * FROM (SELECT {USER_COLUMNS}, ({' + '.join(score_parts)}) AS score FROM users u "
            f"WHERE {' AND '.join(match_parts)})"
        )
        params: list = params_score + params_match
        if after is not None:
            sql += " WHERE score < ? OR (score = ? AND id > ?)"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY score DESC, id ASC LIMIT ?"
        params.append(limit)
        return self.db.conn.execute(sql, params).fetchall()

    def followers(self, user_id: int, *, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        return self._follow_list("followee_id", "follower_id", user_id, limit, after)

    def following(self, user_id: int, *, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        return self._follow_list("follower_id", "followee_id", user_id, limit, after)

    def _follow_list(self, by: str, other: str, user_id: int, limit: int, after: tuple[str, int] | None) -> list[sqlite3.Row]:
        sql = (
            f"SELECT {USER_COLUMNS}, fl.created_at AS followed_at FROM follows fl JOIN users u ON u.id = fl.{other} "
            f"WHERE fl.{by} = ?"
        )
        params: list = [user_id]
        if after is not None:
            sql += " AND (fl.created_at < ? OR (fl.created_at = ? AND u.id < ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY fl.created_at DESC, u.id DESC LIMIT ?"
        params.append(limit)
        return self.db.conn.execute(sql, params).fetchall()

    def is_following(self, follower_id: int, followee_id: int) -> bool:
        return (
            self.db.conn.execute(
                "SELECT 1 FROM follows WHERE follower_id = ? AND followee_id = ?", (follower_id, followee_id)
            ).fetchone()
            is not None
        )

    # --- writes ----------------------------------------------------------------------------

    def insert(self, conn: sqlite3.Connection, *, username: str, email: str, name: str, password_hash: str, now: str) -> int:
        cursor = conn.execute(
            "INSERT INTO users(username, email, name, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (username, email, name, password_hash, now, now),
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

    def follow(self, conn: sqlite3.Connection, follower_id: int, followee_id: int, now: str) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO follows(follower_id, followee_id, created_at) VALUES (?, ?, ?)",
            (follower_id, followee_id, now),
        )
        return cursor.rowcount > 0

    def unfollow(self, conn: sqlite3.Connection, follower_id: int, followee_id: int) -> bool:
        cursor = conn.execute("DELETE FROM follows WHERE follower_id = ? AND followee_id = ?", (follower_id, followee_id))
        return cursor.rowcount > 0
