"""One real node process over real HTTP on loopback: the seed's curl commands, and 413 on the wire.

Most API tests drive the ASGI app in process; these check what only a real server shows: the
node starts from the environment as ``python -m talentnest node``, and a body over 1 MiB is
refused with 413 whether it comes with a Content-Length or chunked.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from talentnest.limits import MAX_BODY_BYTES
from tests._node import LocalNode


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    started = LocalNode(tmp_path_factory.mktemp("node-process"), JWT_SECRET="secret_key")
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def test_the_seeds_signup_and_search_work_over_http(node: LocalNode):
    signup = httpx.post(
        f"{node.url}/api/auth/signup",
        headers={"Content-Type": "application/json"},
        content=b'{\n    "name": "Test User",\n    "username": "testuser",\n    "email": "test@example.com",\n'
        b'    "password": "password123"\n  }',
    )
    search = httpx.get(f"{node.url}/api/users/search?query=testuser")

    assert signup.status_code == 201, signup.text
    assert signup.json()["user"]["username"] == "testuser"
    assert search.status_code == 200
    assert [u["username"] for u in search.json()["items"]] == ["testuser"]
    assert "store: opened" in node.log()


def _exchange(port: int, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a raw request (the body may be cut short by the server) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(head)
        try:
            for part in body_parts:
                connection.sendall(part)
        except OSError:
            pass  # the server answered and closed before the whole body was sent; read its answer
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def _posts(node: LocalNode) -> list:
    return httpx.get(f"{node.url}/api/posts").json()["items"]


def _token(node: LocalNode) -> str:
    response = httpx.post(f"{node.url}/api/auth/login", json={"username": "wire", "password": "pass123"})
    if response.status_code == 401:
        member = {"name": "Wire", "username": "wire", "email": "wire@example.com", "password": "pass123"}
        response = httpx.post(f"{node.url}/api/auth/signup", json=member)
    return response.json()["token"]


def _post_head(node: LocalNode, *headers: str) -> bytes:
    """The request line and headers of a raw POST /api/posts as a signed-up member."""
    lines = ["POST /api/posts HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    lines.append(f"Authorization: Bearer {_token(node)}")
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def _chunked(body: bytes, size: int = 65536) -> list[bytes]:
    """``body`` in the chunked transfer coding, ``size`` bytes a chunk, with the last chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]


def test_a_chunked_body_over_1_mib_is_413_on_the_wire(node: LocalNode):
    head = _post_head(node, "Transfer-Encoding: chunked")
    body = b'{"content": "' + b"x" * (MAX_BODY_BYTES - 13) + b'"}'  # one byte over the limit
    before = _posts(node)

    answer = _exchange(node.port, head, _chunked(body))

    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"code":"payload_too_large"' in answer
    assert _posts(node) == before


def test_a_declared_body_over_1_mib_is_413_before_it_is_sent(node: LocalNode):
    head = _post_head(node, "Expect: 100-continue", f"Content-Length: {MAX_BODY_BYTES + 1}")
    before = _posts(node)

    answer = _exchange(node.port, head, [])

    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"100 Continue" not in answer
    assert _posts(node) == before


def test_a_chunked_body_under_1_mib_is_served(node: LocalNode):
    head = _post_head(node, "Connection: close", "Transfer-Encoding: chunked")

    answer = _exchange(node.port, head, _chunked(b'{"content": "sent in chunks"}', size=7))

    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert _posts(node)[0]["content"] == "sent in chunks"


def test_concurrent_authenticated_writes_and_reads_all_complete(node: LocalNode):
    # Regression: token checks once ran in FastAPI's worker threads on the event loop's SQLite
    # connection, and the node deadlocked after some 80 concurrent authenticated requests.
    token = _token(node)
    headers = {"Authorization": f"Bearer {token}"}
    before = len(httpx.get(f"{node.url}/api/posts", params={"author": "wire", "limit": 100}).json()["items"])
    statuses: list[int] = []
    lock = threading.Lock()

    def member(worker: int) -> None:
        with httpx.Client(base_url=node.url, headers=headers, timeout=30) as client:
            for i in range(12):
                created = client.post("/api/posts", json={"content": f"worker {worker} post {i}"})
                read = client.get(f"/api/posts/{created.json()['id']}") if created.status_code == 201 else created
                liked = client.post(f"/api/posts/{created.json()['id']}/like") if created.status_code == 201 else created
                with lock:
                    statuses.extend([created.status_code, read.status_code, liked.status_code])

    workers = [threading.Thread(target=member, args=(w,)) for w in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)

    assert not any(worker.is_alive() for worker in workers), f"requests hung:\n{node.log()[-3000:]}"
    assert statuses.count(201) == 96 and statuses.count(200) == 192, statuses
    after = httpx.get(f"{node.url}/api/posts", params={"author": "wire", "limit": 100}).json()["items"]
    assert len(after) == before + 96
