"""Request limits alone: JSON depth, and BodyLimit's deadline on a body that does not arrive."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talentnest.limits import BODY_RECEIVED_SCOPE_KEY, BODY_SCOPE_KEY, BodyLimit, GuardedHttpTools, json_too_deep, read_body


def nested(depth: int, leaf: object = 1) -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("depth", [0, 1, 2, 31, 32])
def test_json_up_to_the_limit_is_not_too_deep(depth: int):
    assert not json_too_deep(json.dumps(nested(depth)).encode(), limit=32)


@pytest.mark.parametrize("depth", [33, 100, 900])
def test_json_past_the_limit_is_too_deep(depth: int):
    assert json_too_deep(json.dumps(nested(depth)).encode(), limit=32)


@pytest.mark.parametrize(
    "text",
    ['{"content": "' + "[" * 500 + '"}', '{"content": "\\"' + "{" * 500 + '"}', '["' + "]" * 50 + "[" * 50 + '"]'],
    ids=["brackets in a string", "after an escaped quote", "closing first"],
)
def test_brackets_inside_strings_do_not_count(text: str):
    assert not json_too_deep(text.encode(), limit=32)


def test_many_shallow_values_are_not_too_deep():
    assert not json_too_deep(json.dumps([[i] for i in range(100_000)]).encode(), limit=2)


def test_unbalanced_openers_count_as_depth():
    assert json_too_deep(b"[" * 33, limit=32) and not json_too_deep(b"[" * 32, limit=32)


def test_a_megabyte_of_openers_is_too_deep():
    assert json_too_deep(b'{"a":' * 200_000, limit=32)


@given(st.recursive(st.integers() | st.text(), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)))
def test_depth_matches_the_structure(value):
    def depth(v) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    body = json.dumps(value).encode()
    actual = depth(value)
    assert json_too_deep(body, limit=actual) is False
    assert json_too_deep(body, limit=actual - 1) is (actual > 0)


def run_body_limit(messages: list[dict], *, timeout: float, stall: bool) -> tuple[int, dict, bool]:
    """Drive BodyLimit with ``messages``; then either stall (the client sends nothing more) or disconnect."""
    reached = []

    async def app(scope, receive, send):
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def main():
        pending = list(messages)
        sent = []

        async def receive():
            if pending:
                return pending.pop(0)
            if stall:
                await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/api/posts", "headers": [(b"content-type", b"application/json")]}
        await asyncio.wait_for(BodyLimit(app, timeout=timeout)(scope, receive, send), timeout=30)
        return sent

    sent = asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {"headers": dict(start["headers"]), "body": json.loads(body)}, bool(reached)


def test_a_body_that_stops_arriving_is_408_and_the_connection_closes():
    status, answer, reached = run_body_limit(
        [{"type": "http.request", "body": b'{"content": "sl', "more_body": True}], timeout=0.2, stall=True
    )

    assert status == 408 and not reached
    assert answer["body"]["error"]["code"] == "request_timeout"
    assert answer["headers"][b"connection"] == b"close"


def test_a_body_that_arrives_in_time_is_served():
    chunks = [{"type": "http.request", "body": b'{"a":', "more_body": True}, {"type": "http.request", "body": b"1}"}]

    status, _, reached = run_body_limit(chunks, timeout=5, stall=False)

    assert status == 200 and reached


def test_a_get_is_limited_like_any_request_once_it_declares_a_body():
    """A GET without Content-Length or Transfer-Encoding has no body and passes at once; one that declares a
    body is read within the same limits (here: declared larger than the limit, refused before it is read)."""
    seen = []

    async def app(scope, receive, send):
        seen.append(scope[BODY_SCOPE_KEY])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run(headers):
        sent = []

        async def receive():
            await asyncio.Event().wait()  # a body that never comes

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/api/posts/1", "headers": headers}
        await asyncio.wait_for(BodyLimit(app, max_bytes=10, timeout=5)(scope, receive, send), timeout=10)
        return sent[0]["status"]

    assert asyncio.run(run([(b"host", b"x")])) == 200 and seen == [b""]
    assert asyncio.run(run([(b"content-length", b"11")])) == 413 and len(seen) == 1


class _Transport(asyncio.Transport):
    """What GuardedHttpTools needs of a connection: the bytes it writes are kept."""

    def __init__(self):
        super().__init__()
        self.written, self.closed = b"", False

    def write(self, data):
        self.written += data

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 3000)}.get(name, default)

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def set_write_buffer_limits(self, *args, **kwargs):
        pass


def test_the_protocol_says_a_body_is_received_only_once_all_of_it_is():
    """``BODY_RECEIVED_SCOPE_KEY`` lets ``read_body`` skip its deadline: it must be set only when the server
    holds the whole body, never while some of it is still to come (a slow body keeps its 408)."""
    import uvicorn
    from uvicorn.server import ServerState

    seen: list[tuple[bool, bytes]] = []

    async def app(scope, receive, send):
        received = bool(scope.get(BODY_RECEIVED_SCOPE_KEY))
        body = await read_body(scope, receive, send, max_bytes=1024, timeout=5)
        seen.append((received, body))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        config = uvicorn.Config(app, lifespan="off", log_config=None)
        config.load()
        protocol = GuardedHttpTools.configured(head_timeout=5)(config=config, server_state=ServerState(), app_state={})
        protocol.connection_made(_Transport())
        head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
        protocol.data_received(head + b"0123456789")  # all of it in one read
        while len(seen) < 1:
            await asyncio.sleep(0)
        protocol.data_received(head + b"01234")  # half of it, the rest later
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(seen) == 1, "the app answered before the body was whole"
        protocol.data_received(b"56789")
        while len(seen) < 2:
            await asyncio.sleep(0)
        protocol.connection_lost(None)

    asyncio.run(main())
    assert seen == [(True, b"0123456789"), (False, b"0123456789")]
