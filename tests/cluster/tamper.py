"""A man in the middle between two nodes: an HTTP proxy on a loopback address of its own, put on the path
from one node to another by a DNAT rule (``Firewall.redirect``), that forwards every request as it is and
may alter or cut the answers, and keeps the requests it saw (to replay them)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import yarl
from aiohttp import web

from talentnest.cluster.snapshot_stream import RECORD

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Captured:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Rule:
    """What to do to the answers to requests whose path starts with ``path``: ``alter(body) -> body``, or
    pass the first ``cut_after_records`` records of a streamed snapshot (``cluster.snapshot_stream``) and
    then drop the connection to both sides; at most ``times`` times."""

    path: str
    alter: Callable[[bytes], bytes] | None = None
    cut_after_records: int | None = None
    times: int | None = None
    applied: int = 0


@dataclass
class Tamper:
    """Forwards to ``upstream`` (``http://ip:port``) from ``listen`` (ip, port); ``rules`` apply in order."""

    listen: tuple[str, int]
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[Captured] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tamper", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> Tamper:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        connector = aiohttp.TCPConnector(local_addr=(self.listen[0], 0), force_close=True)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, *self.listen).start()

    def _rule(self, target: str) -> Rule | None:
        for rule in self.rules:
            if target.startswith(rule.path) and (rule.times is None or rule.applied < rule.times):
                return rule
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = request.raw_path
        self.seen.append(Captured(request.method, target, dict(request.headers), body))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        assert self._session is not None
        url = yarl.URL(self.upstream + target, encoded=True)
        rule = self._rule(target)
        async with self._session.request(request.method, url, data=body or None, headers=headers) as answer:
            out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            if rule is not None and rule.cut_after_records is not None:
                rule.applied += 1
                response = web.StreamResponse(status=answer.status, headers=out_headers)
                await response.prepare(request)
                for _ in range(rule.cut_after_records):
                    kind, length = RECORD.unpack(await answer.content.readexactly(RECORD.size))
                    await response.write(RECORD.pack(kind, length) + await answer.content.readexactly(length))
                answer.close()
                if request.transport is not None:
                    request.transport.close()  # after what was written (abort would drop it)
                return response
            data = await answer.read()
            if rule is not None and rule.alter is not None:
                rule.applied += 1
                data = rule.alter(data)
            return web.Response(status=answer.status, body=data, headers=out_headers)

    def close(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def flip_byte(at: float = 0.5) -> Callable[[bytes], bytes]:
    """An alteration: one bit of the byte at fraction ``at`` of the body."""

    def alter(body: bytes) -> bytes:
        if not body:
            return body
        data = bytearray(body)
        data[min(len(data) - 1, int(len(data) * at))] ^= 0x01
        return bytes(data)

    return alter
