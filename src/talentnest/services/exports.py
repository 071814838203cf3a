"""A member's own data as one JSON document (GDPR article 20), produced a page at a time. No HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import talentnest.services._render as _render
from talentnest.errors import Unauthorized
from talentnest.store import Database
from talentnest.store.exports import SECTIONS, ExportRepo
from talentnest.store.users import UserRepo

PAGE_ROWS = 500
Reads = Callable[..., Awaitable[Any]]


class ExportService:
    """``document(user_id, read)`` yields the export's text in pieces: ``exported_at``, ``profile`` (as
    ``/api/users/me`` answers it), then ``posts``, ``comments``, ``likes``, ``following`` and
    ``followers``, each oldest first. Each page is one read (``read``, a reader thread), so a large
    account never sits in memory whole; the document is therefore not one instant's snapshot: a
    write the member makes during the export may or may not be in it."""

    def __init__(self, db: Database, users: UserRepo, exports: ExportRepo, *, page_rows: int = PAGE_ROWS):
        self.db = db
        self.users = users
        self.exports = exports
        self.page_rows = page_rows

    def _head(self, user_id: int) -> str:
        row = self.users.by_id(user_id)
        if row is None:
            raise Unauthorized("the account of this token no longer exists", code="invalid_token")
        profile = json.dumps(_render.user(row, private=True), ensure_ascii=False)
        return f'{{"exported_at":{json.dumps(self.db.now())},"profile":{profile}'

    async def document(self, user_id: int, read: Reads) -> AsyncIterator[str]:
        """Unauthorized (before anything is yielded) if the account is gone."""
        yield await read(self._head, user_id)
        for section in SECTIONS:
            yield f',"{section.name}":['
            after, first = None, True
            while True:
                rows = await read(self.exports.page, section, user_id, after, self.page_rows)
                if rows:
                    text = ",".join(json.dumps(dict(row), ensure_ascii=False) for row in rows)
                    yield text if first else "," + text
                    first = False
                if len(rows) < self.page_rows:
                    break
                after = tuple(rows[-1][column] for column in section.cursor)
            yield "]"
        yield "}"
