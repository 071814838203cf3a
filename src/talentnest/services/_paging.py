"""Opaque cursors for keyset pagination: the sort key of the last item, base64url JSON."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from talentnest.errors import InvalidInput


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


def encode(kind: str, key: list) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(kind: str, cursor: str | None, types: tuple[type, ...]) -> list | None:
    """The key inside ``cursor`` if it was made for ``kind`` with these types, else InvalidInput."""
    if cursor is None:
        return None
    try:
        if len(cursor) > 512:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not valid; pass next_cursor from the previous page", code="invalid_cursor") from None
    if (
        not isinstance(value, list)
        or len(value) != len(types) + 1
        or value[0] != kind
        or not all(type(v) is t for v, t in zip(value[1:], types, strict=True))
    ):
        raise InvalidInput("cursor does not belong to this list", code="invalid_cursor")
    return value[1:]


def page(rows: list, limit: int, kind: str, key_of: Callable[[Any], list], render: Callable[[Any], dict]) -> Page:
    """Build a page from up to ``limit + 1`` fetched rows (the extra one says there is more)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([render(r) for r in rows], encode(kind, key_of(rows[-1])) if more else None)
