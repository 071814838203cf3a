"""HTTP-level behaviour of the whole app: the error shape, body limits, JSON parsing, routes."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest
from fastapi.testclient import TestClient

from talentnest.api import WRITE_FLAG
from talentnest.api import router as product_router
from talentnest.app import create_app
from talentnest.limits import MAX_BODY_BYTES
from tests.api._helpers import Api, assert_error, fast_settings

BODY_ROUTES = [
    ("POST", "/api/auth/signup"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/password"),
    ("PATCH", "/api/users/me"),
    ("DELETE", "/api/users/me"),
    ("POST", "/api/posts"),
    ("PATCH", "/api/posts/1"),
    ("POST", "/api/posts/1/comments"),
]
MALFORMED = {
    "truncated": b'{"content": "x"',
    "unquoted key": b'{content: "x"}',
    "single quotes": b"{'content': 'x'}",
    "trailing garbage": b'{"content": "x"} trailing',
    "trailing comma": b'{"content": "x",}',
    "invalid UTF-8": b'{"content": "\xff\xfe"}',
    "just a brace": b"{",
}


@pytest.fixture
def owner(api: Api, make_member):
    """A member with post 1, so every body route exists for the requests below."""
    member = make_member("owner")
    api.ok("POST", "/api/posts", 201, json={"content": "first"}, headers=member.headers)
    return member


@pytest.mark.parametrize("method, url", BODY_ROUTES)
@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_400_and_changes_nothing(api: Api, owner, method: str, url: str, body: bytes):
    headers = {**owner.headers, "Content-Type": "application/json"}

    api.refused(method, url, 400, "malformed_json", content=body, headers=headers)


@pytest.mark.parametrize("method, url", BODY_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_body_not_sent_as_json_is_415(api: Api, owner, method: str, url: str, content_type: str):
    headers = {**owner.headers, "Content-Type": content_type}

    error = api.refused(method, url, 415, "unsupported_media_type", content=b'{"content": "x"}', headers=headers)

    assert "application/json" in error["message"]


def test_json_with_a_charset_or_a_json_suffix_is_accepted(api: Api, owner):
    for content_type in ["application/json; charset=utf-8", "application/merge-patch+json", "APPLICATION/JSON"]:
        headers = {**owner.headers, "Content-Type": content_type}
        api.ok("POST", "/api/posts", 201, content=b'{"content": "typed"}', headers=headers)


# An empty PATCH of the profile is allowed (it changes nothing); every other body is required.
@pytest.mark.parametrize("method, url", [route for route in BODY_ROUTES if route[1] != "/api/users/me"])
def test_an_empty_json_body_is_422(api: Api, owner, method: str, url: str):
    api.refused(method, url, 422, content=b"", headers={**owner.headers, "Content-Type": "application/json"})


# --- 413 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, url", BODY_ROUTES)
def test_a_body_over_1_mib_is_413_and_changes_nothing(api: Api, owner, method: str, url: str):
    body = json.dumps({"content": "x" * MAX_BODY_BYTES}).encode()

    headers = {**owner.headers, "Content-Type": "application/json"}

    error = api.refused(method, url, 413, "payload_too_large", content=body, headers=headers)

    assert str(MAX_BODY_BYTES) in error["message"]


def test_a_body_of_exactly_1_mib_passes_the_limit_and_meets_the_field_rules(api: Api, owner):
    prefix, suffix = b'{"content": "', b'"}'
    body = prefix + b"x" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(body) == MAX_BODY_BYTES

    api.refused("POST", "/api/posts", 422, content=body, headers={**owner.headers, "Content-Type": "application/json"})


def test_a_declared_length_over_1_mib_is_413_before_the_body_is_read(api: Api, owner):
    status, headers, body = _drive(
        api.app, "POST", "/api/posts", [b'{"content": "x"}'], owner.headers, content_length=MAX_BODY_BYTES + 1
    )

    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert headers[b"connection"] == b"close"


def test_a_chunked_body_over_1_mib_is_413_and_changes_nothing(api: Api, owner):
    chunks = [b'{"content": "'] + [b"x" * 65536] * 17 + [b'"}']

    with api.unchanged():
        status, _, body = _drive(api.app, "POST", "/api/posts", chunks, owner.headers)

    assert status == 413
    assert json.loads(body) == {
        "error": {"code": "payload_too_large", "message": f"request body is larger than {MAX_BODY_BYTES} bytes"}
    }


def test_a_chunked_body_under_1_mib_is_put_together_and_served(api: Api, owner):
    chunks = [b'{"con', b'tent": "in ', b"pieces", b'"}']

    status, _, body = _drive(api.app, "POST", "/api/posts", chunks, owner.headers)

    assert status == 201, body
    assert json.loads(body)["content"] == "in pieces"


def _drive(app, method: str, path: str, chunks: list[bytes], headers: dict[str, str], content_length: int | None = None):
    """One request straight through the ASGI app, its body in ``chunks`` as a chunked upload arrives."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-type", b"application/json"))
    if content_length is None:
        raw_headers.append((b"transfer-encoding", b"chunked"))
    else:
        raw_headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
        "state": {},
    }
    incoming = [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    incoming.append({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


# --- routes, methods, the error shape --------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api", "/api/users", "/api/posts/1/likes", "/api/users/a/b/c"])
def test_an_unknown_route_is_404_in_the_error_shape(api: Api, path: str):
    error = api.refused("GET", path, 404, "not_found")

    assert path in error["message"]


@pytest.mark.parametrize(
    "method, path, allow",
    [
        ("PUT", "/api/posts", "GET, POST"),
        ("DELETE", "/api/auth/login", "POST"),
        ("GET", "/api/auth/signup", "POST"),
        ("OPTIONS", "/api/posts/1", "DELETE, GET, PATCH"),
        ("PUT", "/api/users/bob/follow", "DELETE, POST"),
        ("PUT", "/api/users/me", "DELETE, GET, PATCH"),
        ("POST", "/api/posts/1/comments/2", "DELETE"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_a_wrong_method_is_405_in_the_error_shape_naming_every_allowed_method(api: Api, method: str, path: str, allow: str):
    response = api.client.request(method, path)

    error = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow
    assert allow in error["message"]


def test_an_unexpected_exception_is_500_in_the_error_shape_and_says_nothing_inside(tmp_path):
    def explode():
        raise RuntimeError("secret internals")

    app = create_app(fast_settings(tmp_path))
    app.add_api_route("/boom", explode)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    assert_error(response, 500, "internal_error")
    assert "secret" not in response.text


def test_healthz_and_readyz_answer_when_the_database_is_open(api: Api, app):
    node_id = app.state.node.node_id
    assert api.ok("GET", "/healthz") == {"status": "ok", "node_id": node_id}
    # A node alone in its member list leads at once, so it is ready from its first request.
    assert api.ok("GET", "/readyz") == {"ready": True, "reason": "leader", "node_id": node_id}


def test_only_the_routes_that_write_are_marked_as_writes_and_login_is_a_read(api: Api):
    schema = api.ok("GET", "/openapi.json")

    marked = {
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get(WRITE_FLAG)
    }

    assert marked == {
        "POST /api/auth/signup",
        "POST /api/auth/password",
        "PATCH /api/users/me",
        "DELETE /api/users/me",
        "POST /api/users/{username}/follow",
        "DELETE /api/users/{username}/follow",
        "POST /api/posts",
        "PATCH /api/posts/{post_id}",
        "DELETE /api/posts/{post_id}",
        "POST /api/posts/{post_id}/like",
        "DELETE /api/posts/{post_id}/like",
        "POST /api/posts/{post_id}/comments",
        "DELETE /api/posts/{post_id}/comments/{comment_id}",
    }


def test_every_route_of_the_app_declares_the_error_shape_for_its_errors(api: Api):
    schema = api.ok("GET", "/openapi.json")
    error_ref = "#/components/schemas/ErrorOut"

    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == error_ref, (method, path, status)


def _calls(dependant):
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def _runs_on_the_event_loop(call) -> bool:
    # A dependency may be a function or an instance with an async __call__ (HTTPBearer).
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_no_route_runs_code_in_a_worker_thread(api: Api):
    # FastAPI runs a plain `def` endpoint or dependency in a thread pool; the store's connection
    # belongs to the event loop's thread, and two threads on it deadlock under load.
    routes = [route for route in [*api.app.routes, *product_router.routes] if hasattr(route, "dependant")]

    sync = {
        f"{route.path}: {getattr(call, '__qualname__', call)}"
        for route in routes
        for call in _calls(route.dependant)
        if call is not None and not _runs_on_the_event_loop(call)
    }

    assert len(routes) > 20
    assert sync == set()
