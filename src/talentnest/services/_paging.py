"""Opaque cursors for keyset pagination: the sort key of the last item, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talentnest.errors import InvalidInput

MAX_CURSOR_LENGTH = 512
# Keys go to SQLite as parameters: integers must fit its 64 bits, text must be valid UTF-8.
_INT_RANGE = (-(2**63), 2**63 - 1)
_MAX_TEXT_KEY = 64


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def digest(text: str) -> str:
    """A short stable name for ``text`` (a search query) to put in a cursor's kind."""
    return hashlib.blake2s(text.encode("utf-8"), digest_size=9).hexdigest()


def encode(kind: str, key: list) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str | None, types: tuple[type, ...]) -> list | None:
    """The key inside ``cursor`` if it was made for ``kind`` with these types, else InvalidInput."""
    if cursor is None:
        return None
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid; pass next_cursor from the previous page", code="invalid_cursor") from None
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(_is_key(v, t) for v, t in zip(value[1:], types, strict=True))
    ):
        raise InvalidInput("cursor does not belong to this list", code="invalid_cursor")
    return value[1:]


def _is_key(value: Any, expected: type) -> bool:
    if type(value) is not expected:  # bool is not int here
        return False
    if expected is int:
        return _INT_RANGE[0] <= value <= _INT_RANGE[1]
    if expected is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return len(value) <= _MAX_TEXT_KEY
    return True


def page(rows: list, limit: int, kind: str, key_of: Callable[[Any], list], render: Callable[[Any], dict]) -> Page:
    """Build a page from up to ``limit + 1`` fetched rows (the extra one says there is more)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([render(r) for r in rows], encode(kind, key_of(rows[-1])) if more else None)
