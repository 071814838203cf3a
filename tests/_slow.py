"""Slowloris clients for tests: many connections that send a request a few bytes at a time and never finish.

``SlowClients`` runs them on an asyncio loop in a background thread. Half trickle the headers of
a GET (never ending the head), half send a complete head announcing a body and trickle that
body. Each keeps what the server answered before it closed the connection.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

INTERVAL = 0.5  # seconds between two trickles of one connection
CONNECT_TIMEOUT = 30.0


@dataclass
class SlowConnection:
    kind: str  # "head" or "body"
    answer: bytes = b""
    closed: bool = False
    error: str | None = None
    sent: int = field(default=0, repr=False)


class SlowClients:
    """``with SlowClients(host, port, heads=100, bodies=100) as slow:`` opens every connection
    before the block starts; ``slow.open`` counts those the server has not closed yet."""

    def __init__(self, host: str, port: int, *, heads: int, bodies: int, path: str = "/api/posts"):
        self.host, self.port, self.path = host, port, path
        self.connections = [SlowConnection("head") for _ in range(heads)] + [SlowConnection("body") for _ in range(bodies)]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slow-clients", daemon=True)
        self._tasks: list[asyncio.Task] = []
        self._connected: asyncio.Future | None = None

    @property
    def open(self) -> int:
        return sum(1 for c in self.connections if not c.closed)

    def answers(self) -> list[bytes]:
        return [c.answer for c in self.connections if c.closed]

    def __enter__(self) -> SlowClients:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(CONNECT_TIMEOUT * 2)
        failed = [c.error for c in self.connections if c.error]
        assert not failed, f"{len(failed)} slow clients could not connect: {failed[:3]}"
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        opened = [asyncio.get_running_loop().create_future() for _ in self.connections]
        self._tasks = [asyncio.create_task(self._run(c, ready)) for c, ready in zip(self.connections, opened, strict=True)]
        await asyncio.wait(opened, timeout=CONNECT_TIMEOUT)

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _first_bytes(self, kind: str) -> bytes:
        if kind == "head":
            return f"GET {self.path} HTTP/1.1\r\nHost: slow\r\n".encode()
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n" + '{"content": "'
        ).encode()

    async def _run(self, connection: SlowConnection, ready: asyncio.Future) -> None:
        writer = reading = None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT)
            writer.write(self._first_bytes(connection.kind))
            ready.set_result(True)
            reading = asyncio.create_task(reader.read())  # everything until the server closes
            while not reading.done():
                await asyncio.wait([reading], timeout=INTERVAL)
                if reading.done():
                    break
                trickle = f"X-Slow-{connection.sent}: y\r\n".encode() if connection.kind == "head" else b"x"
                writer.write(trickle)
                connection.sent += 1
            connection.answer = reading.result()
            connection.closed = True
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            connection.closed = True
            if not ready.done():
                connection.error = repr(exc)
                ready.set_result(False)
        finally:
            if not ready.done():
                ready.set_result(False)
            if reading is not None:
                reading.cancel()
            if writer is not None:
                writer.close()
