"""Slow and huge requests against a real node over real sockets: each is cut off in the error
shape, and none holds up anyone else's request.

Two nodes on 127.0.5.x: one with CLIENT_TIMEOUT=2, to see slow clients cut off; one with
CLIENT_TIMEOUT=60, to see that hundreds of slow clients, all still holding their connections,
do not delay a normal request.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from talentnest.limits import MAX_HEAD_BYTES
from tests._node import LocalNode, ready_node
from tests._slow import SlowClients

SUBNET = os.environ.get("TN_TEST_SUBNET", "127.0.5")
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    node = ready_node(tmp_path_factory.mktemp("strict"), f"{SUBNET}.41", JWT_SECRET=SECRET, CLIENT_TIMEOUT="2")
    yield node
    node.stop()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    node = ready_node(tmp_path_factory.mktemp("patient"), f"{SUBNET}.42", JWT_SECRET=SECRET, CLIENT_TIMEOUT="60")
    yield node
    node.stop()


def exchange(node: LocalNode, data: bytes, timeout: float = 30) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection((node.host, node.port), timeout=timeout) as connection:
        if data:
            connection.sendall(data)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def error_of(answer: bytes, status: int) -> dict:
    """The status line is ``status``, the body the one error shape, and the connection closes."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower(), head
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    return error


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_slow_heads_and_slow_bodies_are_cut_off_with_408(strict: LocalNode):
    with SlowClients(strict.host, strict.port, heads=5, bodies=5) as slow:
        wait_until(lambda: slow.open == 0, 30, "the node to close every slow connection")

        codes = {}
        for connection in slow.connections:
            codes.setdefault(connection.kind, set()).add(error_of(connection.answer, 408)["code"])
        # Trickling a byte every half second does not extend the deadline.
        assert all(connection.sent >= 2 for connection in slow.connections)

    assert codes == {"head": {"request_timeout"}, "body": {"request_timeout"}}


def test_a_connection_that_sends_nothing_is_closed_with_408(strict: LocalNode):
    assert error_of(exchange(strict, b""), 408)["code"] == "request_timeout"


def test_a_head_over_the_limit_is_431_without_waiting_for_its_end(strict: LocalNode):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n"

    assert error_of(exchange(strict, head), 431)["code"] == "head_too_large"


def test_a_head_just_under_the_limit_is_served(strict: LocalNode):
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    padding = b"X-Big: " + b"a" * (MAX_HEAD_BYTES - len(head) - 100) + b"\r\n\r\n"

    assert exchange(strict, head + padding).startswith(b"HTTP/1.1 200 ")


def test_an_unparsable_request_is_400_in_the_error_shape(strict: LocalNode):
    assert error_of(exchange(strict, b"NOT AN HTTP REQUEST\r\n\r\n"), 400)["code"] == "bad_request"


def test_a_kept_alive_connection_may_idle_longer_than_the_head_deadline(strict: LocalNode):
    with httpx.Client(base_url=strict.url, timeout=10) as client:
        first = client.get("/healthz")
        time.sleep(3)  # the scenario: idle for longer than CLIENT_TIMEOUT (2 s), less than keep-alive (35 s)
        second = client.get("/healthz")

    assert first.status_code == second.status_code == 200
    assert first.extensions["network_stream"] is second.extensions["network_stream"]  # the same connection


def test_hundreds_of_slow_clients_do_not_hold_up_other_requests(patient: LocalNode):
    latencies: list[float] = []
    with httpx.Client(base_url=patient.url, timeout=10) as client:
        member = {"name": "Busy", "username": "busy", "email": "busy@example.com", "password": "pass123"}
        token = client.post("/api/auth/signup", json=member).json()["token"]
        with SlowClients(patient.host, patient.port, heads=200, bodies=200) as slow:
            for i in range(20):
                for method, path, body in [
                    ("GET", "/cluster/status", None),
                    ("POST", "/api/posts", {"content": f"while slowed {i}"}),
                    ("GET", "/api/posts?limit=5", None),
                ]:
                    started = time.monotonic()
                    reply = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
                    latencies.append(time.monotonic() - started)
                    assert reply.status_code in (200, 201), reply.text
            still_holding = slow.open

    # Every slow client still held its connection when the last normal request was answered:
    # those requests did not wait for the slow ones to be cut off (after 60 s).
    assert still_holding == 400
    print(f"\n60 requests beside 400 slow clients: max {max(latencies) * 1000:.0f} ms, "
          f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms")  # fmt: skip


def test_a_kept_alive_connections_next_head_is_timed_from_its_own_first_byte(strict: LocalNode):
    """The head deadline (CLIENT_TIMEOUT, 2 s here) runs from each request's first byte: a second request
    that trickles its head on a connection already open for longer is cut off, but not before its own
    deadline."""
    with socket.create_connection((strict.host, strict.port), timeout=30) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first or not first.rstrip().endswith(b"}"):
            first += connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # the scenario: the connection idles, so a deadline from its opening would come early
        began = time.monotonic()
        connection.sendall(b"GET /healthz HTTP/1.1\r\n")
        answer = b""
        connection.settimeout(0.5)
        while not answer:
            try:
                answer = connection.recv(65536)
            except TimeoutError:
                connection.sendall(b"X-Slow: a\r\n")  # a header line every half second: still no end of head
        connection.settimeout(30)
        while chunk := connection.recv(65536):
            answer += chunk
        cut_after = time.monotonic() - began

    assert error_of(answer, 408)["code"] == "request_timeout"
    assert cut_after >= 1.8, f"cut off {cut_after:.2f} s after its head began, before its own 2 s deadline"
