"""Published ports, as ``docker run -p 3001:3000`` makes them: a TCP relay from localhost to a node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("talentnest.launcher.proxy")

CONNECT_TIMEOUT = 5.0
_CHUNK = 64 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side so HTTP/1.0 style closes still work."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class PortPublisher:
    """Listens on ``listen_host:listen_port`` and relays each connection to ``target()``.

    ``target()`` returns the node's ``(host, port)``, or None while the node is down: the client's
    connection is then closed at once (no hang, no half-open socket), as it is when the node's
    address refuses the connection.
    """

    def __init__(self, listen_host: str, listen_port: int, target: Callable[[], tuple[str, int] | None]):
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._target = target
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, self.listen_host, self.listen_port)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            target = self._target()
            if target is None:
                return
            try:
                node_reader, node_writer = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                return
            try:
                await asyncio.gather(_pump(client_reader, node_writer), _pump(node_reader, client_writer))
            finally:
                await _close(node_writer)
        finally:
            await _close(client_writer)
            self._connections.discard(task)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
