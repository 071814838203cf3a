"""Profiles, search and follows. No HTTP, no replication."""

from __future__ import annotations

import json
from typing import Any

import talentnest.services._paging as _paging
import talentnest.services._render as _render
import talentnest.services.rules as rules
from talentnest.errors import InvalidInput, NotFound
from talentnest.services._paging import Page
from talentnest.store import Database
from talentnest.store.search import TIERS
from talentnest.store.users import UserRepo

_TEXT_FIELDS = {
    "name": (rules.NAME_MAX, 1, False),
    "headline": (rules.HEADLINE_MAX, 0, False),
    "bio": (rules.BIO_MAX, 0, True),
    "location": (rules.LOCATION_MAX, 0, False),
}


class UserService:
    def __init__(self, db: Database, users: UserRepo):
        self.db = db
        self.users = users

    def _user_row(self, username: str):
        row = self.users.by_username(username.lower())
        if row is None:
            raise NotFound(f"no user '{username}'", code="user_not_found")
        return row

    def _user_id(self, username: str) -> int:
        return self._user_row(username)["id"]

    def profile(self, username: str) -> dict[str, Any]:
        return _render.user(self._user_row(username))

    def update_profile(self, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change any of name, headline, bio, location, skills; other fields are refused."""
        unknown = set(changes) - set(_TEXT_FIELDS) - {"skills"}
        if unknown:
            raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}")
        fields: dict[str, str] = {}
        for name, value in changes.items():
            if name == "skills":
                fields["skills"] = json.dumps(rules.skills(value), ensure_ascii=False)
            else:
                max_length, min_length, multiline = _TEXT_FIELDS[name]
                fields[name] = rules.text(value, field=name, max_length=max_length, min_length=min_length, multiline=multiline)
        if fields:
            with self.db.write() as conn:
                self.users.update_profile(conn, user_id, fields, self.db.now())
        return _render.user(self.users.by_id(user_id), private=True)

    def search(self, query: str, *, limit: int | None, cursor: str | None) -> Page:
        terms = rules.search_terms(query)
        limit = rules.page_limit(limit)
        # The cursor names its query by a digest: the query itself could make it too long to send back.
        kind = "search:" + _paging.digest(" ".join(terms))
        after = _paging.decode(kind, cursor, (int, int))
        if after is not None and not (0 <= after[0] < TIERS and after[1] >= 0):
            raise InvalidInput("cursor does not belong to this list", code="invalid_cursor")
        rows = self.users.search(terms, limit=limit + 1, after=(after[0], after[1]) if after else None)
        return _paging.page(rows, limit, kind, lambda r: [r["tier"], r["id"]], _render.user)

    def follow(self, user_id: int, username: str) -> dict[str, Any]:
        target = self._user_id(username)
        if target == user_id:
            raise InvalidInput("you cannot follow yourself", code="cannot_follow_self")
        if not self.users.is_following(user_id, target):
            with self.db.write() as conn:
                self.users.follow(conn, user_id, target, self.db.now())
        return _render.user(self.users.by_id(target))

    def unfollow(self, user_id: int, username: str) -> dict[str, Any]:
        target = self._user_id(username)
        if self.users.is_following(user_id, target):
            with self.db.write() as conn:
                self.users.unfollow(conn, user_id, target)
        return _render.user(self.users.by_id(target))

    def followers(self, username: str, *, limit: int | None, cursor: str | None) -> Page:
        return self._follow_page("followers", username, limit, cursor)

    def following(self, username: str, *, limit: int | None, cursor: str | None) -> Page:
        return self._follow_page("following", username, limit, cursor)

    def _follow_page(self, kind: str, username: str, limit: int | None, cursor: str | None) -> Page:
        user_id = self._user_id(username)
        limit = rules.page_limit(limit)
        after = _paging.decode(kind, cursor, (str, int))
        fetch = self.users.followers if kind == "followers" else self.users.following
        rows = fetch(user_id, limit=limit + 1, after=tuple(after) if after else None)
        return _paging.page(rows, limit, kind, lambda r: [r["followed_at"], r["id"]], _render.user)
