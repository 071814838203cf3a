"""app.write_classifier: a request is a write exactly when the route it reaches carries the write mark."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

from talentnest import api
from talentnest.app import write_classifier


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "7", path)


def test_every_route_of_the_api_is_classified_by_its_own_mark():
    is_write = write_classifier(api.router.routes)
    routes = [r for r in api.router.routes if isinstance(r, APIRoute)]
    seen = {True: 0, False: 0}

    for route in routes:
        for method in route.methods:
            scope = {"type": "http", "method": method, "path": concrete(route.path), "root_path": ""}
            # The route the router would take: the first one that matches in full.
            reached = next(r for r in routes if r.matches(scope)[0].name == "FULL")
            assert is_write(scope) is api.route_writes(reached), (method, route.path)
            seen[api.route_writes(reached)] += 1

    assert seen[True] >= 5 and seen[False] >= 5, seen
    assert not is_write({"type": "http", "method": "GET", "path": "/api/posts", "root_path": ""})
    assert not is_write({"type": "http", "method": "POST", "path": "/api/no/such/route", "root_path": ""})
