"""The in-memory network: HTTP exchanges between simulated hosts, carried as ASGI calls.

A request travels from its sender to the receiving node's app (its whole middleware stack) and the
answer travels back, each way after a seeded delay, through the ``wire`` (never paused, never
crashed: it stands for the kernel and the cables). On the way a message may be dropped (the caller
times out; a dropped *answer* means the callee did the work), duplicated (the callee serves it twice,
the caller gets the first copy's answer; a node refuses a signed copy as a replay), delayed beyond
others (so messages reorder), or cut by a partition (directed: ``(a, b)`` blocked drops what ``a``
sends to ``b``, answers included). A host whose
process is not running refuses the connection; one that is paused or cut off never answers, so the
caller times out; a host that crashes while serving resets the connections it had open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

from talentnest.cluster import auth
from talentnest.cluster.transport import ForgedAnswer, PeerRefused, Reply
from talentnest.errors import PeerUnreachable

if TYPE_CHECKING:
    from talentnest.sim.loop import SimLoop, VirtualClock, Wire
    from talentnest.sim.trace import Trace

PORT = 3000
# One way, on a quiet network: what loopback between containers costs (seconds).
BASE_DELAY = (0.0002, 0.0015)


@dataclass
class Conditions:
    """What a burst of bad network does to every message while it lasts."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = BASE_DELAY


@dataclass
class HttpRequest:
    method: str
    target: str  # path and query, as signed
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""


class Host(Protocol):
    """What the network needs of a simulated process: whether it accepts connections now, and a way
    to hand it a request (``accept`` starts serving it on the host's own loop)."""

    address: str

    @property
    def listening(self) -> bool: ...

    def accept(self, exchange: Exchange) -> None: ...


@dataclass(eq=False)
class Exchange:
    """One request and its answer. ``settle``/``fail`` complete the caller's future at most once,
    and never on a caller that has crashed meanwhile."""

    id: int
    src: str
    dst: str
    request: HttpRequest
    future: asyncio.Future
    caller: SimLoop
    copies: int = 1
    served: int = field(default=0)

    @property
    def label(self) -> str:
        return f"#{self.id} {self.src}>{self.dst} {self.request.method} {self.request.target.split('?')[0]}"

    def settle(self, reply: Reply) -> None:
        if not self.caller.dead and not self.future.done():
            self.future.set_result(reply)

    def fail(self, error: Exception) -> None:
        if not self.caller.dead and not self.future.done():
            self.future.set_exception(error)


class Network:
    """Hosts by address, the partitions between them, and the current conditions of every link."""

    def __init__(self, clock: VirtualClock, wire: Wire, seed: int, trace: Trace):
        self.clock = clock
        self.wire = wire
        self.seed = seed
        self.trace = trace
        self.hosts: dict[str, Host] = {}
        self.blocked: set[tuple[str, str]] = set()
        self._cuts: Counter[tuple[str, str]] = Counter()  # partitions may overlap: each cut is counted
        self.conditions = Conditions()
        self._rngs: dict[tuple[str, str], random.Random] = {}
        self._ids = itertools.count(1)
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def cut(self, links: list[tuple[str, str]]) -> None:
        for link in links:
            self._cuts[link] += 1
            self.blocked.add(link)

    def heal(self, links: list[tuple[str, str]]) -> None:
        for link in links:
            self._cuts[link] -= 1
            if self._cuts[link] <= 0:
                del self._cuts[link]
                self.blocked.discard(link)

    def _rng(self, src: str, dst: str) -> random.Random:
        # One stream per link: a fault elsewhere does not shift this link's delays.
        rng = self._rngs.get((src, dst))
        if rng is None:
            rng = self._rngs[(src, dst)] = random.Random(f"{self.seed}:net:{src}>{dst}")
        return rng

    def _delay(self, rng: random.Random) -> float:
        low, high = self.conditions.delay
        return rng.uniform(low, high)

    def _passes(self, src: str, dst: str, rng: random.Random) -> bool:
        if (src, dst) in self.blocked:
            return False
        return not (self.conditions.loss and rng.random() < self.conditions.loss)

    async def exchange(self, src: str, dst: str, request: HttpRequest, timeout: float, *, base_url: str) -> Reply:
        """Send ``request`` from ``src`` to ``dst`` and wait for the answer. Raises PeerRefused when
        nobody listens at ``dst``, PeerUnreachable when no answer comes within ``timeout`` or the
        connection is reset."""
        loop = asyncio.get_running_loop()
        exchange = Exchange(next(self._ids), src, dst, request, loop.create_future(), loop)  # type: ignore[arg-type]
        self.sent += 1
        rng = self._rng(src, dst)
        if self._passes(src, dst, rng):
            if self.conditions.duplicate and rng.random() < self.conditions.duplicate:
                exchange.copies = 2
                self.duplicated += 1
            for _ in range(exchange.copies):
                self.wire.call_at(self.clock.now + self._delay(rng), self._arrive, exchange)
        else:
            self.dropped += 1
            self.trace.add(f"net drop {exchange.label}")
        try:
            async with asyncio.timeout(timeout):
                return await exchange.future
        except TimeoutError:
            path = request.target.split("?")[0]
            raise PeerUnreachable(f"{base_url} did not answer {request.method} {path} within {timeout:g} s") from None

    def _arrive(self, exchange: Exchange) -> None:
        host = self.hosts.get(exchange.dst)
        if host is None or not host.listening:
            self.send_back(exchange, error=PeerRefused(f"http://{exchange.dst}:{PORT} refused the connection"))
            return
        exchange.served += 1
        host.accept(exchange)

    def send_back(self, exchange: Exchange, reply: Reply | None = None, error: Exception | None = None) -> None:
        """The answer (or a refusal, or a reset) leaves ``exchange.dst`` for the caller."""
        rng = self._rng(exchange.dst, exchange.src)
        if not self._passes(exchange.dst, exchange.src, rng):
            self.dropped += 1
            self.trace.add(f"net drop-answer {exchange.label}")
            return
        when = self.clock.now + self._delay(rng)
        if reply is not None:
            self.wire.call_at(when, exchange.settle, reply)
        elif error is not None:
            self.wire.call_at(when, exchange.fail, error)


def reply_headers(raw: list[tuple[bytes, bytes]]) -> CIMultiDictProxy[str]:
    """ASGI answer headers as aiohttp gives them: case-insensitive, repeated names kept."""
    return CIMultiDictProxy(CIMultiDict((k.decode("latin-1"), v.decode("latin-1")) for k, v in raw))


def http_scope(request: HttpRequest, *, src: str, dst: str, client_port: int) -> dict[str, Any]:
    """The ASGI scope uvicorn would build for ``request`` arriving at ``dst`` from ``src``."""
    path, _, query = request.target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": (dst, PORT),
        "client": (src, client_port),
        "scheme": "http",
        "method": request.method,
        "root_path": "",
        "path": unquote(path),
        "raw_path": path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "headers": [(b"host", f"{dst}:{PORT}".encode()), *request.headers],
        "state": {},
    }


def host_of(base_url: str) -> str:
    host = urlsplit(base_url).hostname
    if host is None:
        raise PeerUnreachable(f"{base_url} names no host")
    return host


class _Chunks:
    """A whole answer as a ``ChunkStream`` (the simulated snapshot arrives in one message);
    ``authenticate`` checks one of its signed records against the request's nonce, as the real one."""

    def __init__(self, reply: Reply, check: Callable[[int, str | None, str], None]):
        self.status = reply.status
        self.headers = reply.headers
        self._body = reply.body
        self._at = 0
        self._check = check

    async def chunks(self, size: int) -> AsyncIterator[bytes]:
        while self._at < len(self._body):
            yield await self.read_exactly(size)

    async def read_exactly(self, size: int) -> bytes:
        part = self._body[self._at : self._at + size]
        self._at += len(part)
        return part

    def authenticate(self, signature: str, body_sha256: str) -> None:
        self._check(200, signature, body_sha256)


class SimTransport:
    """A node's ``Transport``: signed calls over the simulated network, signed with the node's own
    (possibly skewed) wall clock and a nonce from the node's own random stream, leaving from the node's
    own address; an answer that is not signed for its request raises ``ForgedAnswer``, as the real
    ``PeerClient``'s (one key: rotations are not simulated)."""

    def __init__(self, network: Network, keys: auth.Keyring | bytes, address: str, wall, rng: random.Random):
        self.network = network
        self.keys = auth.Keyring.of(keys)
        self.address = address
        self.wall = wall
        self.rng = rng
        self.open = False

    async def start(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.open = False

    def _headers(self, method: str, target: str, body: bytes, extra: Mapping[str, str] | None, nonce: str | None) -> list:
        headers = {k.lower(): v for k, v in (extra or {}).items()}
        if nonce is not None:
            headers[auth.HEADER.lower()] = auth.sign(self.keys, method, target, body, now=self.wall(), nonce=nonce)
        if body and "content-type" not in headers:
            headers["content-type"] = "application/json"
        headers["content-length"] = str(len(body))
        headers.setdefault("accept", "*/*")
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    def _checker(self, base_url: str, target: str, nonce: str) -> Callable[[int, str | None, str], None]:
        def check(status: int, header: str | None, body_sha256: str) -> None:
            try:
                auth.verify_answer(self.keys, header, nonce, status, body_sha256)
            except auth.SignatureError as exc:
                path = target.split("?")[0]
                raise ForgedAnswer(f"{base_url} answered {path} with an answer that fails its signature: {exc}") from None

        return check

    async def _exchange(self, method: str, base_url: str, target: str, body: bytes, timeout: float, headers, nonce) -> Reply:
        request = HttpRequest(method, target, self._headers(method, target, body, headers, nonce), body)
        return await self.network.exchange(self.address, host_of(base_url), request, timeout, base_url=base_url)

    async def call(
        self,
        method: str,
        base_url: str,
        target: str,
        *,
        body: bytes = b"",
        timeout: float,
        headers: Mapping[str, str] | None = None,
        sign: bool = True,
    ) -> Reply:
        nonce = self._nonce() if sign else None
        reply = await self._exchange(method, base_url, target, body, timeout, headers, nonce)
        if nonce is not None and not _refused_signature(reply):
            check = self._checker(base_url, target, nonce)
            check(reply.status, reply.headers.get(auth.HEADER), hashlib.sha256(reply.body).hexdigest())
            reply = dataclasses.replace(reply, verified=True)
        return reply

    async def call_json(self, method: str, base_url: str, target: str, payload: Any = None, *, timeout: float) -> Reply:
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        return await self.call(method, base_url, target, body=body, timeout=timeout)

    @asynccontextmanager
    async def stream(
        self, base_url: str, target: str, *, connect_timeout: float, start_timeout: float, read_timeout: float
    ) -> AsyncIterator[_Chunks]:
        nonce = self._nonce()
        try:
            # No connections are modelled and the answer comes whole: it must start within the start timeout.
            reply = await self._exchange("GET", base_url, target, b"", start_timeout, None, nonce)
        except PeerRefused as exc:
            raise PeerUnreachable(f"{base_url} is unreachable: {exc}") from None
        check = self._checker(base_url, target, nonce)
        if not _refused_signature(reply):
            # A streamed answer's header signs its status only; its records sign the body (snapshot_stream).
            body_sha256 = auth.STREAMED if reply.status == 200 else hashlib.sha256(reply.body).hexdigest()
            check(reply.status, reply.headers.get(auth.HEADER), body_sha256)
        yield _Chunks(reply, check)

    def _nonce(self) -> str:
        return f"{self.rng.getrandbits(4 * auth.NONCE_HEX_DIGITS):0{auth.NONCE_HEX_DIGITS}x}"


def _refused_signature(reply: Reply) -> bool:
    """A 401 ``invalid_signature``: the peer refused the request before anything ran (its answer is unsigned)."""
    if reply.status != 401:
        return False
    try:
        return json.loads(reply.body)["error"]["code"] == "invalid_signature"
    except (ValueError, KeyError, TypeError):
        return False
