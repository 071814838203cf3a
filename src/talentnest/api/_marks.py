"""The one declarative mark of a route that writes (not guessed from the HTTP method)."""

from __future__ import annotations

from typing import Any

WRITE_FLAG = "x-talentnest-write"


def writes() -> dict[str, Any]:
    """Keyword arguments for a route decorator that mark the route as a write."""
    return {"openapi_extra": {WRITE_FLAG: True}}


def route_writes(route: Any) -> bool:
    extra = getattr(route, "openapi_extra", None) or {}
    return bool(extra.get(WRITE_FLAG))
