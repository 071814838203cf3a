"""Posts, the feed, likes and comments. No HTTP, no replication."""

from __future__ import annotations

from typing import Any

import talentnest.services._paging as _paging
import talentnest.services._render as _render
import talentnest.services.rules as rules
from talentnest.errors import Forbidden, NotFound
from talentnest.services._paging import Page
from talentnest.store import Database
from talentnest.store.posts import PostRepo
from talentnest.store.users import UserRepo

_MAX_ID = 2**63 - 1


class PostService:
    def __init__(self, db: Database, posts: PostRepo, users: UserRepo):
        self.db = db
        self.posts = posts
        self.users = users

    def _render(self, post_id: int, viewer_id: int | None) -> dict[str, Any]:
        row = self.posts.by_id(post_id, viewer_id)
        if row is None:
            raise NotFound(f"no post {post_id}", code="post_not_found")
        return _render.post(row, with_viewer=viewer_id is not None)

    def _own(self, post_id: int, user_id: int) -> None:
        author = self.posts.author_of(post_id) if 0 < post_id <= _MAX_ID else None
        if author is None:
            raise NotFound(f"no post {post_id}", code="post_not_found")
        if author != user_id:
            raise Forbidden("only the author can change or delete this post", code="not_author")

    def _exists(self, post_id: int) -> None:
        if not (0 < post_id <= _MAX_ID) or self.posts.author_of(post_id) is None:
            raise NotFound(f"no post {post_id}", code="post_not_found")

    def create(self, user_id: int, content: str) -> dict[str, Any]:
        content = rules.text(content, field="content", max_length=rules.POST_MAX, min_length=1)
        with self.db.write() as conn:
            post_id = self.posts.insert(conn, user_id, content, self.db.now())
        return self._render(post_id, user_id)

    def get(self, post_id: int, viewer_id: int | None) -> dict[str, Any]:
        self._exists(post_id)
        return self._render(post_id, viewer_id)

    def update(self, user_id: int, post_id: int, content: str) -> dict[str, Any]:
        self._own(post_id, user_id)
        content = rules.text(content, field="content", max_length=rules.POST_MAX, min_length=1)
        with self.db.write() as conn:
            self.posts.update(conn, post_id, content, self.db.now())
        return self._render(post_id, user_id)

    def delete(self, user_id: int, post_id: int) -> None:
        self._own(post_id, user_id)
        with self.db.write() as conn:
            self.posts.delete(conn, post_id)

    def list(self, *, author: str | None, viewer_id: int | None, limit: int | None, cursor: str | None) -> Page:
        limit = rules.page_limit(limit)
        author_id = None
        if author is not None:
            row = self.users.by_username(author.lower())
            if row is None:
                raise NotFound(f"no user '{author}'", code="user_not_found")
            author_id = row["id"]
        kind = f"posts:{author_id or ''}"
        before = _paging.decode(kind, cursor, (int,))
        rows = self.posts.list(author_id=author_id, viewer_id=viewer_id, limit=limit + 1, before_id=before[0] if before else None)
        return _paging.page(rows, limit, kind, lambda r: [r["id"]], lambda r: _render.post(r, with_viewer=viewer_id is not None))

    def feed(self, user_id: int, *, limit: int | None, cursor: str | None) -> Page:
        limit = rules.page_limit(limit)
        before = _paging.decode("feed", cursor, (int,))
        rows = self.posts.feed(user_id, limit=limit + 1, before_id=before[0] if before else None)
        return _paging.page(rows, limit, "feed", lambda r: [r["id"]], lambda r: _render.post(r, with_viewer=True))

    def like(self, user_id: int, post_id: int) -> dict[str, Any]:
        self._exists(post_id)
        row = self.posts.by_id(post_id, user_id)
        if not row["liked_by_me"]:
            with self.db.write() as conn:
                self.posts.like(conn, post_id, user_id, self.db.now())
        return self._render(post_id, user_id)

    def unlike(self, user_id: int, post_id: int) -> dict[str, Any]:
        self._exists(post_id)
        row = self.posts.by_id(post_id, user_id)
        if row["liked_by_me"]:
            with self.db.write() as conn:
                self.posts.unlike(conn, post_id, user_id)
        return self._render(post_id, user_id)

    def comment(self, user_id: int, post_id: int, content: str) -> dict[str, Any]:
        self._exists(post_id)
        content = rules.text(content, field="content", max_length=rules.COMMENT_MAX, min_length=1)
        with self.db.write() as conn:
            comment_id = self.posts.insert_comment(conn, post_id, user_id, content, self.db.now())
        return _render.comment(self.posts.comment(comment_id))

    def comments(self, post_id: int, *, limit: int | None, cursor: str | None) -> Page:
        self._exists(post_id)
        limit = rules.page_limit(limit)
        after = _paging.decode(f"comments:{post_id}", cursor, (int,))
        rows = self.posts.comments(post_id, limit=limit + 1, after_id=after[0] if after else None)
        return _paging.page(rows, limit, f"comments:{post_id}", lambda r: [r["id"]], _render.comment)

    def delete_comment(self, user_id: int, post_id: int, comment_id: int) -> None:
        """The comment's author or the post's author may delete it."""
        self._exists(post_id)
        row = self.posts.comment(comment_id) if 0 < comment_id <= _MAX_ID else None
        if row is None or row["post_id"] != post_id:
            raise NotFound(f"no comment {comment_id} on post {post_id}", code="comment_not_found")
        if user_id not in (row["author_id"], self.posts.author_of(post_id)):
            raise Forbidden("only the comment's or the post's author can delete it", code="not_author")
        with self.db.write() as conn:
            self.posts.delete_comment(conn, comment_id)
