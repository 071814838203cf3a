"""The client contract in the schema: stable operation IDs, the cluster's headers on the routes where they
apply (and on the real answers), and /docs served by the node itself under its CSP."""

from __future__ import annotations

import hashlib
import re

from talentnest.api import WRITE_FLAG, router
from talentnest.web import STATIC_DIR
from tests.api._helpers import Api

# Stable: clients generate code from these; changing one is a breaking change of the API.
OPERATION_IDS = {
    "POST /api/auth/signup": "signup",
    "POST /api/auth/login": "login",
    "GET /api/auth/me": "getMe",
    "POST /api/auth/password": "changePassword",
    "GET /api/users/search": "searchUsers",
    "GET /api/users/me": "getMyProfile",
    "PATCH /api/users/me": "updateMyProfile",
    "DELETE /api/users/me": "deleteMyAccount",
    "GET /api/users/me/export": "exportMyData",
    "GET /api/users/{username}": "getUser",
    "POST /api/users/{username}/follow": "followUser",
    "DELETE /api/users/{username}/follow": "unfollowUser",
    "GET /api/users/{username}/followers": "listFollowers",
    "GET /api/users/{username}/following": "listFollowing",
    "POST /api/posts": "createPost",
    "GET /api/posts": "listPosts",
    "GET /api/feed": "getFeed",
    "GET /api/posts/{post_id}": "getPost",
    "PATCH /api/posts/{post_id}": "updatePost",
    "DELETE /api/posts/{post_id}": "deletePost",
    "POST /api/posts/{post_id}/like": "likePost",
    "DELETE /api/posts/{post_id}/like": "unlikePost",
    "POST /api/posts/{post_id}/comments": "createComment",
    "GET /api/posts/{post_id}/comments": "listComments",
    "DELETE /api/posts/{post_id}/comments/{comment_id}": "deleteComment",
    "GET /healthz": "getHealth",
    "GET /readyz": "getReadiness",
    "GET /metrics": "getMetrics",
}


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", path, operation


def _resolve(schema: dict, ref_or_object: dict) -> dict:
    ref = ref_or_object.get("$ref")
    if ref is None:
        return ref_or_object
    node = schema
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_operation_has_its_stable_readable_id(api: Api):
    schema = api.ok("GET", "/openapi.json")
    found = {name: operation["operationId"] for name, _, operation in _operations(schema)}
    assert found == OPERATION_IDS
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", value) for value in found.values())


def test_reads_take_x_min_lsn_and_writes_take_an_idempotency_key(api: Api):
    schema = api.ok("GET", "/openapi.json")
    for name, path, operation in _operations(schema):
        headers = {p["name"]: p for p in (_resolve(schema, p) for p in operation.get("parameters", [])) if p["in"] == "header"}
        if not path.startswith("/api/"):
            assert not headers, name
            continue
        expected = "Idempotency-Key" if operation.get(WRITE_FLAG) else "X-Min-LSN"
        assert set(headers) == {expected}, name
        assert headers[expected]["required"] is False
        retry = operation["responses"]["503"]
        assert "Retry-After" in retry["headers"], name
        assert ("no_leader" if operation.get(WRITE_FLAG) else "lsn_not_reached") in retry["description"], name
        if operation.get(WRITE_FLAG):
            assert "idempotency_key_reused" in operation["responses"]["422"]["description"], name
    assert _resolve(schema, {"$ref": "#/components/parameters/IdempotencyKey"})["schema"]["maxLength"] == 200


def test_every_answer_documents_the_node_headers_and_writes_the_leader_header(api: Api):
    schema = api.ok("GET", "/openapi.json")
    for name, _, operation in _operations(schema):
        for status, response in operation["responses"].items():
            assert {"X-Node-Id", "X-Node-Role", "X-Cluster-LSN"} <= set(response["headers"]), (name, status)
            if operation.get(WRITE_FLAG) and status.startswith("2"):
                assert {"X-Leader-Id", "Idempotent-Replayed"} <= set(response["headers"]), (name, status)
    assert "Retry-After" in schema["paths"]["/api/auth/login"]["post"]["responses"]["429"]["headers"]
    role = _resolve(schema, {"$ref": "#/components/headers/X-Node-Role"})
    assert role["schema"]["enum"] == ["leader", "follower", "candidate"]


def test_the_documented_headers_are_what_a_node_sends(api: Api, make_member):
    member = make_member()
    created = api.client.post("/api/posts", json={"content": "hello"}, headers={**member.headers, "Idempotency-Key": "k-1"})
    assert created.status_code == 201
    assert created.headers["X-Node-Role"] == "leader" and int(created.headers["X-Node-Id"]) > 0
    lsn = int(created.headers["X-Cluster-LSN"])
    term, epoch = api.db.position_at(lsn)
    assert created.headers["X-Cluster-Entry"] == f"{term}.{epoch}", "which entry is at that LSN, for a relaying follower"
    again = api.client.post("/api/posts", json={"content": "hello"}, headers={**member.headers, "Idempotency-Key": "k-1"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == created.json()
    read = api.client.get(f"/api/posts/{created.json()['id']}", headers={"X-Min-LSN": str(lsn)})
    assert read.status_code == 200 and int(read.headers["X-Cluster-LSN"]) >= lsn
    refused = api.client.get("/api/posts", headers={"X-Min-LSN": "soon"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_input"


def test_docs_is_the_nodes_own_page_under_its_csp(api: Api):
    page = api.client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and not [s for s in sources if "//" in s or ":" in s], f"/docs loads from elsewhere: {sources}"
    for source in sources:
        assert api.client.get(f"/{source}").status_code == 200, source
    assert "<script>" not in page.text, "inline scripts are refused by the CSP"
    assert api.client.get("/redoc").status_code == 404  # FastAPI's /redoc loads a CDN: not served


def test_the_shipped_swagger_ui_is_the_upstream_files_with_their_licence():
    directory = STATIC_DIR / "swagger-ui"
    listed = {}
    for line in (directory / "SOURCE.txt").read_text().splitlines():
        match = re.fullmatch(r"([0-9a-f]{64})  (\S+)", line)
        if match:
            listed[match.group(2)] = match.group(1)
    shipped = {path.name for path in directory.iterdir()} - {"SOURCE.txt"}
    assert set(listed) == shipped
    for name, digest in listed.items():
        assert hashlib.sha256((directory / name).read_bytes()).hexdigest() == digest, f"{name} differs from SOURCE.txt"
    assert "Apache License" in (directory / "LICENSE").read_text()


def test_the_schema_lists_paths_as_declared_though_the_busiest_route_is_tried_first(api: Api):
    """app.py moves the read of a post by id to the front of the router; the schema must not move with it."""
    first = api.app.router.routes[0]
    assert (first.path, sorted(first.methods)) == ("/api/posts/{post_id}", ["GET"])
    declared = list(dict.fromkeys(route.path for route in router.routes))
    paths = [path for path in api.ok("GET", "/openapi.json")["paths"] if path.startswith("/api/")]
    assert paths == declared
    assert paths.index("/api/posts/{post_id}") > paths.index("/api/auth/signup")


# Which operations take the bearer token: the identity dependencies read it themselves (api/deps.py), and
# openapi.describe_bearer puts the security scheme on the routes that depend on them, as FastAPI did when
# they depended on the scheme.
TOKEN_REQUIRED = {
    "POST /api/auth/password",
    "GET /api/auth/me",
    "GET /api/users/me",
    "DELETE /api/users/me",
    "PATCH /api/users/me",
    "GET /api/users/me/export",
    "POST /api/users/{username}/follow",
    "DELETE /api/users/{username}/follow",
    "POST /api/posts",
    "GET /api/feed",
    "PATCH /api/posts/{post_id}",
    "DELETE /api/posts/{post_id}",
    "POST /api/posts/{post_id}/like",
    "DELETE /api/posts/{post_id}/like",
    "POST /api/posts/{post_id}/comments",
    "DELETE /api/posts/{post_id}/comments/{comment_id}",
}
TOKEN_OPTIONAL = {"GET /api/posts", "GET /api/posts/{post_id}"}


def test_the_operations_that_take_the_token_say_so_with_the_bearer_scheme(api: Api):
    schema = api.ok("GET", "/openapi.json")
    assert schema["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "description": "the token from signup or login", "scheme": "bearer"}
    }
    security = {name: operation.get("security") for name, _, operation in _operations(schema)}
    assert {name for name, value in security.items() if value == [{"HTTPBearer": []}]} == TOKEN_REQUIRED
    assert {name for name, value in security.items() if value == [{"HTTPBearer": []}, {}]} == TOKEN_OPTIONAL
    assert {name for name, value in security.items() if value is not None} == TOKEN_REQUIRED | TOKEN_OPTIONAL
