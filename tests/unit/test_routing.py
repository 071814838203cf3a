"""routing.RouteIndex and IndexedRouting: a request is matched among few routes, with the answer a full scan gives."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Match, Mount, Route, Router

from talentnest import api, web
from talentnest.routing import IndexedRouting, RouteIndex, literal_start


async def _ok(request):
    return PlainTextResponse(request.url.path)


def _extra_routes() -> list:
    """Shapes the product's routes do not have: a root route, a parameter inside a segment, a path
    parameter, a route of one segment with a parameter after it, a root mount, a host route."""
    return [
        Route("/", _ok),
        Route("/files/{name}.txt", _ok),
        Route("/raw/{rest:path}", _ok, methods=["PUT"]),
        Route("/api/{section}/index", _ok),
        Route("/api/posts/{post_id:int}/exact", _ok, methods=["POST"]),
        Host("admin.example", app=Router([Route("/api/posts", _ok)])),
        Mount("", app=Router([Route("/late/{x}", _ok)])),
    ]


def _all_routes() -> list:
    """The product's routes, the web page's, stand-ins for the cluster's (/cluster/<name>) and the shapes above."""
    cluster_routes = [Route(f"/cluster/{name}", _ok, methods=["POST"]) for name in ("heartbeat", "replicate", "vote")]
    return [*api.router.routes, *cluster_routes, Route("/cluster/status", _ok), *web.routes(), *_extra_routes()]


ROUTES = _all_routes()
INDEX = RouteIndex(ROUTES)
SEGMENTS = sorted(
    {s for r in ROUTES for s in getattr(r, "path", "").split("/") if s and "{" not in s} | {"7", "x", "", "a.txt", "7.txt"}
)


def _scan(routes, scope) -> tuple[int | None, int | None]:
    """Positions (in ``ROUTES``) of the first full and the first partial match, as the router finds them."""
    full = partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            full = ROUTES.index(route)
            break
        if match == Match.PARTIAL and partial is None:
            partial = ROUTES.index(route)
    return full, partial


def _scope(method: str, path: str, root_path: str = "") -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": [(b"host", b"admin.example")]}


def _toggled(path: str) -> str:
    return path.rstrip("/") if path.endswith("/") else path + "/"


TEMPLATES = sorted({r.path for r in ROUTES if getattr(r, "path", "").startswith("/")})
VALUES = ["7", "x", "a.txt", "", "a/b"]


@st.composite
def _from_a_template(draw) -> str:
    """A route's path with its parameters filled in, perhaps with one segment changed, cut off or added."""
    path = re.sub(r"\{[^}]+\}", lambda _: draw(st.sampled_from(VALUES)), draw(st.sampled_from(TEMPLATES)))
    parts = path.split("/")
    change = draw(st.sampled_from(["none", "replace", "cut", "add"]))
    at = draw(st.integers(1, max(1, len(parts) - 1)))
    if change == "replace":
        parts[at : at + 1] = [draw(st.sampled_from(SEGMENTS))]
    elif change == "cut":
        parts = parts[:at]
    elif change == "add":
        parts.insert(at, draw(st.sampled_from(SEGMENTS)))
    return "/".join(parts) or "/"


paths = st.one_of(
    st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5).map(lambda parts: "/" + "/".join(parts)),
    _from_a_template(),
)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"])


@settings(max_examples=3000, deadline=None)
@given(method=methods, path=paths)
def test_the_candidates_give_the_match_a_full_scan_gives_for_the_path_and_its_slash_toggled(method, path):
    candidates = INDEX.candidates(path)
    assert [ROUTES.index(r) for r in candidates] == sorted(ROUTES.index(r) for r in candidates), "declared order"
    for probe in (path, _toggled(path)):
        scope = _scope(method, probe)
        assert _scan(candidates, scope) == _scan(ROUTES, scope), (method, path, probe)


def test_the_busy_paths_have_few_candidates():
    product = RouteIndex(api.router.routes)
    assert len(product.candidates("/api/posts")) == len([r for r in api.router.routes if r.path.startswith("/api/posts")])
    assert len(product.candidates("/api/users/someone/followers")) <= len(api.router.routes) // 2
    # A path of one segment may be redirected to one of two, so it is matched against all of them.
    assert len(INDEX.candidates("/healthz")) == len(ROUTES)
    assert len(INDEX.candidates("/api/posts", root_path="/mounted")) == len(ROUTES)


def test_literal_start_stops_at_the_first_parameter_and_at_two_segments():
    assert literal_start(Route("/api/posts/{post_id}/like", _ok)) == ("api", "posts")
    assert literal_start(Route("/api/{x}/index", _ok)) == ("api",)
    assert literal_start(Route("/files/{name}.txt", _ok)) == ("files",)
    assert literal_start(Route("/cluster/replicate", _ok)) == ("cluster", "replicate")
    assert literal_start(Mount("/static", app=Router([]))) == ("static",)
    assert literal_start(Mount("", app=Router([]))) == ()
    assert literal_start(Host("a.example", app=Router([]))) == ()


def _starlette_app(indexed: bool) -> Starlette:
    app = Starlette(routes=[*_extra_routes()[:5], Route("/api/posts", _ok, methods=["POST"]), Route("/api/posts/{n}", _ok)])
    if indexed:
        assert IndexedRouting.install(app.router)
    return app


async def _answer(app, method: str, path: str) -> tuple[int, bytes, str | None]:
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        **_scope(method, path),
        "asgi": {"version": "3.0"},
        "scheme": "http",
        "query_string": b"",
        "server": ("testserver", 80),
        "raw_path": path.encode(),
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    start = messages[0]
    location = dict(start["headers"]).get(b"location")
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], body, location and location.decode()


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/posts"),  # full match
        ("GET", "/api/posts"),  # only another method: 405
        ("POST", "/api/posts/"),  # trailing slash: redirected
        ("GET", "/api/posts/7/"),
        ("GET", "/api/posts/7"),
        ("GET", "/api/nothing/index"),
        ("GET", "/files/a.txt"),
        ("PUT", "/raw/a/b/c"),
        ("GET", "/no/such/path"),  # 404
        ("GET", "/"),
    ],
)
def test_an_indexed_router_answers_as_the_plain_one(method, path):
    plain = asyncio.run(_answer(_starlette_app(False), method, path))
    indexed = asyncio.run(_answer(_starlette_app(True), method, path))
    assert indexed == plain
    assert plain[0] in (200, 307, 404, 405)


def test_the_index_is_not_installed_over_a_router_with_middleware_of_its_own():
    router = Router([Route("/a", _ok)])
    router.middleware_stack = lambda scope, receive, send: None
    assert not IndexedRouting.install(router)
