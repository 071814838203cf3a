"""Factories for store tests: nodes (a Database with the product's repos and services) on real files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from talentnest.services import PostService, UserService
from talentnest.store import Database, LogEntry, Retention
from talentnest.store.posts import PostRepo
from talentnest.store.schema import MIGRATIONS, product_database
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
                conn, username=username, email=f"{username}@example.org", name=username.title(), password_hash="x", now="t"
            )

    def post(self, user_id: int, content: str = "hello") -> int:
        return self.post_service.create(user_id, content)["id"]

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
    db.open()
    return Node(db, users, posts, UserService(db, users), PostService(db, posts, users))
