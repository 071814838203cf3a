"""One real node process over real HTTP on loopback: the seed's curl commands, and 413 on the wire.

Most API tests drive the ASGI app in process; these check what only a real server shows: the
node starts from the environment as ``python -m talentnest node``, and a body over 1 MiB is
refused with 413 whether it comes with a Content-Length or chunked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from talentnest.limits import MAX_BODY_BYTES

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class NodeProcess:
    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"node exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling interval of a condition with a deadline, not a wait for an event
        raise AssertionError(f"node not ready within {timeout} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("node-process")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(SRC),
        "JWT_SECRET": "secret_key",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DATA_DIR": str(workdir / "data"),
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
    }
    log_path = workdir / "node.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "talentnest", "node"], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir
        )
    started = NodeProcess(process, port, log_path)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def test_the_seeds_signup_and_search_work_over_http(node: NodeProcess):
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


def _posts(node: NodeProcess) -> list:
    return httpx.get(f"{node.url}/api/posts").json()["items"]


def _token(node: NodeProcess) -> str:
    response = httpx.post(f"{node.url}/api/auth/login", json={"username": "wire", "password": "pass123"})
    if response.status_code == 401:
        member = {"name": "Wire", "username": "wire", "email": "wire@example.com", "password": "pass123"}
        response = httpx.post(f"{node.url}/api/auth/signup", json=member)
    return response.json()["token"]


def _post_head(node: NodeProcess, *headers: str) -> bytes:
    """The request line and headers of a raw POST /api/posts as a signed-up member."""
    lines = ["POST /api/posts HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    lines.append(f"Authorization: Bearer {_token(node)}")
    return ("\r\n".join([*lines, *headers]) + "\r\n\r\n").encode()


def _chunked(body: bytes, size: int = 65536) -> list[bytes]:
    """``body`` in the chunked transfer coding, ``size`` bytes a chunk, with the last chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces] + [b"0\r\n\r\n"]


def test_a_chunked_body_over_1_mib_is_413_on_the_wire(node: NodeProcess):
    head = _post_head(node, "Transfer-Encoding: chunked")
    body = b'{"content": "' + b"x" * (MAX_BODY_BYTES - 13) + b'"}'  # one byte over the limit
    before = _posts(node)

    answer = _exchange(node.port, head, _chunked(body))

    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"code":"payload_too_large"' in answer
    assert _posts(node) == before


def test_a_declared_body_over_1_mib_is_413_before_it_is_sent(node: NodeProcess):
    head = _post_head(node, "Expect: 100-continue", f"Content-Length: {MAX_BODY_BYTES + 1}")
    before = _posts(node)

    answer = _exchange(node.port, head, [])

    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"100 Continue" not in answer
    assert _posts(node) == before


def test_a_chunked_body_under_1_mib_is_served(node: NodeProcess):
    head = _post_head(node, "Connection: close", "Transfer-Encoding: chunked")

    answer = _exchange(node.port, head, _chunked(b'{"content": "sent in chunks"}', size=7))

    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert _posts(node)[0]["content"] == "sent in chunks"


def test_concurrent_authenticated_writes_and_reads_all_complete(node: NodeProcess):
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
