"""The product's tables, as numbered migrations every node runs on its own database at start, and
what the store needs to know of them: the derived search index (rebuilt by migration 4 for a new
folding), and how to apply a leader's entries written before migration 2 (they carry no counters) or
3 (their users carry no token key)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from talentnest.store import search
from talentnest.store._db import Database

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE users (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            username TEXT NOT NULL UNIQUE,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            headline TEXT NOT NULL DEFAULT '',
            bio TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            skills TEXT NOT NULL DEFAULT '[]',
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE follows (
            follower_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            followee_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (follower_id, followee_id)
        ) WITHOUT ROWID;
        CREATE INDEX follows_by_followee ON follows(followee_id, created_at);
        CREATE INDEX follows_by_follower ON follows(follower_id, created_at);
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX posts_by_author ON posts(author_id, id);
        CREATE TABLE likes (
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            PRIMARY KEY (post_id, user_id)
        ) WITHOUT ROWID;
        CREATE INDEX likes_by_user ON likes(user_id, post_id);
        CREATE TABLE comments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
            author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            content TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX comments_by_post ON comments(post_id, id);
        CREATE INDEX comments_by_author ON comments(author_id);
        """,
    ),
    (
        2,
        # Counters as columns, kept by the product's own writes (store/users.py, store/posts.py);
        # follow lists ordered by (created_at, other id) on one index each, for keyset cursors;
        # the search index (store/search.py). Filled here from the rows this node already holds.
        f"""
        ALTER TABLE users ADD COLUMN follower_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN following_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE posts ADD COLUMN like_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE posts ADD COLUMN comment_count INTEGER NOT NULL DEFAULT 0;
        UPDATE users SET
            follower_count = (SELECT COUNT(*) FROM follows f WHERE f.followee_id = users.id),
            following_count = (SELECT COUNT(*) FROM follows f WHERE f.follower_id = users.id);
        UPDATE posts SET
            like_count = (SELECT COUNT(*) FROM likes l WHERE l.post_id = posts.id),
            comment_count = (SELECT COUNT(*) FROM comments c WHERE c.post_id = posts.id);
        DROP INDEX follows_by_followee;
        DROP INDEX follows_by_follower;
        CREATE INDEX follows_by_followee ON follows(followee_id, created_at, follower_id);
        CREATE INDEX follows_by_follower ON follows(follower_id, created_at, followee_id);
        {search.CREATE};
        {search.CREATE_TERMS};
        {search.FILL[0]};
        {search.FILL[1]};
        """,
    ),
    (
        3,
        # Each account's token key: a random identity drawn at signup and drawn again at every password
        # change, carried in its tokens (services/auth.py), so that a token never authenticates another
        # account that got the same id (issue 15, case 4) and a password change ends the older tokens.
        # Accounts made before this migration keep the empty key until their first password change
        # (their tokens are checked by username too): a key drawn here would differ on every node.
        """
        ALTER TABLE users ADD COLUMN token_key TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        4,
        # Search ignores accents (store/search.py, "Folding"): an index built before holds the older
        # folding's tokens (``élodie``), so this node rebuilds it from the rows it holds. Nothing
        # replicated changes; entries of schema 3 apply as they are.
        search.REBUILD,
    ),
]
COUNTERS_SINCE = 2
DERIVED = (search.INDEX, search.VOCABULARY)


def recount_older_entry(conn: sqlite3.Connection, schema_version: int, changes: list[dict]) -> None:
    """After a leader's entry written before migration 2 is applied: recount what its follows,
    likes and comments changed (that leader did not maintain the counters)."""
    if schema_version >= COUNTERS_SINCE:
        return
    users: set[int] = set()
    posts: set[int] = set()
    for change in changes:
        table, data = change["table"], change["data"]
        if table == "follows":
            users.update((data["follower_id"], data["followee_id"]))
        elif table in ("likes", "comments"):
            posts.add(data["post_id"])
    conn.executemany(
        "UPDATE users SET follower_count = (SELECT COUNT(*) FROM follows WHERE followee_id = ?1), "
        "following_count = (SELECT COUNT(*) FROM follows WHERE follower_id = ?1) WHERE id = ?1",
        [(user,) for user in sorted(users)],
    )
    conn.executemany(
        "UPDATE posts SET like_count = (SELECT COUNT(*) FROM likes WHERE post_id = ?1), "
        "comment_count = (SELECT COUNT(*) FROM comments WHERE post_id = ?1) WHERE id = ?1",
        [(post,) for post in sorted(posts)],
    )


def product_database(data_dir: Path, *, migrations=MIGRATIONS, **options: Any) -> Database:
    """The product's database in ``data_dir`` (not opened): its migrations, derived index and adapter."""
    return Database(data_dir, migrations, derived=DERIVED, older_entries=recount_older_entry, **options)
