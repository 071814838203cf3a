"""Request limits: how long and how large a request may be, enforced before any route sees it.

Two layers. ``GuardedHttpTools`` is uvicorn's httptools protocol with the limits uvicorn lacks
for a request's head (request line and headers): it must arrive within a deadline and be at most
``MAX_HEAD_BYTES``. ``BodyLimit`` (pure ASGI) reads the body within a deadline, at most
``MAX_BODY_BYTES``, and refuses JSON nested deeper than ``MAX_JSON_DEPTH`` before it is parsed.
A slow client therefore holds a connection for a bounded time, and never holds up anyone else:
each request waits on its own, and nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from talentnest.http_errors import error_body
from talentnest.tls import PEER_CERTIFICATE_SCOPE_KEY

MAX_BODY_BYTES = 1024 * 1024
# Node-to-node calls (/cluster/*) carry batches of log entries: they may be larger, and they are
# parsed only after their signature is checked, so their JSON depth is not scanned here.
MAX_CLUSTER_BODY_BYTES = 16 * 1024 * 1024
CLUSTER_PREFIX = "/cluster/"
MAX_HEAD_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32  # the product needs 2 (a profile's skills), replication 5
CLIENT_TIMEOUT = 30.0  # seconds for a request's head, and again for its body
BODY_SCOPE_KEY = "talentnest.body"
# Set by ``GuardedHttpTools`` once the server holds the request's whole body: reading it cannot wait.
BODY_RECEIVED_SCOPE_KEY = "talentnest.body_received"

# A JSON string, escapes included (possessive: no backtracking on a megabyte of text).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large", 431: b"Request Header Fields Too Large"}


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if arrays and objects in ``body`` nest deeper than ``limit`` (brackets inside strings do not count)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_A_BRACKET):
        if byte in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


async def _scan_depth(body: bytes, limit: int) -> bool:
    # A megabyte of brackets takes tens of milliseconds to scan: off the event loop, so that
    # heartbeats and other requests are not held up behind it.
    if len(body) < 64 * 1024:
        return json_too_deep(body, limit)
    return await asyncio.to_thread(json_too_deep, body, limit)


def _is_json(scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return True  # FastAPI reads a body without a Content-Type as JSON


class BodyLimit:
    """Reads the whole request body, at most ``max_bytes`` (413) within ``timeout`` seconds (408),
    and refuses a JSON body nested deeper than ``max_depth`` (400) before anything parses it.

    The body is kept in ``scope["talentnest.body"]`` so that later layers (the write forwarder,
    the signature check) reuse it instead of reading the stream again. A GET or HEAD that declares
    no body (most of the traffic) has nothing to wait for: it passes at once, with an empty body.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, timeout: float = CLIENT_TIMEOUT, max_depth: int = MAX_JSON_DEPTH):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_depth = max_depth

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _bodiless(scope):
            # Nothing to wait for, nothing to replay: the app reads the (empty) body from the client's receive.
            scope[BODY_SCOPE_KEY] = b""
            await self.app(scope, receive, send)
            return
        internal = scope["path"].startswith(CLUSTER_PREFIX)
        max_bytes = MAX_CLUSTER_BODY_BYTES if internal else self.max_bytes
        body = await read_body(scope, receive, send, max_bytes=max_bytes, timeout=self.timeout)
        if body is None:
            return
        if body and not internal and _is_json(scope) and await _scan_depth(body, self.max_depth):
            await _refuse(send, 400, "json_too_deep", f"the JSON body nests deeper than {self.max_depth} levels")
            return
        scope[BODY_SCOPE_KEY] = body
        await self.app(scope, replaying(body, receive), send)


async def read_body(scope, receive, send, *, max_bytes: int, timeout: float) -> bytes | None:
    """The whole request body, at most ``max_bytes`` (else 413), within ``timeout`` seconds (else 408);
    None when it was refused (answered here) or the client went away."""
    declared = _content_length(scope)
    if declared is not None and declared > max_bytes:
        await _too_large(send, max_bytes)
        return None
    chunks, size = [], 0
    # One deadline for the whole body, however it is cut up; none when the server already holds all of
    # it (most requests: a small body comes in the head's packet), which a deadline would cost 3 us.
    deadline = contextlib.nullcontext() if scope.get(BODY_RECEIVED_SCOPE_KEY) else asyncio.timeout(timeout)
    try:
        async with deadline:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    break
                if not message.get("more_body", False):
                    return chunk if not chunks else b"".join([*chunks, chunk])
                chunks.append(chunk)
    except TimeoutError:
        await _refuse(send, 408, "request_timeout", f"the request body did not arrive within {timeout:g} s")
        return None
    await _too_large(send, max_bytes)
    return None


def _bodiless(scope) -> bool:
    """A GET or HEAD that declares no body (RFC 9112 section 6.3: without Content-Length or Transfer-Encoding
    a request has none), whose (empty) body the server has therefore already received whole."""
    if scope["method"] not in ("GET", "HEAD"):
        return False
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return False
    return True


def replaying(body: bytes, receive):
    """A ``receive`` that gives the body already read, whole, then passes on to the client's ``receive``."""
    delivered = False

    async def replay():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _too_large(send, max_bytes: int) -> None:
    await _refuse(send, 413, "payload_too_large", f"request body is larger than {max_bytes} bytes")


async def _refuse(send, status: int, code: str, message: str) -> None:
    """Answer in the error shape and close the connection (the rest of the body is not read)."""
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus limits on each request's head.

    uvicorn times out only idle kept-alive connections, and httptools buffers a head of any
    size: a client that trickles its headers, or sends them without end, would hold a
    connection (and memory) forever. Here the head must be complete within ``head_timeout``
    seconds of the connection opening or of the request's first byte (408), and be at most
    ``max_head_bytes`` (431); uvicorn's plain-text 400 for an unparsable request gets the
    error shape too. Each refusal closes the connection. ``configured`` makes a subclass with
    other limits (uvicorn instantiates the class itself).
    """

    head_timeout: float = CLIENT_TIMEOUT
    max_head_bytes: int = MAX_HEAD_BYTES

    @classmethod
    def configured(cls, *, head_timeout: float, max_head_bytes: int = MAX_HEAD_BYTES) -> type[GuardedHttpTools]:
        return type(cls.__name__, (cls,), {"head_timeout": head_timeout, "max_head_bytes": max_head_bytes})

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_started: float | None = None  # when the head being read began; None between requests
        self._in_head = True
        self._head_bytes = 0
        self._begin_head()

    # One timer per connection, not two timer operations per request: a head's start is noted (a clock
    # read), and the timer, armed once for a whole deadline, looks when it fires whether a head has been
    # in progress that long; if one is still in time, it looks again when that one's deadline comes.

    def _begin_head(self) -> None:
        if self._head_started is None:  # else timed since the connection opened, its first head included
            self._head_started = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_started + self.head_timeout, self._check_head)

    def _check_head(self) -> None:
        self._head_timer = None
        if self._head_started is None:
            return  # no head in progress: the next one arms the timer again
        deadline = self._head_started + self.head_timeout
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._check_head)
        elif self._in_head:
            self._refuse(408, "request_timeout", f"the request head did not arrive within {self.head_timeout:g} s")

    def _refuse(self, status: int, code: str, message: str) -> None:
        if self.transport.is_closing():
            return
        body = error_body(code, message)
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
            status,
            _REASONS[status],
            len(body),
        )
        self.transport.write(head + body)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Counted before parsing: if the head is still incomplete, every byte so far was head.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "head_too_large", f"the request line and headers are larger than {self.max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._begin_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_started = None
        self._head_bytes = 0
        if self.transport.get_extra_info("sslcontext") is not None:
            # Whether this TLS connection presented a certificate the CA signed (the handshake
            # refused any other): node-to-node calls over TLS must (talentnest.tls).
            self.scope[PEER_CERTIFICATE_SCOPE_KEY] = bool(self.transport.get_extra_info("peercert"))
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The request is in, body and all: what comes next is the next request's head, timed
        # from its first byte (on_message_begin); the idle time between is keep-alive's.
        self._in_head = True
        self.scope[BODY_RECEIVED_SCOPE_KEY] = True
        super().on_message_complete()

    def connection_lost(self, exc) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "bad_request", f"invalid HTTP request: {msg}")
