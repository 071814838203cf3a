"""Finding a request's route among a few candidates: an index of routes by the literal start of their paths.

Starlette's router tries every route in order until one matches, so a request pays one failed match
(about 0.7 us) for each route declared before its own: ``POST /api/posts`` came 17th, and the write
classifier and the HTTP metrics scanned the routes again (benchmarks/README.md, issue 13). A route
can match a path only if the path begins with the route's literal leading segments (those before its
first ``{parameter}``), so the index groups the routes by at most two of those segments; a request is
matched against the routes of its own group, and of the groups with fewer literal segments, in their
declared order. Those are the only routes that can match it, so the first that matches is the one a
full scan finds, and the same holds for a partial match (another method: 405) and for the path with
its trailing slash toggled (the router's redirect). Paths of fewer than two segments, and requests
under a mounted root path, are matched against every route, as before.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from starlette.routing import BaseRoute, Router

_DEPTH = 2  # literal segments a group is keyed by: /api/posts, /api/users, /cluster/replicate...


def literal_start(route: BaseRoute) -> tuple[str, ...]:
    """The segments of the route's path before its first parameter, at most ``_DEPTH`` of them; ``()`` for
    a route without a path (a ``Host``), which is a candidate for every request."""
    path = getattr(route, "path", None)
    if not isinstance(path, str) or not path.startswith("/"):
        return ()
    literal = []
    for segment in path.split("/")[1:]:
        if "{" in segment or len(literal) == _DEPTH:
            break
        literal.append(segment)
    return tuple(literal)


class RouteIndex:
    """The routes of ``routes`` that can match a path, in their declared order (``candidates``)."""

    def __init__(self, routes: Sequence[BaseRoute]):
        self.routes = tuple(routes)
        groups: dict[tuple[str, ...], list[int]] = {}
        for position, route in enumerate(self.routes):
            groups.setdefault(literal_start(route), []).append(position)

        def merged(*keys: tuple[str, ...]) -> tuple[BaseRoute, ...]:
            return tuple(self.routes[p] for p in sorted(p for key in keys for p in groups.get(key, ())))

        self._unknown = merged(())
        self._by_first = {key[0]: merged((), key[:1]) for key in groups if key}
        self._by_two = {key: merged((), key[:1], key) for key in groups if len(key) == _DEPTH}

    def candidates(self, path: str, root_path: str = "") -> tuple[BaseRoute, ...]:
        """Every route that can match ``path`` (as a request's ``scope["path"]``), or its path with the
        trailing slash toggled, in declared order; all of them under a ``root_path``."""
        parts = path.split("/", _DEPTH + 1)
        if root_path or len(parts) <= _DEPTH or (len(parts) == _DEPTH + 1 and parts[_DEPTH] == ""):
            # /, /a, /a/: toggling the trailing slash changes how many segments they have.
            return self.routes
        found = self._by_two.get((parts[1], parts[2]))
        if found is not None:
            return found
        return self._by_first.get(parts[1], self._unknown)


class IndexedRouting:
    """Serves a router's requests through copies of it that each hold only one group's candidates, so the
    router's own code (full match, 405, trailing-slash redirect, its low-priority routes) runs unchanged
    over fewer routes. Install with ``install``; the routes must not change afterwards."""

    def __init__(self, router: Router):
        self.router = router
        self.index = RouteIndex(router.routes)
        self._narrowed: dict[int, Router] = {id(self.index.routes): router}

    @classmethod
    def install(cls, router: Router) -> bool:
        """Put the index in front of ``router``'s route matching; False (nothing changed) when the router
        has middleware of its own between its entry and its matching, which the index must not skip."""
        if router.middleware_stack != router.app:
            return False
        router.middleware_stack = cls(router)
        return True

    def _router_for(self, candidates: tuple[BaseRoute, ...]) -> Router:
        narrowed = self._narrowed.get(id(candidates))
        if narrowed is None:
            narrowed = copy.copy(self.router)
            narrowed.routes = list(candidates)
            self._narrowed[id(candidates)] = narrowed
        return narrowed

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.router.app(scope, receive, send)
            return
        # The whole router, not a copy, is what url_for and the routes see as scope["router"].
        scope.setdefault("router", self.router)
        candidates = self.index.candidates(scope["path"], scope.get("root_path", ""))
        await self._router_for(candidates).app(scope, receive, send)
