"""Factories for store tests: nodes (a Database with the product's repos and services) on real files."""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from talentnest.services import PostService, UserService
from talentnest.store import DB_FILENAME, Database, LogEntry, Retention, search
from talentnest.store.posts import PostRepo
from talentnest.store.schema import MIGRATIONS, product_database
from talentnest.store.snapshot import remove_partial_files
from talentnest.store.users import UserRepo


@dataclass
class Node:
    """One node's store with the real product repositories and services on top."""

    db: Database
    users: UserRepo
    posts: PostRepo
    user_service: UserService
    post_service: PostService

    def signup(self, username: str) -> int:
        with self.db.write() as conn:
            return self.users.insert(
                conn,
                username=username,
                email=f"{username}@example.org",
                name=username.title(),
                password_hash="x",
                token_key=f"k-{username}",
                now="t",
            )

    def post(self, user_id: int, content: str = "hello") -> int:
        return self.post_service.create(user_id, content)["id"]

    def pick(self, table: str, i: int) -> int | None:
        """The id of the ``i``-th row of ``table`` (modulo its size), or None if it is empty."""
        ids = [r[0] for r in self.db.conn.execute(f"SELECT id FROM {table} ORDER BY id")]
        return ids[i % len(ids)] if ids else None

    def username(self, user_id: int) -> str:
        return self.db.conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()[0]

    def all_entries(self) -> list[LogEntry]:
        """Every entry still in the log."""
        return self.db.entries_after(max(self.db.first_lsn - 1, 0), max_entries=10**9, max_bytes=10**12)

    def catch_up_from(self, leader: Node) -> None:
        """Apply the leader's log until this node has all of it, as a follower's loop would."""
        while self.db.last_lsn < leader.db.last_lsn:
            result = self.db.apply(leader.db.entries_after(self.db.last_lsn))
            assert result.applied > 0, f"no progress at LSN {self.db.last_lsn}"


def make_node(path: Path, *, migrations=MIGRATIONS, retention: Retention | None = None, capture: bool = True) -> Node:
    db = product_database(path, migrations=migrations, retention=retention, capture=capture)
    users, posts = UserRepo(db), PostRepo(db)
    remove_partial_files(path)  # as a node does when it starts (app.py)
    db.open()
    return Node(db, users, posts, UserService(db, users), PostService(db, posts, users))


def index_instances(db: Database) -> list[tuple]:
    """Every (token, member id, column, position) the search index holds: the whole index."""
    conn = db.conn
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.tn_test_vocab USING fts5vocab(main, {search.TABLE}, instance)")
    return [tuple(r) for r in conn.execute('SELECT term, doc, col, "offset" FROM temp.tn_test_vocab ORDER BY 1, 2, 3, 4')]


def expansion_terms(db: Database) -> list[str]:
    return [row[0] for row in db.conn.execute(f"SELECT term FROM {search.TERMS}")]


def tier_answers(db: Database, words: list[str]) -> list[list[int]]:
    """The member ids each ranking tier's MATCH expression finds for ``words``."""
    query = search.SearchQuery.of(words)
    sql = f"SELECT rowid FROM {search.TABLE} WHERE {search.TABLE} MATCH ? ORDER BY rowid"
    return [[row[0] for row in db.conn.execute(sql, (tier,))] for tier in query.tiers]


def assert_index_is_rebuilt(db: Database, queries: list[list[str]] = ()) -> None:
    """The live index holds exactly what an index rebuilt from scratch from the same rows holds,
    and answers every query in ``queries`` (lists of words) as that index does."""
    live = index_instances(db)
    answers = [tier_answers(db, words) for words in queries]
    with tempfile.TemporaryDirectory() as scratch:
        copy = sqlite3.connect(Path(scratch) / DB_FILENAME)
        db.conn.backup(copy)
        copy.close()
        twin = product_database(Path(scratch), readers=1).open()
        try:
            twin.rebuild_derived()
            assert index_instances(twin) == live, "the index differs from one rebuilt from the same rows"
            # Terms of members gone or changed may stay (they expand to nothing); none may be missing.
            missing = set(expansion_terms(twin)) - set(expansion_terms(db))
            assert not missing, f"prefixes cannot expand to {sorted(missing)[:10]}"
            assert [tier_answers(twin, words) for words in queries] == answers
        finally:
            twin.shutdown()


def assert_counters_are_recounts(db: Database) -> None:
    """Every counter column equals the count of the rows it counts."""
    counted = {
        ("users", "follower_count"): "SELECT COUNT(*) FROM follows WHERE followee_id = t.id",
        ("users", "following_count"): "SELECT COUNT(*) FROM follows WHERE follower_id = t.id",
        ("posts", "like_count"): "SELECT COUNT(*) FROM likes WHERE post_id = t.id",
        ("posts", "comment_count"): "SELECT COUNT(*) FROM comments WHERE post_id = t.id",
    }
    for (table, column), count in counted.items():
        wrong = db.conn.execute(f"SELECT id, {column}, ({count}) FROM {table} t WHERE {column} IS NOT ({count})").fetchall()
        assert not wrong, f"{table}.{column} (id, stored, counted): {[tuple(r) for r in wrong[:5]]}"
